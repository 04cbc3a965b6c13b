#!/usr/bin/env bash
# The standalone suite for two builds in one sitting, interleaved: round i runs every
# shape once against a fresh standalone of A, then of B, so drift and background load
# hit both alike. Results in $OUT/a/<shape>.jsonl and $OUT/b/<shape>.jsonl, and a table of
# medians and B/A ratios on stdout (bench/scripts/ab-table.py).
# Usage: A=path/to/fjord B=path/to/fjord DIR=… OUT=… [ROUNDS=3] ab-suite.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
A=${A:?binary A} B=${B:?binary B} DIR=${DIR:?data dir} OUT=${OUT:?output dir}
for round in $(seq "${ROUNDS:-3}"); do
  for side in a b; do
    bin=$A; [ "$side" = b ] && bin=$B
    echo "== round $round, $side ($bin)"
    F=$bin DIR="$DIR" OUT="$OUT/$side" RUNS=1 "$here/standalone-suite.sh"
  done
done
python3 "$here/ab-table.py" "$OUT/a" "$OUT/b"
