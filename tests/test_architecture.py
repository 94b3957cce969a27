"""Architecture checks of the package, read statically (ast, nothing imported):

* no import cycles among s3prl modules (module-level imports; an import inside a function runs
  when it is called, after every module has loaded, and is how a lower module reaches a registry
  above it, e.g. `UpstreamConfig` asking `s3prl.upstream.families` to validate a model name);
* no library module imports a command-line module (`s3prl.bin.*`), at any level: CLIs parse
  arguments and call the library, never the other way round;
* the task table and the downstream CLIs do not load the Kaldi libraries of the hybrid task
  (kaldi-hmm-gmm, kaldifst, kaldilm): its entry imports them when a hybrid run starts (this one
  is checked by importing, in a fresh interpreter).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


KALDI_LIBS = ("kaldi_hmm_gmm", "kaldifst", "kaldilm")


def _loaded_after(code: str) -> dict:
    """Run `code` in a fresh interpreter; -> {"kaldi": the KALDI_LIBS then in sys.modules, "out": stdout}."""
    probe = (f"import io, json, sys, contextlib\nbuf = io.StringIO()\n"
             f"with contextlib.redirect_stdout(buf):\n" + "".join(f"    {l}\n" for l in code.splitlines()) +
             f"print(json.dumps({{'kaldi': [m for m in {KALDI_LIBS!r} if m in sys.modules], 'out': buf.getvalue()}}))")
    env = {**os.environ, "PYTHONPATH": str(PKG.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import s3prl.downstream.tasks",
    "from s3prl.bin import train_downstream\ntry:\n    train_downstream.main(['--help'])\nexcept SystemExit:\n    pass",
    "from s3prl.bin import train_downstream\ntry:\n    train_downstream.main(['--task', 'hybrid', '--help'])\n"
    "except SystemExit:\n    pass",
    "from s3prl.bin import results_table\ntry:\n    results_table.main(['--help'])\nexcept SystemExit:\n    pass",
])
def test_downstream_clis_do_not_load_the_kaldi_libraries(code):
    got = _loaded_after(code)
    assert got["kaldi"] == [], got
    if "--help" in code:
        assert "usage:" in got["out"]
    if "'hybrid'" in code:
        assert "--ali-train" in got["out"] and "--on-the-fly" in got["out"]


def test_a_hybrid_run_loads_them():
    """The probe itself: building the hybrid task's run reaches s3prl.hybrid (kaldi_hmm_gmm first)."""
    got = _loaded_after("from s3prl.downstream.tasks import get_task\nimport inspect\n"
                        "spec = get_task('hybrid')\n"
                        "try:\n    spec.build(None, None, None, 'cpu')\nexcept AttributeError:\n    pass")
    assert "kaldi_hmm_gmm" in got["kaldi"] and "kaldifst" in got["kaldi"], got
