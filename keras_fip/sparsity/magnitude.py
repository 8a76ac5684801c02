"""Magnitude pruning: the target P_s(w), one-shot pruning, reports.

P_s(w) zeroes the fraction s of the pruned weights with the smallest
magnitudes: globally (one threshold across all chosen variables, as the
reference code) or per variable (one threshold each, as tfmot). Entries
with |w| < t are pruned, where t is the k-th smallest magnitude,
k = ⌊s · n⌋.

Example:

```python
keras_fip.sparsity.prune_low_magnitude(model, 0.9)   # one-shot, global
keras_fip.sparsity.sparsity_report(model)["overall"]  # ≈ 0.9
```
"""

import numpy as np
from keras import ops

from keras_fip.arrays import as_numpy
from keras_fip.sparsity import schedules
from keras_fip.sparsity.selection import select

SCOPES = ("global", "per_variable")


def check_scope(scope):
    if scope not in SCOPES:
        raise ValueError(
            f"`scope` must be 'global' (one threshold across the pruned "
            f"variables) or 'per_variable'; got {scope!r}."
        )
    return scope


def _kth_smallest(flat, sparsity):
    n = int(flat.shape[0])
    k = ops.cast(ops.floor(ops.cast(sparsity, "float32") * n), "int32")
    k = ops.minimum(k, n - 1)
    return ops.take(ops.sort(flat), k)


def thresholds(values, sparsity, scope="global"):
    """One magnitude threshold per variable (a float32 vector).

    Args:
        values: the pruned variables' values (tensors).
        sparsity: s in [0, 1) (a float or a scalar tensor).
        scope: 'global' or 'per_variable'.
    """
    magnitudes = [ops.reshape(ops.abs(ops.cast(v, "float32")), (-1,))
                  for v in values]
    if scope == "global":
        t = _kth_smallest(ops.concatenate(magnitudes), sparsity)
        return ops.repeat(ops.reshape(t, (1,)), len(values))
    return ops.stack([_kth_smallest(m, sparsity) for m in magnitudes])


def _pruned_variables(model, prune):
    variables = model.trainable_variables
    return [variables[i] for i in select(variables, prune)]


def prune_low_magnitude(model, sparsity, prune=None, scope="global"):
    """One-shot magnitude pruning of `model` in place: w ← P_s(w).

    Args:
        model: a built Keras model.
        sparsity: fraction of the chosen weights to zero, in [0, 1).
        prune: glob patterns on variable paths (default: dense and
            convolution kernels).
        scope: 'global' or 'per_variable'.

    Returns:
        `sparsity_report(model, prune)`.
    """
    sparsity = schedules.check_sparsity("sparsity", sparsity)
    check_scope(scope)
    chosen = _pruned_variables(model, prune)
    limits = as_numpy(
        thresholds([v.value for v in chosen], sparsity, scope))
    for variable, limit in zip(chosen, limits):
        value = as_numpy(variable.value)
        variable.assign(np.where(np.abs(value) < limit, 0, value)
                        .astype(value.dtype))
    return sparsity_report(model, prune)


def sparsity_report(model, prune=None):
    """Achieved sparsity per chosen variable and overall.

    Returns:
        `{"variables": {path: {"size", "zeros", "sparsity"}}, "zeros",
        "size", "overall"}`, counting exact zeros.
    """
    rows, zeros, size = {}, 0, 0
    for variable in _pruned_variables(model, prune):
        value = as_numpy(variable.value)
        z = int(np.count_nonzero(value == 0))
        rows[variable.path] = {"size": int(value.size), "zeros": z,
                               "sparsity": z / value.size}
        zeros, size = zeros + z, size + int(value.size)
    return {"variables": rows, "zeros": zeros, "size": size,
            "overall": zeros / size}


def make_pruning_permanent(model, sparsity=None, prune=None, scope=None):
    """The final hard mask: pruned weights become exact zeros.

    After an FIP sparsification path the weights are close to, but not
    exactly, P_s(w); this sets them to P_s(w) so that `model.save` writes
    exact zeros. With no arguments the settings come from the `SparseTarget`
    of the model's `FIPOptimizer` (its final sparsity, patterns and scope).

    Returns:
        `sparsity_report(model, prune)`.
    """
    from keras_fip.evaluation import find_continual_optimizer
    from keras_fip.sparsity.sparse_target import SparseTarget

    optimizer = find_continual_optimizer(getattr(model, "optimizer", None))
    target = None if optimizer is None else optimizer.find_term(SparseTarget)
    if sparsity is None:
        if target is None:
            raise ValueError(
                "make_pruning_permanent needs `sparsity` (and `prune`), or a "
                "model compiled with FIPOptimizer(sparse_target=...)."
            )
        sparsity = target.schedule.final_sparsity
        prune = target.prune if prune is None else prune
        scope = target.scope if scope is None else scope
    return prune_low_magnitude(model, sparsity, prune, scope or "global")
