#!/usr/bin/env bash
# The main job on a compose cluster: the coordinator and 4 workers in containers sharing
# ./data, wc over the lab texts submitted with grpcurl, progress followed with WatchJob,
# the top 10 words printed. The cluster stays up: `make down` takes it away.
# Run by `make demo` after `make images`. MR_PORT, MR_DATA as in compose; the services run
# as the data folder's owner by themselves, so its outputs are that user's.
set -euo pipefail
cd "$(dirname "$0")/.."

export MR_PORT=${MR_PORT:-50051}
data=${MR_DATA:-./data}
addr=127.0.0.1:$MR_PORT
compose=scripts/compose.sh
workers=${MR_WORKERS:-4}

command -v grpcurl >/dev/null || { echo "demo: grpcurl is missing: run make setup" >&2; exit 1; }
# With MR_AUTH_TOKEN set, the cluster requires it on every call, and so grpcurl sends it.
grpcurl() { command grpcurl ${MR_AUTH_TOKEN:+-H "authorization: Bearer $MR_AUTH_TOKEN"} "$@"; }
auth=${MR_AUTH_TOKEN:+"-H \"authorization: Bearer \$MR_AUTH_TOKEN\" "}  # for the commands shown
ls "$data"/input/pg-*.txt >/dev/null 2>&1 || { echo "demo: no $data/input/pg-*.txt" >&2; exit 1; }

echo "== docker compose up -d --scale worker=$workers  (data: $data, port: $MR_PORT)"
$compose up -d --scale "worker=$workers"

echo "== waiting for the coordinator to be healthy"
cid=$($compose ps -q coordinator)
for i in $(seq 60); do
  status=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$cid")
  [ "$status" = healthy ] && break
  [ "$i" = 60 ] && { echo "demo: coordinator is $status after 60s" >&2; $compose logs --tail 30 coordinator >&2; exit 1; }
  sleep 1
done
$compose ps

echo "== submitting wc over input/pg-*.txt"
echo "   grpcurl ${auth}-plaintext -d '{\"app\":\"wc\",\"inputs\":[\"input/pg-*.txt\"],\"n_reduce\":4}' $addr mapreduce.v1.JobService/SubmitJob"
job=$(grpcurl -plaintext -d '{"app":"wc","inputs":["input/pg-*.txt"],"n_reduce":4}' \
  "$addr" mapreduce.v1.JobService/SubmitJob | python3 -c 'import json, sys; print(json.load(sys.stdin)["jobId"])')
echo "   job $job"

echo "== progress (WatchJob)"
grpcurl -plaintext -d "{\"job_id\":\"$job\"}" "$addr" mapreduce.v1.JobService/WatchJob |
  python3 -c '
import json, sys
buf, last = "", None
for line in sys.stdin:
    buf += line
    if line.startswith("}"):
        job = json.loads(buf); buf = ""
        m, r = job.get("map", {}), job.get("reduce", {})
        text = "   %s: map %d/%d, reduce %d/%d" % (job.get("state"), m.get("completed", 0),
               m.get("total", 0), r.get("completed", 0), r.get("total", 0))
        if text != last:
            print(text, flush=True)
        last = text
'
state=$(grpcurl -plaintext -d "{\"job_id\":\"$job\"}" "$addr" mapreduce.v1.JobService/GetJob |
  python3 -c 'import json, sys; j = json.load(sys.stdin); print(j.get("state", "?"), j.get("error", ""))')
if [ "${state%% *}" != JOB_STATE_SUCCEEDED ]; then
  echo "demo: job $job ended $state" >&2
  $compose logs --tail 30 coordinator >&2
  exit 1
fi

out=$(cd "$data/jobs/$job" && pwd)
echo "== top 10 words"
sort -k2,2nr -k1,1 "$out"/mr-out-* | sed -n 1,10p  # sed reads it all: no SIGPIPE under pipefail
echo "== outputs (plain files on the host)"
ls -1 "$out"/mr-out-*
cat <<MSG
== the cluster is still up
   scripts/compose.sh logs -f coordinator     # or: docker compose logs -f coordinator
   grpcurl ${auth}-plaintext -d '{"job_id":"$job"}' $addr mapreduce.v1.JobService/GetJob
   target/release/mr --coordinator http://$addr status $job   # the CLI (make build), or:
   docker exec \$(scripts/compose.sh ps -q coordinator) mr status $job
   status page and metrics: http://127.0.0.1:${MR_HTTP_PORT:-8080}/  and  /metrics
   make down                                  # takes it away
MSG
