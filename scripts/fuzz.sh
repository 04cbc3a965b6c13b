#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ (the batch codec, the produce bodies, the frames and
# other byte layouts) for a bounded time, starting from the committed corpus. New inputs go
# to a scratch directory, so the committed corpus changes only by hand (`cargo fuzz cmin`).
#   FJORD_FUZZ_SECONDS  per target (default 20)
# A crash leaves its input under fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FJORD_FUZZ_SECONDS:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fjord/target}"
# cargo-fuzz instruments with flags only nightly takes; the machine's toolchain has one.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked --quiet cargo-fuzz@0.13.2
# Its own target dir: instrumented builds share nothing with the main one.
fuzz_target_dir="$(dirname "$CARGO_TARGET_DIR")/fuzz-target"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
flags=(--fuzz-dir fuzz --target-dir "$fuzz_target_dir" --sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"
for t in batch_codec produce_bodies frames; do
  mkdir -p "$scratch/$t" "fuzz/corpus/$t"
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz.sh: $t failed; a crashing input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$t.log")"
  echo "fuzz.sh: $t: ${runs:-?} inputs in ${seconds}s, no crash"
done
