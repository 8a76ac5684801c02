"""Why DER++ edges default FIP on Split-digits: an ablation over seeds.

Runs the Split-digits protocol (DESIGN.md §4, the `keras-fip bench` MLP) for
FIP settings and DER variants and prints mean ± std of average accuracy and
forgetting. The README's findings table is this script's output:

    KERAS_BACKEND=torch OMP_NUM_THREADS=1 python examples/split_digits_ablation.py --seeds 10
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip import baselines  # noqa: E402
from keras_fip.bench.registry import mlp  # noqa: E402


def _fip(**kwargs):
    return lambda memory: keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3), memory=memory, **kwargs)


VARIANTS = {
    "fip (default: bhattacharyya, sum, β=1, memory batch 32)": _fip(),
    "fip, β=0.5": _fip(beta=0.5),
    "fip, memory batch 64": _fip(memory_batch_size=64),
    "fip, whole memory per step (200)": _fip(memory_batch_size=200),
    "fip, anchors at storage time": _fip(anchors="stored"),
    "fip, squared_l2, mean, β=1": _fip(distance="squared_l2",
                                       reduction="mean"),
    "fip, squared_l2, mean, β=10 (fip-l2)": _fip(
        distance="squared_l2", reduction="mean", beta=10.0),
    "der (logits only: DER++ with β=0)": lambda memory:
        baselines.DERPPOptimizer(keras.optimizers.Adam(1e-3), memory=memory,
                                 beta=0.0),
    "der++ (defaults)": lambda memory: baselines.DERPPOptimizer(
        keras.optimizers.Adam(1e-3), memory=memory),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    stream = keras_fip.datasets.split_digits()
    print(f"Split-digits, {args.seeds} seeds, backend "
          f"{keras.backend.backend()}; memory 200 (20 per class)")
    print("| variant | average accuracy | forgetting |\n|---|---|---|")
    for name, make in VARIANTS.items():
        accuracy, forgetting = [], []
        for seed in range(args.seeds):
            keras.utils.set_random_seed(seed)
            model = mlp(stream)
            model.compile(
                optimizer=make(keras_fip.Memory(200, seed=seed)),
                loss=keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True),
            )
            summary = keras_fip.fit_stream(model, stream, epochs=args.epochs,
                                           verbose=0).summary()
            accuracy.append(summary["average_accuracy"])
            forgetting.append(summary["forgetting"])
        print(f"| {name} | {np.mean(accuracy):.3f} ± {np.std(accuracy):.3f} "
              f"| {np.mean(forgetting):.3f} ± {np.std(forgetting):.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
