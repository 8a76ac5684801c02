"""Continual learning on digits: fine-tuning forgets, FIP does not.

A keras_fip quick start in the manner of the keras.io examples. We learn
scikit-learn's handwritten digits as five tasks of two classes each
((0, 1), then (2, 3), ...), one 10-way head and no task id at test time
(class-incremental learning), and compare three ways to train:

- **fine-tuning**: plain Adam on each task in turn; it forgets everything
  but the last task;
- **FIP**: `keras_fip.FIPOptimizer` wrapping the same Adam; each step also
  keeps the network's outputs on a small memory of earlier digits;
- **joint**: one model trained on all tasks at once, the upper bound.

Run it (about a minute on two CPU cores):

    KERAS_BACKEND=jax python examples/split_digits_demo.py
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402

"""
## The data: Split-digits

`split_digits()` returns a `TaskStream`: five tasks, each with its training
and test arrays (pixels / 16, a stratified 70/30 split).
"""


def make_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ])


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


"""
## Sequential training, with and without FIP

`fit_stream` calls `model.fit` on each task in turn; with a keras_fip
optimizer it passes a `TaskBoundary(task_id, x, y)` to each `fit`, which adds
the task's digits to the memory when the task ends. It returns the accuracy
matrix R[t, k]: the accuracy on task k after training task t.
"""


def sequential(stream, method, epochs, seed):
    model = make_model(seed)
    optimizer = keras.optimizers.Adam(1e-3)
    if method == "fip":
        optimizer = keras_fip.FIPOptimizer(
            optimizer, memory=keras_fip.Memory(capacity=200, seed=seed))
    model.compile(optimizer=optimizer, loss=loss())
    return keras_fip.fit_stream(model, stream, epochs=epochs,
                                verbose=0).matrix


"""
## Joint training, the upper bound

One `fit` on every task's data; `evaluate_stream` measures any model on
every task of the stream.
"""


def joint(stream, epochs, seed):
    model = make_model(seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
    x, y = stream.joint(seed=seed)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return np.array([keras_fip.evaluate_stream(model, stream)])


"""
## Run and compare

Average accuracy is the mean of the last row of R; forgetting is how much
each earlier task lost from its best accuracy (Chaudhry et al. 2018).
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30,
                        help="epochs per task (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    stream = keras_fip.datasets.split_digits()
    print(f"Split-digits on {keras.backend.backend()}, seed {args.seed}, "
          f"{args.epochs} epochs per task\n")
    rows = {}
    for method in ("finetune", "fip"):
        matrix = sequential(stream, method, args.epochs, args.seed)
        print(f"{method}: R[t, k] =\n{np.round(matrix, 3)}\n")
        rows[method] = keras_fip.continual_metrics.summary(matrix)
    matrix = joint(stream, args.epochs, args.seed)
    rows["joint"] = {"average_accuracy": float(matrix[-1].mean()),
                     "forgetting": float("nan")}
    print("| method | average accuracy | forgetting |\n|---|---|---|")
    for method, row in rows.items():
        print(f"| {method} | {row['average_accuracy']:.3f} | "
              f"{row['forgetting']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
