"""`TaskBoundary`: a continual optimizer's life cycle around one task."""

import keras
import numpy as np
from keras import tree

from keras_fip import compat
from keras_fip import labels
from keras_fip import nested
from keras_fip.anchors.taking import call_model
from keras_fip.evaluation import find_continual_optimizer
from keras_fip.evaluation import model_inputs
from keras_fip.memory_spec import memory_labels


def _leaves(x):
    """The arrays of `x`: one array or list of strings (raw text for a
    KerasHub preprocessor), or any structure of arrays (`keras.tree`)."""
    if isinstance(x, (list, tuple)) and all(isinstance(e, str) for e in x):
        return [np.asarray(x)]
    return [np.asarray(leaf) for leaf in tree.flatten(x)]


def _check_data(task_id, x, y):
    """Refuses task data the memory cannot store, with how to fix it."""
    kind = type(x).__name__
    if x is None or not (isinstance(x, (np.ndarray, list, tuple, dict))
                         or hasattr(x, "__array__")):
        raise TypeError(
            f"TaskBoundary({task_id}, x, ...) needs the task's samples as "
            f"arrays (what the memory stores); got a {kind}. For a "
            "tf.data.Dataset, PyDataset or generator, give fit() the "
            "dataset and TaskBoundary a sample of it as arrays, e.g. "
            "x, y = next(iter(dataset.unbatch().batch(1000))) converted "
            "with numpy."
        )
    leaves = _leaves(x)
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"Task {task_id}: every input array needs the same leading "
            f"(sample) axis; got leading sizes {sorted(map(str, sizes))}."
        )
    n = sizes.pop()
    if n == 0:
        raise ValueError(
            f"Task {task_id} has no samples (x is empty): a task needs at "
            "least one sample to protect. Pass the task's training inputs."
        )
    for leaf in leaves:
        if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(
                leaf).all():
            raise ValueError(
                f"Task {task_id}'s inputs hold NaN or inf values "
                f"({int((~np.isfinite(leaf)).sum())} of them): the network "
                "would diverge and its outputs could not serve as anchors. "
                "Clean or impute the data first."
            )
    if y is not None:
        labels.check_structure(task_id, y, n)


def _forget_resumed_epoch(model):
    """Clears the epoch a `BackupAndRestore` resumed a `fit` from.

    Keras 3's `BackupAndRestore` resumes a `fit` by setting the model's
    private `_initial_epoch`, which `fit` reads after the callbacks'
    `on_train_begin` and which nothing clears: the next `fit` (the next
    task) would start at that epoch too. A task spans its own `fit`s, so
    `TaskBoundary` clears it when a `fit` is set up (before any callback
    begins training) and when it ends.
    """
    compat.clear_resumed_epoch(model)


class TaskBoundary(keras.callbacks.Callback):
    """Tells the model's continual optimizer where a task starts and ends.

    Pass one to each task's `fit`, listed first among the callbacks. For
    `FIPOptimizer` (and the other memory methods): when `fit` starts it
    builds the memory if needed (before the step is traced) and, for a new
    `task_id`, *anchors* it once: the network as it is now becomes the
    anchor w₀ of the stored samples. Each epoch after the first starts with
    a new sampling order of the memory. When the last epoch ends the task's
    samples join the memory (class-balanced), so a checkpoint written at
    that epoch by a callback listed after this one holds the finished task;
    `fit` ending early (`EarlyStopping`) ends the task too. Resuming a task
    (a second `fit` with the same `task_id` and data, or after
    `BackupAndRestore` or loading a `.keras` file) keeps the anchors.
    Weight-space methods (EWC, SI) consolidate their importance when the
    task ends instead.

    `x` is what `fit` is given: for a KerasHub task model with a
    `preprocessor` (raw strings, images) the memory stores the preprocessed
    features the model's forward pass takes.

    Args:
        task_id: integer id of the task being trained (0, 1, ...); ids
            increase from task to task, and an id is reused only to resume
            the same task.
        x: the task's training inputs as arrays (an array, a dict of
            arrays, or raw strings for a KerasHub model with a
            preprocessor). Datasets and generators are refused: pass a
            sample of them as arrays.
        y: the task's labels exactly as `fit` takes them: class ids or
            one-hot rows, 0/1 targets of sigmoid units, regression
            targets, or a dict (list) of them per output head; each head's
            are checked against its loss (`keras_fip.labels`). The memory
            balances on class ids (a multi-output model's first
            classification head) and keeps a reservoir sample otherwise;
            `None` for a reservoir memory.

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
        _check_data(int(task_id), x, y)
        self.task_id = int(task_id)
        self.x = x
        self.y = y
        self._features = None
        self._features_of = None
        #: What of `y` the memory keeps: the class ids it balances on
        #: (a multi-output model's first classification head), or `None`
        #: for labels that are not classes (reservoir sampling).
        self.memory_labels = memory_labels(y)

    def _inputs(self, model):
        """The task's inputs as the model's forward pass takes them."""
        if self._features_of is not model:
            self._features = model_inputs(model, self.x)
            self._features_of = model
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
        """Each head's labels against its loss (`keras_fip.labels`)."""
        if self.y is None:
            return
        x = self._inputs(model)
        probe = tree.map_structure(lambda a: np.asarray(a)[:1], x)
        outputs = call_model(model, probe)
        labels.check_against_heads(
            self.task_id, self.y, model, nested.template_of(outputs),
            [tuple(o.shape[1:]) for o in nested.flatten_tensors(outputs)])

    def _start(self, model):
        """Checks everything and builds the optimizer's state (at `fit`
        start, before Keras traces the step or fixes shardings)."""
        optimizer = self._optimizer(model)
        self._check_labels(model)
        optimizer.bind(model, self._inputs(model))
        return optimizer

    def set_model(self, model):
        super().set_model(model)
        # `fit` sets the model of every callback before any of them begins
        # training, so a `BackupAndRestore` of this `fit` resumes after this.
        _forget_resumed_epoch(model)
        self._start(model)

    def on_train_begin(self, logs=None):
        self._optimizer(self.model).begin_task(
            self.model, self.task_id, self._inputs(self.model),
            self.memory_labels)

    def on_epoch_begin(self, epoch, logs=None):
        self._optimizer(self.model).begin_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        epochs = (self.params or {}).get("epochs")
        if epochs is not None and epoch + 1 >= epochs:
            self._end()  # before later callbacks checkpoint this epoch

    def on_train_end(self, logs=None):
        self._end()
        _forget_resumed_epoch(self.model)

    def _end(self):
        # Ending twice (last epoch, then train end) is a no-op: the task
        # cycle ends a task once.
        model = self.model
        self._optimizer(model).end_task(
            model, self.task_id, self._inputs(model), self.memory_labels)


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
        y: the task's labels as `fit` takes them (see `TaskBoundary`), or
            `None` for a reservoir memory.

    Example:

    ```python
    model.compile(optimizer=keras_fip.FIPOptimizer(keras.optimizers.Adam()),
                  loss="sparse_categorical_crossentropy")
    keras_fip.callbacks.remember_task(model, 0, x_a, y_a)
    model.fit(x_b, y_b,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, x_b, y_b)])
    ```
    """
    boundary = TaskBoundary(task_id, x, y)
    keras.callbacks.Callback.set_model(boundary, model)
    optimizer = boundary._start(model)
    features = boundary._inputs(model)
    y = boundary.memory_labels
    optimizer.begin_task(model, boundary.task_id, features, y, known=True)
    optimizer.end_task(model, boundary.task_id, features, y)
