"""Gradients for the TensorFlow backend (eager, `tf.function` and XLA)."""

import tensorflow as tf


def value_and_grad(fn, values):
    """Returns `(fn(values), d fn / d values)` for a scalar `fn`.

    Args:
        fn: a function of a list of tensors returning a scalar tensor.
        values: the list of tensors (or `tf.Variable`s) to differentiate
            with respect to.

    Returns:
        A tuple `(value, grads)`, `grads` a list shaped like `values`.
    """
    values = [tf.identity(v) for v in values]
    with tf.GradientTape() as tape:
        tape.watch(values)
        value = fn(values)
    grads = tape.gradient(
        value, values, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    # Embedding lookups give IndexedSlices; the FIP direction is dense.
    grads = [tf.convert_to_tensor(g) for g in grads]
    return value, grads
