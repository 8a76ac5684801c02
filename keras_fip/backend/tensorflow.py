"""Gradients for the TensorFlow backend (eager, `tf.function` and XLA)."""

import contextlib

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


def all_reduce_sum(tensors):
    """Σ over `tf.distribute` replicas of each tensor (as is without)."""
    tensors = list(tensors)
    context = tf.distribute.get_replica_context()
    if replicas_in_sync() == 1 or context is None:
        return tensors
    return list(context.all_reduce(tf.distribute.ReduceOp.SUM, tensors))


def variable_scope(model):
    """Where state read by the model's steps is created: the model's
    `tf.distribute` strategy, so that its variables are mirrored."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else \
        contextlib.nullcontext()


def jvp(fn, values, tangents):
    """`(fn(values), J tangents)` with `tf.autodiff.ForwardAccumulator`."""
    values = [tf.identity(v) for v in values]
    with tf.autodiff.ForwardAccumulator(values, list(tangents)) as acc:
        out = fn(values)
    tangent = acc.jvp(out, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return out, tangent


def compile_function(fn):
    """`fn` as a `tf.function` (traced once per input signature)."""
    return tf.function(fn, reduce_retracing=True)
