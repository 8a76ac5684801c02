"""Experience replay (ER)."""

import keras
from keras import ops

from keras_fip.baselines.losses import cross_entropy
from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.memory import memory_or_default
from keras_fip.terms.memory_term import MemoryTerm


@keras.saving.register_keras_serializable(package="keras_fip")
class ReplayTerm(MemoryTerm):
    """d ← d + α ∇ CE(f(x_mem), y_mem): fit the stored labels too.

    Args:
        replay_weight: α ≥ 0 (default 5; with 16 replayed samples per step,
            chosen on the validation splits of four streams,
            `benchmarks/select_default.py`; 0.2 had α = 1 and 32).
        from_logits: whether the model outputs logits.

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.baselines.ReplayTerm(0.5)],
        memory=keras_fip.Memory(100))
    ```
    """

    def __init__(self, replay_weight=5.0, from_logits=True):
        self.replay_weight = check_number("replay_weight", replay_weight)
        self.from_logits = bool(from_logits)

    def loss(self, outputs, anchors, labels):
        return cross_entropy(outputs, labels, self.from_logits)

    def combine(self, direction, memory_grads):
        return [d + ops.cast(self.replay_weight, d.dtype) * m
                for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"replay_weight": self.replay_weight,
                "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_fip")
class ReplayOptimizer(ContinualOptimizer):
    """Experience replay: also fit the memory's stored labels each step.

    d = ∇L + α ∇ CE(f(x_mem), y_mem). Chaudhry et al., "On Tiny Episodic
    Memories in Continual Learning" (2019): a memory batch as large as the
    new-task batch and equal weight (α = 1), the defaults here. Uses the same
    class-balanced `Memory` as FIP, so budgets match. A preset: a
    `ContinualOptimizer` with the one term `ReplayTerm`.

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: a `keras_fip.Memory` (default capacity 200).
        memory_batch_size: replayed samples per step (default 16).
        replay_weight: α ≥ 0 (default 5; with 16 replayed samples per step,
            chosen on the validation splits of four streams,
            `benchmarks/select_default.py`; 0.2 had α = 1 and 32).
        from_logits: whether the model outputs logits.
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.ReplayOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=16,
                 replay_weight=5.0, from_logits=True, name=None, **kwargs):
        replay = ReplayTerm(replay_weight, from_logits)
        super().__init__(
            inner_optimizer, terms=[replay],
            memory=memory_or_default(memory),
            memory_batch_size=memory_batch_size, name=name, **kwargs)
        self._replay = replay

    def get_config(self):
        return self._preset_config(self._replay)
