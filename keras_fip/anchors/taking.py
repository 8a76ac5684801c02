"""Taking anchors, host side: the model's outputs on stored inputs.

Shared by the storages that keep (a form of) the outputs, and by the
memory's anchoring pass (`anchor_memory`): which stored samples need
anchors, and the finite check that keeps a diverged network out of the
memory.
"""

import numpy as np

from keras_fip import nested
from keras_fip.arrays import as_numpy


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


def head_outputs(model, inputs, batch_size=256):
    """The model's outputs on `inputs`, one NumPy array per head.

    Args:
        model: a Keras model.
        inputs: inputs as the model's call takes them (any structure).
        batch_size: the batch size of the forward passes.
    """
    template, leaves = nested.flatten(inputs)
    n = nested.num_samples(leaves)
    chunks = []
    for start in range(0, n, batch_size):
        batch = nested.pack(template,
                            [a[start:start + batch_size] for a in leaves])
        outputs = call_model(model, batch)
        chunks.append([as_numpy(o) for o in nested.flatten_tensors(outputs)])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def check_finite(heads):
    """Raises when a sample's outputs are not finite (a diverged network).

    Args:
        heads: one array per head, leading sample axis.
    """
    n = len(heads[0])
    bad = np.zeros((n,), bool)
    for outputs in heads:
        bad |= ~np.isfinite(outputs.reshape(n, -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"The model's outputs on {int(bad.sum())} of {n} memory inputs "
            "are not finite (NaN or inf): the network diverged (non-finite "
            "task data, or a learning rate too high). They were not stored "
            "as anchors; the memory is as it was. Restore the weights of a "
            "finite network (a checkpoint) and train again."
        )


def check_finite_weights(values):
    """Raises when weights to be copied as the anchor are not finite."""
    if not all(np.isfinite(a).all() for a in values
               if np.issubdtype(a.dtype, np.floating)):
        raise ValueError(
            "The model's weights are not finite (NaN or inf): the network "
            "diverged. They were not stored as the anchor snapshot; the "
            "memory is as it was. Restore the weights of a finite network "
            "(a checkpoint) and train again.")


def anchor_memory(memory, model, batch_size=256, refresh=True, tasks=()):
    """Anchors a memory's stored samples on the model as it is now.

    Args:
        memory: a built `keras_fip.Memory`.
        model: the protected model.
        batch_size: the batch size of the anchor forward passes.
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
