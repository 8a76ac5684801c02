"""Sparsity–accuracy curves on digits: FIP vs magnitude pruning.

A digits MLP (64-256-256-10) and a small CNN (8×8×1 images: two 3×3
convolutions, a dense layer) are trained dense (Adam 1e-3, 50 epochs), then
pruned to each sparsity of their dense and convolution kernels (one global
magnitude threshold) by

- magnitude: one-shot magnitude pruning;
- magnitude+ft: one-shot pruning, then masked fine-tuning
  (`keras_fip.sparsity.MaskedOptimizer(Adam(1e-3))`) for the step budget;
- fip: the FIP sparsification path for the same step budget —
  `FIPOptimizer(SGD(1.0), step_norm=ε, sparse_target=SparseTarget(
  PolynomialDecay(0 → s over the first 25 %), weight=λ,
  hard_mask_step=30 % of the budget))`: the pull walks toward the sparse
  subspace, the mask becomes hard at 30 %, and the remaining 70 % walk an
  FIP inside the subspace (D, on the memory of training inputs anchored at
  the dense network by `remember_task`, restores the outputs the cut
  moved). `--hard-mask-at -1` keeps the reference code's path: the pull
  alone, then the final hard mask (`make_pruning_permanent`).

λ = 10, the ramp and the cut were chosen with `--eval validation`
(see the README); the test split was not used to choose them.

`--eval validation` holds out the last 20 % of the training data (`--fold
k`: the k-th fifth, for cross-validation) and reports accuracy on it (use it
to choose settings); `--eval test` (default) trains on all training data and
reports the test split. `--distance` sets FIP's output distance D and
`--ft-learning-rate` masked fine-tuning's Adam rate, so both methods can be
tuned the same way.

    KERAS_BACKEND=torch python benchmarks/sparsify_digits.py
    python benchmarks/sparsify_digits.py --eval validation --strength 1
    python benchmarks/sparsify_digits.py --hard-mask-at -1   # reference path

Writes `<out>/sparsify_digits_<backend>.json`, `.md` and `.png`.
"""

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402
import models  # noqa: E402  (benchmarks/models.py)
from keras_fip import sparsity  # noqa: E402

METHODS = ("magnitude", "magnitude+ft", "fip")


MODELS = {"mlp": models.mlp, "cnn": models.cnn}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument("--sparsities", type=float, nargs="+",
                        default=[0.5, 0.7, 0.9, 0.95])
    parser.add_argument("--steps", type=int, default=2000,
                        help="step budget of FIP and of masked fine-tuning")
    parser.add_argument("--strength", type=float, default=10.0, help="λ")
    parser.add_argument("--step-norm", type=float, default=0.01, help="ε")
    parser.add_argument("--beta", type=float, default=1.0,
                        help="weight of the training loss in the FIP step")
    parser.add_argument("--distance", default="bhattacharyya",
                        choices=list(keras_fip.distances.DISTANCES),
                        help="FIP's output-space distance D on the memory")
    parser.add_argument("--ft-learning-rate", type=float, default=1e-3,
                        help="Adam learning rate of masked fine-tuning")
    parser.add_argument("--ramp", type=float, default=0.25,
                        help="fraction of the budget over which the target "
                             "sparsity rises from 0 to s")
    parser.add_argument("--hard-mask-at", type=float, default=0.3,
                        help="fraction of the budget at which FIP's mask "
                             "becomes hard (then FIP inside the sparse "
                             "subspace); a negative value: only at the end, "
                             "as the reference code")
    parser.add_argument("--decay", action="store_true",
                        help="cosine learning-rate decay to 0: over the "
                             "whole budget for masked fine-tuning, after the "
                             "cut for FIP (its step length is then lr * eps)")
    parser.add_argument("--eval", choices=["test", "validation"],
                        default="test")
    parser.add_argument("--fold", type=int, default=None,
                        help="with --eval validation: which fifth of the "
                             "training data is held out (0-4; 4, the last "
                             "fifth, by default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if not all(0 <= s < 1 for s in args.sparsities):
        parser.error("--sparsities must lie in [0, 1)")
    if args.fold is not None and args.eval != "validation":
        parser.error("--fold chooses the held-out fifth of --eval "
                     "validation; add --eval validation or drop --fold")
    if args.fold is None:
        args.fold = 4
    if not 0 <= args.fold <= 4:
        parser.error("--fold must be 0, 1, 2, 3 or 4")
    if args.ft_learning_rate <= 0:
        parser.error("--ft-learning-rate must be > 0")
    return args


def load(args):
    x, y, xt, yt = keras_fip.datasets.digits.load_digits_split()
    if args.eval == "validation":
        bounds = np.linspace(0, len(y), 6).astype(int)
        held = np.arange(bounds[args.fold], bounds[args.fold + 1])
        kept = np.setdiff1d(np.arange(len(y)), held)
        return x[kept], y[kept], x[held], y[held]
    return x, y, xt, yt


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fresh(name, weights, seed):
    keras.utils.set_random_seed(seed)
    model = MODELS[name]()
    if weights is not None:
        model.set_weights(weights)
    return model


def epochs_for(steps, n, batch=32):
    return int(np.ceil(steps / np.ceil(n / batch)))


def prune(method, name, weights, target, data, args):
    """The pruned model's (accuracy, achieved sparsity, seconds)."""
    x, y, xt, yt = data
    model = fresh(name, weights, args.seed)
    epochs = epochs_for(args.steps, len(y))
    begin = time.time()
    if method in ("magnitude", "magnitude+ft"):
        sparsity.prune_low_magnitude(model, target)
    if method == "magnitude+ft":
        rate = args.ft_learning_rate
        if args.decay:
            rate = keras.optimizers.schedules.CosineDecay(rate, args.steps)
        model.compile(optimizer=sparsity.MaskedOptimizer(
            keras.optimizers.Adam(rate)), loss=loss())
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    if method == "fip":
        ramp_end = max(1, int(args.ramp * args.steps))
        schedule = sparsity.PolynomialDecay(
            0.0, target, begin_step=0, end_step=ramp_end)
        hard = (None if args.hard_mask_at < 0
                else max(ramp_end, int(args.hard_mask_at * args.steps)))
        rate = 1.0
        if args.decay:  # constant until the cut, then cosine to 0
            cut = hard if hard is not None else ramp_end
            rate = keras.optimizers.schedules.CosineDecay(
                1.0, max(1, args.steps - cut), warmup_target=1.0,
                warmup_steps=cut)
        fip = keras_fip.FIPOptimizer.default_of_0_5(
            keras.optimizers.SGD(learning_rate=rate),
            memory=keras_fip.Memory(len(y), seed=args.seed),
            memory_batch_size=64, beta=args.beta, step_norm=args.step_norm,
            distance=args.distance,
            sparse_target=sparsity.SparseTarget(
                schedule, weight=args.strength, hard_mask_step=hard))
        model.compile(optimizer=fip, loss=loss())
        keras_fip.callbacks.remember_task(model, 0, x, y)
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        sparsity.make_pruning_permanent(model)
    seconds = time.time() - begin
    return (keras_fip.evaluation.accuracy(model, xt, yt),
            sparsity.sparsity_report(model)["overall"], seconds)


def anchor_confidence(dense, x, y):
    """How much FIP's anchors say beyond the labels, on the training inputs.

    FIP's memory holds the training inputs anchored at the dense network.
    Where that network is right and sure (anchor q ≈ one-hot on the label
    y), the Bhattacharyya term −log Σ_c √(p_c q_c) ≈ −½ log p_y is half the
    cross-entropy on the labels: the invariance then carries nothing the
    labels do not.
    """
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(
        keras_fip.evaluation.predict_outputs(dense, x)))
    return {"dense_train_accuracy": float(np.mean(
                np.argmax(probabilities, axis=-1) == y)),
            "dense_train_mean_top_probability": float(np.mean(
                np.max(probabilities, axis=-1)))}


def plot(results, path, title="digits"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["models"])
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4),
                                squeeze=False)
    for axis, name in zip(axes[0], names):
        model = results["models"][name]
        for method in results["settings"]["methods"]:
            rows = model["curves"][method]
            axis.plot([r["sparsity"] for r in rows],
                      [r["accuracy"] for r in rows], "o-", label=method)
        axis.axhline(model["dense_accuracy"], color="gray", ls="--",
                     label="dense")
        axis.set_title(f"{title} {name} ({results['backend']})")
        axis.set_xlabel("sparsity of kernels")
        axis.set_ylabel(f"{results['settings']['eval']} accuracy")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def table(results, title="Digits sparsification"):
    methods = results["settings"]["methods"]
    lines = [f"# {title} ({results['backend']}, "
             f"{results['settings']['eval']} accuracy, "
             f"{results['settings']['steps']} steps)", "",
             "| model | dense | sparsity | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for name, model in results["models"].items():
        for i, s in enumerate(results["settings"]["sparsities"]):
            cells = " | ".join(f"{model['curves'][m][i]['accuracy']:.4f}"
                               for m in methods)
            lines.append(f"| {name} | {model['dense_accuracy']:.4f} | "
                         f"{s:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    data = load(args)
    x, y, xt, yt = data
    backend = keras.backend.backend()
    results = {"backend": backend, "settings": vars(args), "models": {}}
    for name in args.models:
        dense = fresh(name, None, args.seed)
        dense.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
        dense.fit(x, y, epochs=50, batch_size=32, verbose=0)
        weights = dense.get_weights()
        entry = {"dense_accuracy": keras_fip.evaluation.accuracy(dense, xt,
                                                                 yt),
                 **anchor_confidence(dense, x, y),
                 "curves": {m: [] for m in args.methods}}
        for target in args.sparsities:
            for method in args.methods:
                accuracy, achieved, seconds = prune(method, name, weights,
                                                    target, data, args)
                entry["curves"][method].append({
                    "sparsity": target, "achieved": achieved,
                    "accuracy": accuracy, "seconds": seconds})
                print(f"{name} {method:>13s} s={target:.2f}: accuracy "
                      f"{accuracy:.4f} (dense {entry['dense_accuracy']:.4f}),"
                      f" achieved {achieved:.4f}, {seconds:.0f} s",
                      flush=True)
        print(f"{name} dense: training accuracy "
              f"{entry['dense_train_accuracy']:.4f}, mean top probability "
              f"{entry['dense_train_mean_top_probability']:.4f}", flush=True)
        results["models"][name] = entry
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"sparsify_digits_{args.eval}_{backend}")
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    with open(stem + ".md", "w") as f:
        f.write(text)
    plot(results, stem + ".png")
    print(text)


if __name__ == "__main__":
    main()
