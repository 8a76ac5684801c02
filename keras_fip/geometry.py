"""The metric tensor of a network's outputs, without forming it.

FIP's step θ* = argmin θᵀ g θ + β θᵀ∇L (‖θ‖ ≤ ε) is defined by the metric
g of the protected outputs f(x; w) over a batch of inputs x:

    g = Σ_x J_xᵀ H_x J_x,      J_x = ∂f(x; w)/∂w  (outputs × weights),

with H = I for the **logit** metric (JᵀJ, the Hessian of ½‖f − f₀‖², i.e.
of the `"squared_l2"` distance up to a factor 2) and H = diag(p) − ppᵀ,
p = softmax(f), for the **softmax Fisher** metric. At the anchor the Hessian
of the KL distance with respect to the logits is exactly this Fisher, and
that of the Bhattacharyya distance −log Σ √(p q) is a quarter of it
(D ≈ ⅛ δzᵀ F δz), so FIP's default invariance term is g/4 to second order.

`metric_vector_product` computes g·v by a Jacobian-vector product u = J v
(forward mode, `keras_fip.backend.jvp`) followed by a vector-Jacobian
product Jᵀ(H u) (reverse mode): one forward-mode and one reverse pass over
the batch, never the weights × weights matrix. `reduction="sum"` sums over
the inputs (as above), `"mean"` divides by their number.

Example:

```python
import keras, numpy as np, keras_fip
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
x = np.random.rand(5, 4).astype("float32")
v = [np.ones(w.shape, "float32") for w in model.trainable_weights]
gv = keras_fip.geometry.metric_vector_product(model, x, v, metric="fisher")
assert [g.shape for g in gv] == [w.shape for w in model.trainable_weights]
```
"""

import numpy as np
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip.arrays import as_numpy

METRICS = ("logit", "fisher")
REDUCTIONS = ("sum", "mean")


def _check(metric, reduction):
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; expected one of "
                         f"{METRICS} (JᵀJ, or the softmax Fisher).")
    if reduction not in REDUCTIONS:
        raise ValueError(f"Unknown reduction {reduction!r}; expected 'sum' "
                         "or 'mean' over the inputs.")


def output_metric(outputs, u, metric):
    """H u per sample: u itself (logit) or p ⊙ u − p (pᵀu) (Fisher)."""
    if metric == "logit":
        return u
    p = ops.softmax(ops.cast(outputs, "float32"), axis=-1)
    u = ops.cast(u, "float32")
    return p * u - p * ops.sum(p * u, axis=-1, keepdims=True)


def metric_vector_product_values(model, values, state, x, vector,
                                 metric="logit", reduction="sum"):
    """g·v at the weights `values` (tensors; usable inside compiled steps).

    Args:
        model: the Keras model (called with `stateless_call`).
        values: the model's trainable weights, in `trainable_variables`
            order.
        state: the values of its non-trainable variables.
        x: a batch of inputs.
        vector: v, a list shaped like `values`.
        metric: `"logit"` (JᵀJ) or `"fisher"` (Jᵀ(diag p − ppᵀ)J).
        reduction: `"sum"` or `"mean"` over the inputs.

    Returns:
        g·v as a list of tensors shaped like `values`.
    """
    _check(metric, reduction)

    def outputs_of(vals):
        out, _ = model.stateless_call(vals, state, x, training=False)
        return ops.cast(out, "float32")

    outputs, u = fip_backend.jvp(outputs_of, values, vector)
    hu = ops.stop_gradient(output_metric(outputs, u, metric))
    if reduction == "mean":
        hu = hu / ops.cast(ops.shape(outputs)[0], "float32")
    _, gv = fip_backend.value_and_grad(
        lambda vals: ops.sum(outputs_of(vals) * hu), values)
    return [ops.cast(g, ops.dtype(v)) for g, v in zip(gv, values)]


def metric_vector_product(model, x, vector, metric="logit",
                          reduction="sum"):
    """g·v for `model` at its current weights on the inputs `x` (NumPy).

    Args:
        model: a built Keras model with one output tensor.
        x: the protected inputs (a batch; any structure the model takes).
        vector: v, one array per `model.trainable_variables`.
        metric: `"logit"` (JᵀJ) or `"fisher"` (Jᵀ(diag p − ppᵀ)J).
        reduction: `"sum"` (default) or `"mean"` over the inputs.

    Returns:
        g·v, a list of NumPy arrays shaped like the trainable weights.
    """
    variables = model.trainable_variables
    if len(vector) != len(variables) or any(
            tuple(ops.shape(v)) != tuple(w.shape)
            for v, w in zip(vector, variables)):
        raise ValueError(
            "`vector` needs one array per trainable variable of the model, "
            f"shaped like it: {[tuple(w.shape) for w in variables]}.")
    values = [w.value for w in variables]
    state = [w.value for w in model.non_trainable_variables]
    vector = [ops.convert_to_tensor(v, dtype=w.dtype)
              for v, w in zip(vector, variables)]
    gv = metric_vector_product_values(model, values, state, x, vector,
                                      metric, reduction)
    return [as_numpy(g) for g in gv]


def _flatten(arrays):
    return np.concatenate([np.asarray(a, "float64").ravel() for a in arrays])


def _unflatten(flat, shapes):
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[start:start + size].reshape(shape).astype("float32"))
        start += size
    return out


def top_eigenvalues(model, x, k=10, metric="logit", reduction="sum",
                    iterations=None, seed=0):
    """The `k` largest eigenvalues of g by Lanczos, reorthogonalised.

    Each Lanczos iteration is one `metric_vector_product`; every new
    vector is orthogonalised against all earlier ones (full
    reorthogonalisation, in float64), so the Ritz values match the
    top of g's spectrum without spurious copies.

    Args:
        model: a built Keras model.
        x: the protected inputs.
        k: how many eigenvalues.
        metric: `"logit"` or `"fisher"`.
        reduction: `"sum"` or `"mean"` over the inputs.
        iterations: Lanczos steps (default `min(dim, 2k + 20)`).
        seed: seed of the start vector.

    Returns:
        The `k` largest eigenvalues, descending (NumPy, float64).
    """
    shapes = [tuple(w.shape) for w in model.trainable_variables]
    dim = sum(int(np.prod(s)) for s in shapes)
    steps = min(dim, iterations or 2 * k + 20)
    if not 0 < k <= steps:
        raise ValueError(f"`k` must lie in [1, {steps}]; got {k}.")
    q = np.random.default_rng(seed).normal(size=dim)
    basis = [q / np.linalg.norm(q)]
    alphas, betas = [], []
    for j in range(steps):
        w = _flatten(metric_vector_product(
            model, x, _unflatten(basis[j], shapes), metric, reduction))
        alphas.append(float(basis[j] @ w))
        for b in basis:  # full reorthogonalisation (twice is enough)
            w -= (b @ w) * b
        for b in basis:
            w -= (b @ w) * b
        beta = float(np.linalg.norm(w))
        if j == steps - 1 or beta < 1e-10 * max(abs(alphas[0]), 1e-30):
            break
        betas.append(beta)
        basis.append(w / beta)
    size = len(alphas)
    tridiagonal = (np.diag(alphas) + np.diag(betas[:size - 1], 1)
                   + np.diag(betas[:size - 1], -1))
    ritz = np.sort(np.linalg.eigvalsh(tridiagonal))[::-1]
    return ritz[:k]
