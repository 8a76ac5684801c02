"""Weight-shaped state of a term, held as optimizer variables.

Several terms keep one array per trained weight across steps: another
network's weights (`TowardWeights`' w_B), the path's start
(`PathStartTerm`'s w₀), a consolidation point and its importances (EWC,
SI), the last CG solution (`MetricSolve`). They are optimizer variables so
that JAX threads them through the compiled step, `tf.function` sees their
updates and `.keras` files save them; each is created *from* its weight
(`add_variable_from_reference`: same shape and dtype, and the weight's
distribution layout, so a sharded model's state is sharded alike), and
given its first value by initializer, because under `tf.function` the
optimizer is built while the step is traced, where a later `assign` would
not persist.

On the host side, `read_all` and `write_all` copy them to and from NumPy:
a copy each way, so that a state variable never shares a buffer with a
model variable (JAX's `fit` hands the model's buffers back to the model).

Example:

```python
import keras, numpy as np
from keras_fip.terms import weight_variables
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
optimizer = keras.optimizers.SGD()
optimizer.build(model.trainable_variables)
start = weight_variables.add_weight_variables(
    optimizer, model.trainable_variables, "start",
    values=weight_variables.read_all(model.trainable_variables))
model.layers[0].kernel.assign(np.zeros((4, 3)))
assert not np.allclose(weight_variables.read_all(start)[0], 0)
```
"""

import keras
import numpy as np
from keras import ops

from keras_fip.arrays import as_numpy


class FixedValue(keras.initializers.Initializer):
    """An initializer that returns one given array (cast to the dtype).

    Args:
        value: the array every call returns.
    """

    def __init__(self, value):
        self.value = value

    def __call__(self, shape, dtype=None):
        return ops.cast(self.value, dtype)


def add_weight_variables(optimizer, variables, name, values=None):
    """One optimizer variable per weight in `variables`, created like it.

    Args:
        optimizer: the (continual) optimizer being built.
        variables: the weights, in the optimizer's variable order.
        name: the variables' name suffix (Keras prefixes each weight's
            path), e.g. `"path_start"`.
        values: their first values: `None` (default) for zeros, or one
            array per weight (copied into the variable).

    Returns:
        The list of new optimizer variables, in the order of `variables`.
    """
    variables = list(variables)
    if values is None:
        return [optimizer.add_variable_from_reference(v, name=name)
                for v in variables]
    values = list(values)
    if len(values) != len(variables):
        raise ValueError(f"{len(values)} values for {len(variables)} "
                         f"weights of `{name}`: give one per weight.")
    return [optimizer.add_variable_from_reference(
                v, name=name, initializer=FixedValue(value))
            for v, value in zip(variables, values)]


def read_all(variables):
    """NumPy copies of a list of variables."""
    return [np.array(as_numpy(v)) for v in variables]


def write_all(variables, arrays):
    """Assigns each array to its variable (a copy, in the variable's dtype).

    Args:
        variables: the variables to write.
        arrays: one array (or variable, read host side) per variable.
    """
    for v, a in zip(variables, arrays):
        v.assign(np.array(as_numpy(a), dtype=v.dtype))
