"""Gradients for the JAX backend."""

import jax


def value_and_grad(fn, values):
    """`(fn(values), d fn / d values)`; see `keras_fip.backend`."""
    value, grads = jax.value_and_grad(fn)(list(values))
    return value, list(grads)


def to_dense(x):
    """Gradients are already dense on this backend."""
    return x



def jvp(fn, values, tangents):
    """`(fn(values), J tangents)`: a forward-mode product (`jax.jvp`)."""
    return jax.jvp(lambda *v: fn(list(v)), tuple(values), tuple(tangents))


def compile_function(fn):
    """`fn` compiled with `jax.jit` (arguments are arrays or lists of them)."""
    return jax.jit(fn)
