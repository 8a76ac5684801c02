"""Synaptic Intelligence (SI)."""

import keras
import numpy as np
from keras import ops

from keras_fip.baselines.quadratic_penalty import QuadraticPenaltyOptimizer
from keras_fip.continual_optimizer import _check_number


@keras.saving.register_keras_serializable(package="keras_fip")
class SIOptimizer(QuadraticPenaltyOptimizer):
    """SI: importance from each weight's contribution to the loss decrease.

    During a task every step adds ω ← ω − g ⊙ Δw (g the task gradient, Δw
    the step taken). At the task's end Ω ← Ω + ω / ((w − w_start)² + ξ),
    w* ← w, ω ← 0 (negative ω clipped at 0); the steps follow
    d = ∇L + c Ω ⊙ (w − w*). Zenke, Poole &
    Ganguli, "Continual Learning Through Synaptic Intelligence" (ICML 2017);
    c = 0.1 and ξ = 0.1 are our defaults (the paper tunes c per benchmark).

    Args:
        inner_optimizer: the optimizer to wrap.
        si_lambda: c ≥ 0.
        damping: ξ > 0.
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.SIOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(self, inner_optimizer, si_lambda=0.1, damping=0.1, name=None,
                 **kwargs):
        super().__init__(inner_optimizer, strength=si_lambda, name=name,
                         **kwargs)
        self.damping = _check_number("damping", damping, positive=True)

    def _build_own(self, var_list):
        super()._build_own(var_list)
        self.path_integral = self.add_optimizer_variables(var_list, "omega")
        self.task_start = self.add_optimizer_variables(var_list, "start")

    def _after_update(self, grads, old_values, new_values):
        for omega, g, old, new in zip(self.path_integral, grads, old_values,
                                      new_values):
            omega.assign(omega.value - ops.cast(g, omega.dtype) * (new - old))

    def begin_task(self, model, task_id, x, y=None):
        super().begin_task(model, task_id, x, y)
        self._write(self.task_start, self._weights())

    def end_task(self, model, task_id, x, y=None):
        w = self._weights()
        omega = self._read(self.path_integral)
        start = self._read(self.task_start)
        importance = [
            big + np.maximum(o, 0.0) / ((wi - s) ** 2 + self.damping)
            for big, o, wi, s in zip(self._read(self.importance), omega, w,
                                     start)
        ]
        self._write(self.importance, importance)
        self._write(self.anchor, w)
        self._write(self.path_integral, [np.zeros_like(o) for o in omega])

    def get_config(self):
        config = super().get_config()
        config.pop("strength")
        config.update(si_lambda=self.strength, damping=self.damping)
        return config
