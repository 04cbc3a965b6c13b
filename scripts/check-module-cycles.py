#!/usr/bin/env python3
"""Fails if, inside any crate of the workspace, modules import each other in a circle.

A module imports another when its code names a path into it: a `use crate::a::b` or
`use super::x`, or an inline `crate::a::b::f()`. A name the crate root re-exports
(`pub use a::Thing` in lib.rs) counts as a path into the module that defines it, so a
module cannot hide a cycle behind the root. A parent's `mod child;` declaration is not an
import; a parent that *uses* a child's items is. Comments and string literals are ignored
(intra-doc links are not imports). Usage: check-module-cycles.py [crate dir ...]
"""

import re
import sys
from pathlib import Path


def strip(src: str) -> str:
    """Removes comments, string and char literals (keeping line structure)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", src[i:])
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(src_dir: Path, f: Path) -> tuple:
    rel = f.relative_to(src_dir).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def expand_use(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (globs and renames kept as paths)."""
    tree = re.sub(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*", "", tree)
    tree = re.sub(r"\s+", "", tree)

    def split_top(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    def go(prefix, s):
        if "{" in s:
            head, rest = s.split("{", 1)
            rest = rest[: rest.rfind("}")]
            out = []
            for p in split_top(rest):
                out += go(prefix + head, p)
            return out
        return [prefix + s]

    return [p.rstrip(":") for p in go("", tree)]


def crate_edges(crate: Path):
    src = crate / "src"
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f): f for f in files}
    texts = {m: strip(f.read_text()) for m, f in modules.items()}

    # Names the root re-exports: name -> module path it comes from.
    reexports = {}
    if True:
        for tree in re.findall(r"\bpub\s+use\s+([^;]+);", texts.get((), "")):
            for path in expand_use(tree):
                segs = [s for s in path.split("::") if s]
                if segs and segs[0] == "crate":
                    segs = segs[1:]
                if len(segs) >= 2 and tuple(segs[:1]) in modules:
                    reexports[segs[-1]] = resolve(modules, tuple(segs))

    edges = {m: set() for m in modules}
    evidence = {}
    for m, text in texts.items():
        for scope, body in scopes(m, text):
            for p in paths_in(body):
                target = target_of(modules, reexports, scope, p)
                if target is not None and target != m:
                    edges[m].add(target)
                    evidence.setdefault((m, target), p)
    return edges, evidence


def scopes(m, text):
    """(module path, code) pairs: the file's own code and each inline `mod x { … }` block,
    whose `self`/`super` are relative to the inline module. Imports in an inline module
    (a `mod tests`, say) count as the file's."""
    out, rest, pos = [], [], 0
    for match in re.finditer(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{", text):
        if match.start() < pos:
            continue
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        rest.append(text[pos:match.start()])
        out += scopes(m + (match.group(1),), text[match.end():i - 1])
        pos = i
    rest.append(text[pos:])
    return [(m, "".join(rest))] + out


def paths_in(text):
    paths = []
    for tree in re.findall(r"\buse\s+([^;]+);", text):
        paths += expand_use(tree)
    paths += re.findall(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)", text)
    return paths


def target_of(modules, reexports, m, p):
    segs = [s for s in p.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] == "super":
        base = m
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    elif segs[0] == "self":
        base, segs = m, segs[1:]
    elif m + (segs[0],) in modules:
        # `use child::x` names a child module relative to this one.
        base = m
    else:
        return None
    target = resolve(modules, base + tuple(segs))
    if target == () and segs and segs[0] in reexports:
        target = reexports[segs[0]]
    return target


def resolve(modules, path):
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in modules:
            return tuple(path[:k])
    return None


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def name(crate, m):
    return crate.name + ("::" + "::".join(m) if m else " (root)")


def main():
    root = Path(__file__).resolve().parent.parent
    crates = [Path(a) for a in sys.argv[1:]] or sorted(p.parent for p in root.glob("*/Cargo.toml"))
    bad = 0
    for crate in crates:
        if not (crate / "src").is_dir():
            continue
        edges, evidence = crate_edges(crate)
        for comp in cycles(edges):
            bad += 1
            members = sorted(comp)
            print(f"module cycle in {crate.name}: " + ", ".join(name(crate, m) for m in members), file=sys.stderr)
            for a in members:
                for b in sorted(edges[a]):
                    if b in comp:
                        why = evidence.get((a, b), "")
                        print(f"  {name(crate, a)} -> {name(crate, b)}   ({why})", file=sys.stderr)
    if bad:
        sys.exit(1)
    print(f"no module cycles in {len(crates)} crates")


if __name__ == "__main__":
    main()
