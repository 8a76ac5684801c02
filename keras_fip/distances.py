"""Output-space distances between a network and its anchor.

Each distance takes the current outputs `y` of the network on a batch of
protected inputs and the stored anchor outputs `y_anchor` (the network at the
start of the task or path) and returns one non-negative distance per output
position, over the last (class) axis: shape `(batch,)` for a classifier's
`(batch, num_classes)`, `(batch, sequence)` for a language model's
per-token distributions `(batch, sequence, vocabulary)`. The anchor side is a
constant: no gradient flows into it. `per_sample` reduces the positions of a
sequence to one distance per sample, padded positions excluded.

Around the anchor every distance here is a quadratic form in the weight
step θ, so minimising it keeps θᵀ g θ small for a metric g:

- `"bhattacharyya"` (the reference code's choice, Raghavan et al. 2024):
  D = −log Σ_c sqrt(p_c q_c + eps), with p = softmax(y), q = softmax(y_anchor)
  and eps = max(1e-10, 1e-3 · min q) over the batch. Near the anchor
  D ≈ ⅛ Σ_c δp_c² / q_c, so g is ⅛ of the softmax Fisher metric.
- `"squared_l2"`: D = Σ_c (y_c − y_anchor_c)² on the raw outputs (logits),
  whose metric is g = JᵀJ, the paper's text.
- `"logit_l2"`: the same on class scores' logits: a head that outputs
  probabilities (softmax) is compared by its logits log p. g = JᵀJ of the
  logits; the default for class scores since 0.7 (`keras_fip.heads`).
- `"kl"`: D = KL(q ‖ p) = Σ_c q_c (log q_c − log p_c); g = ½ Fisher metric.
- `"bernoulli_bhattacharyya"` and `"bernoulli_kl"`: for sigmoid units (one
  binary label, or several independent labels), each unit u is its own
  Bernoulli distribution p_u = σ(y_u); D = Σ_u D_Bernoulli(p_u, q_u). A
  softmax over independent units would compare the wrong distribution.

Every distance is computed in float32, whatever the model's dtype policy
(`"bfloat16"`, `"mixed_float16"`): the outputs are cast first.

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

DISTANCES = ("bhattacharyya", "squared_l2", "kl", "bernoulli_bhattacharyya",
             "bernoulli_kl", "logit_l2")
#: The distances that compare class distributions over the last axis.
CLASS_DISTANCES = ("bhattacharyya", "kl")
#: The distances for class scores: distributions, or their logits.
CLASS_SCORE_DISTANCES = CLASS_DISTANCES + ("logit_l2",)
#: The smallest probability `"logit_l2"` takes the log of (Keras's epsilon).
PROBABILITY_FLOOR = 1e-7


def _probabilities(y, from_logits):
    return ops.softmax(y, axis=-1) if from_logits else y


def _log_probabilities(y, from_logits):
    if from_logits:
        return ops.log_softmax(y, axis=-1)
    return ops.log(ops.maximum(y, 1e-30))


def _floored(distance):
    """`distance` with its value floored at 0 and its gradient unchanged.

    Round-off (and the reference code's eps) can put a distance a hair
    below 0 near the anchor; the value a user reads is never negative,
    while the step follows the distance's own gradient.
    """
    return _valued(distance, distance)


def _valued(differentiated, value):
    """`value` forward (floored at 0), `differentiated`'s gradient back."""
    return differentiated + ops.stop_gradient(
        ops.maximum(value, 0.0) - differentiated)


def _from_hellinger(root_p, root_q):
    """−log Σ √(p q), exactly near the anchor.

    Σ √(p q) = 1 − h with h = ½ Σ (√p − √q)² (the squared Hellinger
    distance), so D = −log1p(−h): accurate to float32's relative precision
    however small h is, where 1 − Σ √(p q) would round to 0 below 6e-8.
    """
    h = 0.5 * ops.sum(ops.square(root_p - root_q), axis=-1)
    return -ops.log1p(-ops.minimum(h, 1.0 - 1e-7))


def bhattacharyya(y, y_anchor, from_logits=True):
    """Bhattacharyya distance per sample, as the FIP reference code runs it.

    Args:
        y: current outputs, shape `(batch, ..., num_classes)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: whether `y` and `y_anchor` are logits (softmax is
            applied) or already probabilities.

    Returns:
        Tensor of shape `y.shape[:-1]`: −log Σ_c sqrt(p_c q_c + eps), eps
        = max(1e-10, 1e-3 · min q) over the batch (the reference code) for
        `(batch, num_classes)` outputs. For per-token outputs `(batch,
        sequence, vocabulary)` it is computed in log space without eps,
        −log Σ_c exp((log p_c + log q_c) / 2): V · sqrt(eps) of the
        reference rule would swamp near-uniform tokens. D is then 0 at the
        anchor (to float round-off).

        The reference rule's eps makes −log Σ_c sqrt(p_c q_c + eps)
        negative near the anchor (about −0.005 per sample for 10
        near-uniform classes). The *value* returned is therefore the exact
        Bhattacharyya distance −log Σ_c sqrt(p_c q_c) (≥ 0, 0 only at the
        anchor), computed as −log(1 − h) from the squared Hellinger
        distance h = ½ Σ_c (√p_c − √q_c)² so that it stays exact near the
        anchor, while the *gradient*, and so every step, is the reference
        rule's (eps keeps it finite where a probability vanishes). The same
        holds for per-token outputs.
    """
    if len(y.shape) > 2:
        # Per-token distributions over a vocabulary, in log space with no
        # eps: the reference rule's eps, summed over V classes, would swamp
        # near-uniform tokens. −log Σ_c exp((log p_c + log q_c) / 2).
        log_p = _log_probabilities(ops.cast(y, "float32"), from_logits)
        log_q = ops.stop_gradient(
            _log_probabilities(ops.cast(y_anchor, "float32"), from_logits))
        reference = -ops.logsumexp(0.5 * (log_p + log_q), axis=-1)
        return _valued(reference, _from_hellinger(
            ops.exp(0.5 * log_p), ops.exp(0.5 * log_q)))
    p = _probabilities(ops.cast(y, "float32"), from_logits)
    q = ops.stop_gradient(
        _probabilities(ops.cast(y_anchor, "float32"), from_logits)
    )
    eps = ops.maximum(1e-10, 1e-3 * ops.min(q))
    reference = -ops.log(ops.sum(ops.sqrt(p * q + eps), axis=-1))
    return _valued(reference, _from_hellinger(ops.sqrt(p), ops.sqrt(q)))


def squared_l2(y, y_anchor, from_logits=True):
    """Squared Euclidean distance on the raw outputs (metric g = JᵀJ).

    Args:
        y: current outputs, shape `(batch, ..., C)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: unused; the distance is taken on the outputs as they
            are. Present so all distances share one signature.

    Returns:
        Tensor of shape `y.shape[:-1]`: Σ_c (y_c − y_anchor_c)².
    """
    del from_logits
    diff = ops.cast(y, "float32") - ops.stop_gradient(
        ops.cast(y_anchor, "float32")
    )
    return ops.sum(ops.square(diff), axis=-1)


def logit_l2(y, y_anchor, from_logits=True):
    """Squared Euclidean distance between class-score logits (g = JᵀJ).

    Args:
        y: current class scores, shape `(batch, ..., num_classes)`.
        y_anchor: anchor class scores, same shape (held constant).
        from_logits: whether the scores are logits (compared as they are)
            or probabilities (compared as their logits log p, p floored at
            `PROBABILITY_FLOOR`).

    Returns:
        Tensor of shape `y.shape[:-1]`: Σ_c (z_c − z_anchor_c)².
    """
    if not from_logits:
        y = ops.log(ops.maximum(ops.cast(y, "float32"), PROBABILITY_FLOOR))
        y_anchor = ops.log(ops.maximum(ops.cast(y_anchor, "float32"),
                                       PROBABILITY_FLOOR))
    return squared_l2(y, y_anchor)


def kl(y, y_anchor, from_logits=True):
    """Kullback–Leibler divergence KL(anchor ‖ current) per sample.

    Args:
        y: current outputs, shape `(batch, ..., num_classes)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: whether the outputs are logits or probabilities.

    Returns:
        Tensor of shape `y.shape[:-1]`: Σ_c q_c (log q_c − log p_c).
    """
    y = ops.cast(y, "float32")
    y_anchor = ops.stop_gradient(ops.cast(y_anchor, "float32"))
    if from_logits:
        log_p = ops.log_softmax(y, axis=-1)
        log_q = ops.log_softmax(y_anchor, axis=-1)
    else:
        log_p = ops.log(ops.maximum(y, 1e-12))
        log_q = ops.log(ops.maximum(y_anchor, 1e-12))
    return _floored(ops.sum(ops.exp(log_q) * (log_q - log_p), axis=-1))


def _bernoulli_log_probabilities(y, from_logits):
    """`(log p, log(1 − p))` per unit, float32, stable for logits."""
    y = ops.cast(y, "float32")
    if from_logits:
        return ops.log_sigmoid(y), ops.log_sigmoid(-y)
    y = ops.clip(y, 1e-7, 1.0 - 1e-7)
    return ops.log(y), ops.log(1.0 - y)


def bernoulli_bhattacharyya(y, y_anchor, from_logits=True):
    """Bhattacharyya distance between independent Bernoulli units, summed.

    D = Σ_u −log(√(p_u q_u) + √((1 − p_u)(1 − q_u))), p = σ(y), q = σ(y_anchor),
    computed in log space; ≥ 0, and 0 exactly at the anchor. Near the anchor
    D ≈ ⅛ Σ_u δp_u² / (q_u (1 − q_u)): ⅛ of the Bernoulli Fisher metric.

    Args:
        y: current outputs, shape `(batch, ..., units)` (logits, or
            probabilities with `from_logits=False`).
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: whether the outputs are logits (sigmoid is applied).

    Returns:
        Tensor of shape `y.shape[:-1]`.
    """
    log_p, log_not_p = _bernoulli_log_probabilities(y, from_logits)
    log_q, log_not_q = (ops.stop_gradient(t) for t in
                        _bernoulli_log_probabilities(y_anchor, from_logits))
    coefficient = ops.logaddexp(0.5 * (log_p + log_q),
                                0.5 * (log_not_p + log_not_q))
    return ops.sum(_floored(-coefficient), axis=-1)


def bernoulli_kl(y, y_anchor, from_logits=True):
    """KL(anchor ‖ current) between independent Bernoulli units, summed.

    D = Σ_u q_u (log q_u − log p_u) + (1 − q_u)(log(1 − q_u) − log(1 − p_u)).

    Args:
        y: current outputs, shape `(batch, ..., units)`.
        y_anchor: anchor outputs, same shape (held constant).
        from_logits: whether the outputs are logits.

    Returns:
        Tensor of shape `y.shape[:-1]`.
    """
    log_p, log_not_p = _bernoulli_log_probabilities(y, from_logits)
    log_q, log_not_q = (ops.stop_gradient(t) for t in
                        _bernoulli_log_probabilities(y_anchor, from_logits))
    per_unit = (ops.exp(log_q) * (log_q - log_p)
                + ops.exp(log_not_q) * (log_not_q - log_not_p))
    return ops.sum(_floored(per_unit), axis=-1)


_BY_NAME = {
    "bhattacharyya": bhattacharyya,
    "squared_l2": squared_l2,
    "kl": kl,
    "bernoulli_bhattacharyya": bernoulli_bhattacharyya,
    "bernoulli_kl": bernoulli_kl,
    "logit_l2": logit_l2,
}


def get(identifier):
    """Returns the distance function named `identifier`.

    Args:
        identifier: one of `DISTANCES`.

    Raises:
        ValueError: for any other name.
    """
    if identifier not in _BY_NAME:
        raise ValueError(
            f"Unknown distance {identifier!r}. Expected one of "
            f"{', '.join(repr(d) for d in DISTANCES)}."
        )
    return _BY_NAME[identifier]


TOKEN_REDUCTIONS = ("mean", "sum")


def per_sample(per_position, mask=None, token_reduction="mean"):
    """One distance per sample from the distances of its output positions.

    For a classifier (`per_position` of shape `(batch,)`) the distances are
    returned as they are. For sequence outputs (`(batch, sequence)`, one
    distance per token) with a padding mask m (1 = a real token, 0 =
    padding):

    - `token_reduction="mean"`: D(x) = Σ_t m_t D_t / max(Σ_t m_t, 1), the
      mean over the sequence's real tokens (a sequence weighs like one
      classified sample, whatever its length);
    - `"sum"`: D(x) = Σ_t m_t D_t (a sequence weighs by its length).

    Padded positions contribute exactly nothing, to the value and to its
    gradient. Without a mask every position counts. Outputs with more
    position axes (an image's pixels) are reduced over all of them the
    same way.

    Args:
        per_position: distances, shape `(batch, ...)`.
        mask: `None` or a 0/1 (or boolean) tensor of `per_position`'s shape.
        token_reduction: `"mean"` (default) or `"sum"`.

    Returns:
        Tensor of shape `(batch,)`.
    """
    if len(per_position.shape) == 1:
        return per_position
    batch = ops.shape(per_position)[0]
    flat = ops.reshape(per_position, (batch, -1))
    if mask is None:
        weights = ops.ones_like(flat)
    else:
        weights = ops.reshape(ops.cast(mask, "float32"), (batch, -1))
        flat = ops.where(weights > 0, flat, ops.zeros_like(flat))
    total = ops.sum(flat * weights, axis=-1)
    if token_reduction == "sum":
        return total
    return total / ops.maximum(ops.sum(weights, axis=-1), 1.0)


def check_token_reduction(token_reduction):
    """Raises for a `token_reduction` other than `"mean"` or `"sum"`."""
    if token_reduction not in TOKEN_REDUCTIONS:
        raise ValueError(
            f"Unknown token_reduction {token_reduction!r}. Expected 'mean' "
            "(each sequence's mean over its real tokens) or 'sum' (the sum "
            "over them).")
    return token_reduction


def check_output_shape(distance, shape):
    """Raises a clear error when `distance` cannot use outputs of `shape`.

    Args:
        distance: a distance name.
        shape: the model output shape, batch axis included.

    Raises:
        ValueError: a class distribution is needed (`"bhattacharyya"`,
            `"kl"`) but the outputs have no class axis besides the batch
            axis, or fewer than two classes; or the outputs have no axis
            besides the batch axis (any distance).
    """
    shape = tuple(shape)
    if distance in CLASS_SCORE_DISTANCES:
        if len(shape) < 2 or (shape[-1] is not None and shape[-1] < 2):
            raise ValueError(
                f"distance={distance!r} compares class scores and "
                "needs model outputs of shape (batch, num_classes) or, for "
                "a language model, (batch, sequence, vocabulary), with at "
                "least 2 classes on the last axis; the model outputs shape "
                f"{shape}. For sigmoid units (binary or multi-label) use "
                "distance='bernoulli_bhattacharyya'; for real values "
                "'squared_l2'; or leave distance='auto' to follow the loss."
            )
    elif len(shape) < 2:
        raise ValueError(
            f"distance={distance!r} needs model outputs with a batch axis "
            f"and at least one more axis; the model outputs shape {shape}. "
            "Reshape the output to (batch, 1)."
        )
