"""Experience replay (ER)."""

import keras
from keras import ops

from keras_fip.baselines.losses import cross_entropy
from keras_fip.continual_optimizer import _check_number
from keras_fip.memory_optimizer import MemoryOptimizer


@keras.saving.register_keras_serializable(package="keras_fip")
class ReplayOptimizer(MemoryOptimizer):
    """Experience replay: also fit the memory's stored labels each step.

    d = ∇L + α ∇ CE(f(x_mem), y_mem). Chaudhry et al., "On Tiny Episodic
    Memories in Continual Learning" (2019): a memory batch as large as the
    new-task batch and equal weight (α = 1), the defaults here. Uses the same
    class-balanced `Memory` as FIP, so budgets match.

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: a `keras_fip.Memory` (default capacity 200).
        memory_batch_size: replayed samples per step (default 32).
        replay_weight: α ≥ 0.
        from_logits: whether the model outputs logits.
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.ReplayOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=32,
                 replay_weight=1.0, from_logits=True, name=None, **kwargs):
        super().__init__(inner_optimizer, memory=memory,
                         memory_batch_size=memory_batch_size, name=name,
                         **kwargs)
        self.replay_weight = _check_number("replay_weight", replay_weight)
        self.from_logits = bool(from_logits)

    def _memory_loss(self, outputs, anchors, labels):
        return cross_entropy(outputs, labels, self.from_logits)

    def _combine(self, grads, memory_grads):
        return [
            g + ops.cast(self.replay_weight, g.dtype) * m
            for g, m in zip(grads, memory_grads)
        ]

    def get_config(self):
        config = super().get_config()
        config.update(replay_weight=self.replay_weight,
                      from_logits=self.from_logits)
        return config
