"""`TowardWeights`: walk toward another network (connecting two optima)."""

import keras
import numpy as np
from keras import ops

from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import renamed_attribute
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.weight_variables import add_weight_variables


@keras.saving.register_keras_serializable(package="keras_fip")
class TowardWeights(DirectionTerm):
    """d ← d + λ (w − w_B): the gradient of L = (λ/2) ‖w − w_B‖².

    The paper's third secondary objective (Raghavan & Thomson 2021): with
    FIP's invariance term protecting network A's outputs, the path moves
    A's weights toward those of a second network B of the same
    architecture, so it connects the two optima through networks that keep
    A's function. w_B is held as optimizer variables
    (`keras_fip.terms.weight_variables`), so a `.keras` file keeps it.

    Args:
        target_weights: the other network's `model.trainable_weights`
            values (a list of arrays, in the order of the trained model's
            `trainable_variables`), e.g.
            `[keras.ops.convert_to_numpy(v.value) for v in
            other.trainable_variables]`, or `None` when restored from a
            file.
        weight: λ ≥ 0, the term's weight (default 1.0; `strength` is its
            deprecated 0.5 name).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    def net():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model_a, model_b = net(), net()
    toward_b = keras_fip.terms.TowardWeights(
        [keras.ops.convert_to_numpy(v.value)
         for v in model_b.trainable_variables])
    model_a.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.SGD(1.0), step_norm=0.01, objectives=[toward_b]),
        loss="mse")
    x = np.random.rand(16, 4).astype("float32")
    keras_fip.callbacks.remember_task(model_a, 0, x)  # protect A's outputs
    before = toward_b.distance(model_a.trainable_variables)
    model_a.fit(x, model_a.predict(x, verbose=0), epochs=3, verbose=0)
    assert toward_b.distance(model_a.trainable_variables) < before
    ```
    """

    strength = renamed_attribute("strength", "weight", since="0.6")

    @renamed_arguments(since="0.6", strength="weight")
    def __init__(self, target_weights=None, weight=1.0):
        self._target = (None if target_weights is None else
                        [np.asarray(w) for w in target_weights])
        self.weight = check_number("weight", weight)
        self.target = None

    def build(self, optimizer, variables):
        if self._target is not None:
            shapes = [tuple(v.shape) for v in variables]
            given = [tuple(w.shape) for w in self._target]
            if shapes != given:
                raise ValueError(
                    "TowardWeights got target weights of shapes "
                    f"{given[:4]}... but the optimizer updates variables "
                    f"of shapes {shapes[:4]}...: pass the other network's "
                    "trainable weights, in the order of the trained model's "
                    "`trainable_variables` (same architecture)."
                )
        # Initialised with w_B itself: under tf.function the optimizer is
        # built while tracing, where a later `assign` would not persist.
        self.target = add_weight_variables(optimizer, variables,
                                           "toward_target", self._target)

    def activity(self, step):
        return True

    def __call__(self, direction, step):
        weight = self.weight
        return [
            d + ops.cast(weight, d.dtype) * (
                w - self.target[i].value)
            for d, w, i in zip(direction, step.values, step.indices)
        ]

    def distance(self, variables):
        """‖w − w_B‖ for the given variables (a float, host side)."""
        return float(np.sqrt(sum(
            np.sum((as_numpy(v) - as_numpy(t)) ** 2)
            for v, t in zip(variables, self.target))))

    def get_config(self):
        return {"weight": self.weight}
