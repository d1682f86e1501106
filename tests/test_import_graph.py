"""No import circles among lossatlas's modules (docs/design.md: a module imports from its own floor
and the floors beneath it, so no two modules need each other).

Every ``import`` and ``from ... import`` in src/ counts, those inside functions too (a deferred
import only hides a circle until someone moves it to the top). A module's imports of the packages
that contain it (their ``__init__`` re-exports it) are not edges.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = {}
    for mod, (path, is_package) in mods.items():
        package = mod.split(".") if is_package else mod.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package[: len(package) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                targets |= {known(f"{base}.{a.name}") if f"{base}.{a.name}" in mods else known(base) for a in node.names}
        edges[mod] = {t for t in targets if t and t.startswith("lossatlas") and t != mod
                      and not mod.startswith(t + ".")}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(root):
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for mod in sorted(edges):
        if mod not in index:
            visit(mod)
    return out


def test_the_cycle_finder_finds_a_known_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_modules():
    edges = _graph()
    assert "lossatlas.sources" in edges and "lossatlas.embedding.gram" in edges  # the walk saw src/
    # Before: [['lossatlas.data', 'lossatlas.data.factory', 'lossatlas.data.load', 'lossatlas.sources'],
    #          ['lossatlas.embedding.gram', 'lossatlas.embedding.inputs']]
    assert _cycles(edges) == []


def test_a_gram_is_still_refused_where_weights_are_needed():
    import numpy as np
    import pytest

    from lossatlas import InputError
    from lossatlas.embedding.gram import Gram
    from lossatlas.embedding.inputs import as_source

    g = Gram.from_samples(np.random.default_rng(0).normal(size=(5, 3)))
    with pytest.raises(InputError, match="needs the weights themselves"):
        as_source(g)
