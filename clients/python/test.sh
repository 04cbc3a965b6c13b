#!/usr/bin/env bash
# Generates a Python client from the committed openapi.yaml with openapi-python-client and
# runs a produce / consume / join / poll / commit session with it (session.py) against a
# real `fjord standalone`. Exits non-zero on any failure, with the server's log.
#
#   clients/python/test.sh                               # the debug build in the build cache
#   FJORD_BIN=target/release/fjord clients/python/test.sh
#
# The generator and the client's libraries (requirements.txt, pinned) live in a venv in
# ${XDG_CACHE_HOME:-~/.cache}/fjord/venv-pyclient, made on the first run. The client is
# generated anew into a temp dir on every run (never committed), so this tests the spec as
# committed; a generator warning not listed in known-warnings.txt fails the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
spec="$repo/openapi.yaml"
fjord_bin="${FJORD_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fjord/target}/debug/fjord}"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/fjord/venv-pyclient"
ready_deadline_s=60
session_deadline_s=300

t0=$SECONDS
step() { echo "pyclient: [$((SECONDS - t0))s] $*" >&2; }
fail() { echo "pyclient: FAIL: $*" >&2; exit 1; }

[ -x "$fjord_bin" ] || fail "no fjord binary at $fjord_bin (build it with  cargo build -p fjord --bin fjord,  or set FJORD_BIN)"
[ -f "$spec" ] || fail "no $spec"

# Python 3.11+ with venv (the generated client uses typing.Self and `X | Y` unions).
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  fail "python3 3.11 or newer is needed (found: $(python3 --version 2>&1 || echo none))"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing python3-venv with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    fail "python3's venv module is missing. Run:  sudo apt-get install -y python3-venv"
  fi
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/fjord-pyclient.XXXXXX")"
server_pid=""
server_log="$tmp/fjord.log"
child_pid=""
ok=0
# Runs a long step as a child and waits for it, so that a signal to this script ends it at
# once (bash runs traps only between foreground commands, but interrupts `wait`).
run() {
  "$@" &
  child_pid=$!
  local rc=0
  wait "$child_pid" || rc=$?
  child_pid=""
  return "$rc"
}
cleanup() {
  local rc=$?
  if [ -n "$child_pid" ]; then kill -TERM "$child_pid" 2>/dev/null || true; wait "$child_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "pyclient: fjord did not stop within 10 s of SIGTERM; SIGKILL" >&2
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$ok" != 1 ] && [ -s "$server_log" ]; then
    echo "----- fjord log ($server_log) -----" >&2
    cat "$server_log" >&2
    echo "----- end of fjord log -----" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The venv, (re)made when requirements.txt changes.
stamp="$venv/.fjord-requirements.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  step "creating venv $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  run python3 -m venv "$venv"
  run "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
py="$venv/bin/python"

# 2. The client, from the committed spec. The venv's bin on PATH lets the generator's
#    post-hook (ruff, one of its dependencies) format the code it writes.
step "generating the client from $spec"
gen_log="$tmp/generate.log"
if ! PATH="$venv/bin:$PATH" run "$venv/bin/openapi-python-client" generate --path "$spec" --meta none \
  --output-path "$tmp/client/fjord_client" >"$gen_log" 2>&1; then
  cat "$gen_log" >&2
  fail "openapi-python-client could not generate a client from openapi.yaml"
fi
# Each warning or error block as "<header> | <detail>" (its first two non-empty lines).
awk '
  want && NF { print head " | " $0; want = 0; next }
  /^(WARNING|ERROR|Unable to|Problem creating|Failed to|Skipping)/ { head = $0; want = 1 }
' "$gen_log" | sort >"$tmp/warnings.txt"
grep -v '^#' "$here/known-warnings.txt" | grep . | sort >"$tmp/known.txt"
if ! diff -u "$tmp/known.txt" "$tmp/warnings.txt" >"$tmp/warnings.diff"; then
  cat "$gen_log" >&2
  echo "pyclient: the generator's warnings differ from clients/python/known-warnings.txt (- known, + now):" >&2
  cat "$tmp/warnings.diff" >&2
  fail "generator warnings changed"
fi
[ -f "$tmp/client/fjord_client/client.py" ] || { cat "$gen_log" >&2; fail "no client was generated"; }

# 3. fjord standalone on a free loopback port (again on another port if the one picked
#    is taken before fjord binds it).
free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
is_ready() { # 0 when GET /readyz answers 200
  "$py" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
base=""
for attempt in 1 2 3; do
  port="$(free_port)"
  rm -rf "$tmp/data"
  step "starting $fjord_bin standalone on 127.0.0.1:$port (attempt $attempt)"
  NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$fjord_bin" standalone --data-dir "$tmp/data" --listen "127.0.0.1:$port" \
    </dev/null >>"$server_log" 2>&1 &
  server_pid=$!
  deadline=$((SECONDS + ready_deadline_s))
  while kill -0 "$server_pid" 2>/dev/null; do
    if is_ready "http://127.0.0.1:$port"; then base="http://127.0.0.1:$port"; break; fi
    [ "$SECONDS" -lt "$deadline" ] || fail "fjord not ready within ${ready_deadline_s}s"
    sleep 0.1
  done
  [ -n "$base" ] && break
  wait "$server_pid" 2>/dev/null && rc=0 || rc=$?
  server_pid=""
  echo "pyclient: fjord exited during start-up (status $rc)" >&2
  grep -qi 'address.*in use' "$server_log" || fail "fjord exited during start-up"
done
[ -n "$base" ] || fail "fjord could not bind a port in 3 attempts"
step "fjord is ready at $base"

# 4. The session, then the README's example (its first python block, on this server).
step "running session.py"
if ! PYTHONPATH="$tmp/client" run timeout "$session_deadline_s" "$py" "$here/session.py" --base-url "$base"; then
  fail "session.py failed"
fi
step "running the example in clients/python/README.md"
awk '/^```python$/ { on = 1; next } on && /^```$/ { exit } on' "$here/README.md" |
  sed "s|http://localhost:8080|$base|g" >"$tmp/readme_example.py"
[ -s "$tmp/readme_example.py" ] || fail "no python block in clients/python/README.md"
if ! PYTHONPATH="$tmp/client" run timeout "$session_deadline_s" "$py" "$tmp/readme_example.py"; then
  fail "the README's example failed"
fi
ok=1
step "passed"
