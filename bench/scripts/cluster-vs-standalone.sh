#!/usr/bin/env bash
# Interleaved produce/consume runs against a standalone Fjord (:8080) and a 3-node cluster's
# gateway (:8081), same shape, in one sitting, with the CPU share of every process sampled
# in the middle of each measured window. PIDs come from $PIDS (lines name=pid: zk, node1-3,
# gw8081, gw8082, sa). Output: one JSON line per run in $OUT/*.jsonl, CPU shares in $OUT/cpu.txt.
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
PIDS=${PIDS:?file of name=pid lines}
OUT=${OUT:?output dir}
mkdir -p "$OUT"
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t procs < "$PIDS"
shape=(--record-size 1KiB --records-per-request 1000 --concurrency 4 --partitions 4 --duration 10s --json)

run() { # name file args...
  local name=$1 file=$2; shift 2
  "$F" bench "$@" > "$OUT/.run.json" &
  local bp=$!
  # warm-up is 2 s; sample 3 s .. 11 s of the run
  local cpu; cpu=$("$here/cpu-share.sh" 3 8 "${procs[@]}" bench=$bp) || cpu="(sampling failed)"
  wait $bp
  cat "$OUT/.run.json" >> "$OUT/$file"; echo >> "$OUT/$file"
  local mb; mb=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f MB/s p99 %.1f ms errors %s" % (d["mb_per_s"], d["latency_ms"]["p99"], d["errors"]))' "$OUT/.run.json")
  echo "$(date +%T) $name: $mb | cpu: $cpu" | tee -a "$OUT/cpu.txt"
  sleep 3
}

for r in 1 2 3; do
  run "standalone produce acks=1 #$r" standalone-produce-acks1.jsonl produce --url http://127.0.0.1:8080 --acks 1 --format json "${shape[@]}"
  run "cluster produce acks=all #$r" cluster-produce-acksall.jsonl produce --url http://127.0.0.1:8081 --topic bench-rf3 --replication-factor 3 --acks all --format json "${shape[@]}"
  run "standalone produce acks=all #$r" standalone-produce-acksall.jsonl produce --url http://127.0.0.1:8080 --acks all --format json "${shape[@]}"
done
for r in 1 2 3; do
  run "standalone consume #$r" standalone-consume.jsonl consume --url http://127.0.0.1:8080 "${shape[@]}"
  run "cluster consume #$r" cluster-consume.jsonl consume --url http://127.0.0.1:8081 --topic bench-rf3 "${shape[@]}"
done
