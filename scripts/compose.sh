#!/usr/bin/env bash
# `docker compose` (v2) or `docker-compose` (v1.29) on the repository's docker-compose.yml,
# whichever is installed, with the services running as the owner of the data folder:
#
#   scripts/compose.sh up -d --scale worker=4
#   scripts/compose.sh logs -f coordinator
#   scripts/compose.sh down
#
# MR_UID/MR_GID default to the owner of ${MR_DATA:-./data} (so root's data → root in the
# containers, a user's → that user); set them to override. See deploy/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${MR_DATA:-./data}
mkdir -p "$data"
export MR_UID=${MR_UID:-$(stat -c %u "$data")}
export MR_GID=${MR_GID:-$(stat -c %g "$data")}

if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
elif command -v docker-compose >/dev/null; then
  exec docker-compose "$@"
fi
echo "compose: neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed;" \
  "install one (Debian: apt-get install docker-compose)" >&2
exit 1
