"""Step time and peak memory of FIP against the bare inner optimizer.

For one backend (KERAS_BACKEND), trains the same model on the same batches
with `Adam` and with `FIPOptimizer(Adam)` (memory active) and prints the
ratios FIP / Adam beside the compute floor (B_new + B_mem) / B_new: an FIP
step runs one more forward and backward pass, on the memory batch. With
`--methods fip fip-exact` it also times the exact step (`damping=μ`,
K = `--solver-iterations` conjugate-gradient iterations, each one JVP and
one VJP on the memory batch, ≈ 5/3 of a forward-and-backward pass): its
floor is (B_new + B_mem (1 + 5K/3)) / B_new.

Each measurement runs in a fresh child process (so peak memory is its own);
the children alternate Adam, FIP, Adam, FIP, ... and the best of the
repeats is kept. Step time is the median over timed `fit` epochs after a
warm-up epoch (compilation excluded). Peak memory is the rise of the
process's peak resident memory (VmHWM) over its resident memory before any
training (compilation included), on the CPU.

    KERAS_BACKEND=jax OMP_NUM_THREADS=1 python benchmarks/step_time.py

The KerasHub MiniLM BERT classifier (offline preset, batch 32 + memory
batch 16 of 32 tokens, floor 1.5), about 4 to 8 minutes per backend on two
CPU cores:

    KERAS_BACKEND=torch python benchmarks/step_time.py \
        --configs minilm --steps 8 --repeats 3 --out results/minilm
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

CONFIGS = {
    # name: (input dim, hidden widths, classes, batch, memory batch)
    "digits-mlp": (64, (256, 256), 10, 32, 32),
    "wide-mlp": (784, (1024, 1024), 100, 256, 64),
    # The digits CNN of the robust-ensembles study (`models.cnn()`, two
    # convolutions): the convolutions' weight gradients in the memory pass.
    "digits-cnn": (64, None, 10, 32, 64),
    # The offline MiniLM-L6-H384 BERT classifier (22.7M parameters) on
    # token ids of length 32: (sequence length, None, classes, batch,
    # memory batch).
    "minilm": (32, None, 10, 32, 16),
}
DEFAULT_CONFIGS = ("digits-mlp", "wide-mlp")


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _head(x, n):
    if isinstance(x, dict):
        return {key: value[:n] for key, value in x.items()}
    return x[:n]


def _minilm(length, classes, n, rng):
    """MiniLM without its preprocessor, on random token ids."""
    import keras_hub
    import numpy as np

    import keras_fip

    model = keras_hub.models.BertTextClassifier.from_preset(
        keras_fip.hub.minilm_preset_path(), num_classes=classes,
        preprocessor=None)
    x = {
        "token_ids": rng.integers(1000, 30000, (n, length)).astype("int32"),
        "segment_ids": np.zeros((n, length), "int32"),
        "padding_mask": np.ones((n, length), "bool"),
    }
    return model, x


def child(method, config, steps, repeats, iterations):
    import keras
    import numpy as np

    import keras_fip
    import models  # benchmarks/models.py

    features, hidden, classes, batch, memory_batch = CONFIGS[config]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, batch * steps)
    if config == "minilm":
        model, x = _minilm(features, classes, batch * steps, rng)
    elif config == "digits-cnn":
        model = models.cnn()
        x = rng.random((batch * steps, features)).astype("float32")
    else:
        model = models.mlp(features, hidden, classes)
        x = rng.random((batch * steps, features)).astype("float32")
    optimizer = keras.optimizers.Adam(1e-3)
    callbacks = []
    baseline = _rss_kb("VmRSS")
    if method != "adam":
        exact = {"damping": 10.0, "solver_iterations": iterations} \
            if method == "fip-exact" else {}
        optimizer = keras_fip.FIPOptimizer.default_of_0_5(
            optimizer, memory=keras_fip.Memory(max(4 * memory_batch, 200)),
            memory_batch_size=memory_batch, **exact,
        )
        old = (_head(x, 4 * memory_batch), y[: 4 * memory_batch])
        model.compile(optimizer=optimizer, loss=keras.losses.
                      SparseCategoricalCrossentropy(from_logits=True))
        model.fit(*old, epochs=1, verbose=0,
                  callbacks=[keras_fip.callbacks.TaskBoundary(0, *old)])
        callbacks = [keras_fip.callbacks.TaskBoundary(1, x, y)]
    else:
        model.compile(optimizer=optimizer, loss=keras.losses.
                      SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False,
              callbacks=callbacks)  # warm-up: compile
    if method != "adam":
        assert optimizer.memory.is_active

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append((time.perf_counter() - self.start) / steps)

    timer = Timer()
    model.fit(x, y, batch_size=batch, epochs=repeats, verbose=0,
              shuffle=False, callbacks=callbacks + [timer])
    return {
        "step_ms": 1000 * float(np.median(timer.times)),
        "peak_mb": (_rss_kb("VmHWM") - baseline) / 1024,
        "floor": floor(method, batch, memory_batch, iterations),
    }


def floor(method, batch, memory_batch, iterations):
    """The compute floor of a step relative to the plain optimizer's."""
    extra = {"adam": 0.0, "fip": 1.0,
             "fip-exact": 1.0 + 5.0 * iterations / 3.0}[method]
    return (batch + extra * memory_batch) / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["fip"],
                        choices=["fip", "fip-exact"])
    parser.add_argument("--solver-iterations", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CONFIG"))
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.repeats,
                               args.solver_iterations)))
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    rows = []
    for config in args.configs:
        best = {}
        for _ in range(args.rounds):
            for method in ("adam", *args.methods):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", method, config,
                     "--steps", str(args.steps), "--repeats",
                     str(args.repeats), "--solver-iterations",
                     str(args.solver_iterations)],
                    check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
                result = json.loads(out)
                keep = best.get(method)
                if keep is None or result["step_ms"] < keep["step_ms"]:
                    best[method] = result
        adam = best["adam"]
        for method in args.methods:
            fip = best[method]
            rows.append({
                "backend": backend, "config": config, "method": method,
                "adam_step_ms": adam["step_ms"],
                "fip_step_ms": fip["step_ms"],
                "time_ratio": fip["step_ms"] / adam["step_ms"],
                "floor": fip["floor"],
                "ratio_over_floor":
                    fip["step_ms"] / adam["step_ms"] / fip["floor"],
                "adam_peak_mb": adam["peak_mb"], "fip_peak_mb": fip["peak_mb"],
            })
    print(f"\nbackend {backend}: FIP(Adam) vs Adam, median step over "
          f"{args.repeats}×{args.steps} steps, best of {args.rounds} rounds")
    print("| config | method | Adam ms/step | FIP ms/step | ratio | floor |"
          " ratio/floor | Adam peak MB | FIP peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['method']} | {r['adam_step_ms']:.2f} | "
              f"{r['fip_step_ms']:.2f} | {r['time_ratio']:.2f} | "
              f"{r['floor']:.2f} | {r['ratio_over_floor']:.2f} | "
              f"{r['adam_peak_mb']:.0f} | {r['fip_peak_mb']:.0f} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"benchmark_{backend}.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
