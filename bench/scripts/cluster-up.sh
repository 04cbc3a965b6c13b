#!/usr/bin/env bash
# Starts the same processes as scripts/cluster.sh (ZooKeeper 127.0.0.1:2181, storage nodes
# 1-3 on 127.0.0.1:9201-9203, gateways 127.0.0.1:8081/8082), detached, from a prebuilt binary
# $F, and writes their PIDs as name=pid lines to $DIR/pids (for the other bench scripts and
# cluster-down.sh). NODE1_ENV/NODE2_ENV/NODE3_ENV: extra environment for a node
# (e.g. NODE2_ENV=MALLOC_ARENA_MAX=2). Usage: F=… DIR=/tmp/fjcl/cluster cluster-up.sh
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
dir=$(realpath -m "${DIR:?data dir}")
mkdir -p "$dir/zk"
cat > "$dir/zk/zoo.cfg" <<CFG
dataDir=$dir/zk/data
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
tickTime=2000
CFG
setsid /usr/share/zookeeper/bin/zkServer.sh start-foreground "$dir/zk/zoo.cfg" >"$dir/zookeeper.log" 2>&1 </dev/null &
echo "zk=$!" > "$dir/pids"
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/2181) 2>/dev/null && break; sleep 0.1; done
for i in 1 2 3; do
  extra="NODE${i}_ENV"
  env ${!extra:-} setsid "$F" storage-node --node-id "$i" --data-dir "$dir/node$i" --listen "127.0.0.1:920$i" \
    --zookeeper 127.0.0.1:2181 >"$dir/node$i.log" 2>&1 </dev/null &
  echo "node$i=$!" >> "$dir/pids"
done
for port in 8081 8082; do
  setsid "$F" gateway --listen "127.0.0.1:$port" --zookeeper 127.0.0.1:2181 >"$dir/gateway-$port.log" 2>&1 </dev/null &
  echo "gw$port=$!" >> "$dir/pids"
done
for port in 8081 8082 9201 9202 9203; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
cat "$dir/pids"
