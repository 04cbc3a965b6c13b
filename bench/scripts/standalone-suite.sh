#!/usr/bin/env bash
# Every standalone figure of bench/README.md, 3 runs each, against a fresh `fjord
# standalone` on :8080 that this script starts (data in $DIR) and stops. One JSON line
# per run in $OUT/<shape>.jsonl and a one-line summary per run on stdout.
# Usage: F=… DIR=… OUT=… [RUNS=3] standalone-suite.sh [REQUESTS_HALF_RATE] [E2E_RATE] [E2E_SMALL_RATE]
# The rates default to the open-loop points of bench/README.md: 12,500 req/s (half of the
# 25k target) and, for e2e, about half of what produce + consume together sustain here.
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
DIR=${DIR:?data dir} OUT=${OUT:?output dir}
half_requests=${1:-12500} e2e_rate=${2:-95} e2e_small_rate=${3:-5000}
runs=$(seq "${RUNS:-3}")
mkdir -p "$OUT"
rm -rf "$DIR"
setsid "$F" standalone --data-dir "$DIR" --listen 127.0.0.1:8080 </dev/null >"$OUT/standalone.log" 2>&1 &
sa=$!
# The runs write ~40 GB; the data dir goes when the script ends.
trap 'kill $sa 2>/dev/null || true; sleep 1; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.1; done

big=(--record-size 1KiB --records-per-request 1000 --concurrency 4 --partitions 4 --duration 10s --json)
run() { # file args...
  local file=$1; shift
  "$F" bench "$@" > "$OUT/.run.json"
  cat "$OUT/.run.json" >> "$OUT/$file"; echo >> "$OUT/$file"
  python3 - "$OUT/.run.json" "$file" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
line = "%s: %.1f MB/s %.0f req/s p50 %.2f p99 %.2f ms errors %s" % (
    sys.argv[2], d["mb_per_s"], d["requests_per_s"], l["p50"], l["p99"], d["errors"])
if "baselines" in d:
    b = d["baselines"]
    line += " | storage %.1f MB/s %.0f req/s, http %.1f MB/s %.0f req/s" % (
        b["storage"]["mb_per_s"], b["storage"]["requests_per_s"], b["http"]["mb_per_s"], b["http"]["requests_per_s"])
if "e2e" in d:
    e = d["e2e"]["latency_ms"]
    line += " | e2e p50 %.2f p90 %.2f p99 %.2f max %.2f ms" % (e["p50"], e["p90"], e["p99"], e["max"])
print(line)
EOF
}

for _ in $runs; do
  run produce-json.jsonl produce --format json --acks 1 "${big[@]}" --baselines
  run produce-binary.jsonl produce --format binary --acks 1 "${big[@]}" --baselines
done
for _ in $runs; do
  run consume.jsonl consume "${big[@]}" --baselines
done
req=(--topic bench-requests --record-size 100 --concurrency 16 --partitions 4 --format json --acks 1 --duration 10s --json)
for _ in $runs; do
  run requests.jsonl requests "${req[@]}" --baselines
done
for _ in $runs; do
  run requests-half.jsonl requests "${req[@]}" --rate "$half_requests"
done
for _ in $runs; do
  run e2e.jsonl e2e --topic bench-e2e --format json --acks 1 --rate "$e2e_rate" "${big[@]}"
  run e2e-small.jsonl e2e --topic bench-e2e-small --record-size 1KiB --records-per-request 10 --concurrency 16 \
    --partitions 4 --format json --acks 1 --rate "$e2e_small_rate" --duration 10s --json
done
echo "standalone VmHWM: $(grep VmHWM /proc/$sa/status)"
