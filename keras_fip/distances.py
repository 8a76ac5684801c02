"""Output-space distances between a network and its anchor.

Each distance takes the current outputs `y` of the network on a batch of
protected inputs and the stored anchor outputs `y_anchor` (the network at the
start of the task or path) and returns one non-negative distance per sample,
shape `(batch,)`. The anchor side is a constant: no gradient flows into it.

Around the anchor every distance here is a quadratic form in the weight
step θ, so minimising it keeps θᵀ g θ small for a metric g:

- `"bhattacharyya"` (the reference code's choice, Raghavan et al. 2024):
  D = −log Σ_c sqrt(p_c q_c + eps), with p = softmax(y), q = softmax(y_anchor)
  and eps = max(1e-10, 1e-3 · min q) over the batch. Near the anchor
  D ≈ ⅛ Σ_c δp_c² / q_c, so g is ⅛ of the softmax Fisher metric.
- `"squared_l2"`: D = Σ_c (y_c − y_anchor_c)² on the raw outputs (logits),
  whose metric is g = JᵀJ, the paper's text.
- `"kl"`: D = KL(q ‖ p) = Σ_c q_c (log q_c − log p_c); g = ½ Fisher metric.

Example:

```python
import numpy as np
from keras_fip import distances
y = np.array([[2.0, 0.0, -1.0]], "float32")
distances.bhattacharyya(y, y)            # ≈ 0: the anchor itself
distances.get("kl")(y + 1.0, y)          # ≈ 0: softmax is shift-invariant
```
"""

from keras import ops

DISTANCES = ("bhattacharyya", "squared_l2", "kl")


def _probabilities(y, from_logits):
    return ops.softmax(y, axis=-1) if from_logits else y


def bhattacharyya(y, y_anchor, from_logits=True):
    """Bhattacharyya distance per sample, as the FIP reference code runs it.

    Args:
        y: current outputs, shape `(batch, num_classes)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: whether `y` and `y_anchor` are logits (softmax is
            applied) or already probabilities.

    Returns:
        Tensor of shape `(batch,)`: −log Σ_c sqrt(p_c q_c + eps).
    """
    p = _probabilities(ops.cast(y, "float32"), from_logits)
    q = ops.stop_gradient(
        _probabilities(ops.cast(y_anchor, "float32"), from_logits)
    )
    eps = ops.maximum(1e-10, 1e-3 * ops.min(q))
    return -ops.log(ops.sum(ops.sqrt(p * q + eps), axis=-1))


def squared_l2(y, y_anchor, from_logits=True):
    """Squared Euclidean distance on the raw outputs (metric g = JᵀJ).

    Args:
        y: current outputs, shape `(batch, ...)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: unused; the distance is taken on the outputs as they
            are. Present so all distances share one signature.

    Returns:
        Tensor of shape `(batch,)`: Σ (y − y_anchor)² over non-batch axes.
    """
    del from_logits
    diff = ops.cast(y, "float32") - ops.stop_gradient(
        ops.cast(y_anchor, "float32")
    )
    diff = ops.reshape(diff, (ops.shape(diff)[0], -1))
    return ops.sum(ops.square(diff), axis=-1)


def kl(y, y_anchor, from_logits=True):
    """Kullback–Leibler divergence KL(anchor ‖ current) per sample.

    Args:
        y: current outputs, shape `(batch, num_classes)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: whether the outputs are logits or probabilities.

    Returns:
        Tensor of shape `(batch,)`: Σ_c q_c (log q_c − log p_c).
    """
    y = ops.cast(y, "float32")
    y_anchor = ops.stop_gradient(ops.cast(y_anchor, "float32"))
    if from_logits:
        log_p = ops.log_softmax(y, axis=-1)
        log_q = ops.log_softmax(y_anchor, axis=-1)
    else:
        log_p = ops.log(ops.maximum(y, 1e-12))
        log_q = ops.log(ops.maximum(y_anchor, 1e-12))
    return ops.sum(ops.exp(log_q) * (log_q - log_p), axis=-1)


_BY_NAME = {
    "bhattacharyya": bhattacharyya,
    "squared_l2": squared_l2,
    "kl": kl,
}


def get(identifier):
    """Returns the distance function named `identifier`.

    Args:
        identifier: one of `"bhattacharyya"`, `"squared_l2"`, `"kl"`.

    Raises:
        ValueError: for any other name.
    """
    if identifier not in _BY_NAME:
        raise ValueError(
            f"Unknown distance {identifier!r}. Expected one of "
            f"{', '.join(repr(d) for d in DISTANCES)}."
        )
    return _BY_NAME[identifier]


def check_output_shape(distance, shape):
    """Raises a clear error when `distance` cannot use outputs of `shape`.

    Args:
        distance: a distance name.
        shape: the model output shape, batch axis included.

    Raises:
        ValueError: a class distribution is needed (`"bhattacharyya"`,
            `"kl"`) but the outputs are not `(batch, num_classes)` with
            at least two classes, or outputs have no axis besides batch.
    """
    shape = tuple(shape)
    if distance in ("bhattacharyya", "kl"):
        if len(shape) != 2 or (shape[-1] is not None and shape[-1] < 2):
            raise ValueError(
                f"distance={distance!r} compares class distributions and "
                "needs model outputs of shape (batch, num_classes) with at "
                f"least 2 classes; the model outputs shape {shape}. Use "
                "distance='squared_l2' for other outputs, or protect a "
                "classifier head."
            )
    elif len(shape) < 2:
        raise ValueError(
            f"distance={distance!r} needs model outputs with a batch axis "
            f"and at least one more axis; the model outputs shape {shape}. "
            "Reshape the output to (batch, 1)."
        )
