"""A `.keras` file written by keras_fip 0.5 loads and trains on.

`tests/data/fip_0_5.keras` was written by keras_fip 0.5.0 on TensorFlow:
a 5-8-4 MLP trained on two tasks with `FIPOptimizer(Adam(1e-2),
Memory(12), memory_batch_size=4)`; `fip_0_5.npz` holds its data and the
outputs it gave.
"""

import os

import keras
import numpy as np

import keras_fip
from keras_fip.arrays import as_numpy
from keras_fip.callbacks import TaskBoundary

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_a_keras_file_of_0_5_loads_with_its_memory_and_trains_on():
    saved = np.load(os.path.join(DATA, "fip_0_5.npz"))
    model = keras.saving.load_model(os.path.join(DATA, "fip_0_5.keras"))
    np.testing.assert_allclose(as_numpy(model(saved["x"])),
                               saved["outputs"], rtol=1e-5, atol=1e-6)
    fip = model.optimizer
    assert isinstance(fip, keras_fip.FIPOptimizer)
    # 0.5 wrote its defaults then: they load as they were saved.
    assert fip.distance == "bhattacharyya" and fip.from_logits is True
    memory = fip.memory
    assert memory.size == 12 and memory.anchor_storage == "outputs"
    _, labels, tasks, anchors = memory.stored()
    assert set(tasks.tolist()) <= {0, 1}  # balanced: old samples kept first
    assert np.bincount(labels).tolist() == [3, 3, 3, 3]
    assert anchors.shape == (12, 4)
    x, y = saved["x"], saved["y"]
    model.fit(x[:8], y[:8], epochs=1, verbose=0,
              callbacks=[TaskBoundary(2, x[:8], y[:8])])
    assert fip.memory.is_active
    assert float(as_numpy(fip.invariance_loss)) >= 0.0
