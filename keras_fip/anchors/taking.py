"""Taking anchors, host side: the model's outputs on stored inputs.

Shared by the storages that keep (a form of) the outputs, and by the
memory's anchoring pass (`anchor_memory`): which stored samples need
anchors, and the finite check that keeps a diverged network out of the
memory.

The outputs are taken in chunks of `batch_size` samples (default
`ANCHOR_BATCH_SIZE`, 32) by one compiled inference function per model
(`forward_function`: `model.stateless_call` under `jax.jit` or
`tf.function`; torch runs it eagerly on detached weights, without an
autograd graph). The last chunk is padded to `batch_size`, so the function
is traced once. Each chunk's outputs are encoded and written into the
rows of one preallocated host array per anchor variable, so anchoring
holds one chunk's outputs (B · Π(output shape) values per head) beyond the
anchors themselves, whatever the memory's size N.
"""

import weakref

import numpy as np
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip import nested
from keras_fip.arrays import as_numpy

#: Samples per anchoring forward pass (`Memory.consolidate`'s default).
ANCHOR_BATCH_SIZE = 32
#: The compiled inference function of each model (`forward_function`).
_FORWARDS = weakref.WeakKeyDictionary()


def call_model(model, inputs):
    """Runs `model` in inference mode; explains input mismatches.

    Returns:
        The outputs, a tensor or a structure of tensors (one per head).
    """
    try:
        return model(inputs, training=False)
    except Exception as error:  # re-raised with what the user can fix
        template, leaves = nested.flatten(inputs)
        raise ValueError(
            "The memory inputs do not fit the model: calling the model on "
            "inputs "
            f"{nested.describe(template, [a.shape[1:] for a in leaves])} "
            f"failed with {type(error).__name__}: {error}"
        ) from error


def forward_function(model):
    """The model's compiled inference pass: `forward(inputs)` -> outputs.

    `model.stateless_call(w, s, x, training=False)` compiled the way the
    backend compiles a step (`keras_fip.backend.compile_function`: `jax.jit`,
    `tf.function`, torch eagerly), on the current values of the weights w
    (detached: no gradient is recorded) and state s. Kept per model while
    its variables stay the same ones (a new set, e.g. LoRA enabled, gets a
    new function). Eager calls leave JAX an executable per operation and
    record torch's autograd graph; a compiled pass holds neither.
    """
    key = tuple(id(v) for v in model.variables)
    cached = _FORWARDS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    ref = weakref.ref(model)  # the cache must not keep the model alive

    def forward(trainable, non_trainable, inputs):
        outputs, _ = ref().stateless_call(trainable, non_trainable, inputs,
                                          training=False)
        return outputs

    compiled = fip_backend.compile_function(forward)

    def call(inputs):
        current = ref()
        return compiled(
            [ops.stop_gradient(v.value) for v in current.trainable_variables],
            [v.value for v in current.non_trainable_variables],
            inputs)

    _FORWARDS[model] = (key, call)
    return call


def _padded(leaves, start, batch_size):
    """Rows `start:start + batch_size` of each leaf, the last row repeated
    up to `batch_size` rows; returns them and how many are real."""
    chunk = [a[start:start + batch_size] for a in leaves]
    real = len(chunk[0])
    if real < batch_size:
        chunk = [np.concatenate([a, np.repeat(a[-1:], batch_size - real,
                                              axis=0)]) for a in chunk]
    return chunk, real


def output_chunks(model, inputs, batch_size=ANCHOR_BATCH_SIZE):
    """The model's outputs on `inputs`, chunk by chunk.

    Args:
        model: a Keras model.
        inputs: inputs as the model's call takes them (any structure),
            NumPy arrays with a leading sample axis.
        batch_size: B, the samples per compiled forward pass.

    Yields:
        `(start, heads)`: the first sample's index and one NumPy array per
        head, of the chunk's (at most B) samples.
    """
    template, leaves = nested.flatten(inputs)
    leaves = [np.asarray(a) for a in leaves]
    n = nested.num_samples(leaves)
    if n == 0:
        return
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    try:
        forward = forward_function(model)
    except Exception:  # a model that cannot run stateless: call it
        forward = None
    for start in range(0, n, batch_size):
        chunk, real = _padded(leaves, start, batch_size)
        batch = nested.pack(template, chunk)
        outputs = None
        if forward is not None:
            try:
                outputs = forward(batch)
            except Exception:  # eagerly from here on: errors name the fix
                forward = None
        if forward is None:
            outputs = call_model(model, batch)
        yield start, [as_numpy(o)[:real]
                      for o in nested.flatten_tensors(outputs)]


def head_outputs(model, inputs, batch_size=ANCHOR_BATCH_SIZE):
    """The model's outputs on `inputs`, one NumPy array per head.

    Written chunk by chunk (`output_chunks`) into one preallocated array
    per head.

    Args:
        model: a Keras model.
        inputs: inputs as the model's call takes them (any structure).
        batch_size: the batch size of the forward passes.
    """
    n = nested.num_samples(nested.flatten(inputs)[1])
    heads = None
    for start, chunk in output_chunks(model, inputs, batch_size):
        if heads is None:
            heads = [np.empty((n, *o.shape[1:]), o.dtype) for o in chunk]
        for out, o in zip(heads, chunk):
            out[start:start + len(o)] = o
    return heads or []


def not_finite(heads):
    """How many samples have an output that is not finite.

    Args:
        heads: one array per head, leading sample axis.
    """
    n = len(heads[0])
    bad = np.zeros((n,), bool)
    for outputs in heads:
        bad |= ~np.isfinite(outputs.reshape(n, -1)).all(axis=1)
    return int(bad.sum())


def raise_not_finite(bad, n):
    """Raises when `bad` of the `n` samples' outputs are not finite."""
    if bad:
        raise ValueError(
            f"The model's outputs on {bad} of {n} memory inputs "
            "are not finite (NaN or inf): the network diverged (non-finite "
            "task data, or a learning rate too high). They were not stored "
            "as anchors; the memory is as it was. Restore the weights of a "
            "finite network (a checkpoint) and train again."
        )


def check_finite(heads):
    """Raises when a sample's outputs are not finite (a diverged network).

    Args:
        heads: one array per head, leading sample axis.
    """
    raise_not_finite(not_finite(heads), len(heads[0]))


def check_finite_weights(values):
    """Raises when weights to be copied as the anchor are not finite."""
    if not all(np.isfinite(a).all() for a in values
               if np.issubdtype(a.dtype, np.floating)):
        raise ValueError(
            "The model's weights are not finite (NaN or inf): the network "
            "diverged. They were not stored as the anchor snapshot; the "
            "memory is as it was. Restore the weights of a finite network "
            "(a checkpoint) and train again.")


def anchor_memory(memory, model, batch_size=ANCHOR_BATCH_SIZE, refresh=True,
                  tasks=()):
    """Anchors a memory's stored samples on the model as it is now.

    Args:
        memory: a built `keras_fip.Memory`.
        model: the protected model.
        batch_size: the samples per anchoring forward pass (default
            `ANCHOR_BATCH_SIZE`, 32).
        refresh: `True` re-anchors every sample (FIP: the anchor is the
            network at the start of the task); `False` anchors only the
            samples not anchored yet (DER keeps the outputs a sample had
            when it was stored), and those of `tasks`.
        tasks: with `refresh=False`, the ids of tasks whose samples are
            re-anchored too.

    Raises:
        ValueError: the model's outputs (or weights) are not finite; the
            memory is left as it was.
    """
    n = memory.size
    flags = as_numpy(memory.anchored)
    if refresh or not memory.storage.per_sample:
        todo = np.arange(n)
    else:
        task_ids = as_numpy(memory.task_ids)[:n]
        todo = np.flatnonzero((flags[:n] == 0)
                              | np.isin(task_ids, list(tasks)))
    if len(todo):
        memory.storage.take(memory, model, todo, batch_size)
        flags = flags.copy()
        flags[todo] = 1
        memory.anchored.assign(flags)
    memory.activate()
