"""Split-digits continual learning: fine-tuning vs FIP vs joint training.

The Split-digits protocol: scikit-learn's digits (/16, float32), a
stratified 70/30 split (random_state=0), five class-incremental tasks
(0,1) (2,3) (4,5) (6,7) (8,9) with one 10-way head, an MLP 64-256-256-10,
Adam(1e-3), batch 32, 30 epochs per task, a memory of 20 samples per class.

`--model vit` runs the same stream through a KerasHub
`ViTImageClassifier` from a small config (2 encoder layers, 4 heads, hidden
64, patches of 4×4) whose preprocessor upsamples the 8×8 digits to 16×16
(`ViTImageConverter`, pixels scaled to [-1, 1]); FIP's memory then holds
the preprocessed 16×16 images.

Run (any backend; `make demo` uses the default one):

    KERAS_BACKEND=jax OMP_NUM_THREADS=1 python benchmarks/split_digits.py
    python benchmarks/split_digits.py --seeds 0 1 2 --verbose 0
    python benchmarks/split_digits.py --model vit --seeds 0 1 2

It prints each accuracy matrix R[t, k] and a summary table, and writes
`results/split_digits_<backend>.{json,md,png}` (`split_digits_vit_...` with
`--model vit`).
"""

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip import continual_metrics  # noqa: E402

METHODS = ("finetune", "fip", "joint")


def mlp():
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def vit(image_size=16):
    """A small-config KerasHub ViT whose preprocessor upsamples 8×8 → 16×16."""
    import keras_hub

    converter = keras_hub.layers.ViTImageConverter(
        image_size=(image_size, image_size), scale=2.0, offset=-1.0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 1), patch_size=(4, 4),
        num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=10,
        preprocessor=keras_hub.models.ViTImageClassifierPreprocessor(
            image_converter=converter))


MODELS = {"mlp": mlp, "vit": vit}


def build_model(name, seed):
    keras.utils.set_random_seed(seed)
    return MODELS[name]()


def digits_stream(name):
    """Split-digits as the model reads it: flat pixels, or 8×8×1 images."""
    stream = keras_fip.datasets.split_digits()
    if name == "vit":
        return stream.map_inputs(lambda x: x.reshape(-1, 8, 8, 1))
    return stream


def compile_model(model, method, memory_per_class, memory_batch_size, seed):
    optimizer = keras.optimizers.Adam(1e-3)
    if method == "fip":
        optimizer = keras_fip.FIPOptimizer.default_of_0_5(
            optimizer,
            memory=keras_fip.Memory(capacity=10 * memory_per_class, seed=seed),
            memory_batch_size=memory_batch_size,
        )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def run(method, stream, args, seed):
    model = build_model(args.model, seed)
    compile_model(model, method, args.memory_per_class, args.memory_batch_size,
                  seed)
    path = keras_fip.callbacks.PathRecorder(every_n_epochs=5, eval_data=stream)
    start = time.time()
    if method == "joint":
        # Shuffled: the ViT's preprocessor makes fit ignore shuffle=True.
        x, y = stream.joint(seed=seed)
        model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=args.verbose,
                  callbacks=[path])
        R = np.array([keras_fip.evaluate_stream(model, stream)])
    else:
        R = keras_fip.fit_stream(
            model, stream, epochs=args.epochs, batch_size=32,
            verbose=args.verbose, callbacks=[path],
        ).matrix
    return {"matrix": R.tolist(), "seconds": time.time() - start,
            "path": path.records}


def summarize(results):
    rows = []
    for method in METHODS:
        runs = results.get(method, [])
        if not runs:
            continue
        stats = [continual_metrics.summary(np.array(r["matrix"])) for r in runs]
        if method == "joint":  # one row after training on everything
            stats = [{"average_accuracy": float(np.mean(r["matrix"][-1])),
                      "forgetting": np.nan, "backward_transfer": np.nan}
                     for r in runs]
        row = {"method": method, "seeds": len(runs)}
        for key in ("average_accuracy", "forgetting", "backward_transfer"):
            values = np.array([s[key] for s in stats])
            row[key] = (float(values.mean()), float(values.std()))
        row["seconds"] = float(np.mean([r["seconds"] for r in runs]))
        rows.append(row)
    return rows


def format_table(rows, backend, model="mlp"):
    lines = [
        f"Split-digits, {model}, backend {backend} (mean ± std over seeds). "
        "Average accuracy = mean_k R[T,k]; forgetting = mean_k<T "
        "max_t<T R[t,k] − R[T,k] (Chaudhry); BWT = mean_k<T R[T,k] − R[k,k].",
        "| method | seeds | average accuracy | forgetting | backward transfer "
        "| seconds/run |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for key in ("average_accuracy", "forgetting", "backward_transfer"):
            mean, std = row[key]
            joint = row["method"] == "joint" and key != "average_accuracy"
            cells.append("n/a" if joint else f"{mean:.3f} ± {std:.3f}")
        lines.append(
            f"| {row['method']} | {row['seeds']} | {' | '.join(cells)} "
            f"| {row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def plot(results, out_path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG written.")
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, method in zip(axes[:2], ("finetune", "fip")):
        R = np.array(results[method][0]["matrix"])
        image = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
        for (t, k), value in np.ndenumerate(R):
            ax.text(k, t, f"{value:.2f}", ha="center", va="center",
                    color="white" if value < 0.5 else "black", fontsize=8)
        ax.set_title(f"{method}: R[t, k]")
        ax.set_xlabel("tested on task k")
        ax.set_ylabel("after training task t")
    fig.colorbar(image, ax=axes[:2].tolist(), shrink=0.8)
    records = results["fip"][0]["path"]
    steps = [r["step"] for r in records]
    accuracy = np.array([r["accuracy"] for r in records])
    for k in range(accuracy.shape[1]):
        axes[2].plot(steps, accuracy[:, k], label=f"task {k}")
    axes[2].set_title("FIP: per-task test accuracy along the path")
    axes[2].set_xlabel("train step")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].legend(fontsize=8)
    fig.savefig(out_path, dpi=110, bbox_inches="tight")
    print(f"wrote {out_path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="mlp",
                        help="the MLP 64-256-256-10, or a small KerasHub ViT")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--memory-per-class", type=int, default=20)
    parser.add_argument("--memory-batch-size", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=METHODS)
    parser.add_argument("--verbose", default="auto",
                        help="fit's verbosity: auto, 0, 1 or 2")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    if args.verbose != "auto":
        args.verbose = int(args.verbose)
    backend = keras.backend.backend()
    stream = digits_stream(args.model)
    results = {method: [] for method in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            print(f"\n=== {args.model} {method}, seed {seed}, backend "
                  f"{backend} ===")
            outcome = run(method, stream, args, seed)
            results[method].append(outcome)
            print(continual_metrics.format_matrix(np.array(outcome["matrix"])))
    rows = summarize(results)
    table = format_table(rows, backend, args.model)
    print("\n" + table)
    os.makedirs(args.out, exist_ok=True)
    model_part = "" if args.model == "mlp" else f"{args.model}_"
    stem = os.path.join(args.out, f"split_digits_{model_part}{backend}")
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), "summary": rows, "runs": results}, f,
                  indent=1)
    with open(stem + ".md", "w") as f:
        f.write(table + "\n")
    if "finetune" in results and "fip" in results:
        plot(results, stem + ".png")


if __name__ == "__main__":
    main()
