"""`TopKAnchors`: per output position, the anchor's k most likely classes.

For each position the indices and log-probabilities of the anchor's k most
likely classes (N · S · k · 8 bytes). The distance is then taken between
the *coarse-grained* (k + 1)-bin distributions: the k anchor classes and
one bin for the tail, p_tail = 1 − Σ_{i∈top-k} p_i. Merging bins never
increases a divergence (data processing), so D_top-k ≤ D_full; the gap is
exactly the tail's share of it. For KL, D_full − D_top-k = q_tail ·
KL(q̃_tail ‖ p̃_tail) ≤ q_tail · max_{i∈tail} log(q̃_i / p̃_i) (q̃, p̃ the
distributions renormalised on the tail); for Bhattacharyya, D_full −
D_top-k ≤ √(p_tail q_tail) / BC_full (BC the Bhattacharyya coefficient
Σ √(p_i q_i)). Both vanish as the tail mass q_tail → 0. Only the
distribution distances (Bhattacharyya, KL) use it.

Example:

```python
import numpy as np
from keras_fip.anchors import top_k
logits = np.random.randn(2, 5, 50).astype("float32")
indices, log_probs = top_k.encode_top_k(logits, k=8)
indices.shape                                               # (2, 5, 8)
```
"""

import numpy as np
from keras import ops

from keras_fip.anchors.base import Anchor
from keras_fip.anchors.outputs import StoredAnchors
from keras_fip.anchors.outputs import head_suffix

#: The distances that compare distributions (what top-k anchors can feed).
DISTRIBUTION_DISTANCES = ("bhattacharyya", "kl")


def _log_probabilities(outputs, from_logits):
    """log p over the last axis, in float32.

    From logits z: log p_i = (z_i − max z) − log Σ_j exp(z_j − max z)
    (shifted, so exp never overflows); from probabilities: log max(p,
    1e-12). float32 throughout: anchoring encodes one chunk at a time
    (`keras_fip.anchors.taking.output_chunks`), and float64 would double
    the chunk's host memory for digits the float32 variables drop anyway.
    """
    outputs = np.asarray(outputs, "float32")
    if not from_logits:
        return np.log(np.maximum(outputs, np.float32(1e-12)))
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def encode_top_k(outputs, k, from_logits=True):
    """The k most likely classes per position and their log-probabilities.

    Host side (NumPy, float32), one chunk of outputs at a time when a
    memory is anchored.

    Args:
        outputs: anchor outputs, shape `(batch, ..., C)`.
        k: classes kept per position (at most C).
        from_logits: whether `outputs` are logits or probabilities.

    Returns:
        `(indices, log_probs)`, shape `(batch, ..., min(k, C))`, int32 and
        float32, in decreasing probability.
    """
    log_probs = _log_probabilities(outputs, from_logits)
    k = min(k, log_probs.shape[-1])
    top = np.argpartition(-log_probs, k - 1, axis=-1)[..., :k]
    values = np.take_along_axis(log_probs, top, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    top = np.take_along_axis(top, order, axis=-1)
    values = np.take_along_axis(values, order, axis=-1)
    return top.astype("int32"), values.astype("float32")


def _tail(probabilities):
    """1 − Σ p over the last axis, kept ≥ 1e-12 (float32 round-off)."""
    return ops.maximum(1.0 - ops.sum(probabilities, axis=-1, keepdims=True),
                       1e-12)


def coarse_grained(outputs, indices, log_probs, from_logits=True):
    """The (k + 1)-bin distributions the top-k distance compares.

    In the compiled step. p are the current outputs' probabilities at the
    anchor's top-k classes and their tail 1 − Σ p_top; q the anchor's.

    Args:
        outputs: current outputs, shape `(batch, ..., C)`.
        indices: the anchor's top-k classes, `(batch, ..., k)`.
        log_probs: their anchor log-probabilities, `(batch, ..., k)`.
        from_logits: whether `outputs` are logits or probabilities.

    Returns:
        `(p, q)`, probabilities of shape `(batch, ..., k + 1)`; q constant.
    """
    outputs = ops.cast(outputs, "float32")
    probabilities = ops.softmax(outputs, axis=-1) if from_logits else outputs
    p_top = ops.take_along_axis(probabilities, ops.cast(indices, "int32"),
                                axis=-1)
    q_top = ops.stop_gradient(ops.exp(ops.cast(log_probs, "float32")))
    p = ops.concatenate([p_top, _tail(p_top)], axis=-1)
    q = ops.concatenate([q_top, _tail(q_top)], axis=-1)
    return p, q


class TopKAnchor(Anchor):
    """A head's top-k anchor: `(indices, log_probs)` per position."""

    def __init__(self, indices, log_probs):
        super().__init__(None)
        self.indices = indices
        self.log_probs = log_probs

    def distance(self, distance, outputs, from_logits):
        p, q = coarse_grained(outputs, self.indices, self.log_probs,
                              from_logits=from_logits)
        return distance(p, q, from_logits=False)


class TopKAnchors(StoredAnchors):
    """Keeps the k largest log-probabilities per position (and the tail)."""

    name = "top_k"
    full_outputs = False

    def variable_specs(self, output_shapes):
        specs = []
        for h, shape in enumerate(output_shapes):
            shape = tuple(shape)
            if not shape or shape[-1] < 2:
                raise ValueError(
                    "anchor_storage='top_k' keeps the largest classes of "
                    "each output distribution; an output head has "
                    f"per-sample shape {shape}. Use anchor_storage="
                    "'outputs'.")
            k = min(self.top_k, shape[-1])
            suffix = head_suffix(h, len(output_shapes))
            specs += [(f"anchor_indices{suffix}", (*shape[:-1], k), "int32"),
                      (f"anchor_log_probs{suffix}", (*shape[:-1], k),
                       "float32")]
        return specs

    def check_distance(self, distance):
        if distance not in DISTRIBUTION_DISTANCES:
            raise ValueError(
                "Memory(anchor_storage='top_k') keeps the anchor's largest "
                "class probabilities, which only the distribution "
                f"distances use; the distance is {distance!r}. Use "
                "distance='bhattacharyya' or 'kl' (or, with distance='auto', "
                "class_distance='bhattacharyya'), or "
                "anchor_storage='outputs' / 'snapshot'.")

    def encode(self, outputs, head, from_logits):
        del head
        return list(encode_top_k(outputs, self.top_k, from_logits))

    def batch(self, leaves, inputs, memory, forward):
        return [TopKAnchor(ops.stop_gradient(indices),
                           ops.stop_gradient(log_probs))
                for indices, log_probs in zip(leaves[::2], leaves[1::2])]
