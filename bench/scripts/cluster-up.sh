#!/usr/bin/env bash
# Starts scripts/cluster.sh (ZooKeeper 127.0.0.1:2181, storage nodes 1-3 on
# 127.0.0.1:9201-9203, gateways 127.0.0.1:8081/8082) detached, from a prebuilt binary $F,
# and waits until every process listens. PIDs are in $DIR/pids as name=pid lines (for the
# other bench scripts and cluster-down.sh). NODE1_ENV/NODE2_ENV/NODE3_ENV pass extra
# environment to a node. Usage: F=… DIR=/tmp/fjcl/cluster cluster-up.sh
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
dir=$(realpath -m "${DIR:?data dir}")
mkdir -p "$dir"
rm -f "$dir/pids"
FJORD_BIN="$F" FJORD_CLUSTER_DIR="$dir" setsid "$(dirname "$0")/../../scripts/cluster.sh" \
  >"$dir/cluster.log" 2>&1 </dev/null &
for port in 8081 8082 9201 9202 9203; do
  for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
cat "$dir/pids"
