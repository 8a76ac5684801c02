"""Gradients for the JAX backend."""

import jax
import jax.numpy as jnp


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


def memory_cond(pred, true_fn, false_fn):
    """`true_fn()` where `pred` else `false_fn()`, for the memory branches.

    On XLA:CPU the weight gradient of a convolution inside `lax.cond` is
    emitted as a plain loop: for the digits CNN at a batch of 64 it took
    66.8 ms against 8.3 ms outside a conditional
    (`benchmarks/cond_conv_gradient.py`), and the whole FIP step on that
    CNN took 48.9 ms against 8.4 ms with this function
    (`benchmarks/step_time.py --configs digits-cnn`). There both branches
    run and `jnp.where` picks one (the same values; the first task, whose
    memory is empty, pays one unused memory pass). Other platforms keep
    `lax.cond`, which skips the work. The platform is JAX's default one.
    """
    if jax.default_backend() != "cpu":
        return jax.lax.cond(pred, true_fn, false_fn)
    taken, other = true_fn(), false_fn()
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b),
                                  taken, other)
