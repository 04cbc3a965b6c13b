"""Schemathesis hooks for scripts/api-fuzz.py: how to send an NDJSON produce body (one
JSON record per line), which schemathesis has no serializer for."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, str):  # the schema's example: NDJSON text already
        return value.encode()
    records = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)
