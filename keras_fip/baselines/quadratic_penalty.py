"""Shared base of the weight-importance methods (EWC, SI)."""

import numpy as np
from keras import ops

from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.continual_optimizer import _check_number


class QuadraticPenaltyOptimizer(ContinualOptimizer):
    """Adds the gradient of (λ/2) Σ_i Ω_i (w_i − w*_i)² to every step.

    Ω (importance) and w* (the weights at the last consolidation) are
    optimizer variables, zero until the first task ends, so the first task
    trains exactly as the inner optimizer. Subclasses decide how Ω is
    estimated (`_consolidate`).

    Args:
        inner_optimizer: the optimizer to wrap.
        strength: λ ≥ 0.
        name: the optimizer's name.
    """

    def __init__(self, inner_optimizer, strength, name=None, **kwargs):
        super().__init__(inner_optimizer, name=name, **kwargs)
        self.strength = _check_number("strength", strength)

    def _build_own(self, var_list):
        self.importance = self.add_optimizer_variables(var_list, "importance")
        self.anchor = self.add_optimizer_variables(var_list, "anchor")

    def _direction(self, grads, values, variables):
        strength = self.strength
        return [
            g + ops.cast(strength, g.dtype) * omega.value * (w - star.value)
            for g, w, omega, star in zip(grads, values, self.importance,
                                         self.anchor)
        ]

    # Host-side helpers --------------------------------------------------
    def _weights(self):
        return [np.array(ops.convert_to_numpy(v)) for v in
                self._trainable_variables]

    @staticmethod
    def _read(variables):
        return [np.array(ops.convert_to_numpy(v)) for v in variables]

    @staticmethod
    def _write(variables, arrays):
        for v, a in zip(variables, arrays):
            v.assign(np.asarray(a, dtype=v.dtype))

    def penalty(self):
        """(λ/2) Σ Ω (w − w*)² at the current weights (a float)."""
        return 0.5 * self.strength * float(sum(
            np.sum(omega * (w - star) ** 2)
            for w, omega, star in zip(self._weights(),
                                      self._read(self.importance),
                                      self._read(self.anchor))
        ))

    def begin_task(self, model, task_id, x, y=None):
        super().begin_task(model, task_id, x, y)
        if not self.built:
            self.build(model.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(strength=self.strength)
        return config
