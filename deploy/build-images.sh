#!/usr/bin/env bash
# Builds the container image (one image: both services, the `mr` client and the S3 server of
# docker-compose.s3.yml) from what `make build` made: stages stripped copies of the static
# binaries, the Wasm apps and the CA certificates in target/docker/ and runs `docker build`
# there (the context is a few MiB, not target/).
#
#   deploy/build-images.sh              # tags ${MR_IMAGE:-mr:latest}
#   deploy/build-images.sh --if-engine  # the same, or nothing (exit 0) when no Docker
#                                       # engine is reachable (make test: the compose
#                                       # tests then skip)
#
# Installs what it needs from Debian's packages when missing (binutils for strip,
# ca-certificates, the Docker CLI, docker-compose); a Docker engine must be running.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${MR_IMAGE:-mr:latest}
bins=(mr-coordinator mr-worker mr mr-s3-server)
certs=/etc/ssl/certs/ca-certificates.crt
ctx=target/docker

if [ "${1:-}" = --if-engine ] && ! docker info >/dev/null 2>&1; then
  echo "images: no Docker engine is reachable: no image built, the compose tests will skip"
  exit 0
fi

need_apt=()
command -v strip >/dev/null || need_apt+=(binutils)
[ -s "$certs" ] || need_apt+=(ca-certificates)
command -v docker >/dev/null || need_apt+=(docker.io)
# Compose runs the images (make demo, make test): v2 if present, else Debian's v1.
{ docker compose version || docker-compose version; } >/dev/null 2>&1 || need_apt+=(docker-compose)
if ((${#need_apt[@]})); then
  echo "images: installing ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "images: no Docker engine is reachable (docker info failed); start dockerd first" >&2
  exit 1
fi

for b in "${bins[@]}"; do
  [ -x "target/release/$b" ] || { echo "images: target/release/$b is missing: run make build" >&2; exit 1; }
  # The image has no dynamic loader: refuse anything that is not statically linked.
  if command -v file >/dev/null && ! file -L "target/release/$b" | grep -q 'static'; then
    echo "images: target/release/$b is not statically linked" >&2; exit 1
  fi
done
[ -s target/apps/wc.wasm ] || { echo "images: target/apps has no wc.wasm: run make build" >&2; exit 1; }

rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/apps" "$ctx/rootfs/etc/ssl/certs" "$ctx/data"
for b in "${bins[@]}"; do
  # The binaries carry line tables for backtraces (~90 MiB); the image gets stripped copies.
  strip --strip-all -o "$ctx/rootfs/usr/local/bin/$b" "target/release/$b"
  chmod 0755 "$ctx/rootfs/usr/local/bin/$b"
done
install -m 0644 target/apps/*.wasm "$ctx/rootfs/apps/"
# The hostile Python and C apps exist for the sandbox tests, which run them outside
# containers; at ~19 MB, the Python one is not worth shipping.
rm -f "$ctx/rootfs/apps/"hostile-*.wasm
install -m 0644 "$certs" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
# Names for the default user, so tools that look uids up show `mr`, not a number.
printf 'root:x:0:0:root:/:/sbin/nologin\nmr:x:10001:10001:mr:/data:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nmr:x:10001:\n' >"$ctx/rootfs/etc/group"
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
chmod -R u=rwX,go=rX "$ctx/rootfs" "$ctx/data"
cp deploy/Dockerfile "$ctx/Dockerfile"

version=$(git describe --always --dirty 2>/dev/null || echo dev)
echo "images: building $image ($version) from $ctx ($(du -sh "$ctx" | cut -f1))"
previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
# The classic builder: every engine from 20.10 on has it, with or without buildx. Its
# output (and its deprecation notice) is shown only when the build fails.
if ! out=$(DOCKER_BUILDKIT=0 docker build --tag "$image" --build-arg "MR_VERSION=$version" "$ctx" 2>&1); then
  echo "$out" >&2
  echo "images: docker build failed" >&2
  exit 1
fi
# The image this tag named before is now dangling: drop it unless a container uses it.
current=$(docker image inspect --format '{{.Id}}' "$image")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true
fi
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "images: $image built, $((size / 1024 / 1024)) MiB ($size bytes)"
