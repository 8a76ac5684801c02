"""`ScaleGradient`: β, the weight of the secondary objective."""

import keras

from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.base import gated
from keras_fip.tree_math import scaled


@keras.saving.register_keras_serializable(package="keras_fip")
class ScaleGradient(DirectionTerm):
    """d ← β d: weighs the task gradient against the terms after it.

    In FIP's step θ* = argmin θᵀgθ + β θᵀ∇L, β trades the new objective
    against output invariance. β is an optimizer variable once built, so
    a callback may change it (`optimizer.beta.assign(0.5)`). A modifier:
    it acts only while another term does (with nothing to protect, the step
    is the inner optimizer's).

    Args:
        beta: β ≥ 0, the weight of the direction so far (default 1.0).

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.ScaleGradient(0.3)
    ```
    """

    def __init__(self, beta=1.0):
        self._initial_beta = check_number("beta", beta)
        self.beta = None

    def build(self, optimizer, variables):
        self.beta = optimizer.add_variable(
            shape=(), dtype="float32", name="beta",
            initializer=keras.initializers.Constant(self._initial_beta))

    def activity(self, step):
        return None

    def __call__(self, direction, step):
        factor = gated(self.beta.value, step)
        return direction if factor is None else scaled(factor, direction)

    def current(self):
        """β now (a float)."""
        if self.beta is None:
            return self._initial_beta
        return float(as_numpy(self.beta))

    def get_config(self):
        return {"beta": self.current()}
