"""Gradients for the TensorFlow backend (eager, `tf.function` and XLA)."""

import tensorflow as tf


def value_and_grad(fn, values):
    """`(fn(values), d fn / d values)`; see `keras_fip.backend`."""
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


def to_dense(x):
    """A dense tensor (embedding gradients arrive as IndexedSlices)."""
    return tf.convert_to_tensor(x)


def replicas_in_sync():
    """Replicas a `tf.distribute` strategy runs each step on (1 if none)."""
    if not tf.distribute.has_strategy():
        return 1
    return tf.distribute.get_strategy().num_replicas_in_sync
