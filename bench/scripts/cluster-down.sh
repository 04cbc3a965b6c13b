#!/usr/bin/env bash
# Stops what cluster-up.sh started, by PID: gateways and storage nodes first (their
# controlled shutdown needs ZooKeeper), then ZooKeeper. Usage: DIR=… cluster-down.sh
set -euo pipefail
dir=${DIR:?data dir}
pid() { grep "^$1=" "$dir/pids" | cut -d= -f2; }
kill "$(pid gw8081)" "$(pid gw8082)" "$(pid node1)" "$(pid node2)" "$(pid node3)" 2>/dev/null || true
for _ in $(seq 60); do
  alive=0; for n in gw8081 gw8082 node1 node2 node3; do kill -0 "$(pid $n)" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break; sleep 1
done
kill "$(pid zk)" 2>/dev/null || true
for _ in $(seq 30); do kill -0 "$(pid zk)" 2>/dev/null || break; sleep 1; done
