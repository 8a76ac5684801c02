"""`AccuracyMatrix`: R[t, k], the accuracy on task k after training task t."""

import keras
import numpy as np

from keras_fip.evaluation import EvalSets


class AccuracyMatrix(keras.callbacks.Callback):
    """Fills the accuracy matrix of a task stream, one row per `fit`.

    Reuse one instance for every task's `fit`: when a `fit` ends it
    evaluates every task and appends the row R[t, :] (t = the number of
    rows so far, i.e. call `fit` once per task). Every `every_n_epochs`
    epochs it also writes `accuracy_task_{k}` for the tasks seen so far
    (k ≤ t) into the epoch logs, so they appear in `History`.

    Args:
        eval_data: one `(x, y)` pair per task (labels as class ids), or a
            `keras_fip.datasets.TaskStream` (its test sets are used).
        batch_size: evaluation batch size.
        every_n_epochs: epoch interval of the logged accuracies; `None`
            logs nothing during training.

    Example:

    ```python
    matrix = keras_fip.callbacks.AccuracyMatrix(stream)
    for task in stream:
        model.fit(task.x_train, task.y_train, callbacks=[matrix])
    keras_fip.continual_metrics.summary(matrix.matrix)
    ```
    """

    def __init__(self, eval_data, batch_size=256, every_n_epochs=1):
        super().__init__()
        self._sets = EvalSets(eval_data)
        if not len(self._sets):
            raise ValueError("AccuracyMatrix needs at least one task to test.")
        self.eval_data = self._sets.pairs
        self.batch_size = batch_size
        self.every_n_epochs = every_n_epochs
        self.rows = []

    @property
    def matrix(self):
        """R as a NumPy array of shape `(tasks trained, tasks)`."""
        return np.array(self.rows, dtype="float64").reshape(
            len(self.rows), len(self.eval_data)
        )

    def evaluate(self, tasks=None):
        """Accuracies of the current model on `tasks` (default: all)."""
        return self._sets.accuracies(self.model, tasks, self.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if not self.every_n_epochs or (epoch + 1) % self.every_n_epochs:
            return
        seen = range(min(len(self.rows) + 1, len(self.eval_data)))
        for k, acc in zip(seen, self.evaluate(seen)):
            if logs is not None:
                logs[f"accuracy_task_{k}"] = acc

    def on_train_end(self, logs=None):
        self.rows.append(self.evaluate())
