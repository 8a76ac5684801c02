"""A task's labels, checked as the model's loss will read them.

`TaskBoundary(task_id, x, y)` takes `y` exactly as `fit` does: one array
for a model with one output, or a dict (or list) of per-head labels for a
model with several. Each head's labels are checked against what its loss
reads (`keras_fip.heads`), when the boundary is given and when `fit`
starts, so a mistake is reported before any step:

| head's loss | labels |
|---|---|
| sparse categorical cross-entropy | class ids in [0, C) |
| categorical cross-entropy | rows of width C |
| binary cross-entropy, 1 unit | 0/1 (or probabilities), one per sample |
| binary cross-entropy, k units | rows of k values in [0, 1] (multi-hot) |
| regression losses | finite numbers, one per output value |

Example:

```python
import numpy as np
from keras_fip import labels
labels.check_structure(0, {"kind": np.zeros(4, "int32"),
                           "price": np.ones((4, 1))}, n=4)
```
"""

import numpy as np

from keras_fip import heads as output_heads
from keras_fip import nested


def _per_head(y):
    """`(template, leaves)` of `y`: a dict/list of heads, or one array."""
    if isinstance(y, dict) or (isinstance(y, (list, tuple)) and y
                               and not np.isscalar(y[0])):
        return nested.flatten(y)
    return 0, [np.asarray(y)]


def check_structure(task_id, y, n):
    """Checks that every head's labels have `n` samples and are numbers.

    Args:
        task_id: the task (for the message).
        y: the labels as `fit` takes them.
        n: the number of input samples.

    Raises:
        ValueError: a head's labels do not have `n` samples.
        TypeError: labels that are not numbers (strings).
    """
    template, leaves = _per_head(y)
    names = nested.leaf_names(template)
    for name, labels in zip(names, leaves):
        where = "" if template == 0 else f" (head {name!r})"
        if labels.shape[:1] != (n,):
            raise ValueError(
                f"Task {task_id} has {n} inputs but "
                f"{labels.shape[0] if labels.ndim else 'no'} labels{where}: "
                "x and y must have the same number of samples.")
        if labels.dtype.kind not in "iufb":
            raise TypeError(
                f"Task {task_id}'s labels{where} must be integer class ids "
                "(or one-hot rows, 0/1 targets, numbers); got "
                f"{labels.dtype} values such as "
                f"{labels.reshape(-1)[:3].tolist()}. Map them to ids first, "
                "e.g. with keras.layers.StringLookup or numpy.unique("
                "..., return_inverse=True).")


def _labels_of_head(y_template, y_leaves, name, index, num_heads):
    if y_template == 0:
        return y_leaves[0] if num_heads == 1 else None
    if isinstance(y_template, dict):
        names = nested.leaf_names(y_template)
        return y_leaves[names.index(name)] if name in names else None
    return y_leaves[index] if index < len(y_leaves) else None


def check_against_heads(task_id, y, model, output_template, output_shapes):
    """Checks each head's labels against its loss and output shape.

    Heads whose loss is not one `keras_fip.heads` knows are not checked
    (Keras's own loss reports what it cannot read).

    Args:
        task_id: the task (for the message).
        y: the labels as `fit` takes them.
        model: the compiled model.
        output_template: the template of its outputs.
        output_shapes: each head's per-sample output shape.

    Raises:
        ValueError: labels the head's loss cannot read, saying how to fix
            them.
    """
    y_template, y_leaves = _per_head(y)
    names = output_heads.head_names(model, output_template)
    losses = output_heads.losses_per_head(model, names)
    for index, (name, loss, shape) in enumerate(
            zip(names, losses, output_shapes)):
        labels = _labels_of_head(y_template, y_leaves, name, index,
                                 len(names))
        kind = output_heads.KIND_OF_LOSS.get(output_heads.loss_name(loss))
        if labels is None or kind is None:
            continue
        where = "" if len(names) == 1 else f" of head {name!r}"
        _CHECKS[kind](f"Task {task_id}'s labels{where}", labels,
                      tuple(shape), output_heads.loss_name(loss))


def _check_classes(what, labels, shape, loss):
    if not shape:
        return
    width = shape[-1]
    if loss == "categoricalcrossentropy" or (
            labels.ndim == len(shape) + 1 and labels.shape[-1] == width
            and width > 1):
        if labels.shape[-1] != width:
            raise ValueError(
                f"{what} are rows of width {labels.shape[-1]} but the head "
                f"has {width} classes: one-hot rows need one column per "
                "class.")
        return
    ids = labels.reshape(len(labels), -1)
    if ids.dtype.kind == "f" and not np.all(np.mod(ids, 1) == 0):
        raise ValueError(
            f"{what} must be integer class ids; got values such as "
            f"{ids[np.mod(ids, 1) != 0][:3].tolist()}.")
    if ids.size and (ids.min() < 0 or ids.max() >= width):
        bad = ids[(ids < 0) | (ids >= width)]
        raise ValueError(
            f"{what} lie outside the model's {width}-way head (for example "
            f"{bad[:3].tolist()}); labels must lie in [0, {width}). In "
            "class-incremental learning allocate the whole head up front "
            "(one output per class of every task).")


def _check_bernoulli(what, labels, shape, loss):
    del loss
    units = int(np.prod(shape)) if shape else 1
    values = labels.reshape(len(labels), -1)
    if values.shape[1] != units:
        raise ValueError(
            f"{what} have {values.shape[1]} value(s) per sample but the head "
            f"has {units} sigmoid unit(s): binary cross-entropy reads one "
            "0/1 target per unit (a multi-hot row for several labels).")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"{what} must be 0/1 targets (or probabilities in [0, 1]) for "
            "binary cross-entropy; got values from "
            f"{float(values.min())} to {float(values.max())}.")


def _check_regression(what, labels, shape, loss):
    del loss
    values = labels.reshape(len(labels), -1).astype("float64")
    size = int(np.prod(shape)) if shape else 1
    if values.shape[1] != size:
        raise ValueError(
            f"{what} have {values.shape[1]} value(s) per sample but the head "
            f"outputs {size}: give one target per output value.")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} hold NaN or inf targets.")


_CHECKS = {"classes": _check_classes, "bernoulli": _check_bernoulli,
           "regression": _check_regression}
