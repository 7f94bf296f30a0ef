#!/usr/bin/env python3
"""Checks that the modules of the library (src/) import each other without a cycle.

    python3 scripts/check-import-cycles.py          # prints cycles; exit 1 if any
    python3 scripts/check-import-cycles.py --graph  # also prints every edge

A module is a top-level module of the crate: `src/X.rs` or `src/X/mod.rs`,
with everything under `src/X/` folded into X. Module X depends on module Y
when code in X names `crate::Y` (in a `use` or in a path anywhere in the
code, tests included) or an item `crate::Name` that `src/lib.rs` re-exports
from Y (`pub use Y::Name`). Comments, doc comments and string literals are
not code and are skipped, so a doc link is not a dependency. `super::`
paths stay inside their top-level module and are not edges. The crate
root (`src/lib.rs`) only declares and re-exports, and is not a node.

Every strongly connected component of more than one module is reported with
its edges (and the file and line that make each) and a shortest cycle
through each edge. Exit status: 0 with no cycle, 1 with one or more, 2 on a
usage error. Needs only the Python 3 standard library.
"""

import re
import sys
from collections import defaultdict, deque
from pathlib import Path


def strip_non_code(text):
    """`text` with comments, string and char literals blanked (newlines kept,
    so line numbers stay right)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', text[i:])) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j + 1
            elif i + 2 < n and text[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            out.append(blank(text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def use_tree_heads(tree):
    """First path segments of the top-level items of a `use` tree's group
    body: `a::X, b, c::{d, e}` -> [a, b, c]."""
    heads, depth, item = [], 0, ""
    for c in tree + ",":
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            item = item.strip()
            if item:
                heads.append(re.split(r"\s*::\s*|\s+as\s+|\s", item)[0])
            item = ""
        else:
            item += c
    return heads


def module_of(path, src):
    rel = path.relative_to(src)
    if len(rel.parts) == 1:
        return rel.stem
    return rel.parts[0]


def main(argv):
    show_graph = "--graph" in argv[1:]
    if any(a not in ("--graph",) for a in argv[1:]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src = Path(__file__).resolve().parent.parent / "src"
    lib = strip_non_code((src / "lib.rs").read_text())
    declared = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", lib, re.M))
    # Files not (yet) declared in lib.rs are checked too, with a note.
    on_disk = {p.stem for p in src.glob("*.rs") if p.name != "lib.rs"}
    on_disk |= {p.parent.name for p in src.glob("*/mod.rs")}
    for name in sorted(on_disk - declared):
        print(f"note: src/{name} is not declared in src/lib.rs; checked anyway")
    modules = declared | on_disk
    # Names the crate root re-exports: crate::Name -> its module.
    alias = {}
    for head, rest in re.findall(r"\bpub\s+use\s+(?:crate::|self::)?(\w+)\s*::\s*([^;]+);", lib):
        if head not in modules:
            continue
        names = rest.strip()
        if names.startswith("{"):
            names = names[1:-1]
        for item in names.split(","):
            parts = item.strip().split(" as ")
            if parts[0].strip():
                name = parts[-1].strip().split("::")[-1]
                alias[name] = head

    edges = {}  # (from, to) -> "file:line"
    files = sorted(p for p in src.rglob("*.rs") if p != src / "lib.rs")
    for path in files:
        me = module_of(path, src)
        if me not in modules:
            continue
        code = strip_non_code(path.read_text())

        def add(target, pos):
            dep = target if target in modules else alias.get(target)
            if dep and dep != me and (me, dep) not in edges:
                line = code.count("\n", 0, pos) + 1
                edges[(me, dep)] = f"{path.relative_to(src.parent)}:{line}"

        for m in re.finditer(r"(?<![\w])\$?crate\s*::\s*(\w+)", code):
            add(m.group(1), m.start())
        for m in re.finditer(r"(?<![\w])\$?crate\s*::\s*\{", code):
            depth, j = 1, m.end()
            while j < len(code) and depth:
                depth += {"{": 1, "}": -1}.get(code[j], 0)
                j += 1
            for head in use_tree_heads(code[m.end() : j - 1]):
                add(head, m.start())

    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)

    # Tarjan's strongly connected components.
    index, low, on_stack, stack, sccs = {}, {}, set(), [], []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strongconnect(v)

    if show_graph:
        for (a, b), at in sorted(edges.items()):
            print(f"{a} -> {b}    ({at})")
        print()

    def shortest_path(a, b, within):
        """Shortest path a -> ... -> b inside `within` (BFS)."""
        prev, queue = {a: None}, deque([a])
        while queue:
            v = queue.popleft()
            if v == b:
                path = []
                while v is not None:
                    path.append(v)
                    v = prev[v]
                return path[::-1]
            for w in sorted(graph[v]):
                if w in within and w not in prev:
                    prev[w] = v
                    queue.append(w)
        return None

    cyclic = [c for c in sccs if len(c) > 1]
    for comp in sorted(cyclic):
        within = set(comp)
        print(f"import cycle among {len(comp)} modules: {', '.join(comp)}")
        cycles = set()
        for (a, b), at in sorted(edges.items()):
            if a in within and b in within:
                back = shortest_path(b, a, within)
                cycle = [a] + back
                k = cycle[:-1].index(min(cycle[:-1]))
                cycles.add(tuple(cycle[k:-1] + cycle[:k] + [cycle[k]]))
                print(f"  {a} -> {b}    ({at})")
        for cycle in sorted(cycles, key=lambda c: (len(c), c)):
            print(f"  cycle: {' -> '.join(cycle)}")
    if cyclic:
        print(f"FAIL: {len(cyclic)} import cycle(s) in src/ ({len(modules)} modules, {len(edges)} edges)")
        return 1
    print(f"OK: no import cycle in src/ ({len(modules)} modules, {len(edges)} edges)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
