#!/usr/bin/env bash
# Runs a local Fjord cluster by hand: ZooKeeper on 127.0.0.1:2181, storage nodes 1-3
# (internal API on 127.0.0.1:9201-9203) and gateways on 127.0.0.1:8081 and :8082.
# Data and logs go to ${FJORD_CLUSTER_DIR:-./cluster}. Ctrl-C stops everything.
# FJORD_PROFILE=debug uses a debug build (quicker to build the first time); FJORD_BIN=<path>
# runs a prebuilt binary instead of building. NODE1_ENV..NODE3_ENV add environment to a
# storage node (e.g. NODE2_ENV=MALLOC_ARENA_MAX=2). Every process's PID is written as a
# name=pid line to $dir/pids (bench/scripts use it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh && fjord_setup zookeeper
if [ -n "${FJORD_BIN:-}" ]; then
  fjord="$FJORD_BIN"
else
  profile="${FJORD_PROFILE:-release}"
  if [ "$profile" = release ]; then cargo build --release --locked -p fjord --bin fjord; else cargo build --locked -p fjord --bin fjord; fi
  fjord="$CARGO_TARGET_DIR/$profile/fjord"
fi
dir="$(realpath -m "${FJORD_CLUSTER_DIR:-cluster}")"
mkdir -p "$dir/zk"
cat > "$dir/zk/zoo.cfg" <<CFG
dataDir=$dir/zk/data
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
tickTime=2000
CFG

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

/usr/share/zookeeper/bin/zkServer.sh start-foreground "$dir/zk/zoo.cfg" >"$dir/zookeeper.log" 2>&1 &
pids+=($!)
echo "zk=$!" > "$dir/pids"
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/2181) 2>/dev/null && break; sleep 0.1; done
for i in 1 2 3; do
  extra="NODE${i}_ENV"
  env ${!extra:-} "$fjord" storage-node --node-id "$i" --data-dir "$dir/node$i" --listen "127.0.0.1:920$i" \
    --zookeeper 127.0.0.1:2181 >"$dir/node$i.log" 2>&1 &
  pids+=($!)
  echo "node$i=$!" >> "$dir/pids"
done
for port in 8081 8082; do
  "$fjord" gateway --listen "127.0.0.1:$port" --zookeeper 127.0.0.1:2181 >"$dir/gateway-$port.log" 2>&1 &
  pids+=($!)
  echo "gw$port=$!" >> "$dir/pids"
done
echo "Fjord cluster: gateways http://127.0.0.1:8081 and http://127.0.0.1:8082; logs in $dir. Ctrl-C stops it."
# Runs until Ctrl-C; a storage node killed by hand (to try failover) can be started
# again with the same command line (see its log's first lines, or this script).
wait
