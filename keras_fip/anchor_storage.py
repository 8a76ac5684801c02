"""How a `Memory` keeps its anchors: outputs, top-k logits, or the weights.

FIP's invariance term compares the network's outputs f(x; w) on protected
inputs with the anchor f(x; w₀), the outputs of the network at the start of
the task. For a classifier the anchors are small (N samples × C classes);
for a generative language model they are N × S × V floats (S tokens per
sequence, V the vocabulary): 200 sequences of 512 tokens over a 256k
vocabulary are 26 billion floats. A memory therefore keeps its anchors in
one of three forms (`Memory(anchor_storage=...)`):

- `"outputs"`: the anchor outputs themselves, N · S · C float32 values.
  Exact, no extra compute.
- `"top_k"`: per output position, the indices and log-probabilities of the
  anchor's k most likely classes (N · S · k · 8 bytes). The distance is
  then taken between the *coarse-grained* (k + 1)-bin distributions: the k
  anchor classes and one bin for the tail, p_tail = 1 − Σ_{i∈top-k} p_i.
  Merging bins never increases a divergence (data processing), so
  D_top-k ≤ D_full; the gap is exactly the tail's share of it. For KL,
  D_full − D_top-k = q_tail · KL(q̃_tail ‖ p̃_tail) ≤ q_tail · max_{i∈tail}
  log(q̃_i / p̃_i) (q̃, p̃ the distributions renormalised on the tail); for
  Bhattacharyya, D_full − D_top-k ≤ √(p_tail q_tail) / BC_full (BC the
  Bhattacharyya coefficient Σ √(p_i q_i)). Both vanish as the tail mass
  q_tail → 0. Only the distribution distances (Bhattacharyya, KL) use it.
- `"snapshot"`: no outputs at all. The memory keeps a copy of the model's
  trainable weights w₀ at the start of the task (P float32 values) and the
  step recomputes f(x; w₀) on each memory batch: one extra forward pass
  per step, no backward. Under LoRA the trainable weights are the adapters
  (the frozen base is shared), so the snapshot is small. Exactly the stored
  anchors at the start of a task.

`"auto"` (the default) picks by size: stored outputs when they take at most
`max(AUTO_OUTPUT_BYTES, 4 P)` bytes (64 MiB, or the weight snapshot's own
size when that is larger), the snapshot otherwise. Every classifier gets
`"outputs"`; a language model over a large vocabulary gets `"snapshot"`.

The bytes a memory of capacity N holds (`Memory.nbytes`, tested against
`footprint_bytes`) are

    N · (Σ_inputs bytes per sample + 16) + 16 + anchors,

16 bytes per sample of bookkeeping (order, label, task id, anchored flag,
int32 each), 16 of counters, and anchors = 4 N Π(output shape) for
`"outputs"`, 8 N Π(output shape[:-1]) k for `"top_k"`, 4 P for
`"snapshot"` (P the model's trainable parameters; their own dtype's bytes).

Example:

```python
import numpy as np
from keras_fip import anchor_storage
anchor_storage.resolve("auto", capacity=200, output_shape=(512, 256_000),
                       trainable_parameters=2_000_000)      # 'snapshot'
logits = np.random.randn(2, 5, 50).astype("float32")
indices, log_probs = anchor_storage.encode_top_k(logits, k=8)
indices.shape                                               # (2, 5, 8)
```
"""

import math

import numpy as np
from keras import ops

STORAGES = ("auto", "outputs", "top_k", "snapshot")
#: Stored outputs up to this size are kept as they are under `"auto"`.
AUTO_OUTPUT_BYTES = 64 * 2**20
#: Bytes of one sample's bookkeeping (order, label, task id, flag).
PER_SAMPLE_BOOKKEEPING = 16
#: Bytes of the memory's counters (num_stored, num_active, cursor,
#: num_seen; int32 each).
COUNTERS = 16


def check_storage(storage, top_k):
    """Validates `anchor_storage` and `top_k`; returns them."""
    if storage not in STORAGES:
        raise ValueError(
            f"Unknown anchor_storage {storage!r}. Expected 'auto' (by size), "
            "'outputs' (the anchor outputs), 'top_k' (the k largest "
            "log-probabilities per position and the tail mass) or "
            "'snapshot' (a copy of the trainable weights; anchors "
            "recomputed each step)."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) \
            or top_k < 1:
        raise ValueError(f"`top_k` must be an integer >= 1; got {top_k!r}.")
    return storage, int(top_k)


def resolve(storage, capacity, output_shape, trainable_parameters):
    """The storage a memory uses: `storage`, or the rule's pick for `"auto"`.

    Args:
        storage: one of `STORAGES`.
        capacity: N, the samples the memory holds.
        output_shape: the model's per-sample output shape.
        trainable_parameters: P, the model's trainable parameter count.
    """
    if storage != "auto":
        return storage
    output_bytes = 4 * capacity * math.prod(output_shape)
    limit = max(AUTO_OUTPUT_BYTES, 4 * trainable_parameters)
    return "outputs" if output_bytes <= limit else "snapshot"


def anchor_shapes(storage, output_shape, top_k):
    """`[(name, per-sample shape, dtype)]` of the per-sample anchor arrays."""
    output_shape = tuple(output_shape)
    if storage == "outputs":
        return [("anchor_outputs", output_shape, "float32")]
    if storage == "top_k":
        if not output_shape or output_shape[-1] < 2:
            raise ValueError(
                "anchor_storage='top_k' keeps the largest classes of each "
                "output distribution; the outputs have per-sample shape "
                f"{output_shape}. Use anchor_storage='outputs'.")
        k = min(top_k, output_shape[-1])
        positions = output_shape[:-1]
        return [("anchor_indices", (*positions, k), "int32"),
                ("anchor_log_probs", (*positions, k), "float32")]
    return []


def footprint_bytes(storage, capacity, input_bytes_per_sample, output_shape,
                    top_k=32, weight_bytes=0):
    """The bytes a memory holds, by the formula of the module docstring.

    Args:
        storage: a resolved storage (`"outputs"`, `"top_k"`, `"snapshot"`).
        capacity: N.
        input_bytes_per_sample: bytes of one stored input (all arrays).
        output_shape: the model's per-sample output shape.
        top_k: k, for `"top_k"`.
        weight_bytes: bytes of the trainable weights, for `"snapshot"`.
    """
    fixed = capacity * (input_bytes_per_sample + PER_SAMPLE_BOOKKEEPING)
    fixed += COUNTERS
    if storage == "snapshot":
        return fixed + weight_bytes
    anchors = sum(capacity * math.prod(shape) * np.dtype(dtype).itemsize
                  for _, shape, dtype in anchor_shapes(storage, output_shape,
                                                       top_k))
    return fixed + anchors


def _log_probabilities(outputs, from_logits):
    outputs = np.asarray(outputs, "float64")
    if not from_logits:
        return np.log(np.maximum(outputs, 1e-12))
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def encode_top_k(outputs, k, from_logits=True):
    """The k most likely classes per position and their log-probabilities.

    Host side (NumPy), when a memory is anchored.

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


def encode(storage, outputs, top_k, from_logits=True):
    """The per-sample anchor arrays of `outputs` for `storage` (host)."""
    if storage == "outputs":
        return [np.asarray(outputs, "float32")]
    if storage == "top_k":
        return list(encode_top_k(outputs, top_k, from_logits))
    return []


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
