"""Keras private names are used in `keras_fip.compat` only, and work there."""

import ast
import pathlib

import keras
import numpy as np
import pytest

import keras_fip
from keras_fip import compat
from keras_fip.arrays import as_numpy

PACKAGE = pathlib.Path(keras_fip.__file__).parent

#: Keras internals read as attributes (of any object).
PRIVATE_ATTRIBUTES = {
    "_get_variable_index", "_trainable_variables",
    "_trainable_variables_indices", "_var_key", "_flatten_layers",
    "_kernel", "_initial_epoch",
}
#: Keras internals a subclass of a Keras class could read on `self`.
PRIVATE_INHERITED = {"_variables", "_tracker"}
#: Names of Keras's `.keras` archive layout.
ARCHIVE_NAMES = {"config.json", "model.weights.h5", "metadata.json"}
#: Uses the check finds that are not Keras internals, and why.
NOT_KERAS = {
    ("keras_fip/hub.py", "'config.json'"):
        "the file of a KerasHub preset directory, not a .keras member",
}


def _docstrings(tree):
    """The ids of the constant nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(
                    first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _keras_classes(tree):
    """The class definitions that subclass a Keras class."""
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).startswith("keras.")
                for base in node.bases)]


def private_uses(path):
    """`(line, what)` for each use of a Keras private name in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            uses.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Constant) and id(node) not in docstrings \
                and isinstance(node.value, str) and (
                    node.value in PRIVATE_ATTRIBUTES
                    or node.value in ARCHIVE_NAMES):
            uses.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.ImportFrom) and (
                node.module or "").startswith("keras.src"):
            uses.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Import) and any(
                a.name.startswith("keras.src") for a in node.names):
            uses.append((node.lineno, "import keras.src..."))
        elif isinstance(node, ast.Attribute) and node.attr == "src" and \
                ast.unparse(node.value) == "keras":
            uses.append((node.lineno, "keras.src"))
    for cls in _keras_classes(tree):
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and \
                    node.attr in PRIVATE_INHERITED and \
                    ast.unparse(node.value) == "self":
                uses.append((node.lineno, f"self.{node.attr} in {cls.name}"))
    return sorted(set(uses))


def test_no_module_but_compat_uses_a_keras_private_name():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py" and path.parent == PACKAGE:
            continue
        name = str(path.relative_to(PACKAGE.parent))
        uses = [(line, what) for line, what in private_uses(path)
                if (name, what) not in NOT_KERAS]
        if uses:
            found[name] = uses
    assert not found, (
        "Keras private names outside keras_fip/compat.py (wrap each in a "
        f"compat function and call that): {found}")


def test_compat_itself_is_seen_by_the_check():
    # The check finds what compat wraps (so an empty result above means
    # something).
    uses = {what for _, what in private_uses(PACKAGE / "compat.py")}
    assert {"optimizer._get_variable_index", "optimizer._trainable_variables",
            "model._flatten_layers", "layer._kernel",
            "model._initial_epoch", "'config.json'",
            "'model.weights.h5'"} <= uses


def _model():
    return keras.Sequential([keras.Input((4,)),
                             keras.Sequential([keras.layers.Dense(3)]),
                             keras.layers.Dense(2)])


def test_optimizer_variables_in_build_order():
    model = _model()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    assert [compat.optimizer_variable_index(optimizer, v)
            for v in model.trainable_variables] == [0, 1, 2, 3]
    assert compat.optimizer_trainable_variables(optimizer) == list(
        model.trainable_variables)
    own = compat.optimizer_own_variables(optimizer)
    assert own == optimizer.variables  # iterations, lr, the moments
    own.clear()  # a copy
    assert optimizer.variables


def test_sublayers_reach_nested_layers():
    model = _model()
    inner = model.layers[0]
    found = [layer for layer in compat.sublayers(model)
             if not isinstance(layer, keras.layers.InputLayer)]
    assert found == [inner, inner.layers[0], model.layers[1]]


def test_base_kernel_leaves_out_the_lora_product():
    layer = _model().layers[1]
    assert compat.has_base_kernel(layer)
    assert not compat.has_base_kernel(keras.layers.ReLU())
    assert compat.base_kernel(layer) is layer.kernel
    layer.enable_lora(1)
    layer.lora_kernel_b.assign(np.ones((1, 2), "float32"))
    base = as_numpy(compat.base_kernel(layer))
    np.testing.assert_allclose(
        as_numpy(layer.kernel) - base,
        as_numpy(layer.lora_kernel_a) @ as_numpy(layer.lora_kernel_b)
        * layer.lora_alpha / layer.lora_rank, rtol=1e-5, atol=1e-6)


def test_clear_resumed_epoch():
    model = _model()
    assert not compat.clear_resumed_epoch(model)
    model._initial_epoch = 3  # what BackupAndRestore sets
    assert compat.clear_resumed_epoch(model)
    assert model._initial_epoch is None


def test_archive_names_are_what_keras_writes(tmp_path):
    import zipfile

    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert {compat.ARCHIVE_CONFIG, compat.ARCHIVE_WEIGHTS} <= set(
            archive.namelist())
        import io

        import h5py

        with h5py.File(io.BytesIO(archive.read(compat.ARCHIVE_WEIGHTS)),
                       "r") as weights:
            group, variables = compat.ARCHIVE_OPTIMIZER_GROUPS
            assert len(weights[group][variables]) == len(
                model.optimizer.variables)


@pytest.mark.parametrize("name", ["compat", "deprecation",
                                  "terms.weight_variables"])
def test_module_example_runs(name):
    import importlib
    import re
    import textwrap

    module = importlib.import_module(f"keras_fip.{name}")
    (block,) = re.findall(r"```python\n(.*?)```", module.__doc__, re.S)
    exec(textwrap.dedent(block), {})


def private_imports(path):
    """`(line, what)` for each private name one keras_fip module takes from
    another (`from keras_fip.x import _y`, `x._y` with `x` a keras_fip
    module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules, uses = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
                node.module or "").startswith("keras_fip"):
            for alias in node.names:
                if alias.name.startswith("_") and alias.name != "__version__":
                    uses.append((node.lineno,
                                 f"from {node.module} import {alias.name}"))
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_fip"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") \
                and isinstance(node.value, ast.Name) \
                and node.value.id in modules:
            uses.append((node.lineno, ast.unparse(node)))
    return sorted(uses)


def test_no_module_imports_a_private_name_of_another():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        uses = private_imports(path)
        if uses:
            found[str(path.relative_to(PACKAGE.parent))] = uses
    assert not found, (
        "Private names taken across keras_fip modules (make the name "
        f"public where it is defined, or move it): {found}")


def test_the_private_import_check_sees_one(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from keras_fip.terms.toward import _Fixed\n"
                    "from keras_fip.sparsity import schedules\n"
                    "schedules._check_sparsity('s', 0.5)\n")
    assert private_imports(path) == [
        (1, "from keras_fip.terms.toward import _Fixed"),
        (3, "schedules._check_sparsity")]
