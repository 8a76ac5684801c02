"""Learning without Forgetting (LwF)."""

import keras

from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import renamed_attribute
from keras_fip.memory import memory_or_default
from keras_fip.memory_losses import distillation
from keras_fip.terms.memory_term import MemoryTerm


@keras.saving.register_keras_serializable(package="keras_fip")
class DistillationTerm(MemoryTerm):
    """d ← d + α ∇ T² KL(softmax(z_old/T) ‖ softmax(f(x)/T)).

    Args:
        weight: α ≥ 0, the weight of the distillation term (default 1.0;
            `alpha` is its deprecated 0.5 name).
        temperature: T > 0 (default 2.0).

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.baselines.DistillationTerm(temperature=3.0)],
        holds="current_task",
        memory=keras_fip.Memory(100))
    ```
    """

    alpha = renamed_attribute("alpha", "weight", since="0.6")

    @renamed_arguments(since="0.6", alpha="weight")
    def __init__(self, weight=1.0, temperature=2.0):
        self.weight = check_number("weight", weight)
        self.temperature = check_number("temperature", temperature,
                                        positive=True)

    def loss(self, outputs, anchors, labels):
        return self.weight * distillation(outputs, anchors, self.temperature)

    def combine(self, direction, memory_grads):
        return [d + m for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"weight": self.weight, "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="keras_fip")
class LwFOptimizer(ContinualOptimizer):
    """LwF: distill the previous network's outputs on the new task's inputs.

    d = ∇L + α ∇ T² KL(softmax(z_old/T) ‖ softmax(f(x)/T)), x the *new*
    task's inputs and z_old the network's outputs on them when the task
    began. No old-task data is kept: at each task start the memory is
    refilled with a reservoir sample of the new task's inputs (its capacity
    bounds that sample) and anchored on the network as it is
    (`holds="current_task"`). Li & Hoiem, "Learning without Forgetting"
    (2017): T = 2, α = 1, the defaults here. The distillation batch is drawn
    alongside each step rather than being the step's own batch (an
    optimizer does not see the batch). A preset over `DistillationTerm`.

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: the `keras_fip.Memory` holding the new task's inputs
            (default capacity 200).
        memory_batch_size: distillation samples per step (default 32).
        weight: α ≥ 0, the weight of the distillation term (default 1.0;
            `alpha` is its deprecated 0.5 name).
        temperature: T > 0 (default 2.0).
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.LwFOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    alpha = renamed_attribute("alpha", "weight", since="0.6")

    @renamed_arguments(since="0.6", alpha="weight")
    def __init__(self, inner_optimizer, memory=None, memory_batch_size=32,
                 weight=1.0, temperature=2.0, name=None, **kwargs):
        distillation = DistillationTerm(weight, temperature)
        super().__init__(
            inner_optimizer, terms=[distillation],
            memory=memory_or_default(memory),
            memory_batch_size=memory_batch_size, holds="current_task",
            name=name, **kwargs)
        self._distillation = distillation

    @property
    def weight(self):
        """α, the weight of the distillation term."""
        return self._distillation.weight

    @property
    def temperature(self):
        return self._distillation.temperature

    def get_config(self):
        return self._preset_config(self._distillation)
