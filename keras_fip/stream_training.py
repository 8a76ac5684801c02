"""`fit_stream`: train a compiled model on a `TaskStream`, task by task."""

import dataclasses

from keras_fip import continual_metrics
from keras_fip.callbacks import AccuracyMatrix
from keras_fip.callbacks import TaskBoundary
from keras_fip.evaluation import find_continual_optimizer


@dataclasses.dataclass
class StreamResult:
    """What `fit_stream` measured.

    Attributes:
        matrix: the accuracy matrix R[t, k] (NumPy, tasks × tasks).
        histories: each task's `History.history` dict.
    """

    matrix: object
    histories: list

    def summary(self):
        """Average accuracy, forgetting and backward transfer of R."""
        return continual_metrics.summary(self.matrix)


def fit_stream(
    model,
    stream,
    epochs,
    batch_size=32,
    callbacks=None,
    verbose="auto",
    eval_every_n_epochs=None,
):
    """Trains `model` on each task of `stream` in order with `model.fit`.

    With a keras_fip continual optimizer (FIP or a baseline) each task's
    `fit` gets a `TaskBoundary`; with any other optimizer this is plain
    sequential fine-tuning. An
    `AccuracyMatrix` evaluates every task after each one.

    Args:
        model: a compiled Keras model with one head over all classes.
        stream: a `keras_fip.datasets.TaskStream`.
        epochs: epochs per task.
        batch_size: training batch size.
        callbacks: more callbacks, passed to every task's `fit`.
        verbose: `fit`'s verbosity.
        eval_every_n_epochs: also log the seen tasks' accuracies every
            this many epochs (into each task's history).

    Returns:
        A `StreamResult` with the accuracy matrix and the histories.

    Example:

    ```python
    result = keras_fip.fit_stream(model, keras_fip.datasets.split_digits(),
                                  epochs=30)
    result.summary()["average_accuracy"]
    ```
    """
    continual = find_continual_optimizer(getattr(model, "optimizer", None))
    matrix = AccuracyMatrix(stream, every_n_epochs=eval_every_n_epochs)
    histories = []
    for task_id, task in enumerate(stream):
        task_callbacks = [matrix, *(callbacks or [])]
        if continual is not None:
            task_callbacks.insert(
                0, TaskBoundary(task_id, task.x_train, task.y_train)
            )
        history = model.fit(
            task.x_train,
            task.y_train,
            epochs=epochs,
            batch_size=batch_size,
            callbacks=task_callbacks,
            verbose=verbose,
        )
        histories.append(history.history)
    return StreamResult(matrix=matrix.matrix, histories=histories)
