"""`TaskBoundary`: a continual optimizer's life cycle around one task."""

import keras
import numpy as np

from keras_fip.evaluation import find_continual_optimizer
from keras_fip.evaluation import model_inputs
from keras_fip.evaluation import predict_outputs


class TaskBoundary(keras.callbacks.Callback):
    """Tells the model's continual optimizer where a task starts and ends.

    Pass one to each task's `fit`. For `FIPOptimizer` (and the other memory
    methods): when training begins it builds the memory if needed, binds the
    model and, if the memory is not yet anchored for `task_id`,
    *consolidates*: the network as it is now becomes the anchor w₀ of every
    stored sample. After each epoch the memory's sampling order is
    reshuffled. When training ends, the task's samples join the memory
    (class-balanced) and are anchored too. Resuming a task (a second `fit`
    with the same `task_id`, or after loading a `.keras` file) keeps the
    existing anchor. Weight-space methods (EWC, SI) consolidate their
    importance at the end of the task instead.

    `x` is what `fit` is given: for a KerasHub task model with a
    `preprocessor` (raw strings, images) the memory stores the preprocessed
    features the model's forward pass takes.

    Args:
        task_id: integer id of the task being trained (0, 1, ...).
        x: the task's training inputs, as passed to `fit`.
        y: the task's integer labels, or `None` for a reservoir memory.

    Example:

    ```python
    model.fit(x_b, y_b, epochs=30,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, x_b, y_b)])
    ```
    """

    def __init__(self, task_id, x, y=None):
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
        self._features = None

    def _inputs(self, model):
        """The task's inputs as the model's forward pass takes them."""
        if self._features is None:
            self._features = model_inputs(model, self.x)
        return self._features

    def _optimizer(self, model):
        optimizer = find_continual_optimizer(getattr(model, "optimizer", None))
        if optimizer is None:
            raise ValueError(
                "TaskBoundary drives a keras_fip continual optimizer "
                "(FIPOptimizer, ReplayOptimizer, EWCOptimizer, ...), but the "
                "model is compiled with "
                f"{type(getattr(model, 'optimizer', None)).__name__}. "
                "Compile with optimizer=keras_fip.FIPOptimizer(...)."
            )
        return optimizer

    def _check_labels(self, model):
        if self.y is None:
            return
        y = np.asarray(self.y)
        if (y.ndim == 2 and y.shape[1] > 1) or y.size == 0:
            return  # one-hot: the loss checks the width
        x = self._inputs(model)
        probe = (
            {k: np.asarray(v)[:1] for k, v in x.items()}
            if isinstance(x, dict)
            else np.asarray(x)[:1]
        )
        shape = predict_outputs(model, probe, preprocess=False).shape
        if len(shape) != 2:
            return
        head = shape[1]
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
        optimizer = self._optimizer(model)
        self._check_labels(model)
        optimizer.begin_task(model, self.task_id, self._inputs(model), self.y)
        if optimizer.traced_without_memory:
            # The step was traced before the state it needs existed.
            if getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)
            optimizer.traced_without_memory = False

    def on_epoch_end(self, epoch, logs=None):
        self._optimizer(self.model).end_epoch(epoch)

    def on_train_end(self, logs=None):
        model = self.model
        self._optimizer(model).end_task(
            model, self.task_id, self._inputs(model), self.y)


def remember_task(model, task_id, x, y=None):
    """Records a task the model already knows, without training on it.

    For a network trained before it was compiled with a keras_fip continual
    optimizer (a fine-tuned KerasHub checkpoint, a model loaded from disk):
    the task's samples join the optimizer's memory and are anchored to the
    network as it is now (FIP and the replay methods), or its weight
    importance is consolidated (EWC, SI), exactly as if `fit` with a
    `TaskBoundary(task_id, x, y)` had just ended. The next task's `fit`
    with `TaskBoundary(task_id + 1, ...)` then keeps this one.

    Args:
        model: a model compiled with a keras_fip continual optimizer.
        task_id: the id the known task gets (0, 1, ...).
        x: the task's inputs, as `fit` would take them (raw text for a
            KerasHub model with its preprocessor).
        y: the task's integer labels, or `None` for a reservoir memory.

    Example:

    ```python
    model.compile(optimizer=keras_fip.FIPOptimizer(keras.optimizers.Adam()),
                  loss="sparse_categorical_crossentropy")
    keras_fip.callbacks.remember_task(model, 0, x_a, y_a)
    model.fit(x_b, y_b, callbacks=[keras_fip.callbacks.TaskBoundary(1, x_b, y_b)])
    ```
    """
    boundary = TaskBoundary(task_id, x, y)
    boundary.set_model(model)
    optimizer = boundary._optimizer(model)
    boundary._check_labels(model)
    features = boundary._inputs(model)
    optimizer.begin_task(model, boundary.task_id, features, y)
    optimizer.end_task(model, boundary.task_id, features, y)
