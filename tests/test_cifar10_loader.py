"""The CIFAR-10 loader, on small files in the Keras cache format."""

import os
import pickle

import numpy as np
import pytest

import keras_fip
from keras_fip.datasets import keras_datasets


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "datasets")
    return tmp_path / "datasets"


def _write_batches(folder, per_batch=6, test=4):
    """Pickled batches as CIFAR-10 ships them; returns what they hold."""
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), np.uint8)
        labels = [int(v) for v in (np.arange(n) + k) % 10]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data,
                         b"labels": labels}, f)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("layout", [
    ("cifar-10-batches-py-target", "cifar-10-batches-py"),  # Keras 3
    ("cifar-10-batches-py",),                               # older Keras
])
def test_load_cifar10_reads_the_pickled_cache(keras_home, layout):
    written = _write_batches(keras_home.joinpath(*layout))
    x, y, xt, yt = keras_fip.datasets.load_cifar10()
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8
    assert xt.shape == (4, 32, 32, 3) and y.shape == (30,) and yt.shape == (4,)
    # Batches in order 1..5; rows are channel-first (1024 R, G, B values).
    data, labels = written["data_batch_2"]
    np.testing.assert_array_equal(y[6:12], labels)
    np.testing.assert_array_equal(x[6, :, :, 0], data[0, :1024].reshape(32, 32))
    np.testing.assert_array_equal(x[6, 0, 0], data[0, [0, 1024, 2048]])
    np.testing.assert_array_equal(yt, written["test_batch"][1])


def test_missing_cifar10_offline_is_explained(keras_home, monkeypatch):
    import keras

    # An incomplete cache (no test batch) is not read: it downloads.
    _write_batches(keras_home / "cifar-10-batches-py")
    os.remove(keras_home / "cifar-10-batches-py" / "test_batch")

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(RuntimeError, match="cifar10 is not in the Keras cache"):
        keras_datasets.load_cifar10()


def test_load_cifar10_falls_back_to_keras(keras_home, monkeypatch):
    import keras

    images = np.zeros((2, 32, 32, 3), np.uint8)
    labels = np.array([[3], [7]], np.uint8)   # Keras gives (N, 1) labels
    monkeypatch.setattr(keras.datasets.cifar10, "load_data",
                        lambda: ((images, labels), (images, labels)))
    x, y, xt, yt = keras_datasets.load_cifar10()
    assert y.tolist() == [3, 7] and yt.shape == (2,) and x.shape == images.shape
