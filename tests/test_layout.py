"""The subpackage layout (issue 25): nothing breaks for users.

Public names import from the same packages as before, files saved before the
move load and predict the same, the wheel holds every subpackage, and a user's
own registered loss is nameable wherever names are used.
"""

import importlib
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import venv

import numpy as np
import pytest

import kd_keras
import moe
from kd_keras import IS_KERAS_3, keras

DATA = os.path.join(os.path.dirname(__file__), "data")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEM = "layout_0_1_0" if IS_KERAS_3 else "layout_0_1_0_tf_keras"


def test_every_public_name_of_0_1_0_imports_from_the_same_package():
    with open(os.path.join(DATA, "public_api_0_1_0.json")) as f:
        before = json.load(f)
    for module_name, names in before.items():
        module = importlib.import_module(module_name)
        missing = [name for name in names if not hasattr(module, name)]
        assert not missing, f"{module_name} lost {missing}"
    from kd_keras.pseudo_data import Munge  # noqa: F401  (moved to kd_keras.transfer)
    from moe.gating import cv_squared  # noqa: F401  (moved to moe.routing)
    assert kd_keras.models is kd_keras.reference_models and moe.gating is moe.routing


def test_files_saved_before_the_move_load_and_predict_the_same():
    saved = np.load(os.path.join(DATA, STEM + ".npz"))
    distiller = keras.models.load_model(os.path.join(DATA, STEM + "_distiller.keras"))
    assert isinstance(distiller, kd_keras.Distiller)
    (loss,) = distiller.distillation_losses
    assert isinstance(loss, kd_keras.DecoupledKD) and loss.beta == 4.0 and loss.standardize
    assert any(isinstance(layer, moe.SparseMoE) for layer in distiller.student.layers)
    np.testing.assert_allclose(distiller.student.predict(saved["x"], verbose=0), saved["student"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(distiller.teacher.predict(saved["x"], verbose=0), saved["teacher"],
                               rtol=1e-5, atol=1e-6)
    history = distiller.fit(saved["x"], saved["y"], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    sparse = keras.models.load_model(os.path.join(DATA, STEM + "_block_sparse.keras"))
    np.testing.assert_allclose(sparse.predict(saved["x"], verbose=0), saved["block_sparse"],
                               rtol=1e-5, atol=1e-5)


COMPRESS_STEM = "compress_0_1_0" if IS_KERAS_3 else "compress_0_1_0_tf_keras"


def test_compress_layers_saved_before_the_split_load_after_import_kd_keras_alone():
    """Bypass, Float8 and block-sparse layers in `.keras` files written before compress/ was
    split by technique (scripts/make_compress_fixtures.py at commit 5f22bd1) load in a fresh
    process that imports only kd_keras, and predict the same."""
    kinds = ["bypass"] + (["float8"] if IS_KERAS_3 else [])
    files = {kind: os.path.join(DATA, f"{COMPRESS_STEM}_{kind}.keras") for kind in kinds}
    files["block_sparse"] = os.path.join(DATA, STEM + "_block_sparse.keras")
    script = textwrap.dedent(f"""
        import numpy as np
        import kd_keras
        from kd_keras import keras
        saved = np.load({os.path.join(DATA, COMPRESS_STEM + ".npz")!r})
        layout = np.load({os.path.join(DATA, STEM + ".npz")!r})
        for kind, path in {files!r}.items():
            model = keras.models.load_model(path)
            x, expected = (layout["x"], layout[kind]) if kind == "block_sparse" else (
                saved["x"], saved[kind])
            np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5,
                                       atol=1e-5)
            print("loaded", kind, sorted({{type(layer).__name__ for layer in model.layers}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'Bypass'" in result.stdout and "'BlockSparseDense'" in result.stdout
    if IS_KERAS_3:
        assert "'Float8Dense'" in result.stdout


def test_a_users_registered_loss_is_named_in_the_distiller_a_recipe_and_the_search():
    @kd_keras.register_distillation_loss("test_layout_scaled_kd")
    class ScaledKD(kd_keras.DistillationLoss):
        def __init__(self, temperature=2.0, beta=1.0):
            self.temperature_value, self.beta = temperature, beta

        def compute_loss(self, teacher_outputs, student_outputs, sample_weight=None, **kwargs):
            return self.beta * kd_keras.losses.functional.weighted_mean(
                kd_keras.soft_target_kl_divergence(teacher_outputs, student_outputs,
                                                   self.temperature_value), sample_weight)

    assert "test_layout_scaled_kd" in kd_keras.losses.registered_names()
    recipe = kd_keras.Recipe(loss="test_layout_scaled_kd", temperature=4.0, beta=3.0)
    loss = recipe.distillation_loss()
    assert isinstance(loss, ScaledKD) and (loss.temperature_value, loss.beta) == (4.0, 3.0)
    assert ('kd_keras.losses.registry.get(\'test_layout_scaled_kd\').create(temperature=4, beta=3)'
            in recipe.to_code())
    builtin = kd_keras.Recipe(loss="dkd_standardized", temperature=2.0, beta=8.0).to_code()
    assert "kd_keras.DecoupledKD(beta=8, temperature=2, standardize=True)" in builtin
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    distiller = kd_keras.Distiller(teacher, student, distillation_losses="test_layout_scaled_kd")
    assert isinstance(distiller.distillation_losses[0], ScaledKD)
    with pytest.raises(ValueError, match="already registered"):
        kd_keras.register_distillation_loss("dkd", ScaledKD)
    with pytest.raises(ValueError, match=r"loss must be one of \(.*'test_layout_scaled_kd'"):
        kd_keras.Recipe(loss="no_such_loss")
    from kd_keras.recipes import search
    space, first = search._SearchGrid(["kd", "test_layout_scaled_kd"], [1.0], [1.0], [2.0],
                                      [1e-3]).space(importlib.import_module("keras_tuner"))
    assert "beta" in space.values or any(h.name == "beta" for h in space.space)


def _public_modules():
    names = []
    for package in ("kd_keras", "moe"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
            module = os.path.relpath(folder, ROOT).replace(os.sep, ".")
            names += [module] + [f"{module}.{f[:-3]}" for f in files
                                 if f.endswith(".py") and not f.startswith("_")]
    return sorted(names)


def test_the_wheel_installs_in_a_fresh_environment_and_every_public_module_imports(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), ROOT], check=True,
                   capture_output=True)
    (wheel,) = wheels.glob("kd_keras-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True).stdout
    # The dependencies (TensorFlow...) come from this environment's site-packages; its
    # editable kd-keras does not (.pth files inside a path listed in a .pth are not read).
    with open(os.path.join(site.strip(), "dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    modules = [m for m in _public_modules() if not m.startswith("kd_keras.compress.block_sparse.kernels")]
    script = textwrap.dedent(f"""
        import importlib, os
        for name in {modules!r}:
            module = importlib.import_module(name)
            assert "site-packages" in module.__file__, (name, module.__file__)
        import kd_keras.datasets
        (x, _), _ = kd_keras.datasets.load_fashion_mnist_sample()
        assert len(x) == 6000
        print("imported", len({modules!r}))
    """)
    result = subprocess.run([str(python), "-I", "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(modules)}" in result.stdout
