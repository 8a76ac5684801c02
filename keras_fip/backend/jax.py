"""Gradients for the JAX backend."""

import jax


def value_and_grad(fn, values):
    """Returns `(fn(values), d fn / d values)` for a scalar `fn`.

    Args:
        fn: a function of a list of tensors returning a scalar tensor.
        values: the list of tensors to differentiate with respect to.

    Returns:
        A tuple `(value, grads)`, `grads` a list shaped like `values`.
    """
    value, grads = jax.value_and_grad(fn)(list(values))
    return value, list(grads)
