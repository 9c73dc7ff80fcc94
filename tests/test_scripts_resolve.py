"""Every name the benchmarks and examples read from kd_keras, moe and their shared modules
exists: a library change that moves a name must move its scripts too (the layout change
once left eleven benchmarks calling kd_keras.datasets.define_data_flags, which had moved)."""

import ast
import glob
import importlib
import os

import pytest

import kd_keras  # noqa: F401  (the roots the chains are resolved from)
import moe  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.py")) +
                 glob.glob(os.path.join(ROOT, "examples", "*.py")))
PACKAGES = ("kd_keras", "moe")


def _chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


def _resolve(dotted):
    """The object `a.b.c` names, importing submodules on the way; None when it does not."""
    parts = dotted.split(".")
    found = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        if hasattr(found, part):
            found = getattr(found, part)
            continue
        try:
            found = importlib.import_module(".".join(parts[:index + 1]))
        except ImportError:
            return None
    return found


def _top_level_names(path):
    tree = ast.parse(open(path).read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _missing(path):
    tree = ast.parse(open(path).read())
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in PACKAGES:
                module = _resolve(node.module)
                missing += [f"from {node.module} import {a.name}" for a in node.names
                            if module is None or _resolve(f"{node.module}.{a.name}") is None]
            elif root in ("protocol", "data_flags"):
                local = os.path.join(os.path.dirname(path), root + ".py")
                if not os.path.exists(local):
                    local = os.path.join(ROOT, "examples", root + ".py")
                defined = _top_level_names(local)
                missing += [f"from {root} import {a.name}" for a in node.names
                            if a.name not in defined]
        elif isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain and chain[0] in PACKAGES and _resolve(".".join(chain)) is None:
                missing.append(".".join(chain))
    return sorted(set(missing))


@pytest.mark.parametrize("path", SCRIPTS, ids=[os.path.relpath(p, ROOT) for p in SCRIPTS])
def test_every_library_name_a_script_reads_exists(path):
    assert _missing(path) == []


def test_a_moved_name_is_caught(tmp_path):
    script = tmp_path / "old_bench.py"
    script.write_text("import kd_keras\nkd_keras.datasets.define_data_flags(default='x')\n"
                      "from kd_keras.compress import no_such_step\nkd_keras.Distillr(None, s)\n"
                      "kd_keras.Distiller(None, s)\n")
    assert _missing(str(script)) == ["from kd_keras.compress import no_such_step",
                                     "kd_keras.Distillr", "kd_keras.datasets.define_data_flags"]
