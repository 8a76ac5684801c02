"""Averaged Gradient Episodic Memory (A-GEM)."""

import keras
from keras import ops

from keras_fip.baselines.losses import cross_entropy
from keras_fip.memory_optimizer import MemoryOptimizer
from keras_fip.memory_optimizer import dot


@keras.saving.register_keras_serializable(package="keras_fip")
class AGEMOptimizer(MemoryOptimizer):
    """A-GEM: never step against the memory's gradient.

    With g = ∇L and g_ref = ∇ CE on a memory batch: if gᵀg_ref < 0 the step
    is g − (gᵀg_ref / g_refᵀg_ref) g_ref, else g; so the direction never has
    a negative dot product with g_ref. Chaudhry et al., "Efficient Lifelong
    Learning with A-GEM" (ICLR 2019), which samples a reference batch of up
    to 256 from the memory; the default 64 here is our choice for a
    200-sample memory.

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: a `keras_fip.Memory` (default capacity 200).
        memory_batch_size: reference samples per step (default 64).
        from_logits: whether the model outputs logits.
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.AGEMOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=64,
                 from_logits=True, name=None, **kwargs):
        super().__init__(inner_optimizer, memory=memory,
                         memory_batch_size=memory_batch_size, name=name,
                         **kwargs)
        self.from_logits = bool(from_logits)

    def _memory_loss(self, outputs, anchors, labels):
        return cross_entropy(outputs, labels, self.from_logits)

    def _combine(self, grads, memory_grads):
        overlap = dot(grads, memory_grads)
        scale = ops.where(
            overlap < 0.0,
            overlap / ops.maximum(dot(memory_grads, memory_grads), 1e-12),
            0.0,
        )
        return [g - ops.cast(scale, g.dtype) * m
                for g, m in zip(grads, memory_grads)]

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits)
        return config
