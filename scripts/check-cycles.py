#!/usr/bin/env python3
"""Fails on an import that climbs the layers below, on an import cycle
between the files of one module, and on a module lib.rs's map does not name.

A file's dependencies are the `crate::X` and `super::X` paths it names (in
`use` lines and in code). A module may import only modules of lower layers:
not its own layer's, not a higher one's. A climb or a cycle means two parts
can no longer be read or changed apart.
Test modules (`#[cfg(test)]` to the end of the file) are skipped.
Usage: scripts/check-cycles.py [SRC_DIR]
"""
import re
import sys
from pathlib import Path

# The layers, lowest first: the order lib.rs's map draws. `mcp` sits above
# `api` because it is served on `api`'s router and shares its state.
LAYERS = [
    ["config", "memory", "telemetry", "periodic", "capped"],
    ["tls", "bounds"],
    ["state"],
    ["ha", "jinja", "sim"],
    ["fetchers"],
    ["prompt"],
    ["stream"],
    ["engine"],
    ["door", "tokens"],
    ["api", "mcp", "console"],
    ["app", "demo"],
    ["cli"],
]
LAYER = {m: i for i, ms in enumerate(LAYERS) for m in ms}

src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
files = [p for p in src.rglob("*.rs") if "bin" not in p.relative_to(src).parts]


def module_path(p: Path) -> list[str]:
    """src/fetchers/runner.rs -> ["fetchers", "runner"]; mod.rs and lib.rs name their folder."""
    parts = list(p.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def code_of(p: Path) -> str:
    text = p.read_text()
    cut = text.find("#[cfg(test)]")
    text = text if cut < 0 else text[:cut]
    # Comments and doc comments name paths without depending on them.
    return re.sub(r"//[^\n]*", "", text)


mods = {tuple(module_path(p)): p for p in files}
top_edges: dict[str, set[str]] = {}
file_edges: dict[tuple, set[tuple]] = {}
for path, p in mods.items():
    code = code_of(p)
    me_top = path[0] if path else "lib"
    # `crate::a::b` and the items of `use crate::{a, b::c}` groups.
    targets = set()
    for m in re.finditer(r"crate::(\{[^}]*\}|\w+)(?:::(\w+))?", code):
        if m.group(1).startswith("{"):
            for item in re.findall(r"(\w+)(?:::(\w+))?", m.group(1)):
                targets.add((item[0], item[1] or None))
        else:
            targets.add((m.group(1), m.group(2)))
    parent = path[:-1] if len(path) > 1 else path
    for m in re.finditer(r"super::(\{[^}]*\}|\w+)", code):
        names = re.findall(r"^\s*(\w+)|,\s*(\w+)", m.group(1).strip("{}"))
        for n in [a or b for a, b in names] or [m.group(1)]:
            if len(path) > 1:
                targets.add((path[0], n) if len(path) == 2 else (path[0], path[1]))
    for top, sub in targets:
        if (top,) not in mods and top not in {q[0] for q in mods if q}:
            continue  # an item of lib.rs, not a module
        if top != me_top and path:
            top_edges.setdefault(me_top, set()).add(top)
        elif top == me_top and len(path) >= 2 and sub and (top, sub) in mods and (top, sub) != path[:2]:
            file_edges.setdefault(path[:2], set()).add((top, sub))


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


problems = []
tops = sorted({q[0] for q in mods if q})
lib_map = (src / "lib.rs").read_text()
for m in tops:
    if m not in LAYER:
        problems.append(f"module `{m}` is in no layer: add it to LAYERS in {sys.argv[0]}")
    if f"[`{m}`]" not in lib_map:
        problems.append(f"module `{m}` is missing from lib.rs's map (a `- [`{m}`]: …` line)")
for a in sorted(top_edges):
    for b in sorted(top_edges[a]):
        if a in LAYER and b in LAYER and LAYER[b] >= LAYER[a]:
            how = "its own layer" if LAYER[b] == LAYER[a] else "a higher layer"
            problems.append(f"`{a}` imports `{b}`, {how}: move what it needs down, or the layers in {sys.argv[0]}")
for comp in cycles(file_edges):
    problems.append(f"import cycle between files: {' <-> '.join('/'.join(c) for c in comp)}")
for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(f"no import climbs a layer or cycles in {len(files)} files")
