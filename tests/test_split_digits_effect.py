"""FIP keeps old tasks where fine-tuning forgets them (short Split-digits)."""

import keras
import pytest

import keras_fip
from conftest import BACKEND
from conftest import make_mlp
from conftest import sparse_ce

pytestmark = pytest.mark.large

EPOCHS = 6


def _run(stream, fip):
    model = make_mlp(hidden=(128, 128), seed=0)
    optimizer = keras.optimizers.Adam(1e-3)
    if fip:
        optimizer = keras_fip.FIPOptimizer(
            optimizer, memory=keras_fip.Memory(200, seed=0)
        )
    model.compile(optimizer=optimizer, loss=sparse_ce(),
                  jit_compile=BACKEND != "torch")
    return keras_fip.fit_stream(model, stream, epochs=EPOCHS, verbose=0)


def test_fip_average_accuracy_far_above_finetuning(digits_stream):
    finetune = _run(digits_stream, fip=False).summary()
    fip = _run(digits_stream, fip=True)
    summary = fip.summary()
    # Class-incremental fine-tuning keeps only the last task (~0.2).
    assert finetune["average_accuracy"] < 0.3
    assert finetune["forgetting"] > 0.8
    assert summary["average_accuracy"] > finetune["average_accuracy"] + 0.5
    assert summary["forgetting"] < 0.1
    assert fip.matrix.shape == (5, 5)
