#!/usr/bin/env bash
# Builds and runs `fjord standalone` (HTTP on 127.0.0.1:8080, data in ./data).
# Extra arguments go to `fjord standalone`, e.g. --listen 127.0.0.1:9090 --data-dir /tmp/fjord.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh && fjord_setup
cargo build --release --locked -p fjord --bin fjord
exec "$CARGO_TARGET_DIR/release/fjord" standalone "$@"
