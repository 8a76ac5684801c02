"""Averaged Gradient Episodic Memory (A-GEM)."""

import keras
from keras import ops

from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.memory import memory_or_default
from keras_fip.memory_losses import cross_entropy
from keras_fip.terms.memory_term import MemoryTerm
from keras_fip.tree_math import dot


@keras.saving.register_keras_serializable(package="keras_fip")
class GradientProjectionTerm(MemoryTerm):
    """d ← d − (dᵀg_ref / g_refᵀg_ref) g_ref when dᵀg_ref < 0.

    g_ref = ∇ CE on a memory batch: the direction never has a negative dot
    product with it.

    Args:
        from_logits: whether the model outputs logits (default True).

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.baselines.GradientProjectionTerm()],
        memory=keras_fip.Memory(100))
    ```
    """

    def __init__(self, from_logits=True):
        self.from_logits = bool(from_logits)

    def loss(self, outputs, anchors, labels):
        return cross_entropy(outputs, labels, self.from_logits)

    def combine(self, direction, memory_grads):
        overlap = dot(direction, memory_grads)
        scale = ops.where(
            overlap < 0.0,
            overlap / ops.maximum(dot(memory_grads, memory_grads), 1e-12),
            0.0,
        )
        return [d - ops.cast(scale, d.dtype) * m
                for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_fip")
class AGEMOptimizer(ContinualOptimizer):
    """A-GEM: never step against the memory's gradient.

    With g = ∇L and g_ref = ∇ CE on a memory batch: if gᵀg_ref < 0 the step
    is g − (gᵀg_ref / g_refᵀg_ref) g_ref, else g; so the direction never has
    a negative dot product with g_ref. Chaudhry et al., "Efficient Lifelong
    Learning with A-GEM" (ICLR 2019), which samples a reference batch of up
    to 256 from the memory; the default 64 here is our choice for a
    200-sample memory. A preset over `GradientProjectionTerm`.

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: a `keras_fip.Memory` (default capacity 200).
        memory_batch_size: reference samples per step (default 64).
        from_logits: whether the model outputs logits (default True).
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.AGEMOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=64,
                 from_logits=True, name=None, **kwargs):
        projection = GradientProjectionTerm(from_logits)
        super().__init__(
            inner_optimizer, terms=[projection],
            memory=memory_or_default(memory),
            memory_batch_size=memory_batch_size, name=name, **kwargs)
        self._projection = projection

    def get_config(self):
        return self._preset_config(self._projection)
