"""Split-MNIST, Split-Fashion-MNIST and Split-CIFAR-100 (and CIFAR-10) from
Keras's cache.

`keras.datasets.*.load_data()` downloads the data once into
`$KERAS_HOME/datasets` (default `~/.keras/datasets`) and checks a hash. These
loaders read that cache directly when it is there (so they work offline, and
on files written in the same format), and otherwise call `load_data()`, which
downloads. Layouts read (as Keras 3 writes them):

- MNIST: `datasets/mnist.npz` with `x_train, y_train, x_test, y_test`
- Fashion-MNIST: `datasets/fashion-mnist/` with
  `{train,t10k}-{labels-idx1,images-idx3}-ubyte.gz`
- CIFAR-100: `datasets/cifar-100-python-target/cifar-100-python/{train,test}`
  (pickled dicts with `data` and `fine_labels`)
- CIFAR-10: `datasets/cifar-10-batches-py-target/cifar-10-batches-py/`
  (Keras 3; or the older `datasets/cifar-10-batches-py/`) with
  `data_batch_1` ... `data_batch_5` and `test_batch` (pickled dicts with
  `data` and `labels`)
"""

import gzip
import os
import pickle

import numpy as np

from keras_fip.datasets.task_stream import TaskStream


def keras_datasets_dir():
    """`$KERAS_HOME/datasets`, or `~/.keras/datasets`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    return os.path.join(home, "datasets")


def _download(name):
    import keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as error:
        raise RuntimeError(
            f"{name} is not in the Keras cache ({keras_datasets_dir()}) and "
            f"could not be downloaded ({type(error).__name__}: {error}). "
            f"Run keras.datasets.{name}.load_data() once on a machine with "
            "network access, or copy its cache here."
        ) from error


def load_mnist():
    """`(x_train, y_train, x_test, y_test)` of MNIST, uint8 images."""
    path = os.path.join(keras_datasets_dir(), "mnist.npz")
    if not os.path.exists(path):
        (x, y), (xt, yt) = _download("mnist")
        return x, y, xt, yt
    with np.load(path, allow_pickle=False) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load_fashion_mnist():
    """`(x_train, y_train, x_test, y_test)` of Fashion-MNIST."""
    folder = os.path.join(keras_datasets_dir(), "fashion-mnist")
    names = ["train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    paths = [os.path.join(folder, n) for n in names]
    if not all(os.path.exists(p) for p in paths):
        (x, y), (xt, yt) = _download("fashion_mnist")
        return x, y, xt, yt
    y, yt = _idx(paths[0], 8), _idx(paths[2], 8)
    x = _idx(paths[1], 16).reshape(len(y), 28, 28)
    xt = _idx(paths[3], 16).reshape(len(yt), 28, 28)
    return x, y, xt, yt


def _cifar_batch(path, labels="fine_labels"):
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch = {k.decode() if isinstance(k, bytes) else k: v
             for k, v in batch.items()}
    images = np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32)
    return images.transpose(0, 2, 3, 1), np.asarray(batch[labels])


def load_cifar100():
    """`(x_train, y_train, x_test, y_test)` of CIFAR-100 (fine labels)."""
    folder = os.path.join(keras_datasets_dir(), "cifar-100-python-target",
                          "cifar-100-python")
    if not all(os.path.exists(os.path.join(folder, n))
               for n in ("train", "test")):
        (x, y), (xt, yt) = _download("cifar100")
        return x, y.reshape(-1), xt, yt.reshape(-1)
    x, y = _cifar_batch(os.path.join(folder, "train"))
    xt, yt = _cifar_batch(os.path.join(folder, "test"))
    return x, y, xt, yt


CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _cifar10_folder():
    """The first cache folder holding every CIFAR-10 batch, or `None`."""
    root = keras_datasets_dir()
    for folder in (
            os.path.join(root, "cifar-10-batches-py-target",
                         "cifar-10-batches-py"),
            os.path.join(root, "cifar-10-batches-py")):
        if all(os.path.exists(os.path.join(folder, n))
               for n in (*CIFAR10_BATCHES, "test_batch")):
            return folder
    return None


def load_cifar10():
    """`(x_train, y_train, x_test, y_test)` of CIFAR-10: uint8 images
    (N, 32, 32, 3) and labels (N,) in 0..9."""
    folder = _cifar10_folder()
    if folder is None:
        (x, y), (xt, yt) = _download("cifar10")
        return x, y.reshape(-1), xt, yt.reshape(-1)
    batches = [_cifar_batch(os.path.join(folder, n), "labels")
               for n in CIFAR10_BATCHES]
    x = np.concatenate([images for images, _ in batches])
    y = np.concatenate([labels for _, labels in batches])
    xt, yt = _cifar_batch(os.path.join(folder, "test_batch"), "labels")
    return x, y, xt, yt


def _split(loader, classes_per_task, name, flatten):
    x, y, xt, yt = loader()
    x = (x / 255.0).astype("float32")
    xt = (xt / 255.0).astype("float32")
    if flatten:
        x, xt = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    return TaskStream.split_by_class(
        x, y.astype("int32"), xt, yt.astype("int32"),
        classes_per_task=classes_per_task, name=name,
    )


def split_mnist(classes_per_task=2, flatten=True):
    """Class-incremental Split-MNIST: (0,1), (2,3), ... (pixels / 255)."""
    return _split(load_mnist, classes_per_task, "split_mnist", flatten)


def split_fashion_mnist(classes_per_task=2, flatten=True):
    """Class-incremental Split-Fashion-MNIST, as Split-MNIST."""
    return _split(load_fashion_mnist, classes_per_task, "split_fashion_mnist",
                  flatten)


def split_cifar100(classes_per_task=10, flatten=False):
    """Class-incremental Split-CIFAR-100: 10 tasks of 10 classes."""
    return _split(load_cifar100, classes_per_task, "split_cifar100", flatten)
