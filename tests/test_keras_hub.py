"""FIP through a KerasHub BertTextClassifier with a dict-input memory."""

import numpy as np
import pytest
from keras import ops

import keras_fip

keras_hub = pytest.importorskip("keras_hub")


def _features(n, seed, length=6, vocab=20):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(1, vocab, size=(n, length)).astype("int32"),
        "segment_ids": np.zeros((n, length), "int32"),
        "padding_mask": np.ones((n, length), "bool"),
    }


def test_bert_text_classifier_trains_an_fip_epoch_and_saves(tmp_path):
    import keras

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=6,
    )
    model = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=4, preprocessor=None
    )
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3), memory=keras_fip.Memory(8),
        memory_batch_size=4,
    )
    model.compile(
        optimizer=fip,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x0, y0 = _features(16, 0), np.arange(16) % 2
    x1, y1 = _features(16, 1), 2 + np.arange(16) % 2
    model.fit(x0, y0, batch_size=8, epochs=1, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(0, x0, y0)])
    stored = fip.memory.stored()[0]
    assert set(stored) == {"token_ids", "segment_ids", "padding_mask"}
    assert fip.memory.is_active
    model.fit(x1, y1, batch_size=8, epochs=1, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, x1, y1)])
    assert np.isfinite(float(ops.convert_to_numpy(fip.invariance_loss)))
    assert float(ops.convert_to_numpy(fip.invariance_loss)) != 0.0

    path = str(tmp_path / "bert_fip.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    # KerasHub tasks override compile(), so Keras leaves the optimizer out.
    restored = keras_fip.saving.restore_optimizer(loaded, path)
    assert isinstance(restored, keras_fip.FIPOptimizer)
    for a, b in zip(fip.memory.stored(), loaded.optimizer.memory.stored()):
        if isinstance(a, dict):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(a, b)


def test_restore_optimizer_explains_an_uncompiled_file(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "plain.keras")
    model.save(path)
    with pytest.raises(ValueError, match="no compile config"):
        keras_fip.saving.restore_optimizer(model, path)
