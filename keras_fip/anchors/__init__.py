"""Anchors: what the protected outputs are kept near, in one place.

FIP's invariance term compares the network's outputs f(x; w) on protected
inputs with the *anchor* f(x; w₀), the outputs of the network at the start
of the task. For a classifier the anchors are small (N samples × C
classes); for a generative language model they are N × S × V floats (S
tokens per sequence, V the vocabulary): 200 sequences of 512 tokens over a
256k vocabulary are 26 billion floats. A memory therefore keeps its
anchors in one of three forms (`Memory(anchor_storage=...)`), one module
each:

- `"outputs"` (`keras_fip.anchors.outputs`): the anchor outputs
  themselves, N · S · C float32 values. Exact, no extra compute.
- `"top_k"` (`keras_fip.anchors.top_k`): per output position, the indices
  and log-probabilities of the anchor's k most likely classes (N · S · k ·
  8 bytes); the distance is taken between coarse-grained (k + 1)-bin
  distributions, D_top-k ≤ D_full (the bound is in that module).
- `"snapshot"` (`keras_fip.anchors.snapshot`): no outputs at all; a copy
  of the trainable weights w₀ (P values), the step recomputing f(x; w₀) on
  each memory batch (one extra forward pass, no backward).

`"auto"` (the default) picks by size: stored outputs when they take at most
`max(AUTO_OUTPUT_BYTES, 4 P)` bytes (64 MiB, or the weight snapshot's own
size when that is larger), the snapshot otherwise. Every classifier gets
`"outputs"`; a language model over a large vocabulary gets `"snapshot"`.

A model with several outputs (a dict or list of heads) gets one anchor per
head in every storage.

Anchors are taken once per task boundary by a compiled inference pass in
chunks of `ANCHOR_BATCH_SIZE` (32) samples, each chunk encoded and written
to one host array, so taking them holds one chunk's outputs beyond the
anchors themselves, whatever N (`keras_fip.anchors.taking`).

The bytes a memory of capacity N holds (`Memory.nbytes`, tested against
`footprint_bytes`) are

    N · (Σ_inputs bytes per sample + 16) + 16 + anchors,

16 bytes per sample of bookkeeping (order, label, task id, anchored flag,
int32 each), 16 of counters, and anchors = 4 N Σ_heads Π(output shape) for
`"outputs"`, 8 N Σ_heads Π(output shape[:-1]) k for `"top_k"`, the weights'
bytes for `"snapshot"`.

To add a storage: subclass `keras_fip.anchors.base.AnchorStorage` in a new
module here and add the class to `STORAGE_CLASSES`.

Example:

```python
import numpy as np
from keras_fip import anchors
anchors.resolve("auto", capacity=200, output_shape=(512, 256_000),
                trainable_parameters=2_000_000)      # 'snapshot'
logits = np.random.randn(2, 5, 50).astype("float32")
indices, log_probs = anchors.encode_top_k(logits, k=8)
indices.shape                                        # (2, 5, 8)
```
"""

import math

import numpy as np

from keras_fip.anchors.base import Anchor
from keras_fip.anchors.base import AnchorStorage
from keras_fip.anchors.outputs import OutputAnchors
from keras_fip.anchors.snapshot import SnapshotAnchors
from keras_fip.anchors.taking import ANCHOR_BATCH_SIZE
from keras_fip.anchors.taking import anchor_memory
from keras_fip.anchors.top_k import TopKAnchors
from keras_fip.anchors.top_k import coarse_grained
from keras_fip.anchors.top_k import encode_top_k

#: The storages by name.
STORAGE_CLASSES = {cls.name: cls
                   for cls in (OutputAnchors, TopKAnchors, SnapshotAnchors)}
#: The names `Memory(anchor_storage=...)` takes.
STORAGES = ("auto", *STORAGE_CLASSES)
#: The storage of memories saved before storages existed (their specs
#: name none).
STORAGE_BEFORE_0_4 = OutputAnchors.name
#: Stored outputs up to this size are kept as they are under `"auto"`.
AUTO_OUTPUT_BYTES = 64 * 2**20
#: Bytes of one sample's bookkeeping (order, label, task id, flag).
PER_SAMPLE_BOOKKEEPING = 16
#: Bytes of the memory's counters (num_stored, num_active, cursor,
#: num_seen; int32 each).
COUNTERS = 16

__all__ = ["Anchor", "AnchorStorage", "OutputAnchors", "TopKAnchors",
           "SnapshotAnchors", "STORAGES", "AUTO_OUTPUT_BYTES",
           "ANCHOR_BATCH_SIZE", "anchor_memory", "check_storage",
           "coarse_grained", "encode_top_k", "footprint_bytes", "get",
           "resolve"]


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


def get(storage, top_k=32):
    """The `AnchorStorage` named `storage` (resolved, not `"auto"`)."""
    check_storage(storage, top_k)
    return STORAGE_CLASSES[storage](top_k=top_k)


def _shapes(output_shape):
    """One shape, or a list of per-head shapes, as a list of shapes."""
    output_shape = list(output_shape)
    if output_shape and isinstance(output_shape[0], (list, tuple)):
        return [tuple(s) for s in output_shape]
    return [tuple(output_shape)]


def resolve(storage, capacity, output_shape, trainable_parameters):
    """The storage a memory uses: `storage`, or the rule's pick for `"auto"`.

    Args:
        storage: one of `STORAGES`.
        capacity: N, the samples the memory holds.
        output_shape: the model's per-sample output shape (or a list of
            them, one per head).
        trainable_parameters: P, the model's trainable parameter count.
    """
    if storage != "auto":
        return storage
    output_bytes = 4 * capacity * sum(
        math.prod(s) for s in _shapes(output_shape))
    limit = max(AUTO_OUTPUT_BYTES, 4 * trainable_parameters)
    return "outputs" if output_bytes <= limit else "snapshot"


def footprint_bytes(storage, capacity, input_bytes_per_sample, output_shape,
                    top_k=32, weight_bytes=0):
    """The bytes a memory holds, by the formula of the module docstring.

    Args:
        storage: a resolved storage (`"outputs"`, `"top_k"`, `"snapshot"`).
        capacity: N.
        input_bytes_per_sample: bytes of one stored input (all arrays).
        output_shape: the model's per-sample output shape (or a list of
            them, one per head).
        top_k: k, for `"top_k"`.
        weight_bytes: bytes of the trainable weights, for `"snapshot"`.
    """
    fixed = capacity * (input_bytes_per_sample + PER_SAMPLE_BOOKKEEPING)
    fixed += COUNTERS
    return fixed + get(storage, top_k).anchor_bytes(
        capacity, _shapes(output_shape), weight_bytes)
