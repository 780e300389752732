"""The shape of the package, checked: imports point down the layers, with no circles.

An AST walk over ``jaxtune/`` collects every import, at module level and inside functions
(``from jaxtune.x import y`` where ``y`` is a submodule counts as importing ``jaxtune.x.y``).
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "jaxtune"

# Top to bottom (docs/architecture.md, "How it is built"): a module may import its own layer or any below it.
LAYERS = [
    ["jaxtune.cli"],
    ["jaxtune"],  # the package's front: re-exports the public API
    ["jaxtune.tune", "jaxtune.babysitting", "jaxtune.planning", "jaxtune.bench", "jaxtune.reseeding"],
    ["jaxtune.analysis"],  # report, figures, importance: what a stored study says
    ["jaxtune.drivers"],
    ["jaxtune.study.study", "jaxtune.study.nodes", "jaxtune.study.warm"],
    ["jaxtune.result", "jaxtune.study.storage", "jaxtune.study.optuna_interop",
     "jaxtune.study.tensorboard_export", "jaxtune.study.orbax_export"],
    ["jaxtune.replay"],
    ["jaxtune.study.records", "jaxtune.study.sqlite_files", "jaxtune.study.checkpoints", "jaxtune.study",
     "jaxtune.progress", "jaxtune.constraints"],
    ["jaxtune.tasks"],
    ["jaxtune.train", "jaxtune.trainer_inputs", "jaxtune.layers", "jaxtune.schedules"],
    ["jaxtune.execute", "jaxtune.strategies", "jaxtune.schedulers"],
    ["jaxtune.space", "jaxtune.space.params", "jaxtune.space.hyperparameters", "jaxtune.keys", "jaxtune.pareto"],
    ["jaxtune._checks", "jaxtune._trees", "jaxtune.errors", "jaxtune.settings"],
]


def modules() -> dict[str, pathlib.Path]:
    """``{dotted name: path}`` of every module of the package."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Every module's imports of other jaxtune modules (module- and function-level)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def layer(name: str) -> int:
    """The layer of a module: that of the longest prefix listed."""
    best, rank = "", None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    assert rank is not None, f"{name} is in no layer: add it to LAYERS (and to the diagram in docs/architecture.md)"
    return rank


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circles():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    up = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, deps in import_graph().items()
        for b in deps
        if layer(b) < layer(a)
    ]
    assert up == []


def test_only_tune_imports_a_driver():
    users = {a for a, deps in import_graph().items() for b in deps if layer(b) == layer("jaxtune.drivers")}
    assert users - {"jaxtune.tune"} == {n for n in users if n.startswith("jaxtune.drivers")}


def test_no_private_name_is_imported_across_modules():
    """A name with a leading underscore stays in its module: another module that needs it gets a
    public name (private modules, ``jaxtune._checks`` and ``jaxtune._trees``, are the package's own)."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxtune"):
                found += [f"{name}: {a.name} from {node.module}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]  # fmt: skip
    assert found == []


def test_no_module_or_function_is_too_long():
    """Modules stay under ~450 lines and functions under ~60 lines of code (docstrings aside)."""
    long = []
    for name, path in modules().items():
        src = path.read_text()
        if len(src.splitlines()) > 450:
            long.append(f"{name}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
                start = first.end_lineno + 1 if doc and len(node.body) > 1 else first.lineno
                code = [
                    line
                    for line in src.splitlines()[start - 1 : node.end_lineno]
                    if line.strip() and not line.strip().startswith("#")
                ]
                if len(code) > 62:
                    long.append(f"{name}.{node.name}: {len(code)} lines")
    assert long == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above can fail: a made-up graph with a circle and an upward edge is caught."""
    graph = {"jaxtune.study.study": {"jaxtune.drivers.rounds"}, "jaxtune.drivers.rounds": {"jaxtune.study.study"}}
    assert cycles(graph) == [["jaxtune.drivers.rounds", "jaxtune.study.study"]]
    assert layer("jaxtune.drivers.rounds") < layer("jaxtune.study.study")


def test_every_public_function_class_and_method_has_a_docstring():
    import importlib
    import inspect
    import pkgutil

    import jaxtune

    missing = []
    for info in pkgutil.walk_packages(jaxtune.__path__, "jaxtune."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != info.name:
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{info.name}.{name}")
            for attr in vars(obj) if inspect.isclass(obj) else ():
                member = getattr(obj, attr, None)
                if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                    if not inspect.getdoc(member):
                        missing.append(f"{info.name}.{name}.{attr}")
    assert missing == []
