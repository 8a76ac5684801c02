"""The reference-model KL penalty of language-model fine-tuning."""

import keras

from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.memory import Memory
from keras_fip.terms.invariance import Invariance


@keras.saving.register_keras_serializable(package="keras_fip")
class ReferenceKLOptimizer(ContinualOptimizer):
    """Fine-tuning with λ · KL(starting model ‖ model) on the *new* inputs.

    d = ∇L + λ ∇ mean_x mean_t KL(p₀(·|x_<t) ‖ p_w(·|x_<t)), x the new
    task's inputs and p₀ the network when the task began (the "reference
    model" penalty of RLHF and of KL-regularised fine-tuning). Unlike FIP
    it keeps no old data: at each task start the memory is refilled with
    the new task's inputs (`holds="current_task"`, as LwF), and by default
    it keeps no anchor outputs either, only a snapshot of the starting
    weights (`Memory(anchor_storage="snapshot")`: one extra forward pass
    per step). The penalty batch is drawn alongside each step rather than
    being the step's own batch (an optimizer does not see the batch). A
    preset over the `Invariance` term with `distance="kl"`,
    `reduction="mean"` and `weight=λ`; per-token KLs are averaged over each
    sequence's real tokens.

    Args:
        inner_optimizer: the optimizer to wrap.
        weight: λ ≥ 0, the penalty's weight (default 1.0).
        memory: the `keras_fip.Memory` that holds the new task's inputs
            (default: 2,000 samples with a weight snapshot).
        memory_batch_size: penalty samples per step (default 32).
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.ReferenceKLOptimizer(
        keras.optimizers.Adam(1e-3), weight=0.5)
    ```
    """

    def __init__(self, inner_optimizer, weight=1.0, memory=None,
                 memory_batch_size=32, name=None, **kwargs):
        penalty = Invariance("kl", "mean", weight=check_number(
            "weight", weight))
        if memory is None:
            memory = Memory(2000, anchor_storage="snapshot")
        super().__init__(
            inner_optimizer, terms=[penalty], memory=memory,
            memory_batch_size=memory_batch_size, holds="current_task",
            name=name, **kwargs)
        self._penalty = penalty

    @property
    def weight(self):
        return self._penalty.weight

    def get_config(self):
        config = self._base_config()
        config.update(weight=self.weight)
        return config
