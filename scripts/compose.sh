#!/usr/bin/env bash
# `docker compose` (v2) or `docker-compose` (v1.29) on the repository's docker-compose.yml,
# whichever is installed:
#
#   scripts/compose.sh up -d --scale worker=4
#   scripts/compose.sh logs -f coordinator
#   scripts/compose.sh down
#
# Nothing to set: the services run as the owner of ${MR_DATA:-./data}, whoever that is (the
# binaries switch to it themselves; MR_UID/MR_GID override). See deploy/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# The bind mount needs the folder to exist (compose does not create it).
mkdir -p "${MR_DATA:-./data}"

if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
elif command -v docker-compose >/dev/null; then
  exec docker-compose "$@"
fi
echo "compose: neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed;" \
  "install one (Debian: apt-get install docker-compose)" >&2
exit 1
