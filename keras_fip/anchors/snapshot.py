"""`SnapshotAnchors`: a copy of the trainable weights w₀; anchors recomputed.

No outputs at all: the memory keeps a copy of the model's trainable weights
at the start of the task (P values in their own dtype) and the step
recomputes f(x; w₀) on each memory batch: one extra forward pass per step,
no backward. Under LoRA the trainable weights are the adapters (the frozen
base is shared), so the snapshot is small. Exactly the stored anchors at
the start of a task; every sample shares the one network w₀, so it cannot
keep the outputs a sample had when it was stored (`anchors="stored"`).
"""

import math

import numpy as np
from keras import ops
from keras import tree

from keras_fip import backend as fip_backend
from keras_fip.anchors.base import Anchor
from keras_fip.anchors.base import AnchorStorage
from keras_fip.anchors.taking import check_finite_weights
from keras_fip.arrays import as_numpy


class SnapshotAnchors(AnchorStorage):
    """Keeps w₀, the trainable weights at the task's start."""

    name = "snapshot"
    per_sample = False

    def weight_specs(self, model):
        return [{"shape": list(v.shape), "dtype": v.dtype, "path": v.path}
                for v in model.trainable_variables]

    def anchor_bytes(self, capacity, output_shapes, weight_bytes):
        return weight_bytes

    def take(self, memory, model, rows, batch_size):
        del rows, batch_size
        weights = model.trainable_variables
        expected = [tuple(w["shape"]) for w in memory.weight_specs]
        if [tuple(v.shape) for v in weights] != expected:
            raise ValueError(
                "The model's trainable weights changed since this memory was "
                f"built ({len(expected)} then, {len(weights)} now; e.g. "
                "LoRA enabled or layers frozen afterwards): a weight "
                "snapshot is taken of one set of weights. Build a new "
                "Memory for the new set.")
        # On device: each copy keeps its weight's layout, and no weight
        # is gathered to the host (each is reduced to 0, or NaN where it
        # is not finite, for the check).
        floats = [v.value for v in weights if _is_float(v)]
        finite = as_numpy(_compiled_finite(floats)) if floats else []
        check_finite_weights([np.where(finite, 0.0, np.nan)])
        for copy, weight in zip(memory.weight_copies, weights):
            copy.assign(ops.copy(weight.value))

    def batch(self, leaves, inputs, memory, forward):
        outputs = forward([v.value for v in memory.weight_copies], inputs)
        return [Anchor(ops.stop_gradient(o)) for o in tree.flatten(outputs)]

    def anchors_of_rows(self, memory, model, rows, inputs):
        state = [v.value for v in model.non_trainable_variables]

        def forward(weights, x):
            outputs, _ = model.stateless_call(weights, state, x,
                                              training=False)
            return outputs

        return self.batch([], inputs, memory, forward)


def _finite(values):
    """Whether each array is finite everywhere (one bool each)."""
    return ops.stack([ops.all(ops.isfinite(v)) for v in values])


# One compiled reduction (JAX keeps an executable per shape for eager ops).
_compiled_finite = fip_backend.compile_function(_finite)


def _is_float(variable):
    return "float" in str(variable.dtype)


def weight_bytes(specs):
    """The bytes of weights described by `weight_specs`."""
    return sum(math.prod(s["shape"]) * np.dtype(s["dtype"]).itemsize
               for s in specs)
