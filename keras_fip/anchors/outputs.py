"""`OutputAnchors`: the anchor outputs themselves (exact, no extra compute).

Per sample and head, Π(head's output shape) float32 values.
"""

import numpy as np
from keras import ops

from keras_fip.anchors.base import Anchor
from keras_fip.anchors.base import AnchorStorage
from keras_fip.anchors.taking import not_finite
from keras_fip.anchors.taking import output_chunks
from keras_fip.anchors.taking import raise_not_finite
from keras_fip.arrays import as_numpy


def head_suffix(head, num_heads):
    """The suffix of a head's anchor variable names ("" for one head)."""
    return "" if num_heads == 1 else f"_{head}"


class StoredAnchors(AnchorStorage):
    """Base of the storages that keep per-sample arrays computed from the
    outputs (`encode`); taking them runs the model on the stored inputs."""

    def encode(self, outputs, head, from_logits):
        """The per-sample arrays of one head's outputs (host side)."""
        raise NotImplementedError

    def take(self, memory, model, rows, batch_size):
        """Anchors `rows` chunk by chunk (`output_chunks`).

        Each chunk's outputs are encoded and written into one host array
        per anchor variable (its current values, or zeros when every
        stored sample is re-anchored), assigned once at the end: peak
        host memory is those arrays plus one chunk's outputs. Nothing is
        assigned when an output is not finite.
        """
        rows = np.asarray(rows)
        values = self._new_values(memory, rows)
        bad = 0
        inputs = memory.stored_inputs(rows)
        for start, heads in output_chunks(model, inputs, batch_size):
            bad += not_finite(heads)
            if bad:
                continue  # counted for the message; nothing is written
            at = rows[start:start + len(heads[0])]
            encoded = [array for head, outputs in enumerate(heads)
                       for array in self.encode(outputs, head,
                                                memory.from_logits)]
            for target, new in zip(values, encoded):
                target[at] = new
        raise_not_finite(bad, len(rows))
        for variable, new in zip(memory.anchor_variables, values):
            variable.assign(new)

    @staticmethod
    def _new_values(memory, rows):
        """Host arrays to write `rows`' anchors into, one per variable."""
        every = len(rows) >= memory.size and np.array_equal(
            np.sort(rows), np.arange(memory.size))
        if every:  # rows past the stored ones are zeros (`Memory._write`)
            return [np.zeros(v.shape, v.dtype)
                    for v in memory.anchor_variables]
        return [np.array(as_numpy(v)) for v in memory.anchor_variables]


class OutputAnchors(StoredAnchors):
    """Keeps f(x; w₀) for every stored sample and head."""

    name = "outputs"

    def variable_specs(self, output_shapes):
        return [(f"anchor_outputs{head_suffix(h, len(output_shapes))}",
                 tuple(shape), "float32")
                for h, shape in enumerate(output_shapes)]

    def encode(self, outputs, head, from_logits):
        del head, from_logits
        return [np.asarray(outputs, "float32")]

    def batch(self, leaves, inputs, memory, forward):
        return [Anchor(ops.stop_gradient(leaf)) for leaf in leaves]
