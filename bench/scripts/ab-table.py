#!/usr/bin/env python3
"""Medians of each shape for two result dirs of standalone-suite.sh, and B/A ratios.
Usage: ab-table.py DIR_A DIR_B"""
import json, statistics, sys
from pathlib import Path

a, b = Path(sys.argv[1]), Path(sys.argv[2])


def runs(d, shape):
    f = d / f"{shape}.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f.exists() else []


def med(rs, key):
    vals = []
    for r in rs:
        v = r
        for k in key.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    return statistics.median(vals) if vals else None


rows = [
    ("produce-json", "mb_per_s", "MB/s"), ("produce-json", "latency_ms.p99", "p99 ms"),
    ("produce-binary", "mb_per_s", "MB/s"), ("produce-binary", "latency_ms.p99", "p99 ms"),
    ("consume", "mb_per_s", "MB/s"), ("consume", "latency_ms.p99", "p99 ms"),
    ("requests", "requests_per_s", "req/s"), ("requests", "latency_ms.p99", "p99 ms"),
    ("requests-half", "latency_ms.p99", "p99 ms"),
    ("e2e", "e2e.latency_ms.p99", "e2e p99 ms"), ("e2e-small", "e2e.latency_ms.p99", "e2e p99 ms"),
]
print("| shape | figure | A (median) | B (median) | B/A |")
print("|---|---|---|---|---|")
for shape, key, unit in rows:
    ra, rb = runs(a, shape), runs(b, shape)
    ma, mb = med(ra, key), med(rb, key)
    ratio = f"{mb / ma:.2f}" if ma and mb else "—"
    fa = f"{ma:.1f}" if ma is not None else "—"
    fb = f"{mb:.1f}" if mb is not None else "—"
    print(f"| {shape} (n={len(ra)}/{len(rb)}) | {unit} | {fa} | {fb} | {ratio} |")
