#!/usr/bin/env python3
"""Schemathesis (property-based API testing, from PyPI) against the committed
openapi.yaml and a live `fjord standalone`: every operation gets examples, boundary
values and random data, valid and invalid, and every answer must be no server error,
a status the spec documents for that operation, the documented content type, and a body
that matches the documented schema.

    scripts/api-fuzz.py --bin ~/.cache/fjord/target/debug/fjord --schemathesis VENV/bin/schemathesis

The server runs with `gateway.max_timeout_ms` at 2 s so that long polls the fuzzer asks
for end quickly (longer ones are a documented 400); a topic `orders` and a group
`billing` exist, named as the spec's examples, so valid requests can reach past "unknown
topic". Exits non-zero on any failure, printing schemathesis's report and the server's
log.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, body=None) -> int:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_ready(base: str, proc: subprocess.Popen, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"api-fuzz: fjord exited with {proc.returncode} before it was ready")
        try:
            if call(base, "GET", "/readyz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"api-fuzz: fjord was not ready within {deadline_s} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the fjord binary")
    ap.add_argument("--schemathesis", required=True, help="the schemathesis executable")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--spec", default=os.path.join(here, "..", "openapi.yaml"))
    ap.add_argument("--max-examples", type=int, default=25, help="test cases per operation and phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="more schemathesis arguments (after --)")
    args = ap.parse_args()
    extra = args.extra

    tmp = tempfile.mkdtemp(prefix="fjord-api-fuzz.")
    log_path = os.path.join(tmp, "fjord.log")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, RUST_LOG="warn", NO_COLOR="1", FJORD_GATEWAY__MAX_TIMEOUT_MS="2000")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [args.bin, "standalone", "--data-dir", os.path.join(tmp, "data"), "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    ok = False
    try:
        wait_ready(base, proc, 60)
        assert call(base, "POST", "/v1/topics", {"name": "orders", "partitions": 3}) == 201
        records = {"records": [{"key": f"k{i}", "value": {"i": i}} for i in range(30)]}
        assert call(base, "POST", "/v1/topics/orders/records", records) == 200
        member = {"topics": ["orders"], "session_timeout_ms": 1800000}
        assert call(base, "POST", "/v1/groups/billing/members", member) == 200
        started = time.monotonic()
        st = subprocess.run(
            [args.schemathesis, "--no-color", "--config-file", os.path.join(here, "schemathesis.toml"), "run", args.spec, "--url", base, "--checks", CHECKS,
             "--max-examples", str(args.max_examples), "--seed", str(args.seed), "--workers", "1",
             "--request-timeout", "20", "--phases", "examples,coverage,fuzzing", *extra],
            env=dict(os.environ, SCHEMATHESIS_HOOKS="api_fuzz_hooks", PYTHONPATH=here), cwd=tmp,
        )
        print(f"api-fuzz: schemathesis finished in {time.monotonic() - started:.0f} s with {st.returncode}",
              file=sys.stderr)
        if proc.poll() is not None:
            print(f"api-fuzz: fjord exited with {proc.returncode} during the run", file=sys.stderr)
            return 1
        ok = st.returncode == 0
        return st.returncode
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not ok:
            with open(log_path) as f:
                print("----- fjord log -----\n" + f.read()[-20000:] + "\n-----", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
