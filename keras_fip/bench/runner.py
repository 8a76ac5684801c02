"""One benchmark run: a method on a stream with a seed."""

import time

import keras
import numpy as np

import keras_fip
from keras_fip.bench.registry import STREAMS
from keras_fip.bench.registry import make_optimizer as make_registered


def run(stream_name, stream, method, seed, epochs, make_optimizer=None,
        spec=None):
    """Trains `method` on `stream` and returns the run's record.

    Args:
        stream_name: the stream's name in `keras_fip.bench.registry.STREAMS`
            (its model, learning rate and batch size).
        stream: the `TaskStream` (the real one, or its `holdout`).
        method: a method's name (`"joint"` trains on all tasks at once).
        seed: the run's seed.
        epochs: epochs per task.
        make_optimizer: `make_optimizer(inner, stream, seed)`, the optimizer
            (default: the registry's for `method`).
        spec: the stream's model, learning rate and batch size (default
            `STREAMS[stream_name]`; `keras_fip.bench.suite.SUITE` has more).

    Returns:
        A dict with the accuracy matrix (one row after joint training,
        one per task otherwise), its metrics and the wall time.
    """
    spec = spec or STREAMS[stream_name]
    keras.utils.set_random_seed(seed)
    model = spec.model(stream)
    inner = keras.optimizers.Adam(spec.learning_rate)
    model.compile(
        optimizer=(make_optimizer or _registered(method))(inner, stream,
                                                         seed),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.time()
    if method == "joint":
        x, y = stream.joint()
        model.fit(x, y, epochs=epochs, batch_size=spec.batch_size, verbose=0)
        matrix = np.array([keras_fip.evaluate_stream(model, stream)])
        summary = {"average_accuracy": float(matrix[-1].mean()),
                   "forgetting": None, "backward_transfer": None}
    else:
        result = keras_fip.fit_stream(model, stream, epochs=epochs,
                                      batch_size=spec.batch_size, verbose=0)
        matrix = result.matrix
        summary = result.summary()
    return {
        "stream": stream_name,
        "method": method,
        "seed": seed,
        "epochs_per_task": epochs,
        "matrix": matrix.tolist(),
        "seconds": time.time() - start,
        **summary,
    }


def _registered(method):
    return lambda inner, stream, seed: make_registered(method, inner, stream,
                                                       seed)
