"""The package graph keeps its shape: no import cycles, every module imports only its own layer or
lower ones, no command line imports another, and the packages' walls hold (docs/architecture.md).

Imports inside functions count as much as those at the top of a module.
"""

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fer_keras", "clients", "serving", "tuning")

# fer_keras's layers, lowest first (docs/architecture.md draws them).
LAYERS = [
    ("foundations", ["fer_keras", "fer_keras.config", "fer_keras.quiet", "fer_keras.checkpointing", "fer_keras.plots",
                     "fer_keras.data", "fer_keras.data.*", "fer_keras.detection", "fer_keras.explain.methods",
                     "fer_keras.multiworker"]),
    ("models", ["fer_keras.models", "fer_keras.models.*", "fer_keras.optim", "fer_keras.fitting"]),
    ("weights and measures", ["fer_keras.pretrained", "fer_keras.evaluation"]),
    ("using a model", ["fer_keras.loading", "fer_keras.explain", "fer_keras.explain.cams", "fer_keras.explain.overlay",
                       "fer_keras.explain.analysis",
                       "fer_keras.explain.figures", "fer_keras.explain.faithfulness", "fer_keras.explain.sanity",
                       "fer_keras.explain.regions", "fer_keras.explain.crosscheck", "fer_keras.candidates"]),
    ("export", ["fer_keras.exporting"]),
    ("training", ["fer_keras.training"]),
    ("shared flags", ["fer_keras.cli"]),
    ("commands", ["fer_keras.train", "fer_keras.evaluate", "fer_keras.export", "fer_keras.explain.__main__",
                  "fer_keras.pretrained.__main__", "fer_keras.portable", "fer_keras.robustness", "fer_keras.adjust",
                  "fer_keras.average", "fer_keras.finish"]),
]
COMMANDS = {*LAYERS[-1][1], "clients.video", "clients.service.__main__", "tuning.search", "serving.local.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {_resolve(n) for n in names if n.split(".")[0] in PACKAGES}
    return found - {""}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(module, p) for p in patterns):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def test_every_fer_keras_module_has_a_layer():
    for module in MODULES:
        if module.startswith("fer_keras"):
            _layer(module)


def test_there_are_no_import_cycles():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_fer_keras_modules_import_only_their_own_layer_or_lower_ones():
    wrong = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
             for m, deps in GRAPH.items() if m.startswith("fer_keras")
             for d in deps if d.startswith("fer_keras") and _layer(d) > _layer(m)]
    assert not wrong, "\n".join(wrong)


def test_the_data_package_stands_on_its_own():
    """Data flows one way: readers and faces come first, so fer_keras.data imports nothing else of fer_keras
    (fer_keras.config builds on it: DataConfig lives in fer_keras.data.sources)."""
    wrong = [f"{m} imports {d}" for m, deps in GRAPH.items() if m.startswith("fer_keras.data")
             for d in deps if d.startswith("fer_keras") and not d.startswith("fer_keras.data")]
    assert not wrong, "\n".join(wrong)


def test_no_command_line_imports_another():
    wrong = [f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps if d in COMMANDS]
    assert not wrong, "\n".join(wrong)


def test_the_packages_walls_hold():
    for module, deps in GRAPH.items():
        top = module.split(".")[0]
        others = {d.split(".")[0] for d in deps} - {top}
        if top == "serving":
            assert not others, f"{module} imports {others}: serving needs only a SavedModel"
        elif top == "fer_keras":
            assert not others, f"{module} imports {others}: fer_keras never imports clients, serving or tuning"
        elif top == "tuning":
            assert others <= {"fer_keras"}, f"{module} imports {others}"
        elif top == "clients" and module not in COMMANDS:  # the video and service commands may start an embedded server
            assert others <= {"fer_keras"}, f"{module} imports {others}: the client library stands without serving"


def _package(module: str) -> str:
    """A module's unit in the folder graph: a sub-package of a top package counts as one (its modules,
    its __init__ and its __main__ together); a module directly in a top package counts alone."""
    parts = MODULES[module].relative_to(ROOT).parts
    return ".".join(parts[:2]) if len(parts) > 2 else module


def test_there_are_no_cycles_between_folders():
    """A package's command line counts as the package: fer_keras.pretrained (the weights) must not import
    fer_keras.loading while fer_keras.pretrained.__main__ imports it back, and so on."""
    folders: dict[str, set[str]] = {}
    for module, deps in GRAPH.items():
        folders.setdefault(_package(module), set()).update(_package(d) for d in deps)
    for folder in folders:
        folders[folder].discard(folder)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(folders.get(node, ())):
            if state.get(dep) == 1:
                pytest.fail("cycle between folders: " + " -> ".join(path[path.index(dep):] + [node, dep]))
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for folder in sorted(folders):
        if folder not in state:
            visit(folder, [])
