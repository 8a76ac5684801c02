"""Cyclical learning rates that collect ensemble members along one run.

Both schedules map the optimizer step i (the number of steps completed
before the current one, `optimizer.iterations`) to a learning rate α(i),
repeating every `cycle_steps` = c steps, and say after how many completed
steps a member is to be copied (`member_steps`; pass the list to
`keras_fip.callbacks.WeightSnapshots`).

- `FGESchedule`, Fast Geometric Ensembling (Garipov et al. 2018): a
  triangle from `high` down to `low` and back; members at the low points.
- `SnapshotSchedule`, snapshot ensembles (Huang et al. 2017): cosine
  annealing from `high` towards 0 with warm restarts; members at the end of
  each cycle.

Both are written with `keras.ops`, so they run inside compiled train steps
on every backend, and save with the optimizer in a `.keras` file.

Example:

```python
from keras_fip.ensembles.schedules import FGESchedule, SnapshotSchedule
fge = FGESchedule(high=0.05, low=0.0005, cycle_steps=4)
[round(float(fge(i)), 6) for i in range(4)]   # [0.02525, 0.0005, 0.02525, 0.05]
fge.member_steps(3)                           # [2, 6, 10]
SnapshotSchedule(high=0.1, cycle_steps=100).member_steps(2)   # [100, 200]
```
"""

import math

import keras
from keras import ops

from keras_fip.checks import check_number
from keras_fip.checks import check_positive_int


def _check_cycle(value, even):
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(
            f"`cycle_steps` must be an integer >= 2 (the train steps in one "
            f"cycle of the learning rate); got {value!r}."
        )
    if even and value % 2:
        raise ValueError(
            f"`cycle_steps` must be even, so that the cycle's low point "
            f"falls on a step (after cycle_steps / 2 of them); got {value}. "
            f"Use {value - 1} or {value + 1}."
        )
    return value


def _members(first, cycle_steps, cycles):
    check_positive_int("cycles", cycles)
    return [first + k * cycle_steps for k in range(cycles)]


def _cycle_position(step, cycle_steps):
    """i mod c as float32, the remainder taken on integers (exact)."""
    step = ops.cast(step, "int32")
    return ops.cast(ops.mod(step, cycle_steps), "float32")


@keras.saving.register_keras_serializable(package="keras_fip")
class FGESchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Fast Geometric Ensembling's triangular cyclical learning rate.

    Started from a trained network, each cycle of c = `cycle_steps` steps
    goes linearly from `high` down to `low` in its first half and back up
    to `high` in its second. With t = ((i mod c) + 1) / c (Garipov et al.
    2018, eq. 2):

        α(i) = (1 − 2t)·high + 2t·low          for t ≤ 1/2,
        α(i) = (2 − 2t)·low + (2t − 1)·high    for t > 1/2.

    The step with i mod c = c/2 − 1 runs at α = `low`; a member is collected
    right after it, at the cycle's **midpoint**: after k·c + c/2 completed
    steps for cycle k = 0, 1, ... (`member_steps`). The last step of each
    cycle runs at `high`.

    Args:
        high: the largest learning rate, at the cycle's ends (float > 0).
        low: the smallest, at its midpoint (float, 0 < low <= high).
        cycle_steps: train steps per cycle (even int >= 2; the paper uses
            2 to 4 epochs' worth).

    Example:

    ```python
    import keras, numpy as np
    from keras_fip.ensembles.schedules import FGESchedule
    from keras_fip.callbacks.weight_snapshots import WeightSnapshots
    schedule = FGESchedule(high=0.05, low=0.001, cycle_steps=4)
    assert abs(float(schedule(1)) - 0.001) < 1e-7     # the low point
    assert abs(float(schedule(3)) - 0.05) < 1e-7      # back at high
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    members = WeightSnapshots(at_steps=schedule.member_steps(3))
    x, y = np.ones((16, 3), "float32"), np.zeros((16, 2), "float32")
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[members])
    assert members.steps == [2, 6, 10]
    ```
    """

    def __init__(self, high, low, cycle_steps):
        self.high = check_number("high", high, positive=True)
        self.low = check_number("low", low, positive=True)
        if self.low > self.high:
            raise ValueError(
                f"`low` ({low}) must be <= `high` ({high}): the rate falls "
                "from `high` to `low` and back in each cycle. Swap them?"
            )
        self.cycle_steps = _check_cycle(cycle_steps, even=True)

    def __call__(self, step):
        t = (_cycle_position(step, self.cycle_steps) + 1.0) / float(
            self.cycle_steps)
        falling = (1.0 - 2.0 * t) * self.high + 2.0 * t * self.low
        rising = (2.0 - 2.0 * t) * self.low + (2.0 * t - 1.0) * self.high
        return ops.cast(ops.where(t <= 0.5, falling, rising), "float32")

    def member_steps(self, cycles):
        """The completed-step counts at which to collect the members of
        `cycles` cycles (the low points): [c/2, c + c/2, ...]."""
        return _members(self.cycle_steps // 2, self.cycle_steps, cycles)

    def get_config(self):
        return {"high": self.high, "low": self.low,
                "cycle_steps": self.cycle_steps}


@keras.saving.register_keras_serializable(package="keras_fip")
class SnapshotSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Snapshot ensembles' cosine annealing with warm restarts.

    Each cycle of c = `cycle_steps` steps anneals from `high` towards 0 and
    then restarts at `high` (Huang et al. 2017, eq. 2, with i = t − 1):

        α(i) = high / 2 · (cos(π · (i mod c) / c) + 1).

    A member is collected at the **end** of each cycle, after the step with
    the smallest rate: after c, 2c, ... completed steps (`member_steps`).

    Args:
        high: the rate at the start of each cycle (float > 0).
        cycle_steps: train steps per cycle (int >= 2), e.g. the training
            budget divided by the number of members wanted.

    Example:

    ```python
    import keras, numpy as np
    from keras_fip.ensembles.schedules import SnapshotSchedule
    schedule = SnapshotSchedule(high=0.1, cycle_steps=4)
    [round(float(schedule(i)), 4) for i in range(5)]
    # [0.1, 0.0854, 0.05, 0.0146, 0.1]: a restart at step 4
    assert schedule.member_steps(2) == [4, 8]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    model.fit(np.ones((8, 3)), np.zeros((8, 2)), batch_size=4, verbose=0)
    ```
    """

    def __init__(self, high, cycle_steps):
        self.high = check_number("high", high, positive=True)
        self.cycle_steps = _check_cycle(cycle_steps, even=False)

    def __call__(self, step):
        phase = _cycle_position(step, self.cycle_steps) / float(
            self.cycle_steps)
        return ops.cast(
            0.5 * self.high * (ops.cos(math.pi * phase) + 1.0), "float32")

    def member_steps(self, cycles):
        """The completed-step counts at which to collect the members of
        `cycles` cycles (the cycles' ends): [c, 2c, ...]."""
        return _members(self.cycle_steps, self.cycle_steps, cycles)

    def get_config(self):
        return {"high": self.high, "cycle_steps": self.cycle_steps}
