#!/usr/bin/env bash
# What exactly-once produce costs: the same build without (A) and with (B) --idempotent
# (every request its own Idempotency-Key), for the two produce shapes of bench/README.md,
# a fresh `fjord standalone` per run, alternating order (see ab-cost.sh).
# Usage: F=… DIR=… OUT=… [RUNS=4] idempotent-cost.sh
set -euo pipefail
F=${F:-$HOME/.cache/fjord/target/release/fjord}
A=$F B=$F B_FLAGS=--idempotent exec "$(dirname "$0")/ab-cost.sh"
