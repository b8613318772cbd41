#!/usr/bin/env bash
# The main job on a local cluster of real processes: a coordinator and 4 workers on this
# machine, wc over the lab texts submitted with grpcurl, the top 10 words printed.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${MR_PORT:-50051}
addr=127.0.0.1:$port
data=$PWD/data
logs=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

target/release/mr-coordinator --listen "$addr" --data-dir "$data" --apps-dir target/apps \
  >"$logs/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do target/release/mr-coordinator health --addr "http://$addr" >/dev/null 2>&1 && break; sleep 0.1; done
for i in 1 2 3 4; do
  target/release/mr-worker --coordinator "http://$addr" --data-dir "$data" --worker-id "worker-$i" \
    >"$logs/worker-$i.log" 2>&1 &
  pids+=($!)
done

echo "== submitting wc over input/pg-*.txt"
job=$(grpcurl -plaintext -d '{"app":"wc","inputs":["input/pg-*.txt"],"n_reduce":4}' \
  "$addr" mapreduce.v1.JobService/SubmitJob | sed -n 's/.*"jobId": "\(.*\)".*/\1/p')
echo "job $job"
grpcurl -plaintext -d "{\"job_id\":\"$job\"}" "$addr" mapreduce.v1.JobService/WatchJob |
  python3 -c '
import json, sys
buf = ""
for line in sys.stdin:
    buf += line
    if line.startswith("}"):
        job = json.loads(buf); buf = ""
        m, r = job.get("map", {}), job.get("reduce", {})
        print("   %s: map %d/%d, reduce %d/%d" % (job.get("state"), m.get("completed", 0),
              m.get("total", 0), r.get("completed", 0), r.get("total", 0)), flush=True)
'
echo "== top 10 words"
sort -k2,2nr -k1,1 "$data/jobs/$job"/mr-out-* | sed -n 1,10p
echo "== outputs: $data/jobs/$job/mr-out-*"
echo "== logs: $logs"
