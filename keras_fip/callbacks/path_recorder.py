"""`PathRecorder`: where the weights went, and what that did to the outputs."""

import keras
import numpy as np

from keras_fip import geometry
from keras_fip.arrays import as_numpy
from keras_fip.evaluation import EvalSets
from keras_fip.evaluation import find_continual_optimizer


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

    **Metric diagnostics.** With `metric_inputs` (a batch of protected
    inputs, as the model's call takes them), each record also measures the
    move Δw since the previous record in the output metric g of those
    inputs (`keras_fip.geometry`, g taken at the weights before the move):

    - `metric_increment` √(Δwᵀ g Δw), and `metric_length` their running
      sum, ≈ ∫ √(θᵀ g θ) dt along the path: how far the protected
      outputs moved (to first order ‖Δf‖₂ over the inputs for the logit
      metric; for the Fisher, √(8·D) for the Bhattacharyya distance D);
    - with `subspace_k`, `subspace_share` ‖P_k Δw‖² / ‖Δw‖², the part of
      the move inside the span of g's top-`subspace_k` eigenvectors (by
      `top_eigenpairs` at the previous record; NaN at the first record or
      for a zero move), and `top_eigenvalue`, λ_max of g at this record.
      FIP steps should mostly avoid that subspace, fine-tuning need not.

    Each metric record costs one g·v product on `metric_inputs`, plus a
    Lanczos run of `2·subspace_k + 20` products with `subspace_k`: record
    every few steps rather than every step. Records every n steps measure
    the chord between records, not the path inside it: √(Δwᵀ g Δw) of the
    chord is at most the path's metric length over those steps (g fixed),
    and the per-step value is recovered with `every_n_steps=1`.

    Args:
        every_n_steps: record every this many train steps (`None`: off).
        every_n_epochs: record at the end of every this many epochs
            (`None`: off).
        eval_data: optional list of `(x, y)` per task, or a `TaskStream`.
        keep_weights: also keep a float32 copy of the flattened weights
            at each record (for plots of the path; costs memory).
        batch_size: evaluation batch size.
        metric_inputs: optional protected inputs for the metric
            diagnostics (default `None`: off).
        metric: `"logit"` (JᵀJ, default) or `"fisher"` (the softmax
            Fisher), as in `keras_fip.geometry`.
        reduction: `"sum"` (default) or `"mean"` of g over `metric_inputs`.
        subspace_k: optional number of top eigenvectors of g for
            `subspace_share` (default `None`: not measured).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(True))
    x, y = np.random.rand(32, 4).astype("float32"), np.arange(32) % 3
    path = keras_fip.callbacks.PathRecorder(
        every_n_epochs=1, metric_inputs=x[:4], metric="fisher", subspace_k=2)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[path])
    last = path.records[-1]
    assert last["metric_length"] > 0 and 0 <= last["subspace_share"] <= 1
    assert last["length"] >= last["distance"]
    ```
    """

    def __init__(
        self,
        every_n_steps=None,
        every_n_epochs=1,
        eval_data=None,
        keep_weights=False,
        batch_size=256,
        metric_inputs=None,
        metric="logit",
        reduction="sum",
        subspace_k=None,
    ):
        super().__init__()
        for name, value in (
            ("every_n_steps", every_n_steps),
            ("every_n_epochs", every_n_epochs),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"`{name}` must be a positive integer or None; got "
                    f"{value!r}."
                )
        if metric not in geometry.METRICS:
            raise ValueError(f"Unknown metric {metric!r}; expected one of "
                             f"{geometry.METRICS}.")
        if reduction not in geometry.REDUCTIONS:
            raise ValueError(f"Unknown reduction {reduction!r}; expected "
                             f"one of {geometry.REDUCTIONS}.")
        if subspace_k is not None:
            if not isinstance(subspace_k, int) or subspace_k < 1:
                raise ValueError("`subspace_k` must be a positive integer "
                                 f"or None; got {subspace_k!r}.")
            if metric_inputs is None:
                raise ValueError("`subspace_k` needs `metric_inputs`, the "
                                 "protected inputs whose metric it uses.")
        self.metric_inputs = metric_inputs
        self.metric = metric
        self.reduction = reduction
        self.subspace_k = subspace_k
        self._metric_length = 0.0
        self._vectors = None
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
        return fip.invariance_term.drift(fip.memory, model, self.batch_size)

    def _metric_record(self, model, move):
        """The metric increment and subspace share of `move`, then the
        eigenvectors of g here for the next record."""
        shapes = [tuple(v.shape) for v in model.trainable_variables]
        squared = float(move @ move)
        increment, share = 0.0, float("nan")
        if squared > 0:
            g_move = geometry.metric_vector_product(
                model, self.metric_inputs, geometry.unflatten(move, shapes),
                self.metric, self.reduction,
                weights=geometry.unflatten(self._last, shapes))
            increment = float(np.sqrt(max(move @ geometry.flatten(g_move),
                                          0.0)))
            if self._vectors is not None:
                share = float(np.sum((self._vectors @ move) ** 2) / squared)
        self._metric_length += increment
        entry = {"metric_increment": increment,
                 "metric_length": self._metric_length}
        if self.subspace_k:
            values, self._vectors = geometry.top_eigenpairs(
                model, self.metric_inputs, self.subspace_k, self.metric,
                self.reduction)
            entry["subspace_share"] = share
            entry["top_eigenvalue"] = float(values[0])
        return entry

    def record(self, epoch=None):
        """Adds one record for the model as it is now; returns it."""
        model = self.model
        w = _flat_weights(model)
        if self._start is None:
            self._start = self._last = w
        move = w - self._last
        self._length += float(np.linalg.norm(move))
        metric_entry = {}
        if self.metric_inputs is not None:
            metric_entry = self._metric_record(model, move)
        self._last = w
        entry = {
            "step": self._step,
            "fit": self._fit,
            "epoch": epoch,
            "distance": float(np.linalg.norm(w - self._start)),
            "length": self._length,
            "drift": self._drift(model),
            "accuracy": self._sets.accuracies(model, None, self.batch_size),
            **metric_entry,
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
            if "metric_length" in entry:
                logs["path_metric_length"] = entry["metric_length"]
