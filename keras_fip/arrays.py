"""One conversion to NumPy for tensors and Keras variables alike."""

import keras

from keras_fip import backend as fip_backend


def as_numpy(x):
    """`x` (a tensor, a `keras.Variable` or an array) as a NumPy array.

    A variable is converted through its value, and a torch tensor by its
    own `.numpy()`: NumPy 2 warns when it has to call an `__array__` that
    takes no `copy` argument (Keras variables', torch tensors').

    In a JAX run over several processes (`keras.distribution.initialize`),
    an array sharded over devices of other processes is gathered whole
    (`jax.experimental.multihost_utils.process_allgather`): that is a
    collective, so every process must read it, in the same order (as
    `TaskBoundary` and `Memory` do: every process runs the same host-side
    code). An array every process holds whole (replicated) is read
    without one.
    """
    if isinstance(x, keras.Variable):
        x = x.value
    return fip_backend.to_numpy(_gathered(x))


def _gathered(x):
    """`x`, or a JAX array spread over several processes gathered whole."""
    if keras.backend.backend() != "jax":
        return x
    import jax

    if (isinstance(x, jax.Array) and not x.is_fully_addressable
            and not x.is_fully_replicated):
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(x, tiled=True)
    return x
