"""`AnchorStorage`: how a memory keeps the anchors of its samples.

The *anchor* of a protected input x is f(x; w₀), the outputs of the network
w₀ that the invariance term keeps the current network f(x; w) near (the
network at the start of the task, or when x was stored). A storage decides
three things, and nothing outside `keras_fip.anchors` needs to know which
storage a memory uses:

- what the memory holds: per-sample arrays (`variable_specs`, one
  variable of `capacity` rows each) and/or a copy of the trainable weights
  (`weight_specs`);
- how anchors are *taken*, host side and in chunks (`take`: run the model
  on stored inputs and encode its outputs, or copy its weights);
- what a batch of anchors is *in the compiled step* (`batch`): for each
  output head an `Anchor` that can measure a distance D(f(x; w), anchor)
  per output position.

A model may return a structure of outputs (a dict or list of heads); the
memory's spec lists each head's per-sample shape, and every storage keeps
one anchor per head.

Subclass it in one new module of `keras_fip/anchors/` and register the
class in `keras_fip.anchors.STORAGE_CLASSES` to add a storage.
"""

import math

import numpy as np
from keras import ops

from keras_fip.arrays import as_numpy


class Anchor:
    """One head's anchor for a batch of protected inputs (in the step).

    Args:
        outputs: the anchor outputs f(x; w₀) of the head, or `None` when the
            storage keeps only a compressed form of them.
    """

    def __init__(self, outputs=None):
        self._outputs = outputs

    @property
    def outputs(self):
        """The full anchor outputs (a tensor held constant)."""
        if self._outputs is None:
            raise ValueError(
                f"{type(self).__name__} keeps no full anchor outputs.")
        return self._outputs

    def distance(self, distance, outputs, from_logits):
        """D(outputs, anchor) per output position.

        Args:
            distance: a function of `keras_fip.distances`.
            outputs: the head's current outputs, `(batch, ..., C)`.
            from_logits: whether the head's outputs are logits.
        """
        return distance(outputs, self.outputs, from_logits=from_logits)


class AnchorStorage:
    """Base class of the anchor storages (see the module docstring).

    Args:
        top_k: k, for storages that keep the k largest classes.
    """

    #: The name given to `Memory(anchor_storage=...)`.
    name = None
    #: Whether each sample's anchor may come from another network (the
    #: outputs it had when it was stored: `anchors="stored"`, DER).
    per_sample = True
    #: Whether `Anchor.outputs` gives the full anchor outputs (a term
    #: comparing logits directly, DER++, needs them).
    full_outputs = True

    def __init__(self, top_k=32):
        self.top_k = top_k

    # Allocation --------------------------------------------------------
    def variable_specs(self, output_shapes):
        """`[(name, per-sample shape, dtype)]`, over every head in order.

        Args:
            output_shapes: the per-sample shape of each output head.
        """
        return []

    def weight_specs(self, model):
        """`[{"shape", "dtype"}]` of the weights the storage copies."""
        return []

    def anchor_bytes(self, capacity, output_shapes, weight_bytes):
        """The bytes the anchors take (`keras_fip.anchors.footprint_bytes`).

        Args:
            capacity: N, the samples the memory holds.
            output_shapes: the per-sample shape of each head.
            weight_bytes: the bytes of the trainable weights.
        """
        del weight_bytes
        return sum(capacity * math.prod(shape) * np.dtype(dtype).itemsize
                   for _, shape, dtype in self.variable_specs(output_shapes))

    # Checks ------------------------------------------------------------
    def check_distance(self, distance):
        """Raises if anchors of this storage cannot measure `distance`."""

    # Host side ---------------------------------------------------------
    def take(self, memory, model, rows, batch_size):
        """Anchors the stored samples `rows` on `model` as it is now.

        Raises `ValueError` (leaving the memory as it was) when the model's
        outputs or weights are not finite.
        """
        raise NotImplementedError

    def anchors_of_rows(self, memory, model, rows, inputs):
        """The `Anchor` of every head for the stored samples `rows`, host
        side (for diagnostics such as `PathRecorder`'s drift).

        Args:
            memory: the memory.
            model: the protected model (for storages that recompute).
            rows: indices of stored samples.
            inputs: their inputs, as the model's call takes them.
        """
        del model
        leaves = [ops.convert_to_tensor(as_numpy(v)[rows])
                  for v in memory.anchor_variables]
        return self.batch(leaves, inputs, memory, forward=None)

    # In the step ---------------------------------------------------------
    def batch(self, leaves, inputs, memory, forward):
        """The `Anchor` of every head for a memory batch.

        Args:
            leaves: the batch's per-sample anchor arrays, in the order of
                `variable_specs`.
            inputs: the batch's inputs.
            memory: the memory (for its weight copies).
            forward: `forward(weights, inputs)`, the model's outputs (a
                structure of heads) at other trainable weights, in
                inference mode.

        Returns:
            A list of `Anchor`, one per output head.
        """
        raise NotImplementedError
