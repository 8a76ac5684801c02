"""Synaptic Intelligence (SI)."""

import keras
import numpy as np
from keras import ops

from keras_fip.baselines.quadratic_penalty import QuadraticPenaltyOptimizer
from keras_fip.baselines.quadratic_penalty import QuadraticPenaltyTerm
from keras_fip.checks import check_number
from keras_fip.deprecation import renamed_arguments
from keras_fip.terms.weight_variables import add_weight_variables
from keras_fip.terms.weight_variables import read_all
from keras_fip.terms.weight_variables import write_all


@keras.saving.register_keras_serializable(package="keras_fip")
class PathIntegralPenaltyTerm(QuadraticPenaltyTerm):
    """SI's penalty: importance from each weight's share of the loss drop.

    Every step ω ← ω − g ⊙ Δw (an observer); at a task's end
    Ω ← Ω + max(ω, 0) / ((w − w_start)² + ξ), w* ← w, ω ← 0.

    Args:
        weight: c ≥ 0, the term's weight (default 0.1; `si_lambda` is its
            deprecated 0.5 name).
        damping: ξ > 0 (default 0.1).

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.baselines.PathIntegralPenaltyTerm(weight=1.0)])
    ```
    """

    observes = True

    @renamed_arguments(since="0.6", si_lambda="weight")
    def __init__(self, weight=0.1, damping=0.1):
        super().__init__(weight)
        self.damping = check_number("damping", damping, positive=True)

    def build(self, optimizer, variables):
        super().build(optimizer, variables)
        self.path_integral = add_weight_variables(optimizer, variables,
                                                  "omega")
        self.task_start = add_weight_variables(optimizer, variables, "start")

    def observe(self, grads, old_values, new_values):
        for omega, g, old, new in zip(self.path_integral, grads, old_values,
                                      new_values):
            omega.assign(omega.value - ops.cast(g, omega.dtype) * (new - old))

    def begin_task(self, optimizer, model, task):
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        write_all(self.task_start, self.weights())

    def end_task(self, optimizer, model, task):
        w = self.weights()
        omega = read_all(self.path_integral)
        start = read_all(self.task_start)
        importance = [
            big + np.maximum(o, 0.0) / ((wi - s) ** 2 + self.damping)
            for big, o, wi, s in zip(read_all(self.importance), omega, w,
                                     start)
        ]
        write_all(self.importance, importance)
        write_all(self.anchor, w)
        write_all(self.path_integral, [np.zeros_like(o) for o in omega])

    def get_config(self):
        return {"weight": self.weight, "damping": self.damping}


@keras.saving.register_keras_serializable(package="keras_fip")
class SIOptimizer(QuadraticPenaltyOptimizer):
    """SI: importance from each weight's contribution to the loss decrease.

    During a task every step adds ω ← ω − g ⊙ Δw (g the task gradient, Δw
    the step taken). At the task's end Ω ← Ω + ω / ((w − w_start)² + ξ),
    w* ← w, ω ← 0 (negative ω clipped at 0); the steps follow
    d = ∇L + c Ω ⊙ (w − w*). Zenke, Poole &
    Ganguli, "Continual Learning Through Synaptic Intelligence" (ICML 2017);
    c = 0.1 and ξ = 0.1 are our defaults (the paper tunes c per benchmark).
    A preset over `PathIntegralPenaltyTerm`.

    Args:
        inner_optimizer: the optimizer to wrap.
        weight: c ≥ 0, the penalty's weight (default 0.1; `si_lambda` is
            its deprecated 0.5 name).
        damping: ξ > 0 (default 0.1).
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.SIOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    @renamed_arguments(since="0.6", si_lambda="weight")
    def __init__(self, inner_optimizer, weight=0.1, damping=0.1, name=None,
                 **kwargs):
        penalty = PathIntegralPenaltyTerm(weight, damping)
        super().__init__(inner_optimizer, terms=[penalty], name=name,
                         **kwargs)

    @property
    def path_integral(self):
        """SI's running ω (optimizer variables)."""
        return self.terms[0].path_integral
