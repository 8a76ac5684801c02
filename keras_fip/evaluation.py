"""Small host-side helpers shared by the callbacks and the stream trainer."""

import numpy as np
from keras import ops
from keras import tree


def find_continual_optimizer(optimizer, cls=None):
    """The keras_fip optimizer in `optimizer` (maybe wrapped), or None.

    Args:
        optimizer: a model's optimizer.
        cls: the class to look for (default: any `ContinualOptimizer`).
    """
    from keras_fip.continual_optimizer import ContinualOptimizer

    cls = cls or ContinualOptimizer
    for _ in range(8):
        if optimizer is None or isinstance(optimizer, cls):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


def predict_outputs(model, x, batch_size=256):
    """The model's outputs on `x` in inference mode, as one NumPy array."""
    n = len(tree.flatten(x)[0])
    outputs = []
    for start in range(0, n, batch_size):
        batch = tree.map_structure(lambda a: a[start : start + batch_size], x)
        outputs.append(ops.convert_to_numpy(model(batch, training=False)))
    return np.concatenate(outputs)


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of `model` on `(x, y)`, labels as class ids."""
    predictions = np.argmax(predict_outputs(model, x, batch_size), axis=-1)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=-1)
    return float(np.mean(predictions == y.reshape(-1)))
