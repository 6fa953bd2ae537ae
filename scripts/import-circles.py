#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Each file of a crate's src/ is a module; a file imports another when it names it by path
(`crate::a::b`, `super::x`, or a child module from its `mod.rs`/`lib.rs`/`main.rs`), in code,
not in comments. A path names the deepest module that exists as a file. Circles among the
modules of one crate (strongly connected components of two or more) are printed, each with the
lines that make its edges, and the exit status is 1. Test modules (`#[cfg(test)]` files) are
ignored: a test may reach anything.

    python3 scripts/import-circles.py [crates/NAME ...]
    python3 scripts/import-circles.py --self-test   # proves it finds planted circles
"""

import os
import re
import sys
from collections import defaultdict


def modules(src):
    """Map module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            out[tuple(rel)] = full
    return out


def code_lines(path):
    """Lines of code with comments, strings and char literals blanked (newlines kept)."""
    text = open(path, encoding="utf-8").read()
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    for k, line in enumerate("".join(out).split("\n"), 1):
        yield k, line


def test_only(path, mods, module):
    """A module declared under #[cfg(test)] by its parent."""
    if not module:
        return False
    parent = mods.get(module[:-1])
    if not parent:
        return False
    text = open(parent, encoding="utf-8").read()
    return re.search(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+%s\s*;" % module[-1], text) is not None


def deepest(mods, path):
    for k in range(len(path), 0, -1):
        if tuple(path[:k]) in mods:
            return tuple(path[:k])
    return None


def edges(mods):
    out = defaultdict(list)
    for module, path in mods.items():
        if test_only(path, mods, module):
            continue
        is_root = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        children = {m[-1] for m in mods if len(m) == len(module) + 1 and m[: len(module)] == module}
        for n, line in code_lines(path):
            found = []
            for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", line):
                found.append(m.group(1).split("::"))
            for m in re.finditer(r"\bcrate::\{([^}]*)\}", line):
                for part in m.group(1).split(","):
                    part = part.strip()
                    if part:
                        found.append(part.split("::"))
            for m in re.finditer(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", line):
                base = list(module[:-1]) if not is_root else list(module[:-1])
                found.append(base + m.group(1).split("::"))
            if is_root:
                for m in re.finditer(r"(?<![A-Za-z0-9_:])(?:self::)?([a-z_][a-z0-9_]*)::", line):
                    if m.group(1) in children:
                        found.append(list(module) + [m.group(1)])
            for f in found:
                target = deepest(mods, f)
                if target is None or target == module or target == ():
                    continue
                if test_only(mods[target], mods, target):
                    continue
                out[module].append((target, n))
    return out


def circles(graph, nodes):
    index, low, stack, on, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, []):
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
                result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return result


def name(m):
    return "::".join(m) or "(root)"


def self_test():
    """The check must be able to fail: a planted circle (through `super::`, a child named from
    its `mod.rs`, and `crate::` in a string or comment that must not count) is found."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "crates", "t", "src")
        os.makedirs(os.path.join(src, "report"))
        files = {
            "lib.rs": "mod a;\nmod b;\nmod report;\n",
            "a.rs": "use crate::b::B;\n",
            "b.rs": "// crate::a::x\nconst S: &str = \"crate::a::y\";\npub struct B;\n",
            "report/mod.rs": "mod junit;\npub fn w() { junit::w() }\n",
            "report/junit.rs": "use super::w;\npub fn w() {}\n",
        }
        for name, text in files.items():
            with open(os.path.join(src, name), "w") as f:
                f.write(text)
        mods = modules(src)
        found = circles(edges(mods), mods.keys())
        assert found == [[("report",), ("report", "junit")]], found
        with open(os.path.join(src, "b.rs"), "a") as f:
            f.write("use crate::a;\n")
        found = circles(edges(modules(src)), mods.keys())
        assert [("a",), ("b",)] in found, found
    print("self-test: planted circles found")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    crates = sys.argv[1:] or sorted(
        os.path.join("crates", c) for c in os.listdir("crates") if os.path.isdir(os.path.join("crates", c, "src"))
    )
    bad = 0
    for crate in crates:
        mods = modules(os.path.join(crate, "src"))
        graph = edges(mods)
        for comp in circles(graph, mods.keys()):
            bad += 1
            members = set(comp)
            print(f"{crate}: import circle: {', '.join(name(m) for m in comp)}")
            for m in comp:
                for target, line in sorted(set(graph[m])):
                    if target in members:
                        print(f"  {os.path.relpath(mods[m])}:{line} imports {name(target)}")
    if bad:
        print(f"{bad} import circle(s); a module may only import modules below it", file=sys.stderr)
        return 1
    print("no import circle in", ", ".join(crates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
