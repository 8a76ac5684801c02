"""The quadratic penalty term shared by EWC and SI."""

import numpy as np
from keras import ops

from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import renamed_attribute
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.weight_variables import add_weight_variables
from keras_fip.terms.weight_variables import read_all


class QuadraticPenaltyTerm(DirectionTerm):
    """d ← d + λ Ω ⊙ (w − w*): the gradient of (λ/2) Σ_i Ω_i (w_i − w*_i)².

    Ω (importance) and w* (the weights at the last consolidation) are
    optimizer variables, zero until the first task ends, so the first task
    trains exactly as the inner optimizer. Subclasses decide how Ω is
    estimated (in `end_task`).

    Args:
        weight: λ ≥ 0, the term's weight (`strength` is its deprecated 0.5
            name).
    """

    strength = renamed_attribute("strength", "weight", since="0.6")

    @renamed_arguments(since="0.6", strength="weight")
    def __init__(self, weight):
        self.weight = check_number("weight", weight)

    def build(self, optimizer, variables):
        self._optimizer_variables = list(variables)
        self.importance = add_weight_variables(optimizer, variables,
                                               "importance")
        self.anchor = add_weight_variables(optimizer, variables, "anchor")

    def __call__(self, direction, step):
        weight = self.weight
        return [
            d + ops.cast(weight, d.dtype) * self.importance[i].value * (
                w - self.anchor[i].value)
            for d, w, i in zip(direction, step.values, step.indices)
        ]

    def weights(self):
        """The weights now (NumPy, the optimizer's variable order)."""
        return read_all(self._optimizer_variables)

    def penalty(self):
        """(λ/2) Σ Ω (w − w*)² at the current weights (a float)."""
        return 0.5 * self.weight * float(sum(
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
