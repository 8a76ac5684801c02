"""Shared fixtures. Each backend's suite runs in its own process
(`KERAS_BACKEND=... pytest tests`); `make test` runs all three."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_fip  # noqa: E402

BACKEND = keras.backend.backend()


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {BACKEND}"


@pytest.fixture(scope="session")
def digits_stream():
    pytest.importorskip("sklearn")
    return keras_fip.datasets.split_digits()


def make_mlp(hidden=(64,), inputs=64, classes=10, seed=0):
    """A small ReLU MLP with logits, deterministic weights."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers += [keras.layers.Dense(classes)]
    return keras.Sequential(layers)


class Interrupt(keras.callbacks.Callback):
    """Stops `fit` at the end of epoch `at`, as a crash would."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_fip(model, capacity=40, jit_compile="auto", **kwargs):
    inner = kwargs.pop("inner", None) or keras.optimizers.Adam(1e-3)
    fip = keras_fip.FIPOptimizer(
        inner, memory=keras_fip.Memory(capacity), **kwargs
    )
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=jit_compile)
    return fip


def toy_tasks(n=64, features=8, classes=4, seed=0):
    """Two separable toy tasks: classes (0, 1) then (2, 3)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)) * 3
    y = np.arange(n) % classes
    x = (centers[y] + rng.normal(size=(n, features))).astype("float32")
    first = y < classes // 2
    return (x[first], y[first]), (x[~first], y[~first])
