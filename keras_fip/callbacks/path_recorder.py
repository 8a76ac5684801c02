"""`PathRecorder`: where the weights went, and what that did to the outputs."""

import keras
import numpy as np

from keras_fip import distances
from keras_fip.evaluation import EvalSets
from keras_fip.evaluation import find_continual_optimizer
from keras_fip.evaluation import predict_outputs
from keras_fip.arrays import as_numpy


def _flat_weights(model):
    return np.concatenate(
        [
            np.ravel(as_numpy(v)).astype("float64")
            for v in model.trainable_variables
        ]
    )


class PathRecorder(keras.callbacks.Callback):
    """Records the path through weight space, across any number of `fit`s.

    At each record point it stores `step` (train steps since the path
    began), `fit` (which `fit` call), `distance` ‖w − w_start‖₂ from the
    start of the path, `length` (the summed ‖Δw‖₂ between records), `drift`
    (the mean output distance D on the FIP memory between the network and
    its anchor, when the model has an active `FIPOptimizer` memory) and
    `accuracy` (one value per `eval_data` task). Epoch-level records also
    go into the logs as `path_distance`, `path_length` and `path_drift`.

    Args:
        every_n_steps: record every this many train steps (`None`: off).
        every_n_epochs: record at the end of every this many epochs
            (`None`: off).
        eval_data: optional list of `(x, y)` per task, or a `TaskStream`.
        keep_weights: also keep a float32 copy of the flattened weights
            at each record (for plots of the path; costs memory).
        batch_size: evaluation batch size.

    Example:

    ```python
    path = keras_fip.callbacks.PathRecorder(every_n_epochs=5)
    model.fit(x, y, epochs=30, callbacks=[path])
    path.records[-1]["distance"]
    ```
    """

    def __init__(
        self,
        every_n_steps=None,
        every_n_epochs=1,
        eval_data=None,
        keep_weights=False,
        batch_size=256,
    ):
        super().__init__()
        for name, value in (
            ("every_n_steps", every_n_steps),
            ("every_n_epochs", every_n_epochs),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"`{name}` must be a positive integer or None; got {value!r}."
                )
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self._sets = EvalSets(eval_data if eval_data is not None else [])
        self.eval_data = self._sets.pairs
        self.keep_weights = keep_weights
        self.batch_size = batch_size
        self.records = []
        self.weights = []
        self._start = None
        self._last = None
        self._length = 0.0
        self._step = 0
        self._fit = -1

    def _drift(self, model):
        from keras_fip.fip_optimizer import FIPOptimizer

        fip = find_continual_optimizer(
            getattr(model, "optimizer", None), FIPOptimizer
        )
        if fip is None or not fip.memory.is_active:
            return float("nan")
        inputs, _, _, anchors = fip.memory.stored()
        outputs = predict_outputs(model, inputs, self.batch_size,
                                  preprocess=False)
        per_sample = distances.get(fip.distance)(
            outputs, anchors, from_logits=fip.from_logits
        )
        return float(np.mean(as_numpy(per_sample)))

    def record(self, epoch=None):
        """Adds one record for the model as it is now; returns it."""
        model = self.model
        w = _flat_weights(model)
        if self._start is None:
            self._start = self._last = w
        self._length += float(np.linalg.norm(w - self._last))
        self._last = w
        entry = {
            "step": self._step,
            "fit": self._fit,
            "epoch": epoch,
            "distance": float(np.linalg.norm(w - self._start)),
            "length": self._length,
            "drift": self._drift(model),
            "accuracy": self._sets.accuracies(model, None, self.batch_size),
        }
        self.records.append(entry)
        if self.keep_weights:
            self.weights.append(w.astype("float32"))
        return entry

    def on_train_begin(self, logs=None):
        self._fit += 1
        if self._start is None:
            self.record()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.every_n_steps and self._step % self.every_n_steps == 0:
            self.record()

    def on_epoch_end(self, epoch, logs=None):
        if not self.every_n_epochs or (epoch + 1) % self.every_n_epochs:
            return
        entry = self.record(epoch=epoch)
        if logs is not None:
            logs["path_distance"] = entry["distance"]
            logs["path_length"] = entry["length"]
            logs["path_drift"] = entry["drift"]
