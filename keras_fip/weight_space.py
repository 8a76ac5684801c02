"""Where in weight space an adaptation went: per-layer ΔW size and rank.

The paper compares FIP with LoRA by the weight change ΔW = W − W₀ of each
adapted matrix (attention query and value): its relative size
‖ΔW‖_F / ‖W₀‖_F and its numerical rank. LoRA's ΔW is low rank by
construction; an FIP step is not restricted to a subspace.

For a Keras layer with LoRA enabled the effective kernel is
W₀ + (α / r) · A B, where A has the kernel's shape with its last axis
replaced by r (a `Dense` kernel `(d_in, d_out)` gives the usual rank-r
product; an `EinsumDense` kernel `(d_in, heads, head_dim)` gives rank ≤ r
*per head*, so ΔW viewed as a `d_in × (heads · head_dim)` matrix can reach
rank heads · r). ΔW is computed here in float64 from the factors, so the
rank is not inflated by float32 rounding.

Example:

```python
before = keras_fip.weight_space.kernel_snapshot(model)
model.fit(x_new, y_new)
for row in keras_fip.weight_space.weight_changes(model, before):
    print(row["layer"], row["relative_change"], row["rank"])
```
"""

import re

import numpy as np

from keras_fip import compat
from keras_fip.arrays import as_numpy
from keras_fip.deprecation import renamed_arguments

ATTENTION_LAYER_NAMES = ("query", "value", "query_dense", "value_dense")


def _kernel_layers(model, layer_names):
    layers = [
        layer
        for layer in compat.sublayers(model)
        if layer.name in layer_names and compat.has_base_kernel(layer)
    ]
    if not layers:
        raise ValueError(
            f"{model.name} has no layer with a kernel named one of "
            f"{tuple(layer_names)}. Pass `layer_names` that match layer "
            "names of the model (for example 'query', 'value')."
        )
    return layers


def _name(layer):
    return compat.base_kernel(layer).path.rsplit("/", 1)[0]


def _natural(name):
    """Sort key: 'layer_2' before 'layer_10'."""
    return [int(part) if part.isdigit() else part
            for part in re.split(r"(\d+)", name)]


def _as_matrix(kernel):
    """A kernel as a (input features) × (everything else) matrix."""
    return kernel.reshape(kernel.shape[0], -1)


def _lora_delta(layer):
    """(α / r) · A B of a LoRA-enabled layer, in float64, kernel-shaped."""
    a = as_numpy(layer.lora_kernel_a).astype("float64")
    b = as_numpy(layer.lora_kernel_b).astype("float64")
    delta = np.tensordot(a, b, axes=([a.ndim - 1], [0]))
    return delta * (layer.lora_alpha / layer.lora_rank)


def _kernel(layer):
    """The layer's effective kernel in float64 (LoRA included)."""
    base = as_numpy(compat.base_kernel(layer)).astype("float64")
    if getattr(layer, "lora_enabled", False):
        return base + _lora_delta(layer)
    return base


def kernel_snapshot(model, layer_names=ATTENTION_LAYER_NAMES):
    """`{layer path: effective kernel}` (float64 NumPy) of the named layers.

    Args:
        model: a built Keras model (a KerasHub task model, a backbone).
        layer_names: names of the layers to record; by default the
            attention query and value projections, the matrices LoRA adapts.
    """
    return {_name(layer): _kernel(layer)
            for layer in _kernel_layers(model, layer_names)}


@renamed_arguments(since="0.6", rtol="relative_tolerance")
def numerical_rank(matrix, relative_tolerance=None):
    """How many singular values of `matrix` exceed `relative_tolerance`·σ_max.

    The matrix counterpart of `keras_fip.spectrum.numerical_rank` (which
    counts eigenvalues), with the same argument name.

    Args:
        matrix: a 2-D array.
        relative_tolerance: the cut, relative to the largest singular
            value σ_max. Defaults to `None`: NumPy's `matrix_rank` rule for
            float32 data, `max(m, n) · eps(float32)`, what float32 weights
            can resolve. `rtol` is its deprecated name (0.5).

    Returns:
        The count (int; 0 for a zero or empty matrix).

    Example:

    ```python
    import numpy as np, keras_fip
    rank_two = np.outer([1.0, 2, 3], [1.0, 0]) + np.outer([0.0, 1, 0], [0, 1])
    assert keras_fip.weight_space.numerical_rank(rank_two) == 2
    ```
    """
    if relative_tolerance is not None and not 0 <= relative_tolerance < 1:
        raise ValueError("`relative_tolerance` must lie in [0, 1); got "
                         f"{relative_tolerance!r}.")
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular.size == 0 or singular[0] == 0:
        return 0
    if relative_tolerance is None:
        relative_tolerance = max(matrix.shape) * np.finfo(np.float32).eps
    return int((singular > relative_tolerance * singular[0]).sum())


def energy_rank(matrix, fraction=0.9):
    """Fewest singular directions that hold `fraction` of ‖matrix‖_F²."""
    energy = np.linalg.svd(matrix, compute_uv=False) ** 2
    if energy.sum() == 0:
        return 0
    cumulative = np.cumsum(energy) / energy.sum()
    return int(np.searchsorted(cumulative, fraction) + 1)


def weight_changes(model, reference, layer_names=ATTENTION_LAYER_NAMES):
    """Per-layer ‖ΔW‖_F / ‖W₀‖_F and rank of ΔW = W − W₀.

    Args:
        model: the adapted model.
        reference: `kernel_snapshot` of the starting point W₀ (the same
            architecture; LoRA may have been enabled since).
        layer_names: as in `kernel_snapshot`.

    Returns:
        A list of dicts, one per layer in path order: `layer`, `shape`
        (of ΔW as a matrix), `relative_change`, `rank` (`numerical_rank`)
        and `energy_rank` (90 % of ‖ΔW‖_F²).
    """
    rows = []
    layers = sorted(_kernel_layers(model, layer_names),
                    key=lambda layer: _natural(_name(layer)))
    for layer in layers:
        name = _name(layer)
        if name not in reference:
            raise ValueError(
                f"The reference snapshot has no kernel for {name}; take it "
                "with kernel_snapshot on the same architecture and "
                "layer_names."
            )
        start = _as_matrix(reference[name])
        delta = _as_matrix(_kernel(layer)) - start
        rows.append({
            "layer": name,
            "shape": list(delta.shape),
            "relative_change": float(
                np.linalg.norm(delta) / max(np.linalg.norm(start), 1e-30)),
            "rank": numerical_rank(delta),
            "energy_rank": energy_rank(delta),
        })
    return rows
