"""Scale-free balances of FIP's step: the new task against the kept outputs.

FIP's penalty step (`Invariance` after `ScaleGradient`) hands the inner
optimizer d = β ∇L + ∇D, with D summed over the memory batch: the balance
between the new task and the protected outputs is an absolute number, so it
moves with the loss's scale, the number of classes, the memory batch, the
learning rate and the number of epochs. The terms here state the balance in
units that depend on none of them. Each one replaces `Invariance` in the
chain (the task gradient is handed over unscaled: no `ScaleGradient`); D is
the mean distance over the memory batch, and m = ∇D its gradient:

- `RelativeInvariance`: d + ρ ‖d‖/‖m‖ · m. ρ is the pull's norm as a
  fraction of the task direction's.
- `ProjectedInvariance`: d − min(0, ⟨d, m⟩)/‖m‖² · m + ρ ‖d‖/‖m‖ · m. The
  part of d that raises D to first order is removed (A-GEM's projection,
  on the distance), then the relative pull is added.
- `DriftBound`: d + λ ‖d‖/‖m‖ · m with λ ← λ·exp(η·clip(D/δ − 1, ±1)). δ is
  the mean output distance a protected sample may drift (nats for the
  class distributions' distances).

`DriftBound` is dual ascent on the constraint D ≤ δ, in log space: λ grows
while the memory batch drifts more than δ and shrinks while it drifts less,
so the task is learned at full strength until the protected outputs reach
the bound. All three are the same for any positive rescaling of the loss
(‖d‖/‖m‖ cancels it), of the learning rate and of the memory batch.
"""

import keras
import numpy as np
from keras import ops

from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.terms.invariance import Invariance
from keras_fip.tree_math import dot
from keras_fip.tree_math import global_norm

#: The smallest ‖∇D‖ the balances divide by (exactly at the anchor ∇D is 0
#: and so is the pull).
TINY_NORM = 1e-12


def _relative_pull(direction, memory_grads, factor):
    """`factor ‖d‖/‖m‖ · m`, each tensor in its own dtype."""
    scale = factor * global_norm(direction) / ops.maximum(
        global_norm(memory_grads), TINY_NORM)
    return [ops.cast(scale, m.dtype) * m for m in memory_grads]


def _plus(xs, ys):
    return [x + y for x, y in zip(xs, ys)]


class _BalancedInvariance(Invariance):
    """An `Invariance` whose gradient is balanced against d by norms."""

    def __init__(self, distance="auto", from_logits=None,
                 token_reduction="mean", mask_key="padding_mask",
                 heads=None, label_weight=0.0, class_distance="logit_l2"):
        super().__init__(distance, "mean", from_logits,
                         token_reduction=token_reduction, mask_key=mask_key,
                         heads=heads, label_weight=label_weight,
                         class_distance=class_distance)

    def get_config(self):
        config = super().get_config()
        for key in ("reduction", "weight"):
            config.pop(key)
        return config


class _RelativePull(_BalancedInvariance):
    """A balance whose setting is ρ, the pull's norm relative to ‖d‖."""

    def __init__(self, weight, **kwargs):
        super().__init__(**kwargs)
        self.ratio = check_number("weight", weight)

    def get_config(self):
        return {"weight": self.ratio, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_fip")
class RelativeInvariance(_RelativePull):
    """d ← d + ρ (‖d‖/‖∇D‖) ∇D: the pull is a fixed fraction of the task's.

    D is the mean output distance between the network and its anchors over
    the memory batch (`Invariance`, `reduction="mean"`). The invariance
    gradient is rescaled to ρ times the norm of the task direction d, so
    the balance is the unitless ρ whatever the loss's scale, the number of
    classes, the batch sizes or the learning rate.

    Args:
        weight: ρ ≥ 0 (default 1: the pull as long as the task direction).
        **kwargs: `distance`, `from_logits`, `token_reduction`,
            `mask_key`, `heads`, `label_weight`, `class_distance`, as
            `Invariance` takes them.

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.terms.RelativeInvariance(weight=1.0)],
        memory=keras_fip.Memory(100))
    ```
    """

    def __init__(self, weight=1.0, **kwargs):
        super().__init__(weight, **kwargs)

    def combine(self, direction, memory_grads):
        return _plus(direction,
                     _relative_pull(direction, memory_grads, self.ratio))


@keras.saving.register_keras_serializable(package="keras_fip")
class ProjectedInvariance(_RelativePull):
    """d ← d − min(0, ⟨d, m⟩)/‖m‖² m + ρ (‖d‖/‖m‖) m,  m = ∇D.

    A step −η d changes D by −η ⟨d, m⟩ to first order; when that is an
    increase the component of d along m is removed (A-GEM's projection,
    with the gradient of the output distance instead of the memory's label
    loss), then the pull toward the anchors is added at ρ times the task
    direction's norm (`RelativeInvariance`).

    Args:
        weight: ρ ≥ 0 (default 0.5); 0 is the projection alone.
        **kwargs: `distance`, `from_logits`, `token_reduction`,
            `mask_key`, `heads`, `label_weight`, `class_distance`, as
            `Invariance` takes them.

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.ProjectedInvariance(weight=0.5)
    ```
    """

    def __init__(self, weight=0.5, **kwargs):
        super().__init__(weight, **kwargs)

    def combine(self, direction, memory_grads):
        squared = ops.maximum(dot(memory_grads, memory_grads),
                              TINY_NORM ** 2)
        overlap = ops.minimum(dot(direction, memory_grads), 0.0) / squared
        projected = [d - ops.cast(overlap, m.dtype) * m
                     for d, m in zip(direction, memory_grads)]
        if self.ratio == 0:
            return projected
        return _plus(projected,
                     _relative_pull(direction, memory_grads, self.ratio))


@keras.saving.register_keras_serializable(package="keras_fip")
class DriftBound(_BalancedInvariance):
    """d ← d + λ (‖d‖/‖∇D‖) ∇D, with λ adapted so that D stays ≤ δ.

    The ε-ball of FIP's step stated on the outputs: a protected sample's
    output may drift by δ (the mean distance D over the memory batch, in
    the distance's units: nats for Bhattacharyya and KL, squared logits
    for squared L2). After each step the multiplier follows dual ascent in
    log space,

        λ ← clip(λ · exp(η · clip(D/δ − 1, −1, 1)), λ_min, λ_max),

    so it grows while the memory drifts beyond δ and decays while it stays
    inside; the task direction is never scaled down. λ restarts at
    `initial_multiplier` when a task begins and is an optimizer variable
    (`multiplier`): saved with the optimizer, readable by callbacks.

    Args:
        bound: δ > 0, the allowed mean drift (default 0.02).
        rate: η > 0, the multiplier's step in log space (default 0.05).
        initial_multiplier: λ when a task begins (default 0.1).
        multiplier_range: `(λ_min, λ_max)` (default `(0.01, 100.0)`).
        **kwargs: `distance`, `from_logits`, `token_reduction`,
            `mask_key`, `heads`, `class_distance`, as `Invariance` takes
            them (the bound is on the distance alone: no `label_weight`).

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.DriftBound(bound=0.02)
    ```
    """

    def __init__(self, bound=0.02, rate=0.05, initial_multiplier=0.1,
                 multiplier_range=(0.01, 100.0), **kwargs):
        if kwargs.get("label_weight"):
            raise ValueError(
                "DriftBound bounds the output distance alone and does not "
                "take label_weight; use RelativeInvariance(label_weight=...) "
                "to keep the memory's labels.")
        super().__init__(**kwargs)
        self.bound = check_number("bound", bound, positive=True)
        self.rate = check_number("rate", rate, positive=True)
        low, high = _check_range(multiplier_range)
        self.multiplier_range = (low, high)
        self.initial_multiplier = check_number(
            "initial_multiplier", initial_multiplier, positive=True)
        if not low <= self.initial_multiplier <= high:
            raise ValueError(
                f"initial_multiplier={initial_multiplier} is outside "
                f"multiplier_range={multiplier_range}.")
        self.multiplier = None

    def build(self, optimizer, variables):
        super().build(optimizer, variables)
        self.multiplier = optimizer.add_variable(
            shape=(), dtype="float32", name="drift_multiplier",
            initializer=keras.initializers.Constant(
                self.initial_multiplier))

    def combine(self, direction, memory_grads):
        return _plus(direction, _relative_pull(
            direction, memory_grads, self.multiplier.value))

    def __call__(self, direction, step):
        direction = super().__call__(direction, step)
        if not step.has_memory:
            return direction
        current = self.multiplier.value
        excess = ops.clip(self.last_loss.value / self.bound - 1.0, -1.0, 1.0)
        low, high = self.multiplier_range
        updated = ops.clip(current * ops.exp(self.rate * excess), low, high)
        self.multiplier.assign(ops.where(step.memory_active, updated,
                                         current))
        return direction

    def begin_task(self, optimizer, model, task):
        super().begin_task(optimizer, model, task)
        if self.multiplier is not None:
            self.multiplier.assign(self.initial_multiplier)

    def current_multiplier(self):
        """λ now (a float)."""
        if self.multiplier is None:
            return self.initial_multiplier
        return float(as_numpy(self.multiplier))

    def get_config(self):
        config = super().get_config()
        config.pop("label_weight")
        return {"bound": self.bound, "rate": self.rate,
                "initial_multiplier": self.initial_multiplier,
                "multiplier_range": list(self.multiplier_range), **config}


def _check_range(value):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(
            "multiplier_range must be a pair (λ_min, λ_max) of numbers; "
            f"got {value!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise ValueError(
            "multiplier_range must satisfy 0 < λ_min <= λ_max (finite); "
            f"got {value!r}.")
    return low, high
