"""What every backend without `tf.distribute` replicas shares.

JAX shards one global step with `keras.distribution` and PyTorch runs one
process per device: no two replicas compute a step apart, so nothing needs
reducing and no scope is needed to create state.
"""

import contextlib


def replicas_in_sync():
    """Replicas computing each step apart: always 1 here."""
    return 1


def all_reduce_sum(tensors):
    """The tensors themselves (no replicas compute apart here)."""
    return list(tensors)


def variable_scope(model):
    """No scope is needed to create state on this backend."""
    return contextlib.nullcontext()


def to_numpy(x):
    """`keras.ops.convert_to_numpy` (no warning to avoid here)."""
    from keras import ops

    return ops.convert_to_numpy(x)


def memory_cond(pred, true_fn, false_fn):
    """`keras.ops.cond`: only the branch `pred` picks runs."""
    from keras import ops

    return ops.cond(pred, true_fn, false_fn)
