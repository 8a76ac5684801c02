"""Cross-backend parity: the same FIP run gives the same losses everywhere.

From fixed initial weights, data order and memory (the memory's sampling
order is drawn with NumPy, so it is the same on every backend), the first 20
logged training losses and invariance values of an FIP run on the current
backend must match the golden trace of `numpy_reference.fip_trace` (an
independent float64 implementation) within 1e-4 relative. Running this file
under each backend therefore checks every backend against one trace.
"""

import keras
import numpy as np

import keras_fip
from keras_fip.arrays import as_numpy
from conftest import BACKEND
from numpy_reference import fip_trace

STEPS, BATCH, MEMORY_BATCH, HIDDEN = 20, 12, 8, 32


class _Trace(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses, self.invariances = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        optimizer = self.model.optimizer  # syncs JAX state first
        self.invariances.append(
            float(as_numpy(optimizer.invariance_loss))
        )


def test_first_20_losses_match_the_numpy_reference(digits_stream):
    task0, task1 = digits_stream[0], digits_stream[1]
    rng = np.random.default_rng(1234)
    params = [
        (rng.normal(size=(64, HIDDEN)) * 0.2).astype("float32"),
        (rng.normal(size=(HIDDEN,)) * 0.1).astype("float32"),
        (rng.normal(size=(HIDDEN, 10)) * 0.2).astype("float32"),
        (rng.normal(size=(10,)) * 0.1).astype("float32"),
    ]
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(HIDDEN, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.set_weights(params)
    memory = keras_fip.Memory(capacity=20, seed=0)
    fip = keras_fip.FIPOptimizer.reference_code(
        keras.optimizers.Adam(1e-3), memory=memory,
        memory_batch_size=MEMORY_BATCH,
    )
    model.compile(
        optimizer=fip,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=BACKEND != "torch",
    )
    memory.build(model, task0.x_train)
    memory.add(task0.x_train, task0.y_train, task_id=0)
    memory.consolidate(model)
    fip.bind(model)
    memory_x = memory.stored()[0]
    order = as_numpy(memory.order)[: memory.size]

    x = task1.x_train[: STEPS * BATCH]
    y = task1.y_train[: STEPS * BATCH]
    trace = _Trace()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[trace])

    want_losses, want_invariances = fip_trace(
        params, x, y, memory_x, order, STEPS, BATCH, MEMORY_BATCH
    )
    assert len(trace.losses) == STEPS
    np.testing.assert_allclose(trace.losses, want_losses, rtol=1e-4)
    np.testing.assert_allclose(
        trace.invariances, want_invariances, rtol=1e-4, atol=2e-6
    )
    # The run is not trivial: the invariance term grows from ~0 as the
    # network leaves its anchor, and the new task's loss falls.
    assert want_invariances[-1] > 10 * abs(want_invariances[0])
    assert want_losses[-1] < want_losses[0]
