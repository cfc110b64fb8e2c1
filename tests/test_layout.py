"""The package keeps its layout rules (docs/README.md, "Layout").

- the import graph of ``costmodel`` and ``tvm_passes`` has no cycle at import time (imports inside
  functions and under ``TYPE_CHECKING`` are deferred and do not count);
- no module imports a private module (``_name``) of a package that is not its own or an ancestor of
  its own, and ``benchmarks/`` imports none at all: what is shared has a public name;
- no source file over 800 lines, no function over 100 lines;
- every module imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("costmodel", "tvm_passes")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 800, 100


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
BENCHMARKS = {_module_name(p): p for p in sorted((ROOT / "benchmarks").glob("*.py"))}


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(node, package: str) -> list[tuple[str, bool]]:
    """``(module, all_names_are_submodules)`` for one import statement."""
    if isinstance(node, ast.Import):
        return [(a.name, False) for a in node.names]
    target = _absolute(node, package)
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return [(target, len(subs) == len(node.names))] + [(s, True) for s in subs]


def _eager_imports(tree: ast.Module):
    """Import statements that run when the module is imported."""
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt
        elif isinstance(stmt, (ast.If, ast.Try)):
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
                continue
            yield from (n for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom)))


def _import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        package = _package_of(name, path)
        edges = set()
        for stmt in _eager_imports(ast.parse(path.read_text())):
            for target, only_submodules in _imported(stmt, package):
                # ``from . import a, b`` imports the submodules a and b, not the package's __init__ again
                if target in MODULES and target != name and not (only_submodules and target == package):
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _private_owner(module: str) -> str | None:
    """The package whose private module ``module`` is (``a.b._c.d`` -> ``a.b``), or ``None``."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _private_imports(modules: dict[str, Path], *, in_benchmarks: bool) -> list[str]:
    bad = []
    for name, path in modules.items():
        package = "" if in_benchmarks else _package_of(name, path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if in_benchmarks and isinstance(node, ast.ImportFrom) and node.level:
                continue
            for target, _ in _imported(node, package):
                if target.split(".")[0] not in PACKAGES:
                    continue  # benchmarks' own helper modules, third-party packages
                owner = _private_owner(target)
                if owner is not None and (in_benchmarks or not (package == owner or package.startswith(owner + "."))):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    return bad


def test_the_rules_see_the_package():
    assert len(MODULES) > 100 and "costmodel.estimate" in MODULES and len(BENCHMARKS) > 10
    graph = _import_graph()
    assert "costmodel._errors" in graph["costmodel.frontends.zoo"]
    assert {"costmodel.estimate", "costmodel.ir"} <= graph["costmodel.predictors._base"]


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_private_owner():
    assert _private_owner("costmodel.frontends._onnx._tables") == "costmodel.frontends"
    assert _private_owner("costmodel.estimate") is None


def test_no_import_cycle():
    assert _cycles(_import_graph()) == []


def test_no_private_module_of_another_package():
    bad = _private_imports(MODULES, in_benchmarks=False) + _private_imports(BENCHMARKS, in_benchmarks=True)
    assert not bad, "\n".join(bad)


def test_size_limits():
    long_files, long_functions = [], []
    for path in [*MODULES.values(), *BENCHMARKS.values()]:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if text.count("\n") > MAX_FILE_LINES and path.parent.name != "benchmarks":
            long_files.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long_files and not long_functions, "\n".join(long_files + long_functions)


def test_every_module_imports():
    """A name moved between modules fails here, not in a user's first call."""
    import importlib

    bad = []
    for name in MODULES:
        if name.endswith("__main__"):
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - every failure is listed
            bad.append(f"{name}: {type(e).__name__}: {e}")
    assert not bad, "\n".join(bad)
