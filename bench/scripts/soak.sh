#!/usr/bin/env bash
# 10-minute open-loop produce against a cluster gateway while sampling every storage node's
# and gateway's RSS (rss-sample.sh, every 10 s), the nodes' data dir sizes, and CPU shares
# at 1, 5 and 9 minutes. PIDs from $PIDS (name=pid lines), data dirs under $CLUSTER_DIR.
# Usage: PIDS=… OUT=… CLUSTER_DIR=… soak.sh RATE [DURATION_S]
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
PIDS=${PIDS:?} OUT=${OUT:?} CLUSTER_DIR=${CLUSTER_DIR:?}
rate=$1 dur=${2:-600}
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$OUT"
mapfile -t procs < "$PIDS"
mem=(); for x in "${procs[@]}"; do case $x in node*|gw*) mem+=("$x");; esac; done
"$here/rss-sample.sh" 10 $((dur + 20)) "${mem[@]}" > "$OUT/soak-rss.csv" & sp=$!
( echo "t_s,node1_du_mib,node2_du_mib,node3_du_mib"; s=$(date +%s)
  while kill -0 $sp 2>/dev/null; do
    echo "$(( $(date +%s) - s )),$(du -sm "$CLUSTER_DIR"/node1 | cut -f1),$(du -sm "$CLUSTER_DIR"/node2 | cut -f1),$(du -sm "$CLUSTER_DIR"/node3 | cut -f1)"
    sleep 10; done ) > "$OUT/soak-disk.csv" & dp=$!
"$F" bench produce --url http://127.0.0.1:8081 --topic bench-soak --replication-factor 3 \
  --record-size 1KiB --records-per-request 1000 --concurrency 4 --partitions 4 --format json \
  --acks all --rate "$rate" --duration "${dur}s" --json > "$OUT/soak-produce.json" & bp=$!
t0=$(date +%s)
for at in 60 300 540; do
  sleep $((at - ($(date +%s) - t0)))
  echo "t=${at}s: $("$here/cpu-share.sh" 0 8 "${procs[@]}" bench=$bp)" >> "$OUT/soak-cpu.txt"
done
wait $bp; wait $sp; wait $dp || true
