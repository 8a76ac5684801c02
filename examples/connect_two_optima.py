"""Connecting two optima along a functionally invariant path.

Two digits networks (the Split-digits MLP, 64-256-256-10) trained from
different random initialisations both classify well, with very different
weights w_A and w_B. Along the straight line (1 − t) w_A + t w_B the
networks in between classify badly (the loss barrier between independently
trained networks). FIP walks from A toward B instead: the secondary
objective is L = ½‖w − w_B‖² (`keras_fip.terms.TowardWeights`, Raghavan &
Thomson 2021) and the invariance term keeps A's outputs on A's training
digits (the memory), each step of length ε. The table gives the test
accuracy at 11 points along each path (equal fractions of the line, and of
the FIP's steps) and how far each point still is from B.

Protocol: scikit-learn's digits, the stratified 70/30 split of the
Split-digits protocol; A and B trained with Adam(1e-3), batch 32, 30
epochs (seeds `--seed` and `--seed + 1`); FIP with SGD(1.0), ε = `--epsilon`,
β = 0 (the task loss plays no part), the whole training set as memory,
memory batch 64, and `--steps` steps.

    KERAS_BACKEND=torch OMP_NUM_THREADS=1 python examples/connect_two_optima.py
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip.datasets.digits import load_digits_split  # noqa: E402


def mlp(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((64,)),
                             keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(10)])


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train(seed, x, y, epochs):
    model = mlp(seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_loss())
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def weights(model):
    return [ops.convert_to_numpy(v.value).copy()
            for v in model.trainable_variables]


def distance(a, b):
    return float(np.sqrt(sum(np.sum((u - v) ** 2) for u, v in zip(a, b))))


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def line_path(model, w_a, w_b, x, y, points=11):
    """Test accuracy and distance to B at `points` points of the line."""
    rows = []
    for t in np.linspace(0.0, 1.0, points):
        w = [(1 - t) * a + t * b for a, b in zip(w_a, w_b)]
        model.set_weights(w)
        rows.append((accuracy(model, x, y), distance(w, w_b)))
    return rows


def fip_path(model_a, w_b, x_train, y_train, x, y, steps, epsilon,
             strength, points=11):
    """Walks an FIP from A toward B; records `points` points on it."""
    toward_b = keras_fip.terms.TowardWeights(w_b, weight=strength)
    model_a.compile(
        optimizer=keras_fip.FIPOptimizer.default_of_0_5(
            keras.optimizers.SGD(learning_rate=1.0), beta=0.0,
            step_norm=epsilon, objectives=[toward_b],
            memory=keras_fip.Memory(len(y_train)), memory_batch_size=64),
        loss=_loss())
    keras_fip.callbacks.remember_task(model_a, 0, x_train, y_train)
    rows = [(accuracy(model_a, x, y), distance(weights(model_a), w_b))]
    # Enough copies of the data that no point runs out of batches.
    per_point = steps // (points - 1)
    copies = -(-per_point * 32 // len(y_train))
    x_rep, y_rep = np.concatenate([x_train] * copies), np.tile(y_train,
                                                               copies)
    for _ in range(points - 1):
        model_a.fit(x_rep, y_rep, batch_size=32, epochs=1,
                    steps_per_epoch=per_point, verbose=0)
        rows.append((accuracy(model_a, x, y),
                     distance(weights(model_a), w_b)))
    return rows


def table(line, fip, start):
    lines = ["| point | line: test acc | line: ‖w − w_B‖ | FIP: test acc "
             "| FIP: ‖w − w_B‖ |", "|---|---|---|---|---|"]
    for i, ((la, ld), (fa, fd)) in enumerate(zip(line, fip)):
        lines.append(f"| {i / (len(line) - 1):.1f} | {la:.3f} | "
                     f"{ld / start:.2f} | {fa:.3f} | {fd / start:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30,
                        help="training epochs of A and B")
    parser.add_argument("--steps", type=int, default=1000,
                        help="FIP steps from A toward B")
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--strength", type=float, default=1.0,
                        help="λ of L = (λ/2)‖w − w_B‖²")
    parser.add_argument("--eval", choices=("test", "validation"),
                        default="test",
                        help="validation: the last fifth of the training "
                             "split, to choose ε, λ and the steps")
    args = parser.parse_args(argv)
    x_train, y_train, x_test, y_test = load_digits_split()
    if args.eval == "validation":
        cut = len(y_train) * 4 // 5
        x_test, y_test = x_train[cut:], y_train[cut:]
        x_train, y_train = x_train[:cut], y_train[:cut]
    model_a = train(args.seed, x_train, y_train, args.epochs)
    model_b = train(args.seed + 1, x_train, y_train, args.epochs)
    w_a, w_b = weights(model_a), weights(model_b)
    start = distance(w_a, w_b)
    line = line_path(mlp(args.seed), w_a, w_b, x_test, y_test)
    fip = fip_path(model_a, w_b, x_train, y_train, x_test, y_test,
                   args.steps, args.epsilon, args.strength)
    print(f"backend {keras.backend.backend()}, seed {args.seed}, "
          f"{args.eval} digits: {len(y_test)}; ‖w_A − w_B‖ = {start:.2f}; "
          f"FIP: {args.steps} steps of ε = {args.epsilon}, λ = "
          f"{args.strength}\n")
    print(table(line, fip, start))
    return line, fip


if __name__ == "__main__":
    main()
