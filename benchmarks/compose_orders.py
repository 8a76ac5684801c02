"""Does the order of sparsify and learn matter? (the paper's Fig. 6)

From one network trained on task A, two chains of operations
(`keras_fip.composition`) at each sparsity s:

- prune → learn: make the network s-sparse, then learn task B (its zeros
  kept: the direction is masked there);
- learn → prune: learn task B, then make the network s-sparse;

each by FIP (`Sparsify(s)`: the FIP toward the s-sparse network keeping
the known tasks' outputs; `LearnTask("B")`: FIP with the known tasks in the
memory) and by the baseline (`MagnitudePrune(s)`: one-shot magnitude
pruning, then masked fine-tuning on the known tasks' training data;
`FineTune("B")`: the inner optimizer on B alone), with the same budgets:
every learn step count is `--learn-steps`, every pruning one
`--prune-steps`, the same batch size and inner optimizer (Adam).

Data (`--data`):

- `digits`: scikit-learn digits, A = digits 0–4, B = 5–9, one 10-way head
  (class-incremental), the Split-digits MLP (64-256-256-10);
- `bert`: the offline MiniLM BERT classifier
  (`keras_fip.hub.minilm_classifier`) over WordNet glosses, A = animal vs
  plant nouns, B = food vs artifact nouns, one 4-way head; the pruned and
  measured kernels are the six encoder layers' (10.6M weights).

`--eval validation` holds out the last 20 % of each class's training data
(`TaskStream.holdout`) and scores on it: use it to choose settings.
`--eval test` (default) trains on all training data and scores the test
split. Every network is saved with its lineage under
`<out>/compose_<data>_<eval>_<backend>/seed<k>/`; a rerun reuses the
networks already there (`Composer(if_exists="reuse")`).

    KERAS_BACKEND=jax python benchmarks/compose_orders.py --data digits
    KERAS_BACKEND=jax python benchmarks/compose_orders.py --data bert

Writes `<out>/compose_<data>_<eval>_<backend>.json`, `.md` and `.png`
(the graph of seed 0 in the plane of A and B accuracy).
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
from keras_fip import composition  # noqa: E402

METHODS = ("fip", "baseline")
ORDERS = ("prune-learn", "learn-prune")
ENCODER_KERNELS = ["*transformer_layer_*kernel"]
WORDNET_TASKS = (("noun.animal", "noun.plant"),
                 ("noun.food", "noun.artifact"))

# Per data set: the budgets and rates the command line starts from.
DEFAULTS = {
    "digits": {"learn_steps": 200, "prune_steps": 300, "root_epochs": 30,
               "batch_size": 32, "learning_rate": 1e-3, "frequency": 1,
               "memory_batch_size": 32},
    "bert": {"learn_steps": 40, "prune_steps": 60, "root_epochs": 2,
             "batch_size": 16, "learning_rate": 1e-4, "frequency": 5,
             "memory_batch_size": 16},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=list(DEFAULTS), default="digits")
    parser.add_argument("--sparsities", type=float, nargs="+",
                        default=[0.5, 0.7, 0.9])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument("--learn-steps", type=int)
    parser.add_argument("--prune-steps", type=int)
    parser.add_argument("--root-epochs", type=int,
                        help="epochs of training on A before the chains")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float,
                        help="Adam's, for every operation")
    parser.add_argument("--strength", type=float, default=10.0,
                        help="λ of Sparsify's pull")
    parser.add_argument("--beta", type=float, default=10.0,
                        help="FIP's β in LearnTask and Sparsify (10, "
                             "FIPOptimizer's default: of 3 to 1000 the best "
                             "worst case over digits and MiniLM of the mean "
                             "A and B accuracy on the validation splits; "
                             "docs/results/composition.md)")
    parser.add_argument("--class-distance", default="logit_l2",
                        choices=["logit_l2", "bhattacharyya", "kl"],
                        help="FIP's distance on class scores")
    parser.add_argument("--frequency", type=int,
                        help="Sparsify recomputes its threshold every this "
                             "many steps")
    parser.add_argument("--memory-batch-size", type=int)
    parser.add_argument("--train-per-class", type=int, default=60,
                        help="bert: training glosses per category")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--eval", choices=["test", "validation"],
                        default="test")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.data].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not all(0 < s < 1 for s in args.sparsities):
        parser.error("--sparsities must lie in (0, 1)")
    for name in ("learn_steps", "prune_steps", "root_epochs", "batch_size",
                 "frequency", "memory_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def load(args):
    """Tasks A and B: `{name: (x, y)}` for training and for scoring."""
    if args.data == "digits":
        stream = keras_fip.datasets.split_digits(classes_per_task=5)
    else:
        stream = keras_fip.datasets.split_wordnet_text(
            WORDNET_TASKS, args.train_per_class, args.test_per_class)
    if args.eval == "validation":
        stream = stream.holdout(0.2)
    names = ("A", "B")
    train = {n: (t.x_train, t.y_train) for n, t in zip(names, stream)}
    scored = {n: (t.x_test, t.y_test) for n, t in zip(names, stream)}
    return train, scored


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def root_model(args, x, y, seed):
    """The network trained on A that every chain starts from."""
    keras.utils.set_random_seed(seed)
    if args.data == "digits":
        model = models.mlp()
    else:
        model = keras_fip.hub.minilm_classifier(4, args.sequence_length)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss=loss())
    order = np.random.default_rng([seed, 99]).permutation(len(y))
    model.fit(x[order], y[order], epochs=args.root_epochs,
              batch_size=args.batch_size, verbose=0)
    return model


def operations(args):
    """`{method: (learn, {s: prune})}`: the operations of each method."""
    prune = ENCODER_KERNELS if args.data == "bert" else None
    adam = keras.optimizers.Adam(args.learning_rate)
    shared = {"batch_size": args.batch_size, "inner_optimizer": adam,
              "prune": prune}
    fip_settings = {"beta": args.beta,
                    "memory_batch_size": args.memory_batch_size,
                    "class_distance": args.class_distance}
    made = {}
    if "fip" in args.methods:
        made["fip"] = (
            composition.LearnTask("B", steps=args.learn_steps,
                                  settings=fip_settings, **shared),
            {s: composition.Sparsify(s, steps=args.prune_steps,
                                     strength=args.strength,
                                     frequency=args.frequency,
                                     settings=fip_settings, **shared)
             for s in args.sparsities})
    if "baseline" in args.methods:
        made["baseline"] = (
            composition.FineTune("B", steps=args.learn_steps, **shared),
            {s: composition.MagnitudePrune(s, steps=args.prune_steps,
                                           **shared)
             for s in args.sparsities})
    return made


def run_seed(args, train, scored, seed, directory):
    """Builds the graph of one seed; returns its rows."""
    prune = ENCODER_KERNELS if args.data == "bert" else None
    composer = composition.Composer(
        directory, train=train, evaluate=scored, loss=loss(), prune=prune,
        seed=seed, if_exists="reuse")
    if os.path.exists(os.path.join(directory, "A.keras")):
        root = composer.network("A")
    else:
        model = root_model(args, *train["A"], seed)
        root = composer.start(model, "A", knows=["A"])
        del model
    rows = []
    for method, (learn, prunes) in operations(args).items():
        learned = composer.apply(root, learn)
        for s, prune_op in prunes.items():
            pruned = composer.apply(root, prune_op)
            chains = {"prune-learn": (pruned, composer.apply(pruned, learn)),
                      "learn-prune": (learned,
                                      composer.apply(learned, prune_op))}
            for order, (middle, final) in chains.items():
                rows.append(row(seed, method, order, s, middle, final))
                print(f"seed {seed} {method:>8s} {order} s={s:.2f}: "
                      f"A {rows[-1]['A']:.3f} B {rows[-1]['B']:.3f} "
                      f"sparsity {rows[-1]['sparsity']:.3f}", flush=True)
    return rows


def row(seed, method, order, s, middle, final):
    m = final.lineage.measurements
    return {"seed": seed, "method": method, "order": order,
            "sparsity_target": s,
            "network": final.name, "A": m["accuracy"]["A"],
            "B": m["accuracy"]["B"], "sparsity": m["sparsity"],
            "middle": {"network": middle.name,
                       **middle.lineage.measurements["accuracy"],
                       "sparsity": middle.lineage.measurements["sparsity"]},
            "seconds": m["seconds"] + middle.lineage.measurements.get(
                "seconds", 0.0)}


def summarize(rows):
    """Mean and std over seeds per (method, order, s), and the order
    effect (prune → learn minus learn → prune) per (method, s)."""
    cells = {}
    for r in rows:
        cells.setdefault((r["method"], r["order"], r["sparsity_target"]),
                         []).append(r)
    summary = []
    for (method, order, s), group in sorted(cells.items()):
        entry = {"method": method, "order": order, "sparsity_target": s,
                 "seeds": len(group)}
        for key in ("A", "B", "sparsity"):
            values = np.array([r[key] for r in group])
            entry[key] = float(values.mean())
            entry[key + "_std"] = float(values.std(ddof=1)) if len(
                values) > 1 else 0.0
        summary.append(entry)
    effects = []
    for (method, order, s), group in sorted(cells.items()):
        if order != "prune-learn" or (method, "learn-prune", s) not in cells:
            continue
        other = {r["seed"]: r for r in cells[(method, "learn-prune", s)]}
        entry = {"method": method, "sparsity_target": s}
        for key in ("A", "B"):
            diffs = np.array([r[key] - other[r["seed"]][key] for r in group
                              if r["seed"] in other])
            entry[key] = float(diffs.mean())
            entry[key + "_std"] = float(diffs.std(ddof=1)) if len(
                diffs) > 1 else 0.0
            # The order matters where the paired difference is more than
            # two standard errors from 0.
            error = entry[key + "_std"] / np.sqrt(max(len(diffs), 1))
            entry[key + "_matters"] = bool(len(diffs) > 1 and abs(
                entry[key]) > 2 * error)
        effects.append(entry)
    return summary, effects


def table(results):
    args = results["settings"]
    lines = [f"# Sparsify and learn in both orders ({args['data']}, "
             f"{results['backend']}, {args['eval']} accuracy, seeds "
             f"{args['seeds']})", "",
             "| method | order | s | A | B | sparsity |",
             "|---|---|---|---|---|---|"]
    for e in results["summary"]:
        lines.append(
            f"| {e['method']} | {e['order']} | {e['sparsity_target']:.1f} | "
            f"{e['A']:.3f} ± {e['A_std']:.3f} | {e['B']:.3f} ± "
            f"{e['B_std']:.3f} | {e['sparsity']:.3f} |")
    lines += ["", "Order effect: (prune → learn) − (learn → prune), mean ± "
              "std over seeds; * where it is more than two standard errors "
              "from 0.", "", "| method | s | Δ A | Δ B |", "|---|---|---|---|"]
    for e in results["effects"]:
        cells = [f"{e[k]:+.3f} ± {e[k + '_std']:.3f}"
                 + ("*" if e[k + "_matters"] else "") for k in ("A", "B")]
        lines.append(f"| {e['method']} | {e['sparsity_target']:.1f} | "
                     f"{cells[0]} | {cells[1]} |")
    root = results["root"]
    lines += ["", f"The network trained on A: A {root['A']:.3f} ± "
              f"{root['A_std']:.3f}, B {root['B']:.3f} (mean over seeds)."]
    return "\n".join(lines) + "\n"


def plot(directory, path, methods, title):
    """The graph of one seed, a panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = composition.NetworkGraph.read(directory)
    kinds = {"fip": ("LearnTask", "Sparsify"),
             "baseline": ("FineTune", "MagnitudePrune")}
    figure, axes = plt.subplots(1, len(methods), figsize=(6.5 * len(methods),
                                                          5.5), squeeze=False)
    for axis, method in zip(axes[0], methods):
        names = [n for n, record in graph.lineages.items()
                 if record.parent is None or all(
                     o["class_name"] in kinds[method]
                     for o in graph.operation_configs(n))]
        graph.subgraph(names).plot(None, "A", "B", axis=axis,
                                   title=f"{title}: {method}")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    backend = keras.backend.backend()
    train, scored = load(args)
    stem = os.path.join(args.out, f"compose_{args.data}_{args.eval}_"
                                  f"{backend}")
    began = time.time()
    rows, roots = [], []
    for seed in args.seeds:
        directory = os.path.join(stem, f"seed{seed}")
        rows += run_seed(args, train, scored, seed, directory)
        root = composition.Network.read(os.path.join(directory, "A.keras"))
        roots.append(root.lineage.measurements["accuracy"])
    summary, effects = summarize(rows)
    results = {
        "backend": backend, "settings": vars(args), "rows": rows,
        "summary": summary, "effects": effects,
        "root": {"A": float(np.mean([r["A"] for r in roots])),
                 "A_std": float(np.std([r["A"] for r in roots])),
                 "B": float(np.mean([r["B"] for r in roots]))},
        "seconds": time.time() - began}
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    with open(stem + ".md", "w") as f:
        f.write(text)
    plot(os.path.join(stem, f"seed{args.seeds[0]}"), stem + ".png",
         args.methods, f"{args.data}, seed {args.seeds[0]}")
    print(text)
    return results


if __name__ == "__main__":
    main()
