"""`WeightSnapshots`: copies of all the weights at chosen train steps."""

import keras
import numpy as np

from keras_fip.checks import check_positive_int


def _check_steps(at_steps):
    if at_steps is None:
        return ()
    if isinstance(at_steps, (int, np.integer)) and not isinstance(
            at_steps, bool):
        at_steps = [at_steps]
    steps = list(at_steps)
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) \
                or step < 1:
            raise ValueError(
                "`at_steps` must hold positive integers (numbers of "
                f"completed train steps, counted across fits); got {step!r} "
                f"in {steps!r}."
            )
    return tuple(sorted({int(s) for s in steps}))


class WeightSnapshots(keras.callbacks.Callback):
    """Copies `model.get_weights()` (every weight, trainable or not) at
    chosen points of training: the members of a snapshot or FGE ensemble.

    Train steps are counted from this callback's first `fit` on, across any
    number of `fit` calls (as `PathRecorder` counts them): step s means
    "after s train batches". With a fresh optimizer this is its
    `iterations`, so a schedule's `member_steps(cycles)` are the steps to
    give (`WeightSnapshots.for_schedule(schedule, cycles)` says the same).

    Each snapshot is a list of NumPy copies, independent of later training;
    `snapshots[k]` was taken after `steps[k]` steps. A point asked for both
    by `at_steps` and by `every_n_epochs` gives one snapshot.

    Args:
        at_steps: optional list of completed-step counts (ints >= 1) at
            which to copy the weights (default `None`).
        every_n_epochs: optional; also copy at the end of every this many
            epochs (default `None`: off). At least one of the two is needed.

    Example:

    ```python
    import keras, numpy as np
    from keras_fip.callbacks.weight_snapshots import WeightSnapshots
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    snaps = WeightSnapshots(at_steps=[3, 5])
    x, y = np.ones((16, 3), "float32"), np.zeros((16, 2), "float32")
    for _ in range(2):     # 4 steps per fit: step 5 is in the second fit
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[snaps])
    assert snaps.steps == [3, 5] and len(snaps.snapshots[0]) == 2
    snaps.restore(0)       # the model's weights as after step 3
    ```
    """

    def __init__(self, at_steps=None, every_n_epochs=None):
        super().__init__()
        self.at_steps = _check_steps(at_steps)
        if every_n_epochs is not None:
            check_positive_int("every_n_epochs", every_n_epochs)
        if not self.at_steps and every_n_epochs is None:
            raise ValueError(
                "WeightSnapshots needs `at_steps` (e.g. "
                "schedule.member_steps(cycles)) or `every_n_epochs`; got "
                "neither, so it would never copy the weights."
            )
        self.every_n_epochs = every_n_epochs
        self.snapshots = []
        self.steps = []
        self._step = 0
        self._wanted = set(self.at_steps)

    @classmethod
    def for_schedule(cls, schedule, cycles, every_n_epochs=None):
        """Snapshots at `schedule.member_steps(cycles)` (an `FGESchedule`,
        a `SnapshotSchedule` or anything with that method)."""
        if not callable(getattr(schedule, "member_steps", None)):
            raise ValueError(
                f"{type(schedule).__name__} has no `member_steps(cycles)`; "
                "pass a keras_fip.ensembles FGESchedule or SnapshotSchedule, "
                "or give `at_steps` yourself."
            )
        return cls(at_steps=schedule.member_steps(cycles),
                   every_n_epochs=every_n_epochs)

    @property
    def step(self):
        """Train steps completed so far (across fits)."""
        return self._step

    def snapshot(self):
        """Copies the model's weights now (unless already copied at this
        step); returns the copy."""
        if self.steps and self.steps[-1] == self._step:
            return self.snapshots[-1]
        weights = [np.array(w, copy=True) for w in self.model.get_weights()]
        self.snapshots.append(weights)
        self.steps.append(self._step)
        return weights

    def restore(self, index, model=None):
        """Sets `model` (default: the trained one) to snapshot `index`."""
        (model or self.model).set_weights(self.snapshots[index])

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step in self._wanted:
            self.snapshot()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            self.snapshot()
