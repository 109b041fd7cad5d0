#!/usr/bin/env python3
"""Fails if the modules of a crate's source tree refer to each other in a circle.

Each file under SRC (default memsentry/src) is a module (`a/b.rs` and `a/b/mod.rs` are
`a::b`). A file refers to a module when its code (comments and `#[cfg(test)] mod tests`
left out) names a path `crate::a::b…`, `super::…` or `child::…` (a module of its own),
or imports `crate::a::{b, …}`; the path counts as a reference to the longest prefix
that is a module. Naming an ancestor's items is allowed (a parent declares the types its
children share), and so is the crate root (an ancestor of all); every other reference
counts. Prints every strongly connected set of modules, with the references inside it,
and exits 1 if there is one.

    scripts/module_cycles.py [SRC] [-v]     (-v: print every module's references)
"""
import os
import re
import sys


def modules(root):
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, root)[:-3].split("/")
                if parts[-1] == "mod":
                    parts = parts[:-1]
                if parts == ["lib"] or parts == ["main"]:
                    parts = []
                found[tuple(parts)] = path
    return found


def references(module, path, known):
    source = open(path).read()
    source = re.sub(r"//[^\n]*", "", source)
    source = re.split(r"#\[cfg\(test\)\]\s*mod tests", source)[0]
    parent = list(module[:-1])

    def resolve(parts):
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in known:
                return tuple(parts[:n])
        return None

    refs = set()
    for match in re.finditer(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", source):
        base = [] if match.group(1) == "crate" else parent
        refs.add(resolve(base + match.group(2).split("::")[1:]))
    for match in re.finditer(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*?)\};", source, re.S):
        base = [] if match.group(1) == "crate" else parent
        prefix = match.group(2).split("::")[1:]
        for item in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:::|\s*[,}]|\s*$)", match.group(3)):
            refs.add(resolve(base + prefix + [item]))
    # A child module named by its bare name (`use counters::Event;`, `counters::f()`).
    for child in (m for m in known if len(m) == len(module) + 1 and m[:-1] == module):
        if re.search(r"(?<![:\w])" + child[-1] + r"::", source):
            refs.add(child)
    refs.discard(None)
    # A module may name its ancestors' items: a parent and its children are read as one
    # unit, whose shared types the parent declares. Every other reference counts.
    return {r for r in refs if r != module[: len(r)]}


def cycles(edges):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    root = args[0] if args else "memsentry/src"
    known = modules(root)
    edges = {m: references(m, p, known) for m, p in known.items()}
    name = lambda m: "::".join(m) or "crate"
    if "-v" in sys.argv:
        for m in sorted(edges):
            print(name(m), "->", ", ".join(sorted(name(d) for d in edges[m])))
    found = cycles(edges)
    for component in found:
        inside = set(component)
        print("modules in a circle:", ", ".join(sorted(name(m) for m in component)))
        for m in sorted(component):
            print("   ", name(m), "->", ", ".join(sorted(name(d) for d in edges[m] if d in inside)))
    if not found:
        print(f"no circular references among {len(known)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
