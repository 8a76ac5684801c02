"""Where FIP's state lives when the model is spread over devices.

Under `keras.distribution` (the JAX backend) every variable has a
*layout*: how its array is cut over the device mesh. FIP adds three kinds
of state, and each follows the model:

- **per-weight copies** (a snapshot of the trainable weights w₀,
  `TowardWeights`' w_B, EWC's anchor, the model-state copy): the layout of
  their weight, so a weight cut 8 ways has its copy cut the same 8 ways
  and each device holds 1/8 of the copy (`like_weight`; `of_path` when
  only the weight's path is known, as when a `.keras` file is loaded);
- **per-sample arrays** of the memory (its inputs, labels, anchors): cut
  along the mesh's batch axis, the distribution's data layout, when the
  capacity N divides evenly over it (each device holds N / b samples);
  replicated otherwise (`per_sample`);
- **scalars** (counters, multipliers): replicated.

So FIP's state per device is its share of one copy of what it protects
plus N / b stored samples (`docs/guides/scaling.md` has the formula and
measurements).

`keras.distribution` is only wired into Keras 3.15's JAX backend: on
TensorFlow and PyTorch a distribution set with
`keras.distribution.set_distribution` gives variables no layout, so FIP
refuses it (`current_distribution`) rather than train on one device while
the user believes otherwise. `tf.distribute` strategies work on
TensorFlow.

Example:

```python
import keras
from keras_fip import layouts
layouts.current_distribution()   # None: nothing is distributed
```
"""

import keras
import ml_dtypes  # noqa: F401  (numpy knows bfloat16 once imported)
import numpy as np

from keras_fip import compat


def current_distribution():
    """The `keras.distribution` in effect, or `None`.

    Raises:
        ValueError: a distribution is set on a backend other than JAX.
    """
    distribution = keras.distribution.distribution()
    backend = keras.backend.backend()
    if distribution is not None and backend != "jax":
        raise ValueError(
            f"A keras.distribution ({type(distribution).__name__}) is set, "
            f"but Keras {keras.__version__} distributes variables with it "
            f"only on the JAX backend; on {backend!r} every variable would "
            "stay on one device. Set KERAS_BACKEND=jax to shard the model "
            "and FIP's state, or remove the distribution "
            "(keras.distribution.set_distribution(None))"
            + (" and use a tf.distribute strategy (MirroredStrategy)."
               if backend == "tensorflow" else "."))
    return distribution


def like_weight(weight):
    """The layout of a copy of `weight`: the weight's own (or `None`).

    Args:
        weight: a model variable.
    """
    distribution = current_distribution()
    if distribution is None:
        return None
    layout = compat.variable_layout(weight)
    if layout is not None:
        return layout
    return distribution.get_variable_layout(weight)


class _DescribedWeight:
    """A weight known by its path and shape (what a layout map reads)."""

    def __init__(self, path, shape):
        self.path = path
        self.shape = tuple(shape)


def of_path(path, shape):
    """The layout the distribution gives a weight at `path` (or `None`).

    For copies built before their weight is at hand (loading a file): the
    distribution's layout map is keyed by weight paths.

    Args:
        path: the weight's path (`variable.path`), or `None` if unknown.
        shape: the weight's shape.
    """
    distribution = current_distribution()
    if distribution is None or path is None:
        return None
    return distribution.get_variable_layout(_DescribedWeight(path, shape))


def per_sample(shape):
    """The layout of an array of samples (leading axis): cut along the
    mesh's batch axis when it divides evenly, else replicated.

    Args:
        shape: the array's shape, samples first.

    Returns:
        A `keras.distribution.TensorLayout`, or `None` without a
        distribution.
    """
    distribution = current_distribution()
    if distribution is None:
        return None
    shape = tuple(shape)
    layout = distribution.get_data_layout(shape)
    mesh = layout.device_mesh
    axis = layout.axes[0] if layout.axes else None
    if axis is not None:
        ways = mesh.shape[list(mesh.axis_names).index(axis)]
        if shape and shape[0] % ways == 0:
            return layout
    return keras.distribution.TensorLayout([None] * len(shape), mesh)


def shard_bytes(variable):
    """The bytes of `variable` held on each device, `{device: bytes}`.

    Read from the array's shards (JAX); one entry, the whole array, on
    other backends or without a distribution.
    """
    shards = getattr(variable.value, "addressable_shards", None)
    if not shards:
        itemsize = np.dtype(variable.dtype).itemsize
        return {"host": int(np.prod(variable.shape)) * itemsize}
    return {str(s.device): int(s.data.nbytes) for s in shards}
