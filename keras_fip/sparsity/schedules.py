"""Sparsity schedules, in the vocabulary of the TensorFlow Model
Optimization toolkit (`ConstantSparsity`, `PolynomialDecay`).

A schedule maps the optimizer step t to the target sparsity s(t) and says at
which steps the magnitude threshold of the target P_s(w) is recomputed
(every `frequency` steps from `begin_step` on; the threshold holds in
between). Before `begin_step` nothing is pruned.

Example:

```python
import keras_fip
schedule = keras_fip.sparsity.PolynomialDecay(
    initial_sparsity=0.5, final_sparsity=0.9, begin_step=0, end_step=1000)
float(schedule.sparsity(500))   # 0.85: s_f + (s_i - s_f)(1 - 0.5)^3
```
"""

import keras
from keras import ops


def check_sparsity(name, value):
    """`value` as a float, refused unless it is a sparsity in [0, 1).

    Args:
        name: the argument's name, for the message.
        value: the sparsity given.

    Raises:
        TypeError: `value` is not a number.
        ValueError: it lies outside [0, 1).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number in [0, 1); got {value!r}.")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must lie in [0, 1) (the fraction of weights set to "
            f"zero; 1 would remove every weight); got {value!r}."
        )
    return float(value)


def _check_step(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}; got {value!r}."
        )
    return value


class PruningSchedule:
    """Base class: `sparsity(step)` and `should_update(step)` as tensors."""

    final_sparsity = 0.0
    begin_step = 0
    frequency = 1

    @property
    def final_step(self):
        """The first step at which the sparsity is `final_sparsity`."""
        return self.begin_step

    def sparsity(self, step):
        """The target sparsity s(step) (a float32 scalar tensor)."""
        raise NotImplementedError

    def should_update(self, step):
        """Whether the threshold is recomputed at `step` (a bool tensor)."""
        step = ops.cast(step, "int32")
        started = ops.greater_equal(step, self.begin_step)
        on_beat = ops.equal(
            ops.mod(step - self.begin_step, self.frequency), 0)
        return ops.logical_and(started, on_beat)

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_fip")
class ConstantSparsity(PruningSchedule):
    """The same target sparsity from `begin_step` on.

    Args:
        target_sparsity: fraction of the pruned weights set to zero, in
            [0, 1).
        begin_step: first step at which the target applies.
        frequency: recompute the threshold every this many steps (1: every
            step, as the reference code; larger saves a sort of the pruned
            weights on big models).
    """

    def __init__(self, target_sparsity, begin_step=0, frequency=1):
        self.target_sparsity = check_sparsity("target_sparsity",
                                               target_sparsity)
        self.final_sparsity = self.target_sparsity
        self.begin_step = _check_step("begin_step", begin_step)
        self.frequency = _check_step("frequency", frequency, minimum=1)

    def sparsity(self, step):
        return ops.convert_to_tensor(self.target_sparsity, "float32")

    def get_config(self):
        return {"target_sparsity": self.target_sparsity,
                "begin_step": self.begin_step, "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="keras_fip")
class PolynomialDecay(PruningSchedule):
    """Sparsity rising from `initial_sparsity` to `final_sparsity`.

    s(t) = s_f + (s_i − s_f) (1 − p)^power with
    p = clip((t − begin_step) / (end_step − begin_step), 0, 1), as tfmot.

    Args:
        initial_sparsity: the sparsity at `begin_step`, in [0, 1).
        final_sparsity: the sparsity from `end_step` on, in [0, 1).
        begin_step: the step the ramp starts at.
        end_step: the step the ramp ends at, after `begin_step`.
        power: the polynomial's exponent (3 in tfmot).
        frequency: recompute the threshold every this many steps.
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step,
                 end_step, power=3, frequency=1):
        self.initial_sparsity = check_sparsity("initial_sparsity",
                                                initial_sparsity)
        self.final_sparsity = check_sparsity("final_sparsity",
                                              final_sparsity)
        self.begin_step = _check_step("begin_step", begin_step)
        self.end_step = _check_step("end_step", end_step)
        if self.end_step <= self.begin_step:
            raise ValueError(
                f"`end_step` ({end_step}) must come after `begin_step` "
                f"({begin_step}): the schedule would end before it starts."
            )
        if isinstance(power, bool) or not isinstance(power, (int, float)) \
                or power <= 0:
            raise ValueError(f"`power` must be a positive number; got "
                             f"{power!r}.")
        self.power = power
        self.frequency = _check_step("frequency", frequency, minimum=1)

    @property
    def final_step(self):
        return self.end_step

    def sparsity(self, step):
        span = float(self.end_step - self.begin_step)
        progress = ops.clip(
            (ops.cast(step, "float32") - self.begin_step) / span, 0.0, 1.0)
        return ops.cast(
            self.final_sparsity + (self.initial_sparsity - self.final_sparsity)
            * ops.power(1.0 - progress, self.power), "float32")

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step,
                "power": self.power, "frequency": self.frequency}


def get(schedule):
    """A schedule from a schedule, a number (constant) or a config dict."""
    if isinstance(schedule, PruningSchedule):
        return schedule
    if isinstance(schedule, dict):
        return keras.saving.deserialize_keras_object(schedule)
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        return ConstantSparsity(schedule)
    raise TypeError(
        "`sparsity` must be a number in [0, 1) or a "
        "keras_fip.sparsity.ConstantSparsity / PolynomialDecay; got "
        f"{schedule!r}."
    )
