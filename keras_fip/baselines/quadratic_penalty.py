"""The quadratic penalty term shared by EWC and SI."""

import numpy as np
from keras import ops

from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.terms.base import DirectionTerm
from keras_fip.arrays import as_numpy


def read_all(variables):
    """NumPy copies of a list of variables."""
    return [np.array(as_numpy(v)) for v in variables]


def write_all(variables, arrays):
    """Assigns each array to its variable (in the variable's dtype)."""
    for v, a in zip(variables, arrays):
        v.assign(np.asarray(a, dtype=v.dtype))


class QuadraticPenaltyTerm(DirectionTerm):
    """d ← d + λ Ω ⊙ (w − w*): the gradient of (λ/2) Σ_i Ω_i (w_i − w*_i)².

    Ω (importance) and w* (the weights at the last consolidation) are
    optimizer variables, zero until the first task ends, so the first task
    trains exactly as the inner optimizer. Subclasses decide how Ω is
    estimated (in `end_task`).

    Args:
        strength: λ ≥ 0.
    """

    def __init__(self, strength):
        self.strength = check_number("strength", strength)

    def build(self, optimizer, variables):
        self._optimizer_variables = list(variables)
        self.importance = optimizer.add_optimizer_variables(variables,
                                                            "importance")
        self.anchor = optimizer.add_optimizer_variables(variables, "anchor")

    def __call__(self, direction, step):
        strength = self.strength
        return [
            d + ops.cast(strength, d.dtype) * self.importance[i].value * (
                w - self.anchor[i].value)
            for d, w, i in zip(direction, step.values, step.indices)
        ]

    def weights(self):
        """The weights now (NumPy, the optimizer's variable order)."""
        return read_all(self._optimizer_variables)

    def penalty(self):
        """(λ/2) Σ Ω (w − w*)² at the current weights (a float)."""
        return 0.5 * self.strength * float(sum(
            np.sum(omega * (w - star) ** 2)
            for w, omega, star in zip(self.weights(),
                                      read_all(self.importance),
                                      read_all(self.anchor))
        ))


class QuadraticPenaltyOptimizer(ContinualOptimizer):
    """A preset over one `QuadraticPenaltyTerm` (EWC, SI)."""

    @property
    def importance(self):
        """Ω, one optimizer variable per weight."""
        return self.terms[0].importance

    @property
    def anchor(self):
        """w*, the weights at the last task's end (optimizer variables)."""
        return self.terms[0].anchor

    def penalty(self):
        """(λ/2) Σ Ω (w − w*)² at the current weights (a float)."""
        return self.terms[0].penalty()

    def get_config(self):
        return self._preset_config(self.terms[0])
