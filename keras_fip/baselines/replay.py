"""Experience replay (ER)."""

import keras
from keras import ops

from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import renamed_attribute
from keras_fip.memory import memory_or_default
from keras_fip.memory_losses import cross_entropy
from keras_fip.terms.memory_term import MemoryTerm


@keras.saving.register_keras_serializable(package="keras_fip")
class ReplayTerm(MemoryTerm):
    """d ← d + α ∇ CE(f(x_mem), y_mem): fit the stored labels too.

    Args:
        weight: α ≥ 0, the term's weight (default 5.0; with 16 replayed
            samples per step, chosen on the validation splits of four
            streams, `benchmarks/select_default.py`; 0.2 had α = 1 and 32).
            `replay_weight` is its deprecated 0.5 name.
        from_logits: whether the model outputs logits (default True).

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.baselines.ReplayTerm(0.5)],
        memory=keras_fip.Memory(100))
    ```
    """

    replay_weight = renamed_attribute("replay_weight", "weight", since="0.6")

    @renamed_arguments(since="0.6", replay_weight="weight")
    def __init__(self, weight=5.0, from_logits=True):
        self.weight = check_number("weight", weight)
        self.from_logits = bool(from_logits)

    def loss(self, outputs, anchors, labels):
        return cross_entropy(outputs, labels, self.from_logits)

    def combine(self, direction, memory_grads):
        return [d + ops.cast(self.weight, d.dtype) * m
                for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"weight": self.weight, "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_fip")
class ReplayOptimizer(ContinualOptimizer):
    """Experience replay: also fit the memory's stored labels each step.

    d = ∇L + α ∇ CE(f(x_mem), y_mem). Chaudhry et al., "On Tiny Episodic
    Memories in Continual Learning" (2019), use a memory batch as large as
    the new-task batch and equal weight (α = 1; our 0.2 defaults, with 32
    samples); the defaults here, α = 5 on 16 replayed samples, were chosen
    on the validation splits of four streams. Uses the same class-balanced
    `Memory` as FIP, so budgets match. A preset: a `ContinualOptimizer`
    with the one term `ReplayTerm`.

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: a `keras_fip.Memory` (default capacity 200).
        memory_batch_size: replayed samples per step (default 16).
        weight: α ≥ 0, the replay term's weight (default 5.0; with 16
            replayed samples per step, chosen on the validation splits of
            four streams, `benchmarks/select_default.py`; 0.2 had α = 1
            and 32). `replay_weight` is its deprecated 0.5 name.
        from_logits: whether the model outputs logits (default True).
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.ReplayOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    @renamed_arguments(since="0.6", replay_weight="weight")
    def __init__(self, inner_optimizer, memory=None, memory_batch_size=16,
                 weight=5.0, from_logits=True, name=None, **kwargs):
        replay = ReplayTerm(weight, from_logits)
        super().__init__(
            inner_optimizer, terms=[replay],
            memory=memory_or_default(memory),
            memory_batch_size=memory_batch_size, name=name, **kwargs)
        self._replay = replay

    @property
    def weight(self):
        """α, the replay term's weight."""
        return self._replay.weight

    def get_config(self):
        return self._preset_config(self._replay)
