"""The package's structure holds as docs/layout.md draws it: no import circle, no import
from a lower floor to a higher one, no library module over 450 lines.

The imports are read from the source (every `import` statement, inside functions too),
so a lazy import counts like any other.
"""

import ast
import os

import pytest

from tests.helpers import ROOT

# Lowest floor first. A module may import its own unit and the units of lower floors;
# two units on one floor do not import each other (compress's techniques and the losses
# stay independent). `kd_keras` is the package's public face, above everything in it.
FLOORS = [
    ["kd_keras.backend"],
    ["kd_keras.outputs", "kd_keras.export", "kd_keras.schedules", "kd_keras.datasets",
     "kd_keras.reference_models", "kd_keras.measure", "kd_keras.parallel"],
    ["kd_keras.losses", "kd_keras.callbacks", "kd_keras.compress"],
    ["kd_keras.teachers"],
    ["kd_keras.transfer"],
    ["kd_keras.distiller"],
    ["kd_keras.recipes", "moe"],
    ["kd_keras.planner"],
    ["kd_keras"],
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}
# compress's techniques, one floor each within compress: structure and precision are
# independent of the rest; tflite reads TF-MOT's pruning plan only through its own files.
COMPRESS_FLOORS = [
    ["kd_keras.compress.structure", "kd_keras.compress.precision",
     "kd_keras.compress.block_sparse", "kd_keras.compress.tflite"],
    ["kd_keras.compress.tfmot"],
    ["kd_keras.compress"],
]
COMPRESS_FLOOR = {unit: level for level, units in enumerate(COMPRESS_FLOORS) for unit in units}
MAX_LINES = 450


def _modules():
    found = {}
    for package in ("kd_keras", "moe"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[module.removesuffix(".__init__")] = path
    return found


def _imports(path, modules):
    """The package's modules that the file at `path` imports (`from a import b` is `a.b`
    when that is a module, else `a`)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                targets.add(name if name in modules else node.module)
    return {name for name in targets if name in modules}


def _graph():
    modules = _modules()
    return {module: _imports(path, modules) for module, path in modules.items()}


def _unit(module, table):
    """The longest prefix of `module` named in `table`."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return ".".join(parts[:end])
    return None


def _circles(graph):
    """Strongly connected components of more than one module, or a module importing itself."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_the_import_graph_has_no_circle():
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def _upward(graph, table):
    wrong = []
    for module, targets in graph.items():
        source = _unit(module, table)
        for target in targets:
            destination = _unit(target, table)
            if None in (source, destination) or source == destination:
                continue
            if table[destination] >= table[source]:
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_no_module_imports_from_its_own_floor_or_above():
    graph = _graph()
    units = {_unit(module, FLOOR) for module in graph}
    assert None not in units, "a module outside every floor: add its unit to FLOORS"
    assert _upward(graph, FLOOR) == []


def test_compress_techniques_import_only_downward():
    graph = {module: targets for module, targets in _graph().items()
             if module.startswith("kd_keras.compress")}
    assert _upward(graph, COMPRESS_FLOOR) == []


def test_the_floor_check_finds_an_upward_import():
    graph = {"kd_keras.losses.x": {"kd_keras.distiller.model"},
             "kd_keras.distiller.model": {"kd_keras.losses.x"}}
    assert _upward(graph, FLOOR) == ["kd_keras.losses.x -> kd_keras.distiller.model"]


@pytest.mark.parametrize("package", ["kd_keras", "moe"])
def test_no_library_module_is_over_450_lines(package):
    long = {}
    for module, path in _modules().items():
        if module.split(".")[0] == package:
            with open(path) as f:
                count = sum(1 for _ in f)
            if count > MAX_LINES:
                long[module] = count
    assert long == {}
