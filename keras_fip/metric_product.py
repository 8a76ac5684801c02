"""The metric tensor's product with a vector, g·v, without forming g.

The part of `keras_fip.geometry` that FIP's train step uses
(`keras_fip.step.Step.metric_product`, the exact step `MetricSolve` and
`PathRecorder`'s metric length): for the protected outputs f(x; w) of a
batch of inputs x,

    g = Σ_x J_xᵀ H_x J_x,      J_x = ∂f(x; w)/∂w,

with H = I for the `"logit"` metric (JᵀJ) and H = diag(p) − ppᵀ,
p = softmax(f), for the `"fisher"` metric. g·v is a Jacobian-vector
product u = J v (forward mode, `keras_fip.backend.jvp`) followed by a
vector-Jacobian product Jᵀ(H u) (reverse mode): one forward-mode and one
reverse pass over the batch, never the weights × weights matrix. The
spectrum tools built on it are in `keras_fip.spectrum`.

Example:

```python
import keras, numpy as np, keras_fip
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
x = np.random.rand(5, 4).astype("float32")
v = [np.ones(w.shape, "float32") for w in model.trainable_weights]
gv = keras_fip.metric_product.metric_vector_product(model, x, v)
assert [g.shape for g in gv] == [w.shape for w in model.trainable_weights]
```
"""

from keras import ops

from keras_fip import backend as fip_backend
from keras_fip.arrays import as_numpy

#: The metrics g can be: JᵀJ, or the softmax Fisher Jᵀ(diag p − ppᵀ)J.
METRICS = ("logit", "fisher")
#: How g sums over the inputs.
REDUCTIONS = ("sum", "mean")


def check_metric(metric, reduction):
    """Refuses an unknown `metric` or `reduction` (see `METRICS`, `REDUCTIONS`).

    Raises:
        ValueError: `metric` is not in `METRICS` or `reduction` not in
            `REDUCTIONS`.
    """
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
                                 metric="logit", reduction="sum",
                                 positions=None):
    """g·v at the weights `values` (tensors; usable inside compiled steps).

    Args:
        model: the Keras model (called with `stateless_call`).
        values: the model's trainable weights, in `trainable_variables`
            order.
        state: the values of its non-trainable variables.
        x: a batch of inputs.
        vector: v, a list shaped like `values` (like `values[p]` for each
            `p` of `positions` when given).
        metric: `"logit"` (JᵀJ) or `"fisher"` (Jᵀ(diag p − ppᵀ)J).
        reduction: `"sum"` or `"mean"` over the inputs.
        positions: optional indices into `values`: g is then the block
            g_SS of those weights S (v is zero on the others, which stay
            at `values`). Default `None`: all weights.

    Returns:
        g·v as a list of tensors shaped like `vector`.
    """
    check_metric(metric, reduction)
    positions = list(range(len(values)) if positions is None else positions)
    chosen = [values[p] for p in positions]

    def outputs_of(vals):
        full = list(values)
        for p, value in zip(positions, vals):
            full[p] = value
        out, _ = model.stateless_call(full, state, x, training=False)
        return ops.cast(out, "float32")

    outputs, u = fip_backend.jvp(outputs_of, chosen, vector)
    hu = ops.stop_gradient(output_metric(outputs, u, metric))
    if reduction == "mean":
        hu = hu / ops.cast(ops.shape(outputs)[0], "float32")
    _, gv = fip_backend.value_and_grad(
        lambda vals: ops.sum(outputs_of(vals) * hu), chosen)
    return [ops.cast(g, ops.dtype(v)) for g, v in zip(gv, chosen)]


def variable_positions(model, variables=None):
    """Indices into `model.trainable_variables` of `variables` (all: None).

    Raises:
        ValueError: `variables` is empty, repeats a variable, or holds one
            that is not a trainable variable of `model`.
    """
    trainable = model.trainable_variables
    if variables is None:
        return list(range(len(trainable)))
    positions = []
    for variable in variables:
        found = [i for i, w in enumerate(trainable) if w is variable]
        if not found:
            name = getattr(variable, "path", repr(variable))
            raise ValueError(
                f"`variables` must hold trainable variables of the model; "
                f"{name} is not one of them.")
        positions.append(found[0])
    if not positions:
        raise ValueError("`variables` is empty; pass None for all weights.")
    if len(set(positions)) != len(positions):
        raise ValueError("`variables` names a variable twice.")
    return positions


def variable_shapes(model, positions):
    """The shapes of the trainable variables at `positions`."""
    trainable = model.trainable_variables
    return [tuple(trainable[p].shape) for p in positions]


def _check_arrays(arrays, shapes, name):
    if len(arrays) != len(shapes) or any(
            tuple(ops.shape(a)) != s for a, s in zip(arrays, shapes)):
        which = ("of the model (of `variables` when given)"
                 if name == "vector" else "of the model")
        raise ValueError(f"`{name}` needs one array per trainable variable "
                         f"{which}, shaped like it: {shapes}.")


def model_values(model, weights=None):
    """`(trainable values, non-trainable values)` of `model`, as tensors.

    Args:
        model: a built Keras model.
        weights: optional arrays to use instead of the trainable weights
            (one per trainable variable, shaped like it); default `None`,
            the model's current weights.
    """
    variables = model.trainable_variables
    if weights is None:
        values = [w.value for w in variables]
    else:
        _check_arrays(weights, [tuple(w.shape) for w in variables], "weights")
        values = [ops.convert_to_tensor(a, dtype=w.dtype)
                  for a, w in zip(weights, variables)]
    return values, [w.value for w in model.non_trainable_variables]


def metric_vector_product(model, x, vector, metric="logit",
                          reduction="sum", variables=None, weights=None):
    """g·v for `model` on the inputs `x` (NumPy in and out).

    Args:
        model: a built Keras model with one output tensor.
        x: the protected inputs (a batch; any structure the model takes).
        vector: v, one array per `model.trainable_variables` (per entry of
            `variables` when given).
        metric: `"logit"` (JᵀJ) or `"fisher"` (Jᵀ(diag p − ppᵀ)J).
        reduction: `"sum"` (default) or `"mean"` over the inputs.
        variables: optional list of some of the model's trainable
            variables: the product is then g_SS·v for the block of g on
            those weights (v zero elsewhere). Default `None`: all.
        weights: optional values of all trainable variables at which g is
            taken (one array each); default the model's current weights.
            The model itself is not changed.

    Returns:
        g·v, a list of NumPy arrays shaped like `vector`.
    """
    positions = variable_positions(model, variables)
    shapes = variable_shapes(model, positions)
    _check_arrays(vector, shapes, "vector")
    values, state = model_values(model, weights)
    vector = [ops.convert_to_tensor(v, dtype=values[p].dtype)
              for v, p in zip(vector, positions)]
    gv = metric_vector_product_values(model, values, state, x, vector,
                                      metric, reduction, positions)
    return [as_numpy(g) for g in gv]
