"""Robust ensembles on digits: FIP path ensembles against deep ensembles, FGE
and snapshot ensembles under transfer and white-box attacks.

The paper's third application (Raghavan et al. 2024, Fig. 5): from one
trained network N1, walk an FIP whose secondary objective diversifies the
network while the invariance term holds N1's outputs on the training
inputs, sample M networks along the path and average them. Every ensemble
here has M members (default 10) of the digits CNN (`models.cnn()`, 8×8
inputs in [0, 1]); N1, the independent network and every deep-ensemble
member are trained alike (Adam 1e-3, batch 32, `--epochs` epochs).

Methods:

- `deep`: M networks trained independently from M other seeds;
- `fge`: fast geometric ensembling from N1 — SGD (momentum 0.9, weight
  decay `--weight-decay` as in Garipov et al.) with
  `FGESchedule(high, high/100, cycle)`, a member at each cycle's low point;
- `snapshot`: snapshot ensembles from scratch — SGD (momentum 0.9, the
  same weight decay) with `SnapshotSchedule(high, cycle)`, a member at each
  cycle's end;
- `fip-away`: FIP from N1 with `AwayFromStart(λ)` (maximise ‖w − w_N1‖);
- `fip-adv`: FIP from N1 with `AdversarialOutputDiversity(λ, ε_div)` (on
  N1's own FGSM inputs, answer what N1 answers on the clean ones);
- `adv-finetune` (an ablation of fip-adv): N1 fine-tuned with Adam on its
  FGSM inputs (ε_div, true labels) beside the clean ones, for
  `--path-epochs` epochs, members at even steps: the same adversarial data
  without the invariance path.

Both FIP walks: `FIPOptimizer(SGD(1.0), step_norm=ε_s, beta=β)` with a
memory of every training input anchored at N1 (`remember_task`), the
training cross-entropy as the fit loss, `--path-epochs` epochs, a member
every 1/M of the path (`WeightSnapshots`).

Threat models, PGD L∞ (10 steps, α = 2.5ε/10, random start) at each ε of
`--epsilons` on inputs in [0, 1], accuracy of the ensemble's averaged
softmax on the adversarial inputs: `transfer_n1` (generated on N1),
`transfer_independent` (on a network trained apart from every ensemble),
`whitebox` (on the ensemble's averaged prediction). Also: clean accuracy,
member disagreement and coherence on N1's ε = 0.1 PGD inputs, the
layer-wise diversity score (1 − mean pairwise linear CKA) on the clean
evaluation inputs, and each ensemble's cost in wall time and train steps
(N1's own training not included: `cost` says which methods start from N1).

`--eval validation` holds out the last fifth of the training data and
reports on it (choose knobs there); `--eval test` (default) trains on all
training data and reports the test split.

    KERAS_BACKEND=jax python benchmarks/robust_ensembles.py --seeds 0 1 2
    python benchmarks/robust_ensembles.py --eval validation --seeds 0 \\
        --methods fip-away --knob fip-away=0.3,1,3

Writes `<out>/robust_ensembles_<eval>_<backend>.json`, `.md` and `.png`
(accuracy against ε per threat model, coherence histograms).
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
from keras_fip import attacks  # noqa: E402
from keras_fip import ensembles  # noqa: E402

METHODS = ("deep", "fge", "snapshot", "fip-away", "fip-adv", "adv-finetune")
FROM_N1 = ("fge", "fip-away", "fip-adv", "adv-finetune")
THREATS = ("transfer_n1", "transfer_independent", "whitebox")
#: Each method's knob and its default, chosen on the validation split
#: (seeds 0 and 1) by `benchmarks/robust_ensembles_select.py`.
KNOBS = {"fge": 0.05, "snapshot": 0.05, "fip-away": 1.0, "fip-adv": 1.0,
         "adv-finetune": 1e-3}
BATCH = 32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40,
                        help="training epochs of N1 and of each network")
    parser.add_argument("--path-epochs", type=int, default=20,
                        help="epochs of each FIP walk and FGE run")
    parser.add_argument("--snapshot-cycle-epochs", type=int, default=8)
    parser.add_argument("--step-norm", type=float, default=0.02, help="ε_s")
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--weight-decay", type=float, default=5e-4,
                        help="decoupled weight decay of FGE's and the "
                             "snapshot ensemble's SGD")
    parser.add_argument("--diversity-epsilon", type=float, default=0.2,
                        help="ε of fip-adv's FGSM inputs")
    parser.add_argument("--diversity-objective", default="clean_label",
                        choices=list(keras_fip.terms.diversity.OBJECTIVES),
                        help="fip-adv's objective on N1's FGSM inputs")
    parser.add_argument("--epsilons", type=float, nargs="+",
                        default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--knob", action="append", default=[],
                        help="method=v1,v2,...: knob values to run")
    parser.add_argument("--eval", choices=["test", "validation"],
                        default="test")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.members < 2:
        parser.error("--members must be >= 2")
    if args.weight_decay < 0:
        parser.error("--weight-decay must be >= 0")
    if min(args.epochs, args.path_epochs, args.snapshot_cycle_epochs) < 1:
        parser.error("epoch counts must be >= 1")
    if not all(0 < e <= 1 for e in args.epsilons):
        parser.error("--epsilons must lie in (0, 1]")
    knobs = {m: [KNOBS[m]] for m in KNOBS}
    for item in args.knob:
        method, _, values = item.partition("=")
        if method not in KNOBS or not values:
            parser.error(f"--knob takes method=v1,v2 with a method of "
                         f"{sorted(KNOBS)}; got {item!r}")
        knobs[method] = [float(v) for v in values.split(",")]
    args.knobs = knobs
    return args


def load(split):
    x, y, xt, yt = keras_fip.datasets.digits.load_digits_split()
    if split == "validation":
        held = np.arange(int(0.8 * len(y)), len(y))
        kept = np.arange(int(0.8 * len(y)))
        return x[kept], y[kept], x[held], y[held]
    return x, y, xt, yt


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def trained(x, y, seed, epochs):
    keras.utils.set_random_seed(seed)
    model = models.cnn()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)
    return model


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def steps_per_epoch(n):
    return int(np.ceil(n / BATCH))


def even_steps(total, members):
    """M collection points spread evenly over a path of `total` steps."""
    return sorted({max(1, int(round(total * (k + 1) / members)))
                   for k in range(members)})


def collect(model, x, y, epochs, at_steps, seed):
    snapshots = keras_fip.callbacks.WeightSnapshots(at_steps=at_steps)
    keras.utils.set_random_seed(seed)
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0,
              callbacks=[snapshots])
    return snapshots.snapshots


def cyclic_sgd(schedule, args):
    return keras.optimizers.SGD(schedule, momentum=0.9,
                                weight_decay=args.weight_decay or None)


def build(method, knob, n1, data, seed, args):
    """`(members' weights, train steps)` of one ensemble."""
    x, y = data[0], data[1]
    per_epoch = steps_per_epoch(len(y))
    m = args.members
    if method == "deep":
        nets = [trained(x, y, 1000 * (seed + 1) + k, args.epochs)
                for k in range(m)]
        return [n.get_weights() for n in nets], m * args.epochs * per_epoch
    if method == "snapshot":
        cycle = args.snapshot_cycle_epochs * per_epoch
        schedule = ensembles.SnapshotSchedule(knob, cycle)
        keras.utils.set_random_seed(seed + 500)
        model = models.cnn()
        model.compile(optimizer=cyclic_sgd(schedule, args),
                      loss=loss())
        epochs = m * args.snapshot_cycle_epochs
        return (collect(model, x, y, epochs, schedule.member_steps(m), seed),
                epochs * per_epoch)
    total = args.path_epochs * per_epoch
    model = copy_of(n1)
    if method == "fge":
        cycle = 2 * max(1, total // (2 * m))
        schedule = ensembles.FGESchedule(knob, knob / 100, cycle)
        model.compile(optimizer=cyclic_sgd(schedule, args),
                      loss=loss())
        epochs = int(np.ceil(m * cycle / per_epoch))
        return (collect(model, x, y, epochs, schedule.member_steps(m), seed),
                epochs * per_epoch)
    if method == "adv-finetune":
        # fip-adv's data without the path: N1's FGSM inputs (ε_div) with
        # their true labels beside the clean ones, plain Adam fine-tuning.
        x_adv = attacks.fgsm(n1, x, y, args.diversity_epsilon)
        model.compile(optimizer=keras.optimizers.Adam(knob), loss=loss())
        both_x, both_y = np.concatenate([x, x_adv]), np.concatenate([y, y])
        steps = args.path_epochs * steps_per_epoch(len(both_y))
        return (collect(model, both_x, both_y, args.path_epochs,
                        even_steps(steps, m), seed), steps)
    if method == "fip-away":
        term = keras_fip.terms.AwayFromStart(knob, seed=seed)
    else:
        term = keras_fip.terms.AdversarialOutputDiversity(
            knob, epsilon=args.diversity_epsilon,
            objective=args.diversity_objective)
    model.compile(optimizer=keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(1.0), memory=keras_fip.Memory(len(y), seed=seed),
        memory_batch_size=64, beta=args.beta, step_norm=args.step_norm,
        objectives=[term]), loss=loss())
    keras_fip.callbacks.remember_task(model, 0, x, y)
    return (collect(model, x, y, args.path_epochs, even_steps(total, m),
                    seed), total)


def assess(ensemble, members, adversarial, xt, yt, args):
    """Accuracies per threat model and ε, and the diversity measures."""
    result = {"clean": attacks.accuracy(ensemble, xt, yt),
              "member_clean": float(np.mean([attacks.accuracy(m, xt, yt)
                                             for m in members]))}
    for threat in THREATS:
        result[threat] = {}
        for eps in args.epsilons:
            x_adv = (attacks.pgd(ensemble, xt, yt, eps)
                     if threat == "whitebox" else adversarial[threat][eps])
            result[threat][str(eps)] = attacks.accuracy(ensemble, x_adv, yt)
    x_adv = adversarial["transfer_n1"][min(args.epsilons,
                                           key=lambda e: abs(e - 0.1))]
    outputs = ensembles.member_outputs(members, x_adv)
    coherence = ensembles.coherence(outputs)
    result["disagreement_adversarial"] = ensembles.pairwise_disagreement(
        outputs)
    result["disagreement_clean"] = ensembles.pairwise_disagreement(
        ensembles.member_outputs(members, xt))
    result["coherence_mean"] = float(np.mean(coherence))
    # Coherence takes the values k/M: one bin centred on each.
    half = 0.5 / len(members)
    result["coherence_histogram"] = np.histogram(
        coherence, bins=len(members), range=(half, 1 + half))[0].tolist()
    # Keyed by position: Keras numbers layer names per process.
    result["layer_diversity"] = {
        str(k): float(v) for k, v in enumerate(
            ensembles.layerwise_diversity(members, xt).values())}
    return result


def run_seed(seed, args):
    x, y, xt, yt = data = load(args.eval)
    begin = time.time()
    n1 = trained(x, y, seed, args.epochs)
    n1_seconds = time.time() - begin
    independent = trained(x, y, 1000 * (seed + 1) + 999, args.epochs)
    adversarial = {
        "transfer_n1": {e: attacks.pgd(n1, xt, yt, e) for e in args.epsilons},
        "transfer_independent": {e: attacks.pgd(independent, xt, yt, e)
                                 for e in args.epsilons}}
    single = keras_fip.ensembles.PathEnsemble([n1])
    rows = {"n1": assess_single(single, n1, adversarial, xt, yt, args)}
    rows["n1"]["cost"] = {"seconds": n1_seconds,
                          "steps": args.epochs * steps_per_epoch(len(y))}
    for method in args.methods:
        for knob in args.knobs.get(method, [None]):
            begin = time.time()
            weights, steps = build(method, knob, n1, data, seed, args)
            seconds = time.time() - begin
            ensemble = ensembles.PathEnsemble.from_weights(n1, weights)
            row = assess(ensemble, ensemble.members, adversarial, xt, yt,
                         args)
            row["cost"] = {"seconds": seconds, "steps": steps,
                           "from_n1": method in FROM_N1}
            row["knob"] = knob
            rows[method if knob is None else f"{method}={knob:g}"] = row
            print(f"seed {seed} {method} {knob}: clean {row['clean']:.3f} "
                  + " ".join(f"{t} {row[t]}" for t in THREATS)
                  + f" ({seconds:.0f} s)", flush=True)
    return rows


def assess_single(single, n1, adversarial, xt, yt, args):
    """N1 alone, for reference (its transfer from N1 is white-box)."""
    result = {"clean": attacks.accuracy(n1, xt, yt)}
    for threat in THREATS:
        result[threat] = {
            str(e): attacks.accuracy(single, adversarial["transfer_n1"][e]
                                     if threat != "transfer_independent"
                                     else adversarial[threat][e], yt)
            for e in args.epsilons}
    return result


def summarise(per_seed):
    """mean and spread (max − min) / 2 over seeds of every number; histogram
    counts are summed over seeds."""
    def merge(values):
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) for k in first}
        if isinstance(first, list):  # histogram counts: total over seeds
            return np.sum(values, axis=0).tolist()
        if isinstance(first, bool) or first is None:
            return first
        values = np.asarray(values, dtype="float64")
        return {"mean": float(values.mean()),
                "spread": float((values.max() - values.min()) / 2)}
    names = per_seed[0].keys()
    return {name: merge([seed[name] for seed in per_seed]) for name in names}


def table(summary, args):
    def cell(stat, scale=100):
        return f"{scale * stat['mean']:.1f} ± {scale * stat['spread']:.1f}"
    lines = []
    for threat in THREATS:
        lines += [f"\n**{threat}** (accuracy %, PGD L∞)\n",
                  "| method | clean | " + " | ".join(
                      f"ε {e:g}" for e in args.epsilons) + " | seconds | "
                  "steps |",
                  "|---|---|" + "---|" * (len(args.epsilons) + 2)]
        for name, row in summary.items():
            cost = row.get("cost", {})
            lines.append(
                f"| {name} | {cell(row['clean'])} | " + " | ".join(
                    cell(row[threat][str(e)]) for e in args.epsilons)
                + f" | {cost['seconds']['mean']:.0f} | "
                  f"{cost['steps']['mean']:.0f} |" if cost else
                f"| {name} | {cell(row['clean'])} | " + " | ".join(
                    cell(row[threat][str(e)]) for e in args.epsilons)
                + " | | |")
    lines += ["\n**diversity** (N1's ε≈0.1 PGD inputs; layer score on clean)"
              "\n", "| method | disagreement adv | disagreement clean | "
              "coherence | layer diversity (first → last) |",
              "|---|---|---|---|---|"]
    for name, row in summary.items():
        if "layer_diversity" not in row:
            continue
        layers = " / ".join(f"{100 * v['mean']:.1f}"
                            for v in row["layer_diversity"].values())
        lines.append(f"| {name} | {cell(row['disagreement_adversarial'])} | "
                     f"{cell(row['disagreement_clean'])} | "
                     f"{cell(row['coherence_mean'])} | {layers} |")
    return "\n".join(lines)


def plot(summary, args, path):
    """Accuracy against ε per threat model, and the coherence histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(THREATS) + 1, figsize=(17, 4))
    for axis, threat in zip(axes, THREATS):
        for k, (name, row) in enumerate(summary.items()):
            means = [100 * row[threat][str(e)]["mean"] for e in args.epsilons]
            spreads = [100 * row[threat][str(e)]["spread"]
                       for e in args.epsilons]
            axis.errorbar(args.epsilons, means, yerr=spreads, marker="o",
                          capsize=3, label=name, color=f"C{k % 10}")
        axis.set(title=threat, xlabel="ε (PGD L∞)", ylabel="accuracy %",
                 ylim=(0, 100))
    axes[0].legend(fontsize=7)
    histogram = axes[-1]
    for k, (name, row) in enumerate(summary.items()):
        if "coherence_histogram" in row:
            counts = np.asarray(row["coherence_histogram"], dtype=float)
            centres = np.arange(1, len(counts) + 1) / len(counts)
            histogram.plot(centres, counts / max(counts.sum(), 1),
                           marker="o", label=name, color=f"C{k % 10}")
    histogram.set(title="coherence on N1's ε≈0.1 inputs (all seeds)",
                  xlabel="share of members voting with the majority",
                  ylabel="share of inputs (symlog)")
    histogram.set_yscale("symlog", linthresh=0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    begin = time.time()
    per_seed = [run_seed(seed, args) for seed in args.seeds]
    summary = summarise(per_seed)
    backend = keras.backend.backend()
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"robust_ensembles_{args.eval}_{backend}")
    record = {"args": {k: v for k, v in vars(args).items()},
              "backend": backend, "seconds": time.time() - begin,
              "per_seed": per_seed, "summary": summary}
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=1)
    text = table(summary, args)
    with open(stem + ".md", "w") as f:
        f.write(text + "\n")
    plot(summary, args, stem + ".png")
    print(text)
    print(f"total {time.time() - begin:.0f} s")


if __name__ == "__main__":
    main()
