"""Small host-side helpers shared by the callbacks and the stream trainer."""

import keras
import numpy as np
from keras import ops
from keras import tree

from keras_fip.arrays import as_numpy


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


def model_inputs(model, x, batch_size=256):
    """`x` as the model's forward pass takes it, as NumPy.

    KerasHub task models (`BertTextClassifier`, `ViTImageClassifier`, ...)
    carry a `preprocessor` that `fit` applies to its data; a model's call
    takes the preprocessed features (dicts of token ids, resized images).
    Given `x` as it is passed to `fit`, this applies the same preprocessor
    in batches; models without one get `x` back unchanged. A preprocessor
    that returns `(x, y, sample_weight)` (a `CausalLMPreprocessor`: the
    next-token labels come from the text itself) gives its `x`.
    """
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        return x
    n = len(x)
    parts = []
    for start in range(0, n, batch_size):
        chunk = x[start : start + batch_size]
        if isinstance(chunk, np.ndarray) and chunk.dtype.kind in "US":
            chunk = chunk.tolist()  # KerasHub's BPE tokenizers take lists
        out = preprocessor(chunk)
        if isinstance(out, tuple):
            out = keras.utils.unpack_x_y_sample_weight(out)[0]
        parts.append(tree.map_structure(ops.convert_to_numpy, out))
    return tree.map_structure(lambda *p: np.concatenate(p), *parts)


def predict_outputs(model, x, batch_size=256, preprocess=True):
    """The model's outputs on `x` in inference mode, as one NumPy array.

    Args:
        model: a Keras model.
        x: inputs as given to `fit` (`preprocess=True`) or as the model's
            call takes them (`preprocess=False`).
        batch_size: batch size of the forward passes.
        preprocess: apply the model's `preprocessor`, if it has one.
    """
    if preprocess:
        x = model_inputs(model, x, batch_size)
    n = len(tree.flatten(x)[0])
    outputs = []
    for start in range(0, n, batch_size):
        batch = tree.map_structure(lambda a: a[start : start + batch_size], x)
        outputs.append(as_numpy(model(batch, training=False)))
    return np.concatenate(outputs)


def accuracy(model, x, y, batch_size=256, preprocess=True):
    """Top-1 accuracy of `model` on `(x, y)`, labels as class ids."""
    predictions = np.argmax(
        predict_outputs(model, x, batch_size, preprocess=preprocess), axis=-1
    )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=-1)
    return float(np.mean(predictions == y.reshape(-1)))


class EvalSets:
    """Evaluation `(x, y)` pairs, preprocessed once for the model using them.

    A KerasHub model's `preprocessor` (tokenizing text, resizing images) is
    applied the first time a model evaluates the sets, not at every epoch.

    Args:
        eval_data: a list of `(x, y)` pairs, one per task, or a `TaskStream`
            (its `test_sets()`).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x, y = np.ones((6, 4), "float32"), np.zeros(6, "int32")
    sets = keras_fip.evaluation.EvalSets([(x, y), (x[:3], y[:3] + 1)])
    accuracies = sets.accuracies(model)  # one accuracy per task
    assert len(accuracies) == 2 and accuracies[0] + accuracies[1] <= 1
    ```
    """

    def __init__(self, eval_data):
        if hasattr(eval_data, "test_sets"):
            eval_data = eval_data.test_sets()
        self.pairs = list(eval_data)
        self._model = None
        self._features = None

    def __len__(self):
        return len(self.pairs)

    def accuracies(self, model, tasks=None, batch_size=256):
        """Accuracy of `model` on each task in `tasks` (default: all)."""
        if self._model is not model:
            self._features = [model_inputs(model, x) for x, _ in self.pairs]
            self._model = model
        tasks = range(len(self.pairs)) if tasks is None else tasks
        return [
            accuracy(model, self._features[k], self.pairs[k][1],
                     batch_size=batch_size, preprocess=False)
            for k in tasks
        ]


def evaluate_stream(model, stream, batch_size=256):
    """Test accuracy of `model` on every task of `stream`, in task order.

    The one-call evaluation for any trained model: after continual training,
    or a jointly trained one (`fit` on `stream.joint()`). A KerasHub model's
    preprocessor is applied to the raw test inputs.

    Args:
        model: a Keras model with one head over all classes.
        stream: a `keras_fip.datasets.TaskStream`, or a list of `(x, y)`
            test pairs, one per task.
        batch_size: batch size of the forward passes.

    Returns:
        A list of floats, one accuracy per task.

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x, y = np.ones((6, 4), "float32"), np.zeros(6, "int32")
    accuracies = keras_fip.evaluate_stream(model, [(x, y), (x, y + 1)])
    assert len(accuracies) == 2
    ```
    """
    return EvalSets(stream).accuracies(model, batch_size=batch_size)
