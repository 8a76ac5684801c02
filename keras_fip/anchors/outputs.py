"""`OutputAnchors`: the anchor outputs themselves (exact, no extra compute).

Per sample and head, Π(head's output shape) float32 values.
"""

import numpy as np
from keras import ops

from keras_fip.anchors.base import Anchor
from keras_fip.anchors.base import AnchorStorage
from keras_fip.anchors.taking import check_finite
from keras_fip.anchors.taking import head_outputs
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
        inputs = memory.stored_inputs(rows)
        heads = head_outputs(model, inputs, batch_size)
        check_finite(heads)
        encoded = [array for head, outputs in enumerate(heads)
                   for array in self.encode(outputs, head,
                                            memory.from_logits)]
        for variable, new in zip(memory.anchor_variables, encoded):
            values = as_numpy(variable).copy()
            values[rows] = new
            variable.assign(values)


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
