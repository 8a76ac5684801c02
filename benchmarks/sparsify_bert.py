"""Sparsity–accuracy curve of the MiniLM BERT classifier on a WordNet task.

The offline MiniLM-L6-H384 (`keras_fip.hub.minilm_classifier`, preprocessor
attached) is fine-tuned dense on one 4-way WordNet task (glosses of food,
artifact, person and location nouns, Debian `wordnet-base`), then the dense
kernels of its six encoder layers (attention query/key/value/output and the
two feed-forward kernels: 10.6M weights; embeddings, pooler and head stay
dense) are pruned to each sparsity with one global magnitude threshold by

- magnitude: one-shot magnitude pruning;
- magnitude+ft: one-shot pruning, then masked fine-tuning
  (`keras_fip.sparsity.MaskedOptimizer(Adam)`) for the step budget;
- fip: `FIPOptimizer(Adam, sparse_target=SparseTarget(PolynomialDecay(
  0 → s over the first 25 %), weight=λ, hard_mask_step=30 %))` for the
  same budget: the pull toward the sparse subspace, the cut at 30 %, then an
  FIP inside the subspace, D on the training glosses anchored at the dense
  network (`remember_task`). β = 1 keeps the task loss in the step, as in
  the BERT continual-learning code. The ramp, the cut and λ are the digits
  example's (chosen there on a validation split), not tuned here.

    KERAS_BACKEND=tensorflow python benchmarks/sparsify_bert.py
    KERAS_BACKEND=jax python benchmarks/sparsify_bert.py --sparsities 0.7

Writes `<out>/sparsify_bert_<eval>_<backend>.json`, `.md` and `.png`.
"""

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip import sparsity  # noqa: E402
from sparsify_digits import METHODS  # noqa: E402
from sparsify_digits import plot  # noqa: E402
from sparsify_digits import table  # noqa: E402

CATEGORIES = (("noun.food", "noun.artifact", "noun.person",
               "noun.location"),)
ENCODER_KERNELS = ["*transformer_layer_*kernel"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument("--sparsities", type=float, nargs="+",
                        default=[0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3,
                        help="dense fine-tuning epochs")
    parser.add_argument("--steps", type=int, default=150,
                        help="step budget of FIP and of masked fine-tuning")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=24)
    parser.add_argument("--learning-rate", type=float, default=1e-4,
                        help="Adam's, for every method")
    parser.add_argument("--strength", type=float, default=10.0, help="λ")
    parser.add_argument("--ramp", type=float, default=0.25)
    parser.add_argument("--hard-mask-at", type=float, default=0.3)
    parser.add_argument("--frequency", type=int, default=5,
                        help="recompute the threshold every this many steps "
                             "(a sort of the 10.6M encoder weights)")
    parser.add_argument("--memory-batch-size", type=int, default=16)
    parser.add_argument("--eval", choices=["test", "validation"],
                        default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    for name in ("train_per_class", "test_per_class", "epochs", "steps",
                 "batch_size", "sequence_length", "memory_batch_size",
                 "frequency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not all(0 <= s < 1 for s in args.sparsities):
        parser.error("--sparsities must lie in [0, 1)")
    if not 0 < args.ramp <= args.hard_mask_at < 1:
        parser.error("need 0 < --ramp <= --hard-mask-at < 1")
    return args


def load(args):
    stream = keras_fip.datasets.split_wordnet_text(
        CATEGORIES, args.train_per_class, args.test_per_class,
        seed=args.seed)  # training glosses shuffled
    if args.eval == "validation":
        stream = stream.holdout(0.2)
    task = stream[0]
    return task.x_train, task.y_train, task.x_test, task.y_test


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def epochs_for(args, n):
    return int(np.ceil(args.steps / np.ceil(n / args.batch_size)))


def fip_optimizer(target, args, n):
    ramp_end = max(1, int(args.ramp * args.steps))
    schedule = sparsity.PolynomialDecay(0.0, target, begin_step=0,
                                        end_step=ramp_end,
                                        frequency=args.frequency)
    return keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.Adam(args.learning_rate),
        memory=keras_fip.Memory(n, seed=args.seed),
        memory_batch_size=args.memory_batch_size,
        sparse_target=sparsity.SparseTarget(
            schedule, weight=args.strength, prune=ENCODER_KERNELS,
            hard_mask_step=max(ramp_end, int(args.hard_mask_at * args.steps))))


def prune(method, weights, target, data, args, classes):
    """The pruned model's (accuracy, achieved sparsity, seconds)."""
    x, y, xt, yt = data
    keras.utils.set_random_seed(args.seed)
    model = keras_fip.hub.minilm_classifier(classes, args.sequence_length,
                                            weights)
    begin = time.time()
    if method in ("magnitude", "magnitude+ft"):
        sparsity.prune_low_magnitude(model, target, prune=ENCODER_KERNELS)
    if method != "magnitude":
        optimizer = (fip_optimizer(target, args, len(y)) if method == "fip"
                     else sparsity.MaskedOptimizer(
                         keras.optimizers.Adam(args.learning_rate),
                         prune=ENCODER_KERNELS))
        model.compile(optimizer=optimizer, loss=loss())
        if method == "fip":
            keras_fip.callbacks.remember_task(model, 0, x, y)
        model.fit(x, y, epochs=epochs_for(args, len(y)),
                  batch_size=args.batch_size, verbose=0)
    if method == "fip":
        sparsity.make_pruning_permanent(model)
    seconds = time.time() - begin
    report = sparsity.sparsity_report(model, prune=ENCODER_KERNELS)
    return keras_fip.evaluation.accuracy(model, xt, yt), report, seconds


def main(argv=None):
    args = parse_args(argv)
    data = load(args)
    x, y, xt, yt = data
    classes = len(CATEGORIES[0])
    backend = keras.backend.backend()
    keras.utils.set_random_seed(args.seed)
    dense = keras_fip.hub.minilm_classifier(classes, args.sequence_length)
    dense.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss=loss())
    dense.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
              verbose=0)
    weights = dense.get_weights()
    entry = {"dense_accuracy": keras_fip.evaluation.accuracy(dense, xt, yt),
             "curves": {m: [] for m in args.methods}}
    print(f"dense: accuracy {entry['dense_accuracy']:.4f}", flush=True)
    del dense
    for target in args.sparsities:
        for method in args.methods:
            accuracy, report, seconds = prune(method, weights, target, data,
                                              args, classes)
            entry["curves"][method].append({
                "sparsity": target, "achieved": report["overall"],
                "pruned_weights": report["size"], "accuracy": accuracy,
                "seconds": seconds})
            print(f"{method:>13s} s={target:.2f}: accuracy {accuracy:.4f} "
                  f"(dense {entry['dense_accuracy']:.4f}), achieved "
                  f"{report['overall']:.4f} of {report['size']} weights, "
                  f"{seconds:.0f} s", flush=True)
    results = {"backend": backend, "settings": vars(args),
               "models": {"minilm": entry}}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"sparsify_bert_{args.eval}_{backend}")
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    text = table(results, title="MiniLM encoder sparsification")
    with open(stem + ".md", "w") as f:
        f.write(text)
    plot(results, stem + ".png", title="MiniLM on WordNet")
    print(text)


if __name__ == "__main__":
    main()
