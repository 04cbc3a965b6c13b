#!/usr/bin/env bash
# What exactly-once produce costs: the same run without and with --idempotent (every
# request its own Idempotency-Key), for the two produce shapes of bench/README.md — big
# JSON batches (1000 × 1 KiB per request) and single-record requests (100 B, 16
# connections). Every run gets a fresh `fjord standalone` (data in $DIR, removed after):
# on this disk a run is slower the more earlier runs wrote, so sharing one server would
# favour whichever mode ran first. The order alternates per round (plain first, then
# idempotent first). One JSON line per run in $OUT/<shape>-{plain,idempotent}.jsonl;
# medians and ratios on stdout. Usage: F=… DIR=… OUT=… [RUNS=4] idempotent-cost.sh
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
DIR=${DIR:?data dir} OUT=${OUT:?output dir}
mkdir -p "$OUT"
sa=
stop() { if [ -n "$sa" ]; then kill "$sa" 2>/dev/null || true; wait "$sa" 2>/dev/null || true; sa=; fi; rm -rf "$DIR"; }
trap stop EXIT
fresh() {
  stop
  setsid "$F" standalone --data-dir "$DIR" --listen 127.0.0.1:8080 </dev/null >>"$OUT/standalone.log" 2>&1 &
  sa=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && return; sleep 0.1; done
  echo "standalone did not start" >&2; exit 1
}
big=(produce --format json --acks 1 --record-size 1KiB --records-per-request 1000 --concurrency 4 --partitions 4 --duration 10s --json)
req=(requests --topic bench-requests --record-size 100 --concurrency 16 --partitions 4 --format json --acks 1 --duration 10s --json)
for round in $(seq "${RUNS:-4}"); do
  modes=(plain idempotent); [ $((round % 2)) = 0 ] && modes=(idempotent plain)
  for shape in produce requests; do
    for mode in "${modes[@]}"; do
      extra=(); [ "$mode" = idempotent ] && extra=(--idempotent)
      args=("${big[@]}"); [ "$shape" = requests ] && args=("${req[@]}")
      fresh
      "$F" bench "${args[@]}" "${extra[@]}" >> "$OUT/$shape-$mode.jsonl"
    done
  done
done
stop
python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
for shape in ("produce", "requests"):
    rows = {}
    for mode in ("plain", "idempotent"):
        runs = [json.loads(l) for l in open(f"{out}/{shape}-{mode}.jsonl") if l.strip()]
        errors = sum(sum(r["errors"].values()) if isinstance(r["errors"], dict) else r["errors"] for r in runs)
        rows[mode] = (len(runs), statistics.median(r["mb_per_s"] for r in runs),
                      statistics.median(r["requests_per_s"] for r in runs),
                      statistics.median(r["latency_ms"]["p50"] for r in runs),
                      statistics.median(r["latency_ms"]["p99"] for r in runs), errors)
    (n, pm, pr, p50, p99, pe), (_, im, ir, i50, i99, ie) = rows["plain"], rows["idempotent"]
    print(f"{shape} (n={n}): plain {pm:.1f} MB/s {pr:.0f} req/s p50 {p50:.2f} p99 {p99:.2f} ms errors {pe} | "
          f"idempotent {im:.1f} MB/s {ir:.0f} req/s p50 {i50:.2f} p99 {i99:.2f} ms errors {ie} | "
          f"ratio {ir / pr:.3f} req/s, {i50 / p50:.3f} p50, {i99 / p99:.3f} p99")
PY
