#!/usr/bin/env bash
# Validates the Kubernetes manifests offline (part of `make test`): builds the base and every
# overlay under overlays/ with `kubectl kustomize`, and checks every object it makes, and
# data-shell.yaml, against the schemas of Kubernetes 1.32.0 with `kubernetes-validate
# --strict` (unknown fields are errors). No cluster is needed or contacted.
#
#   deploy/k8s/validate.sh
#
# Fails, naming the directory, when a build fails, an object does not validate, or its kind
# has no schema (which kubernetes-validate only warns about).
set -euo pipefail
cd "$(dirname "$0")"

k8s_version=1.32.0

command -v kubectl >/dev/null || {
  echo "k8s: kubectl is missing: install it (https://kubernetes.io/docs/tasks/tools/; Debian: apt-get install kubectl from pkgs.k8s.io)" >&2
  exit 1
}
command -v kubernetes-validate >/dev/null || {
  echo "k8s: kubernetes-validate is missing: python3 -m pip install kubernetes-validate (or make setup)" >&2
  exit 1
}

# Reads manifests on stdin; fails unless every object passes and there is at least one.
check() {
  local name=$1 out rc=0
  out=$(kubernetes-validate --strict -k "$k8s_version" - 2>&1) || rc=$?
  if ((rc != 0)) || grep -qvE '^INFO ' <<<"$out"; then
    grep -vE '^INFO ' <<<"$out" | sed "s|^|k8s: $name: |" >&2
    echo "k8s: $name: does not validate against Kubernetes $k8s_version (kubernetes-validate --strict, exit $rc)" >&2
    return 1
  fi
  local n
  n=$(grep -c '^INFO .* passed ' <<<"$out" || true)
  if ((n == 0)); then
    echo "k8s: $name: no objects to validate" >&2
    return 1
  fi
  echo "k8s: $name: $n object$( ((n == 1)) || echo s) valid against Kubernetes $k8s_version (strict)"
}

failed=()
for dir in base overlays/*/; do
  dir=${dir%/}
  [ -f "$dir/kustomization.yaml" ] || continue
  if ! manifests=$(kubectl kustomize "$dir" 2>&1); then
    sed "s|^|k8s: $dir: |" <<<"$manifests" >&2
    echo "k8s: $dir: kubectl kustomize failed" >&2
    failed+=("$dir")
    continue
  fi
  check "$dir" <<<"$manifests" || failed+=("$dir")
done
check data-shell.yaml <data-shell.yaml || failed+=(data-shell.yaml)

if ((${#failed[@]})); then
  echo "k8s: FAILED: ${failed[*]} (deploy/k8s/)" >&2
  exit 1
fi
