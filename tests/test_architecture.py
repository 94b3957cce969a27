"""Architecture checks of the package, read statically (ast, nothing imported):

* no import cycles among s3prl modules (module-level imports; an import inside a function runs
  when it is called, after every module has loaded, and is how a lower module reaches a registry
  above it, e.g. `UpstreamConfig` asking `s3prl.upstream.families` to validate a model name);
* no library module imports a command-line module (`s3prl.bin.*`), at any level: CLIs parse
  arguments and call the library, never the other way round.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "s3prl"



def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports(name: str, path: Path, modules: dict, top_level_only: bool) -> set[str]:
    """s3prl modules imported by `name` (an `from a import b` of a submodule b counts as a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    nodes: list[ast.AST] = []
    if top_level_only:
        stack = list(tree.body)
        while stack:  # module-level statements, also inside top-level if / try blocks
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(n, (ast.If, ast.Try)):
                if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                    continue
                stack.extend(ast.iter_child_nodes(n))
                continue
            nodes.append(n)
    else:
        nodes = list(ast.walk(tree))
    found = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            found |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (n.level - 1)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            for a in n.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in modules else mod)
    return {m for m in found if m in modules and m != name}


def import_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules, top_level_only) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_library_module_imports_a_cli():
    graph = import_graph(top_level_only=False)
    bad = {(m, d) for m, deps in graph.items() if not m.startswith("s3prl.bin")
           for d in deps if d == "s3prl.bin" or d.startswith("s3prl.bin.")}
    assert not bad, sorted(bad)


def test_the_checks_see_what_they_look_for():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "s3prl.upstream.families.base" in import_graph()["s3prl.upstream.families"]
    assert "s3prl.data.kaldi_dir" in import_graph(top_level_only=False)["s3prl.train.pretrain"]
