"""Where do FIP and fine-tuning walk, as the old task's outputs see it?

Split-digits (`keras_fip.datasets.split_digits`), MLP 64-256-256-10 of
`benchmarks/models.py`: task 0 (digits 0, 1) is learned once with
Adam(1e-3), batch 32, `--epochs` epochs. From that network two methods
learn task 1 (digits 2, 3) with the same optimizer, batch and epochs:

- finetune: Adam on the task-1 loss alone;
- fip: `keras_fip.FIPOptimizer.reference_code(Adam(1e-3),
  memory=Memory(200))`, the reference code's penalty step (Bhattacharyya
  invariance on the memory; the library default of 0.2);
  task 0 enters the memory with `keras_fip.callbacks.remember_task`.

A `PathRecorder` with `metric_inputs` = FIP's task-0 memory inputs (the
same inputs for both methods) records every `--record-every` steps:

- the euclidean path length Σ‖Δw‖ and the distance ‖w − w₀‖;
- the metric path length Σ √(Δwᵀ g Δw), g the `--metric` metric of the
  memory inputs at the weights before each move (sum over the inputs):
  how far the protected outputs were pushed along the way;
- the share ‖P_k Δw‖²/‖Δw‖² of each move in g's top-`--subspace-k`
  eigen-subspace (Lanczos at the previous record), averaged over records.
  A random direction would put k/D ≈ 1.2·10⁻⁴ of its norm there.

Records every n steps measure chords, not the path inside them: the
metric length of a chord is at most that of the steps it replaces.

Run (about 2 minutes per seed on 2 CPU cores):

    KERAS_BACKEND=tensorflow OMP_NUM_THREADS=1 python benchmarks/path_metric.py
    python benchmarks/path_metric.py --seeds 0 1 2 --record-every 2

It writes `<out>/path_metric.json`, `<out>/path_metric.md` and
`<out>/path_metric.png` (metric length against euclidean length).
"""

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import mlp  # noqa: E402

METHODS = ("finetune", "fip")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--memory", type=int, default=200,
                        help="FIP memory capacity (all task-0 inputs fit "
                             "up to it)")
    parser.add_argument("--metric", choices=("logit", "fisher"),
                        default="fisher")
    parser.add_argument("--subspace-k", type=int, default=10)
    parser.add_argument("--record-every", type=int, default=4,
                        help="record every this many train steps")
    parser.add_argument("--out", default="results/path_metric")
    parser.add_argument("--docs", default=None,
                        help="also copy the figure into this folder")
    return parser.parse_args(argv)


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def run_seed(stream, args, seed):
    task0, task1 = stream[0], stream[1]
    keras.utils.set_random_seed(seed)
    base = mlp()
    base.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
    base.fit(task0.x_train, task0.y_train, epochs=args.epochs, batch_size=32,
             verbose=0)
    weights = base.get_weights()
    protected = None
    out = {}
    for method in ("fip", "finetune"):  # FIP first: its memory is the
        keras.utils.set_random_seed(seed)  # protected set of both
        model = mlp()
        model.set_weights(weights)
        callbacks = []
        if method == "fip":
            fip = keras_fip.FIPOptimizer.reference_code(
                keras.optimizers.Adam(1e-3),
                memory=keras_fip.Memory(capacity=args.memory, seed=seed))
            model.compile(optimizer=fip, loss=loss())
            keras_fip.callbacks.remember_task(model, 0, task0.x_train,
                                              task0.y_train)
            protected = fip.memory.stored()[0]
            callbacks.append(keras_fip.callbacks.TaskBoundary(
                1, task1.x_train, task1.y_train))
        else:
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
        path = keras_fip.callbacks.PathRecorder(
            every_n_steps=args.record_every, every_n_epochs=None,
            eval_data=[(task0.x_test, task0.y_test),
                       (task1.x_test, task1.y_test)],
            metric_inputs=protected, metric=args.metric,
            subspace_k=args.subspace_k)
        start = time.time()
        model.fit(task1.x_train, task1.y_train, epochs=args.epochs,
                  batch_size=32, verbose=0, callbacks=[*callbacks, path])
        last = path.records[-1]
        shares = [r["subspace_share"] for r in path.records
                  if np.isfinite(r["subspace_share"])]
        out[method] = {
            "euclidean_length": last["length"],
            "distance": last["distance"],
            "metric_length": last["metric_length"],
            "mean_subspace_share": float(np.mean(shares)),
            "old_task_accuracy": last["accuracy"][0],
            "new_task_accuracy": last["accuracy"][1],
            "start_old_task_accuracy": path.records[0]["accuracy"][0],
            "records": len(path.records), "steps": last["step"],
            "seconds": time.time() - start,
            "curve": [[r["length"], r["metric_length"],
                       r["subspace_share"]] for r in path.records],
        }
        print(f"seed {seed} {method:8s}: euclidean {last['length']:.3f}, "
              f"distance {last['distance']:.3f}, metric "
              f"{last['metric_length']:.3f}, top-{args.subspace_k} share "
              f"{out[method]['mean_subspace_share']:.4f}, old task "
              f"{last['accuracy'][0]:.3f}, new task {last['accuracy'][1]:.3f}"
              f" ({out[method]['seconds']:.0f} s)", flush=True)
    out["memory_inputs"] = int(len(protected))
    out["dimension"] = int(sum(np.prod(w.shape) for w in weights))
    return out


KEYS = ("euclidean_length", "distance", "metric_length",
        "mean_subspace_share", "old_task_accuracy", "new_task_accuracy")


def table(results):
    args = results["settings"]
    runs = results["runs"]
    first = runs[0]
    lines = [
        f"Split-digits task 1 after task 0, MLP (D = {first['dimension']:,}),"
        f" backend {results['backend']}, {len(runs)} seed(s) (mean ± std). "
        f"Metric: {args['metric']} on FIP's {first['memory_inputs']} task-0 "
        f"memory inputs (sum), recorded every {args['record_every']} steps; "
        f"share in the top-{args['subspace_k']} eigen-subspace (a random "
        f"direction: {args['subspace_k'] / first['dimension']:.1e}). Old "
        f"task before task 1: {first['fip']['start_old_task_accuracy']:.3f}.",
        "", "| method | euclidean length | distance ‖w − w₀‖ | metric length "
        "| metric length / euclidean | mean top-k share | old-task "
        "accuracy | new-task accuracy |", "|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        values = {key: np.array([r[method][key] for r in runs])
                  for key in KEYS}
        ratio = values["metric_length"] / values["euclidean_length"]

        def cell(a, digits=3):
            return (f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"
                    if len(a) > 1 else f"{a.mean():.{digits}f}")

        lines.append(
            f"| {method} | {cell(values['euclidean_length'])} | "
            f"{cell(values['distance'])} | {cell(values['metric_length'])} | "
            f"{cell(ratio)} | {cell(values['mean_subspace_share'], 4)} | "
            f"{cell(values['old_task_accuracy'])} | "
            f"{cell(values['new_task_accuracy'])} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method, color in zip(METHODS, ("C3", "C0")):
        for i, run in enumerate(results["runs"]):
            curve = np.array(run[method]["curve"], "float64")
            label = method if i == 0 else None
            axes[0].plot(curve[:, 0], curve[:, 1], color=color, label=label)
            axes[1].plot(curve[:, 0], curve[:, 2], ".", ms=3, color=color,
                         label=label)
    axes[0].set_xlabel("euclidean path length Σ‖Δw‖")
    axes[0].set_ylabel("metric path length Σ√(Δwᵀ g Δw)")
    axes[1].set_xlabel("euclidean path length Σ‖Δw‖")
    axes[1].set_ylabel(f"share in top-{results['settings']['subspace_k']} "
                       "subspace")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    stream = keras_fip.datasets.split_digits()
    results = {"backend": keras.backend.backend(), "settings": vars(args),
               "runs": [run_seed(stream, args, seed) for seed in args.seeds]}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "path_metric.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    with open(os.path.join(args.out, "path_metric.md"), "w") as f:
        f.write(text)
    figure = os.path.join(args.out, "path_metric.png")
    plot(results, figure)
    if args.docs:
        shutil.copy(figure, args.docs)
    print(text)


if __name__ == "__main__":
    main()
