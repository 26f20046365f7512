#!/usr/bin/env python3
"""Finds import cycles between the modules of src/ (one module per file).

Reads every `crate::`, `super::`, `self::` path (in `use` items and in code),
and paths that start with a child module or with a name a `use` brought in,
in src/**/*.rs. Test code is left out: `#[cfg(test)]` items, `tests.rs` files,
and src/fuzzing/. `src/main.rs` is the binary, not a module of the library.

Nodes are file modules: `a/b.rs` and `a/b/mod.rs` are both `a::b`; an inline
`mod x { .. }` belongs to its file. A path `crate::a::b::Item` is an edge to the
deepest module file it names (`a::b` if `a/b.rs` exists, else `a`), even when
`a` only re-exports `Item`: a module's re-exports are part of it. `mod`
declarations are not edges, nor is a module's `pub use` of its own descendants.

Prints each strongly connected component of more than one module, with one
place in the source for each edge inside it, and exits 1 if there is any.

Usage: tools/module-cycles.py [SRC_DIR]   (default: src next to this tool)
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
KEYWORDS_FIRST = {"crate", "super", "self"}


def strip_comments_and_strings(text):
    """Blanks comments and string/char literals, keeping offsets and newlines."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
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
            blank(i, j)
            i = j
        elif c in "rb" and re.match(r"(?:br|r)#*\"", text[i:i + 260]) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            m = re.match(r"(?:br|r)(#*)\"", text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if text.startswith("\\", i + 1):
                j = text.find("'", i + 2)
                j = n if j < 0 else j
                blank(i, j + 1)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                blank(i, i + 3)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    depth = 0
    for k in range(open_at, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(text) - 1


def blank_range(text, a, b):
    return text[:a] + re.sub(r"[^\n]", " ", text[a:b]) + text[b:]


def strip_test_items(text):
    """Blanks every item under `#[cfg(test)]` (a braced item or one up to `;`)."""
    while True:
        m = re.search(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]", text)
        if not m:
            return text
        j = m.end()
        while j < len(text) and text[j] not in "{;":
            j += 1
        end = j + 1 if j >= len(text) or text[j] == ";" else matching_brace(text, j) + 1
        text = blank_range(text, m.start(), end)


def split_top(s, sep=","):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def expand_use_tree(tree, prefix=()):
    """Yields (segments, local name or None for a glob) for a use tree."""
    tree = re.sub(r"\s+", "", tree).lstrip(":")
    if tree.startswith("{"):
        for part in split_top(tree[1:-1]):
            yield from expand_use_tree(part, prefix)
        return
    brace = tree.find("{")
    if brace >= 0:
        head = [s for s in tree[:brace].split("::") if s]
        for part in split_top(tree[brace + 1:-1]):
            yield from expand_use_tree(part, prefix + tuple(head))
        return
    segs = [s for s in tree.split("::") if s]
    if segs and segs[-1] == "*":
        yield prefix + tuple(segs[:-1]), None
        return
    if segs and segs[-1] == "self":
        segs = segs[:-1]
    full = prefix + tuple(segs)
    if full:
        yield full, full[-1]


USE_RE = re.compile(
    r"(?P<vis>\bpub\s*(?:\([^)]*\))?\s*)?\buse\s+(?P<tree>[^;]+);", re.S
)
PATH_RE = re.compile(
    r"(?<![A-Za-z0-9_:$])(" + IDENT + r"(?:\s*::\s*" + IDENT + r")+)"
)
INLINE_MOD_RE = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")


def parse_uses(text):
    """Use items as (vis, [(segments, local name)], offset, raw), with `as` renames."""
    uses = []
    for m in USE_RE.finditer(text):
        raw = m.group("tree")
        # Renames: rewrite `X as Y` to `X@Y` before whitespace is dropped.
        tree = re.sub(r"(" + IDENT + r"|\*)\s+as\s+(" + IDENT + r")", r"\1@\2", raw)
        items = []
        for segs, name in expand_use_tree(tree):
            if segs and "@" in segs[-1]:
                last, alias = segs[-1].split("@", 1)
                segs = segs[:-1] + ((last,) if last != "self" else ())
                name = alias
            items.append((segs, name))
        uses.append((bool(m.group("vis")), items, m.start(), m.end(), raw))
    return uses


class Crate:
    def __init__(self, src):
        self.src = src
        self.files = {}  # module tuple -> Path
        for path in sorted(src.rglob("*.rs")):
            rel = path.relative_to(src)
            if rel.parts[0] == "fuzzing" or path.name == "tests.rs":
                continue
            if rel.as_posix() == "main.rs" or rel.parts[0] == "bin":
                continue
            if rel.as_posix() == "lib.rs":
                mod = ()
            elif path.name == "mod.rs":
                mod = tuple(rel.parts[:-1])
            else:
                mod = tuple(rel.parts[:-1]) + (path.stem,)
            self.files[mod] = path
        self.text = {}
        self.uses = {}
        self.scopes = {}
        for mod, path in self.files.items():
            text = strip_test_items(strip_comments_and_strings(path.read_text()))
            self.text[mod] = text
            self.uses[mod] = parse_uses(text)
            scopes = []
            for m in INLINE_MOD_RE.finditer(text):
                scopes.append((m.start(), matching_brace(text, m.end() - 1), m.group(1)))
            self.scopes[mod] = scopes

    def children(self, mod):
        return {m[-1] for m in self.files if len(m) == len(mod) + 1 and m[:-1] == mod}

    def context(self, mod, offset):
        """The module path at `offset` in the file of `mod` (inline mods included)."""
        ctx = list(mod)
        for start, end, name in self.scopes[mod]:
            if start <= offset <= end:
                ctx.append(name)
        return tuple(ctx)

    def aliases(self, mod):
        """Local names brought in by `use` in `mod`, as absolute paths."""
        table = {}
        for _ in range(3):  # uniform paths may start with another use's name
            for _vis, items, off, _end, _raw in self.uses[mod]:
                ctx = self.context(mod, off)
                for segs, name in items:
                    if name is None:
                        continue
                    absolute = self.absolute(mod, ctx, segs, table)
                    if absolute is not None:
                        table[name] = absolute
        return table

    def absolute(self, mod, ctx, segs, table):
        """Absolute crate path of `segs` seen from `ctx`, or None if not in the crate."""
        if not segs:
            return None
        first, rest = segs[0], list(segs[1:])
        if first == "crate":
            return tuple(rest)
        if first == "self":
            return ctx + tuple(rest)
        if first == "super":
            base = list(ctx)
            segs = list(segs)
            while segs and segs[0] == "super":
                if base:
                    base.pop()
                segs.pop(0)
            return tuple(base) + tuple(segs)
        if first in self.children(ctx):
            return ctx + tuple(segs)
        if first in table:
            return table[first] + tuple(rest)
        return None

    def target(self, absolute):
        """The deepest module file an absolute path names."""
        for cut in range(len(absolute), -1, -1):
            if absolute[:cut] in self.files:
                return absolute[:cut]
        return ()

    def edges(self):
        """{(from, to): (file, line, path)} for every edge, first place seen."""
        found = {}
        for mod in self.files:
            text = self.text[mod]
            table = self.aliases(mod)

            def add(absolute, offset, shown, reexport=False):
                if absolute is None:
                    return
                to = self.target(absolute)
                if to == mod or (reexport and to[: len(mod)] == mod):
                    return
                line = text.count("\n", 0, offset) + 1
                found.setdefault((mod, to), (self.files[mod], line, shown))

            use_spans = []
            for vis, items, start, end, raw in self.uses[mod]:
                use_spans.append((start, end))
                ctx = self.context(mod, start)
                for segs, _name in items:
                    add(self.absolute(mod, ctx, segs, table), start,
                        "use " + re.sub(r"\s+", " ", raw.strip()), reexport=vis)
            blanked = text
            for start, end in use_spans:
                blanked = blank_range(blanked, start, end)
            # `mod x;` and `mod x {` declare, they do not import.
            for m in PATH_RE.finditer(blanked):
                segs = tuple(s.strip() for s in m.group(1).split("::"))
                ctx = self.context(mod, m.start())
                add(self.absolute(mod, ctx, segs, table), m.start(), "::".join(segs))
        return found


def name(mod):
    return "::".join(mod) if mod else "crate"


def strongly_connected(nodes, graph):
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    crate = Crate(src)
    edges = crate.edges()
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    cycles = [c for c in strongly_connected(crate.files, graph) if len(c) > 1]
    root = src.parent
    for i, comp in enumerate(sorted(cycles, key=lambda c: [name(m) for m in c]), 1):
        members = set(comp)
        print(f"cycle {i}: {', '.join(name(m) for m in comp)}")
        for (a, b), (path, line, shown) in sorted(edges.items()):
            if a in members and b in members:
                where = path.relative_to(root) if path.is_relative_to(root) else path
                print(f"  {name(a)} -> {name(b)}  ({where}:{line}: {shown})")
    if not cycles:
        print("no import cycles between modules")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
