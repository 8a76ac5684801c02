"""Choose FIP's default (and DER++'s and ER's) on validation splits only.

Every candidate configuration runs on the validation version of every
stream (`TaskStream.holdout(0.2)`: in each task the last 20% of every
class's training samples is its test set; the real test sets are never
read). Each method family (FIP, DER++, ER) gets the same budget: the same
number of configurations in round 1 (one seed; FIP's, DER++'s and ER's
lists each grew by seven after a first look, "round 1b"), then its best
`--finalists` re-run on `--seeds` more seeds in round 2. `DIAGNOSTICS` are
measured the same way but are not candidates (`--configs der-a0.3 ...`).
A family's choice is the configuration with the highest validation
average accuracy, averaged over the streams (and seeds).

Runs are appended to `results/select_default/<backend>.jsonl` as they
finish; a rerun skips what is already there, so the script resumes.

    KERAS_BACKEND=tensorflow python benchmarks/select_default.py
    python benchmarks/select_default.py --round 2
    python benchmarks/select_default.py --report
"""

import argparse
import json
import os
import pathlib

import keras
import numpy as np

import keras_fip
from keras_fip import baselines
from keras_fip.bench import registry
from keras_fip.bench.runner import run

STREAMS = ("split-digits", "permuted-digits", "split-wordnet",
           "split-wordnet-b")


def _memory(stream, seed):
    return registry._memory(stream, seed)


def fip(**settings):
    """The reference code's FIP (keras_fip 0.2's default), `settings`
    replaced: candidates do not move when the library's default does."""
    return lambda inner, stream, seed: keras_fip.FIPOptimizer.reference_code(
        inner, memory=_memory(stream, seed), **settings)


def derpp(**settings):
    """DER++ with keras_fip 0.2's defaults (α 0.3, β 0.5), `settings`
    replaced."""
    settings = {"alpha": 0.3, "beta": 0.5, **settings}  # α, β of the paper
    settings["logit_weight"] = settings.pop("alpha")
    settings["label_weight"] = settings.pop("beta")
    return lambda inner, stream, seed: baselines.DERPPOptimizer(
        inner, memory=_memory(stream, seed), **settings)


def er(**settings):
    """ER with keras_fip 0.2's default (replay weight 1), `settings`
    replaced."""
    settings = {"replay_weight": 1.0, **settings}
    settings["weight"] = settings.pop("replay_weight")
    return lambda inner, stream, seed: baselines.ReplayOptimizer(
        inner, memory=_memory(stream, seed), **settings)


def exact(damping, beta=10.0, distance="squared_l2", reduction="mean",
          anchors="stored", iterations=5, memory_batch_size=32,
          metric=None):
    """FIP with the exact step on the invariance term's direction."""
    return fip(damping=damping, beta=beta, distance=distance,
               reduction=reduction, anchors=anchors,
               solver_iterations=iterations,
               memory_batch_size=memory_batch_size, metric=metric)


CANDIDATES = {
    "fip": {
        "fip-reference": fip(),
        "fip-l2": fip(distance="squared_l2", reduction="mean", beta=10.0),
        "fip-l2-stored": fip(distance="squared_l2", reduction="mean",
                             beta=10.0, anchors="stored"),
        "fip-stored": fip(anchors="stored"),
        "fip-exact-mu1": exact(1.0),
        "fip-exact-mu10": exact(10.0),
        "fip-exact-mu100": exact(100.0),
        "fip-exact-mu10-fisher": exact(10.0, distance="bhattacharyya",
                                       reduction="sum", beta=1.0,
                                       metric="fisher"),
        # Round 1b (after round 1: FIP trailed on the text streams).
        "fip-beta0.3": fip(beta=0.3),
        "fip-mb128": fip(memory_batch_size=128),
        "fip-l2-beta3": fip(distance="squared_l2", reduction="mean",
                            beta=3.0),
        "fip-exact-reference": exact(10.0, distance="bhattacharyya",
                                     reduction="sum", beta=1.0,
                                     anchors="task_start", metric="fisher"),
        "fip-l2-exact-mu10": exact(10.0, anchors="task_start"),
        "fip-beta0.1": fip(beta=0.1),
        "fip-beta0.3-mb64": fip(beta=0.3, memory_batch_size=64),
    },
    "derpp": {
        "derpp-0.2": derpp(alpha=0.3, beta=0.5),
        "derpp-a0.1-b0.5": derpp(alpha=0.1, beta=0.5),
        "derpp-a1-b0.5": derpp(alpha=1.0, beta=0.5),
        "derpp-a0.3-b1": derpp(alpha=0.3, beta=1.0),
        "derpp-a1-b1": derpp(alpha=1.0, beta=1.0),
        "derpp-a0.3-b0.2": derpp(alpha=0.3, beta=0.2),
        "derpp-a0.3-b0.5-mb64": derpp(memory_batch_size=64),
        "derpp-a3-b0.5": derpp(alpha=3.0, beta=0.5),
        # Round 1b: the same number of further configurations.
        "derpp-a0.3-b2": derpp(alpha=0.3, beta=2.0),
        "derpp-a0.1-b1": derpp(alpha=0.1, beta=1.0),
        "derpp-a0.3-b1-mb64": derpp(alpha=0.3, beta=1.0,
                                    memory_batch_size=64),
        "derpp-a0.6-b1": derpp(alpha=0.6, beta=1.0),
        "derpp-a0.2-b1.5": derpp(alpha=0.2, beta=1.5),
        "derpp-a0.3-b3": derpp(alpha=0.3, beta=3.0),
        "derpp-a0.5-b2": derpp(alpha=0.5, beta=2.0),
    },
    "er": {
        "er-0.2": er(replay_weight=1.0),
        "er-w0.5": er(replay_weight=0.5),
        "er-w2": er(replay_weight=2.0),
        "er-w4": er(replay_weight=4.0),
        "er-mb64": er(memory_batch_size=64),
        "er-w2-mb64": er(replay_weight=2.0, memory_batch_size=64),
        "er-mb16": er(memory_batch_size=16),
        "er-w0.25": er(replay_weight=0.25),
        # Round 1b.
        "er-w8": er(replay_weight=8.0),
        "er-w4-mb64": er(replay_weight=4.0, memory_batch_size=64),
        "er-w3": er(replay_weight=3.0),
        "er-w6": er(replay_weight=6.0),
        "er-w5-mb16": er(replay_weight=5.0, memory_batch_size=16),
        "er-w12": er(replay_weight=12.0),
        "er-w6-mb64": er(replay_weight=6.0, memory_batch_size=64),
    },
}


def plain_exact(epsilon, damping=10.0):
    """The paper's plain form: SGD(1) moves by the clipped exact step."""
    return lambda inner, stream, seed: keras_fip.FIPOptimizer(
        keras.optimizers.SGD(1.0), memory=_memory(stream, seed),
        distance="squared_l2", reduction="mean", beta=10.0,
        anchors="stored", damping=damping, step_norm=epsilon)


# How the exact step composes with the inner optimizer (not candidates for
# the default: measured on validation to decide what the exact step hands
# to Adam, see the docs).
DIAGNOSTICS = {
    # DER++ without its label term: what the stored labels are worth.
    "der": {"der-a0.3": derpp(beta=0.0)},
    "plain": {
        "plain-exact-eps0.01": plain_exact(0.01),
        "plain-exact-eps0.1": plain_exact(0.1),
    },
}


def _factory(config):
    family = config.split("-")[0]
    return family, {**CANDIDATES, **DIAGNOSTICS}[family][config]


def _load(name):
    spec = registry.STREAMS[name]
    return spec.load().holdout(0.2)


def _done(path):
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines()
               if line.strip()]
    return {(r["stream"], r["config"], r["seed"]): r for r in records}


def _run_all(configs, streams, seeds, path, epochs_scale):
    done = _done(path)
    for stream_name in streams:
        stream = None
        for config in configs:
            family, make = _factory(config)
            for seed in seeds:
                if (stream_name, config, seed) in done:
                    continue
                stream = stream or _load(stream_name)
                epochs = max(1, int(round(
                    registry.STREAMS[stream_name].epochs * epochs_scale)))
                record = run(stream_name, stream, family, seed, epochs,
                             make_optimizer=make)
                record.update(config=config, family=family,
                              split="validation",
                              backend=keras.backend.backend())
                with path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"{stream_name:24s} {config:24s} seed {seed} "
                      f"val acc {record['average_accuracy']:.3f} "
                      f"({record['seconds']:.1f} s)", flush=True)


def _table(path, streams):
    done = _done(path)
    scores = {}
    for (stream, config, seed), r in done.items():
        scores.setdefault(config, {}).setdefault(stream, []).append(
            r["average_accuracy"])
    rows = []
    for config, per_stream in scores.items():
        if not all(s in per_stream for s in streams):
            continue
        means = [float(np.mean(per_stream[s])) for s in streams]
        seeds = min(len(per_stream[s]) for s in streams)
        rows.append((config, seeds, means, float(np.mean(means))))
    return sorted(rows, key=lambda row: -row[3])


def report(path, streams):
    lines = ["| config | seeds | " + " | ".join(streams) + " | mean |",
             "|---|---|" + "---|" * len(streams) + "---|"]
    for config, seeds, means, mean in _table(path, streams):
        lines.append(f"| {config} | {seeds} | "
                     + " | ".join(f"{m:.3f}" for m in means)
                     + f" | {mean:.3f} |")
    return "\n".join(lines)


def finalists(path, streams, count):
    """The `count` best configurations of each family after round 1."""
    rows = _table(path, streams)
    chosen = []
    for family in CANDIDATES:
        ranked = [config for config, *_ in rows
                  if config.split("-")[0] == family]
        chosen += ranked[:count]
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--round", type=int, default=1, choices=(1, 2))
    parser.add_argument("--configs", nargs="+", default=None)
    parser.add_argument("--streams", nargs="+", default=list(STREAMS))
    parser.add_argument("--seeds", type=int, default=2,
                        help="round 2: extra seeds per finalist")
    parser.add_argument("--finalists", type=int, default=3)
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--out", default="results/select_default")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{keras.backend.backend()}.jsonl"
    if not args.report:
        if args.round == 1:
            configs = args.configs or [c for family in CANDIDATES.values()
                                       for c in family]
            _run_all(configs, args.streams, [0], path, args.epochs_scale)
        else:
            configs = args.configs or finalists(path, args.streams,
                                                args.finalists)
            _run_all(configs, args.streams, list(range(1, 1 + args.seeds)),
                     path, args.epochs_scale)
    print(report(path, args.streams))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
