"""`PruningStop`: end a sparsification path once it reached the subspace."""

import keras

from keras_fip.arrays import as_numpy
from keras_fip.evaluation import find_continual_optimizer


class PruningStop(keras.callbacks.Callback):
    """Stops `fit` when ‖w − P_s(w)‖ falls below `tolerance`.

    Reads the gap of the `SparseTarget` of the model's `FIPOptimizer` at the
    end of each epoch (the step's state is synchronised there on every
    backend) and only once the schedule reached its final sparsity. Apply
    the final hard mask afterwards with
    `keras_fip.sparsity.make_pruning_permanent(model)`.

    Args:
        tolerance: the stop threshold on ‖w − P_s(w)‖ (global L2 norm over
            the pruned variables), > 0.

    Example:

    ```python
    model.fit(x, y, epochs=100,
              callbacks=[keras_fip.callbacks.PruningStop(1e-2)])
    keras_fip.sparsity.make_pruning_permanent(model)
    ```
    """

    def __init__(self, tolerance):
        super().__init__()
        if isinstance(tolerance, bool) or not isinstance(
                tolerance, (int, float)) or not tolerance > 0:
            raise ValueError(
                f"`tolerance` must be a number > 0; got {tolerance!r}.")
        self.tolerance = float(tolerance)
        self.stopped_epoch = None

    def _target(self):
        optimizer = find_continual_optimizer(
            getattr(self.model, "optimizer", None))
        from keras_fip.sparsity.sparse_target import SparseTarget

        target = None if optimizer is None else optimizer.find_term(
            SparseTarget)
        if target is None:
            raise ValueError(
                "PruningStop needs a model compiled with "
                "keras_fip.FIPOptimizer(..., sparse_target="
                "keras_fip.sparsity.SparseTarget(...)).")
        return target

    def on_train_begin(self, logs=None):
        self._target()

    def on_epoch_end(self, epoch, logs=None):
        target = self._target()
        reached = float(as_numpy(target.sparsity)) >= (
            target.schedule.final_sparsity - 1e-6)
        gap = float(as_numpy(target.gap))
        if logs is not None:
            logs["sparse_gap"] = gap
        if reached and gap < self.tolerance:
            self.stopped_epoch = epoch
            self.model.stop_training = True
