#!/usr/bin/env bash
# Runs the whole test suite: unit, storage conformance and property tests, HTTP handler
# tests, coordinator conformance against the embedded backend and a real ZooKeeper,
# integration and fault tests against real `fjord` processes (standalone, and a cluster
# of ZooKeeper + 3 storage nodes + 2 gateways), the OpenAPI sync check, validation of
# openapi.yaml against the OpenAPI 3 schema, and fuzzing of the API and of the parsers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh && fjord_setup curl python3-venv procps zookeeper iproute2 iptables

# The set-up's own detection (libclang, the caller's arguments), against stubs; and no
# module of any crate imports a module that imports it back (ARCHITECTURE.md).
./scripts/setup-test.sh >/dev/null
python3 scripts/check-module-cycles.py

cargo test --locked --workspace --all-targets

# openapi.yaml is generated from the handlers; it must be committed in sync.
cargo run --locked -q -p fjord --bin fjord -- openapi > "${TMPDIR:-/tmp}/fjord-openapi.yaml"
if ! diff -u openapi.yaml "${TMPDIR:-/tmp}/fjord-openapi.yaml"; then
  echo "openapi.yaml is out of date: run  cargo run -p fjord -- openapi > openapi.yaml" >&2
  exit 1
fi

# And it must be valid OpenAPI 3.x (validator from PyPI, in a venv beside the build cache).
venv="$(dirname "$CARGO_TARGET_DIR")/venv"
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet openapi-spec-validator==0.7.1
fi
"$venv/bin/openapi-spec-validator" openapi.yaml

# Property-based tests of the API (schemathesis, from PyPI) against a live standalone:
# no server error but the documented 504 request_timeout, and every answer's status,
# content type and body as openapi.yaml documents them (scripts/api-fuzz.py).
[ -x "$venv/bin/schemathesis" ] || "$venv/bin/pip" install --quiet schemathesis==4.32.5
python3 scripts/api-fuzz.py --bin "$CARGO_TARGET_DIR/debug/fjord" --schemathesis "$venv/bin/schemathesis"

# Coverage-guided fuzzing of the parsers of untrusted bytes (cargo-fuzz, bounded time).
./scripts/fuzz.sh

# A Python client generated from openapi.yaml drives a real server (clients/python).
FJORD_BIN="$CARGO_TARGET_DIR/debug/fjord" clients/python/test.sh
