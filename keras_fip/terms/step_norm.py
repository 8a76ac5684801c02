"""`StepNorm`: the ε-ball of the FIP step, in one place."""

import keras
from keras import ops

from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.base import gated
from keras_fip.tree_math import global_norm
from keras_fip.tree_math import scaled

MODES = ("rescale", "clip")


@keras.saving.register_keras_serializable(package="keras_fip")
class StepNorm(DirectionTerm):
    """d ← ε d / ‖d‖ (or d · min(1, ε/‖d‖)): the ε-ball of the step.

    The constraint ‖θ‖ ≤ ε of FIP's step, as the reference sparsification
    code enforces it: with `SGD(learning_rate=1.0)` each step then moves the
    weights exactly ε (the norm is over all variables together). Put it last
    in a chain. A modifier: it acts only while another term does.

    Args:
        epsilon: ε > 0. An optimizer variable once built.
        mode: `"rescale"` (default: every step has norm exactly ε, as in
            the reference code) or `"clip"` (the trust region ‖d‖ ≤ ε:
            shorter directions are left as they are, as the exact step
            `MetricSolve` needs).

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.StepNorm(0.01)
    ```
    """

    def __init__(self, epsilon, mode="rescale"):
        self._initial_epsilon = check_number("step_norm", epsilon,
                                             positive=True)
        if mode not in MODES:
            raise ValueError(f"Unknown StepNorm mode {mode!r}; expected "
                             f"one of {MODES}.")
        self.mode = mode
        self.epsilon = None

    def build(self, optimizer, variables):
        self.epsilon = optimizer.add_variable(
            shape=(), dtype="float32", name="step_norm",
            initializer=keras.initializers.Constant(self._initial_epsilon))

    def activity(self, step):
        return None

    def __call__(self, direction, step):
        factor = self.epsilon.value / ops.maximum(global_norm(direction),
                                                  1e-12)
        if self.mode == "clip":
            factor = ops.minimum(factor, 1.0)
        factor = gated(factor, step)
        return direction if factor is None else scaled(factor, direction)

    def current(self):
        """ε now (a float)."""
        if self.epsilon is None:
            return self._initial_epsilon
        return float(as_numpy(self.epsilon))

    def get_config(self):
        return {"epsilon": self.current(), "mode": self.mode}
