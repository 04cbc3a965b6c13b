#!/usr/bin/env bash
# What a change costs on the two produce shapes of bench/README.md — big JSON batches
# (1000 × 1 KiB per request) and single-record requests (100 B, 16 connections) — as
# build B against build A in one sitting. Every run gets a fresh `fjord standalone` of
# its build (data in $DIR, removed after), and the order alternates per round (A first,
# then B first), since on this disk a run is slower the more earlier runs wrote. One JSON
# line per run in $OUT/<shape>-{a,b}.jsonl; medians and B/A ratios on stdout.
# B_FLAGS: extra `fjord bench` flags for B's runs (e.g. A=B=same build, B_FLAGS=--idempotent).
# B_SERVER_FLAGS: extra `fjord standalone` flags for B's server (e.g. --auth); B_ENV: extra
# environment for it (e.g. FJORD_GATEWAY__TLS__CERT_FILE=…, space-separated); B_BASE and
# B_CURL: the base URL and curl flags its readiness check uses (e.g. https://localhost:8080
# and --cacert ca.pem). The bootstrap token of an --auth server is $DIR/bootstrap-token.
# SHAPES: which shapes, in order (default "produce requests"); `consume` adds the consume
# shape (4 consumers, 1000 records per read, over the 64 MiB it prefills on each fresh
# server).
# Usage: A=path/to/fjord B=path/to/fjord [B_FLAGS=…] [SHAPES=…] DIR=… OUT=… [RUNS=4] ab-cost.sh
set -euo pipefail
A=${A:?binary A} B=${B:?binary B} DIR=${DIR:?data dir} OUT=${OUT:?output dir}
mkdir -p "$OUT"
sa=
stop() { if [ -n "$sa" ]; then kill "$sa" 2>/dev/null || true; wait "$sa" 2>/dev/null || true; sa=; fi; rm -rf "$DIR"; }
trap stop EXIT
fresh() { # binary side
  stop
  local base=http://127.0.0.1:8080 curl_flags=() server_flags=() server_env=()
  if [ "$2" = b ]; then
    base=${B_BASE:-$base}
    # shellcheck disable=SC2206 # lists of flags and assignments
    curl_flags=(${B_CURL:-}) server_flags=(${B_SERVER_FLAGS:-}) server_env=(${B_ENV:-})
  fi
  env "${server_env[@]}" setsid "$1" standalone --data-dir "$DIR" --listen 127.0.0.1:8080 "${server_flags[@]}" \
    </dev/null >>"$OUT/standalone.log" 2>&1 &
  sa=$!
  for _ in $(seq 100); do curl -sf "${curl_flags[@]}" "$base/readyz" >/dev/null && return; sleep 0.1; done
  echo "standalone did not start" >&2; exit 1
}
big=(produce --format json --acks 1 --record-size 1KiB --records-per-request 1000 --concurrency 4 --partitions 4 --duration 10s --json)
req=(requests --topic bench-requests --record-size 100 --concurrency 16 --partitions 4 --format json --acks 1 --duration 10s --json)
read_=(consume --record-size 1KiB --records-per-request 1000 --concurrency 4 --partitions 4 --duration 10s --json)
read -r -a shapes <<<"${SHAPES:-produce requests}"
for round in $(seq "${RUNS:-4}"); do
  sides=(a b); [ $((round % 2)) = 0 ] && sides=(b a)
  for shape in "${shapes[@]}"; do
    for side in "${sides[@]}"; do
      bin=$A; [ "$side" = b ] && bin=$B
      case "$shape" in
        produce) args=("${big[@]}") ;;
        requests) args=("${req[@]}") ;;
        consume) args=("${read_[@]}") ;;
        *) echo "unknown shape $shape" >&2; exit 1 ;;
      esac
      # shellcheck disable=SC2206 # B_FLAGS is a list of flags
      [ "$side" = b ] && args+=(${B_FLAGS:-})
      fresh "$bin" "$side"
      "$bin" bench "${args[@]}" >> "$OUT/$shape-$side.jsonl"
    done
  done
done
stop
python3 - "$OUT" "${shapes[@]}" <<'PY'
import json, statistics, sys
out = sys.argv[1]
for shape in sys.argv[2:]:
    rows = {}
    for side in ("a", "b"):
        runs = [json.loads(l) for l in open(f"{out}/{shape}-{side}.jsonl") if l.strip()]
        errors = sum(sum(r["errors"].values()) if isinstance(r["errors"], dict) else r["errors"] for r in runs)
        rows[side] = (len(runs), statistics.median(r["mb_per_s"] for r in runs),
                      statistics.median(r["requests_per_s"] for r in runs),
                      statistics.median(r["latency_ms"]["p50"] for r in runs),
                      statistics.median(r["latency_ms"]["p99"] for r in runs), errors)
    (n, am, ar, a50, a99, ae), (_, bm, br, b50, b99, be) = rows["a"], rows["b"]
    print(f"{shape} (n={n}): A {am:.1f} MB/s {ar:.0f} req/s p50 {a50:.2f} p99 {a99:.2f} ms errors {ae} | "
          f"B {bm:.1f} MB/s {br:.0f} req/s p50 {b50:.2f} p99 {b99:.2f} ms errors {be} | "
          f"B/A {br / ar:.3f} req/s, {b50 / a50:.3f} p50, {b99 / a99:.3f} p99")
PY
