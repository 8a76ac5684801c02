"""`TaskBoundary`: the memory's life cycle around one task's `fit`."""

import keras
import numpy as np
from keras import ops

from keras_fip.evaluation import find_fip_optimizer


def _read_int(variable):
    return int(ops.convert_to_numpy(variable))


class TaskBoundary(keras.callbacks.Callback):
    """Anchors the memory when a task starts and stores it when it ends.

    Pass one to each task's `fit`. When training begins it builds the
    `FIPOptimizer`'s memory if needed, binds the model to the optimizer and,
    if the memory is not yet anchored for `task_id`, *consolidates*: the
    network as it is now becomes the anchor w₀ of every stored sample. After
    each epoch the memory's sampling order is reshuffled. When training
    ends, the task's samples join the memory (class-balanced) and are
    anchored too. Resuming a task (a second `fit` with the same `task_id`,
    or after loading a `.keras` file) keeps the existing anchor.

    Args:
        task_id: integer id of the task being trained (0, 1, ...).
        x: the task's training inputs (array or dict of arrays).
        y: the task's integer labels, or `None` for a reservoir memory.
        batch_size: batch size of the anchor forward passes.

    Example:

    ```python
    model.fit(x_b, y_b, epochs=30,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, x_b, y_b)])
    ```
    """

    def __init__(self, task_id, x, y=None, batch_size=256):
        super().__init__()
        if isinstance(task_id, bool) or not isinstance(
            task_id, (int, np.integer)
        ) or task_id < 0:
            raise ValueError(
                f"`task_id` must be an integer >= 0; got {task_id!r}."
            )
        self.task_id = int(task_id)
        self.x = x
        self.y = y
        self.batch_size = batch_size

    def _optimizer(self, model):
        fip = find_fip_optimizer(getattr(model, "optimizer", None))
        if fip is None:
            raise ValueError(
                "TaskBoundary manages the memory of a "
                "keras_fip.FIPOptimizer, but the model is compiled with "
                f"{type(getattr(model, 'optimizer', None)).__name__}. "
                "Compile with optimizer=keras_fip.FIPOptimizer(...)."
            )
        return fip

    def _check_labels(self, memory):
        if self.y is None:
            return
        num_outputs = memory.spec["outputs"]["shape"]
        y = np.asarray(self.y)
        if y.ndim == 2 and y.shape[1] > 1:
            return  # one-hot: the loss checks the width
        if len(num_outputs) != 1 or y.size == 0:
            return
        head = num_outputs[0]
        if y.min() < 0 or y.max() >= head:
            bad = y[(y < 0) | (y >= head)]
            raise ValueError(
                f"Task {self.task_id} has labels outside the model's "
                f"{head}-way head (for example {bad[:3].tolist()}); labels "
                f"must lie in [0, {head}). In class-incremental learning "
                "allocate the whole head up front (one output per class of "
                "every task)."
            )

    def on_train_begin(self, logs=None):
        model = self.model
        fip = self._optimizer(model)
        memory = fip.memory
        memory.build(model, self.x)
        self._check_labels(memory)
        fip.bind(model)
        if _read_int(memory.anchor_task) != self.task_id:
            memory.consolidate(model, batch_size=self.batch_size)
            memory.anchor_task.assign(self.task_id)
        if fip.traced_without_memory:
            # The step was traced before the memory existed: trace again.
            if getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)
            fip.traced_without_memory = False

    def on_epoch_end(self, epoch, logs=None):
        memory = self._optimizer(self.model).memory
        memory.shuffle(salt=epoch + 1)

    def on_train_end(self, logs=None):
        model = self.model
        memory = self._optimizer(model).memory
        if _read_int(memory.committed_task) != self.task_id:
            memory.add(self.x, self.y, task_id=self.task_id)
            memory.consolidate(model, batch_size=self.batch_size)
            memory.committed_task.assign(self.task_id)
