#!/usr/bin/env bash
# Runs the randomized fault test (tests/randomized.rs) for several seeds, as root:
#
#   scripts/fault-rounds.sh [--seeds FIRST..LAST] [--rounds N]     # default 1..10, 5 rounds
#
# Each seed is one cluster and N rounds of faults; every seed's result (and, for a failed
# one, its whole output) goes to $FJORD_FAULT_LOG_DIR (default a temp dir). Exits non-zero
# if any seed failed. Reproduce one with
#   FJORD_FAULT_SEED=S FJORD_FAULT_ROUNDS=N cargo test -p fjord --test randomized -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="1..10" rounds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "usage: $0 [--seeds FIRST..LAST] [--rounds N]" >&2; exit 2 ;;
  esac
done
first="${seeds%..*}" last="${seeds#*..}"
source scripts/setup.sh && fjord_setup procps zookeeper iproute2 iptables
cargo build --locked -q -p fjord --tests
logs="${FJORD_FAULT_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/fjord-faults.XXXXXX")}"
mkdir -p "$logs"
failed=0
for seed in $(seq "$first" "$last"); do
  log="$logs/seed-$seed.log"
  if FJORD_FAULT_SEED="$seed" FJORD_FAULT_ROUNDS="$rounds" cargo test --locked -q -p fjord --test randomized -- --nocapture >"$log" 2>&1; then
    echo "seed $seed: ok: $(grep -m1 -o '[0-9]* acknowledged, [0-9]* attempts, [0-9]* abandoned' "$log")"
    grep -o 'round [0-9]*: .*' "$log" | sed 's/^/    /'
  else
    failed=$((failed + 1))
    echo "seed $seed: FAILED (log: $log)"
  fi
done
echo "$failed failed; logs in $logs"
[ "$failed" = 0 ]
