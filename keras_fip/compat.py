"""Every use of a Keras private name, in one place.

keras_fip reads a few Keras internals that have no public equivalent: an
optimizer's variable order, a model's nested layers, a LoRA layer's base
kernel, the member names of a `.keras` archive, and the epoch a
`BackupAndRestore` resumed from. Each is wrapped here in one small
function that names the Keras internal it relies on (all are Keras 3
internals, read here from Keras 3.15.1; `pyproject.toml` allows 3.12 on),
so a Keras upgrade that moves one breaks one function, and a test
(`tests/test_compat.py`) checks that no other module uses those names.

Example:

```python
import keras, keras_fip
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
optimizer = keras.optimizers.SGD()
optimizer.build(model.trainable_variables)
kernel = model.trainable_variables[0]
assert keras_fip.compat.optimizer_variable_index(optimizer, kernel) == 0
assert model.layers[0] in keras_fip.compat.sublayers(model)
```
"""

#: The member of a `.keras` archive holding the model's config
#: (`keras/src/saving/saving_lib.py: _CONFIG_FILENAME`).
ARCHIVE_CONFIG = "config.json"
#: The member holding the weights and the optimizer's variables
#: (`saving_lib._VARS_FNAME_H5`).
ARCHIVE_WEIGHTS = "model.weights.h5"
#: The HDF5 groups, inside `ARCHIVE_WEIGHTS`, of the optimizer's own
#: variables (`saving_lib` saves `model.optimizer` under `optimizer` and
#: each object's variables under `vars`, keyed "0", "1", ...).
ARCHIVE_OPTIMIZER_GROUPS = ("optimizer", "vars")


def optimizer_variable_index(optimizer, variable):
    """The index of `variable` in `optimizer`'s list of trained variables.

    Keras optimizers key their slot variables (Adam's moments) by this
    index; ours key theirs the same way. Relies on
    `BaseOptimizer._get_variable_index` (the position of
    `variable` in the list `build` was given, matched by `id`).

    Args:
        optimizer: a built `keras.optimizers.Optimizer`.
        variable: one of the variables it was built for.

    Returns:
        The index (int).
    """
    return optimizer._get_variable_index(variable)


def optimizer_trainable_variables(optimizer):
    """The variables `optimizer` was built to train, in build order.

    Relies on `BaseOptimizer._trainable_variables` (the
    copy of the list `build` got; empty before `build`).

    Args:
        optimizer: a `keras.optimizers.Optimizer`.

    Returns:
        A new list of the variables.
    """
    return list(optimizer._trainable_variables)


def optimizer_own_variables(optimizer):
    """The variables `optimizer` itself created (iterations, slots, ours).

    Relies on `BaseOptimizer._variables` (every variable
    made by `add_variable`, in creation order; what `variables` returns
    for a plain optimizer).

    Args:
        optimizer: a `keras.optimizers.Optimizer`.

    Returns:
        A new list of the variables.
    """
    return list(optimizer._variables)


def sublayers(model):
    """Every layer nested in `model` (depth first, without `model`).

    Relies on `Layer._flatten_layers(include_self=False)`
    (`model.layers` lists only the top level).

    Args:
        model: a Keras model or layer.

    Returns:
        A list of layers.
    """
    return list(model._flatten_layers(include_self=False))


def has_base_kernel(layer):
    """Whether `layer` keeps a kernel that LoRA can adapt.

    Relies on the `_kernel` attribute of `Dense` and `EinsumDense`, whose
    public `kernel` adds the LoRA product when LoRA is
    enabled.
    """
    return hasattr(layer, "_kernel")


def base_kernel(layer):
    """The kernel variable of `layer` without its LoRA product.

    Relies on `Dense._kernel` / `EinsumDense._kernel`:
    `layer.kernel` is this variable itself when LoRA is off and the tensor
    `_kernel + (α/r) A B` when it is on.

    Args:
        layer: a layer for which `has_base_kernel` is true.

    Returns:
        The variable.
    """
    return layer._kernel


def clear_resumed_epoch(model):
    """Clears the epoch a `BackupAndRestore` made `fit` resume from.

    Keras 3's `BackupAndRestore.on_train_begin` sets the model's
    `_initial_epoch`, which `fit` reads in place of its `initial_epoch`
    argument, and nothing clears it: a later `fit` starts at that epoch
    too (every backend's trainer reads it). Does nothing when it is
    not set.

    Args:
        model: a Keras model.

    Returns:
        Whether an epoch was cleared.
    """
    if getattr(model, "_initial_epoch", None) is None:
        return False
    model._initial_epoch = None
    return True


def variable_layout(variable):
    """The distribution layout `variable` was created with, or `None`.

    Keras 3 keeps it as `_layout` (the value `add_variable_from_reference`
    also reads) and offers no public accessor.

    Args:
        variable: a Keras variable.
    """
    return getattr(variable, "_layout", None)


def assigned_in_scope(scope):
    """The ids of the variables assigned inside a `keras.StatelessScope`.

    The scope records every assignment in its `state_mapping`, keyed by
    the variable's id (Keras 3 names no accessor for it).

    Args:
        scope: a `keras.StatelessScope` that was entered without a mapping.
    """
    return set(scope.state_mapping)
