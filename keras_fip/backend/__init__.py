"""The few operations `keras.ops` lacks, dispatched on the Keras backend.

Everything else in `keras_fip` is written with `keras.ops`. This module
mirrors Keras's own `keras/src/backend/` layout: one small file per backend,
and `value_and_grad` picked at import time from `keras.backend.backend()`.

`jvp(fn, values, tangents)` returns `(fn(values), J tangents)`, a
forward-mode product (the metric-tensor products of `keras_fip.geometry`).
`value_and_grad(fn, values)` returns `(fn(values), grads)` for a function
`fn` of a list of tensors returning a scalar; `grads` is a list of dense
tensors shaped like `values` (zeros where `fn` does not depend on a value).
It is called inside compiled train steps (XLA, `jax.jit`) and under the
`torch.no_grad()` Keras applies gradients in. `compile_function(fn)`
compiles a function of tensors the way the backend compiles a train step
(`jax.jit`, `tf.function`; torch runs eagerly). `to_dense(g)` turns
TensorFlow's IndexedSlices (embedding gradients) into dense tensors.
`memory_cond(pred, true_fn, false_fn)` is the branch the memory terms take
on whether the memory is active: `keras.ops.cond`, except on JAX's CPU
platform, where both branches run and `where` selects (XLA:CPU emits a
convolution's weight gradient inside a conditional as a slow loop).
`replicas_in_sync()` is the number of `tf.distribute` replicas that each
compute their own step (1 on JAX and torch, and without a strategy),
`all_reduce_sum(tensors)` sums tensors over them, and `variable_scope(model)`
is where state the model's steps read must be created (the model's
strategy, so it is mirrored).
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "jax":
    from keras_fip.backend.common import all_reduce_sum
    from keras_fip.backend.common import replicas_in_sync
    from keras_fip.backend.common import to_numpy
    from keras_fip.backend.common import variable_scope
    from keras_fip.backend.jax import compile_function
    from keras_fip.backend.jax import jvp
    from keras_fip.backend.jax import memory_cond
    from keras_fip.backend.jax import to_dense
    from keras_fip.backend.jax import value_and_grad
elif _BACKEND == "tensorflow":
    from keras_fip.backend.common import memory_cond
    from keras_fip.backend.common import to_numpy
    from keras_fip.backend.tensorflow import all_reduce_sum
    from keras_fip.backend.tensorflow import compile_function
    from keras_fip.backend.tensorflow import jvp
    from keras_fip.backend.tensorflow import replicas_in_sync
    from keras_fip.backend.tensorflow import to_dense
    from keras_fip.backend.tensorflow import value_and_grad
    from keras_fip.backend.tensorflow import variable_scope
elif _BACKEND == "torch":
    from keras_fip.backend.common import all_reduce_sum
    from keras_fip.backend.common import memory_cond
    from keras_fip.backend.common import replicas_in_sync
    from keras_fip.backend.common import variable_scope
    from keras_fip.backend.torch import compile_function
    from keras_fip.backend.torch import jvp
    from keras_fip.backend.torch import to_dense
    from keras_fip.backend.torch import to_numpy
    from keras_fip.backend.torch import value_and_grad
else:
    raise ImportError(
        f"keras_fip supports the 'jax', 'tensorflow' and 'torch' Keras "
        f"backends; KERAS_BACKEND is {_BACKEND!r}. Set KERAS_BACKEND to one "
        "of the supported backends before importing keras."
    )

__all__ = [
    "all_reduce_sum",
    "compile_function",
    "jvp",
    "memory_cond",
    "replicas_in_sync",
    "to_dense",
    "to_numpy",
    "value_and_grad",
    "variable_scope",
]
