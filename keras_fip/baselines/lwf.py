"""Learning without Forgetting (LwF)."""

import keras

from keras_fip.baselines.losses import distillation
from keras_fip.continual_optimizer import _check_number
from keras_fip.memory_optimizer import MemoryOptimizer
from keras_fip.memory_optimizer import _read_int


@keras.saving.register_keras_serializable(package="keras_fip")
class LwFOptimizer(MemoryOptimizer):
    """LwF: distill the previous network's outputs on the new task's inputs.

    d = ∇L + α ∇ T² KL(softmax(z_old/T) ‖ softmax(f(x)/T)), x the *new*
    task's inputs and z_old the network's outputs on them when the task
    began. No old-task data is kept: at each task start the memory is
    refilled with a reservoir sample of the new task's inputs (its capacity
    bounds that sample) and anchored on the network as it is. Li & Hoiem,
    "Learning without Forgetting" (2017): T = 2, α = 1, the defaults here.
    The distillation batch is drawn alongside each step rather than being
    the step's own batch (an optimizer does not see the batch).

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: the `keras_fip.Memory` holding the new task's inputs.
        memory_batch_size: distillation samples per step (default 32).
        alpha: weight of the distillation term (≥ 0).
        temperature: T > 0.
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.LwFOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=32,
                 alpha=1.0, temperature=2.0, name=None, **kwargs):
        super().__init__(inner_optimizer, memory=memory,
                         memory_batch_size=memory_batch_size, name=name,
                         **kwargs)
        self.alpha = _check_number("alpha", alpha)
        self.temperature = _check_number("temperature", temperature,
                                         positive=True)

    def _memory_loss(self, outputs, anchors, labels):
        return self.alpha * distillation(outputs, anchors, self.temperature)

    def _combine(self, grads, memory_grads):
        return [g + m for g, m in zip(grads, memory_grads)]

    def begin_task(self, model, task_id, x, y=None):
        self.memory.build(model, x)
        self.bind(model)
        if _read_int(self.memory.anchor_task) == task_id:
            return  # resuming: keep the teacher outputs
        self.memory.clear()
        self.memory.add(x, None, task_id=task_id)
        self.memory.consolidate(model)
        if task_id == 0:
            self.memory.num_active.assign(0)  # no previous network yet
        self.memory.anchor_task.assign(task_id)

    def end_task(self, model, task_id, x, y=None):
        """LwF keeps nothing of a finished task."""

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, temperature=self.temperature)
        return config
