"""Step time and peak memory of FIP against plain fine-tuning on a CausalLM.

For one backend (KERAS_BACKEND), a small randomly initialized KerasHub
`GPT2CausalLM` (`keras_fip.language`, a byte-level BPE learned on the old
domain's text) trains on the same batches of new-domain text with each
method, and the script prints the ratios of step time and peak memory to
the method's reference, beside the compute floor:

- `finetune`: Adam on every weight (the reference of the FIP rows).
- `fip-outputs`, `fip-top_k`, `fip-snapshot`: `FIPOptimizer(Adam)` with a
  memory of `--capacity` old-domain texts keeping its anchors as the
  outputs, the top-k (`--top-k`, 32) log-probabilities per position, or a
  snapshot of the trainable weights (`keras_fip.anchor_storage`).
- `lora`: Adam on LoRA adapters of rank `--lora-rank`
  (`backbone.enable_lora`; the reference of the next row).
- `fip-lora-snapshot`: FIP on the same adapters, snapshot anchors (the
  snapshot is the adapters only).

Compute floors, relative to the reference step (a forward and a backward
pass on the B_new new sequences): an FIP step adds a forward and backward
pass on the B_mem memory sequences, (B_new + B_mem) / B_new for stored
anchors (`outputs`, `top_k`); the snapshot also recomputes the anchors, one
forward pass on B_mem (≈ 1/3 of a forward and backward pass), so
(B_new + 4/3 B_mem) / B_new. The reference children also time a forward
pass on B_mem sequences alone (`predict_on_batch`, compiled as each
backend compiles it); the column "floor, measured forward" puts that
measured share of a step in place of the 1/3.

Each measurement runs in a fresh child process (so peak memory is its
own), on every CPU core by default or pinned to `--cores` cores (`--cores
1` steadies the wall times on a machine shared with other jobs, where a
second core is sometimes free and sometimes not, but TensorFlow's runtime
then idles between steps and JAX's two threads time-share the core); the
children take the methods in turn, round after round (`--rounds`), and
the fastest round is kept per method. Step time is the
median over `--repeats` timed epochs of `--steps` steps, after a warm-up
epoch (compilation excluded), in one `fit`; the memory's per-epoch
reshuffle and the task's end are outside the timed epochs. Both the wall
time and the process's CPU time (all its threads) per step are reported:
the wall time is what a user waits, the CPU time the work done, which
exceeds the wall time where the backend runs independent parts of a step
in parallel (on one core the two differ by the time the process waited).
The text is tokenized once with the model's preprocessor and `keras.Model.fit`
trains on the arrays (no per-epoch tokenization in `tf.data`, the same for
every method).

Memory, on the CPU, as rises of the process's resident memory over its
resident memory once the model and the data are built (before compiling,
filling the memory and training): `peak` is the highest resident memory
of the whole run (filling and anchoring the memory, compilation, training,
the task's end); `training` the highest during the timed epochs only (the
peak is reset, after `gc` and glibc's `malloc_trim`, when the warm-up
epoch ends), i.e. what training holds in its steady state: the model, the
optimizer, the memory, the compiled step and its buffers. The JSON also
has each phase's peak (`phase_peak_mb`: anchor = `remember_task`,
warm_up = the first epoch with the new task's anchoring and compilation,
timed, end = the task's end), the resident memory after the warm-up and
the timed epochs' rise over it (`step_peak_mb`; allocators that keep
their buffers, as TensorFlow's does, show little of it). Each FIP child
also checks that the memory holds exactly the bytes
`keras_fip.anchor_storage.footprint_bytes` gives (`nbytes`).

Text: WordNet noun glosses (old domain: the memory) and verb glosses (new
domain: the training batches) from `keras_fip.datasets.gloss_domains`, or
seeded pseudo-words where WordNet is not installed.

    KERAS_BACKEND=jax OMP_NUM_THREADS=1 python benchmarks/causal_lm_step_time.py
    KERAS_BACKEND=torch OMP_NUM_THREADS=1 python \\
        benchmarks/causal_lm_step_time.py --config larger

`--config default`: GPT-2 with 2 layers, width 64, 64 tokens, vocabulary
512, batch 16 and memory batch 16, memory capacity 200 (one round takes
about 1.5 to 3 minutes per backend on two CPU cores, most of it starting
the children); `--config larger`: 4 layers, width 128, vocabulary 2000.
`--rounds 2` (best of two) steadies the numbers on a shared machine.
Output: a Markdown table and `--out`/causal_lm_speed_<config>_<backend>.json.
"""

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONFIGS = {
    "default": {"num_layers": 2, "num_heads": 2, "hidden_dim": 64,
                "intermediate_dim": 256, "sequence_length": 64,
                "vocabulary": 512, "batch": 16, "memory_batch": 16},
    "larger": {"num_layers": 4, "num_heads": 4, "hidden_dim": 128,
               "intermediate_dim": 512, "sequence_length": 64,
               "vocabulary": 2000, "batch": 16, "memory_batch": 16},
}
MODEL_KEYS = ("num_layers", "num_heads", "hidden_dim", "intermediate_dim",
              "sequence_length")
# method: (reference method, LoRA, anchor storage or None for no FIP)
METHODS = {
    "finetune": ("finetune", False, None),
    "fip-outputs": ("finetune", False, "outputs"),
    "fip-top_k": ("finetune", False, "top_k"),
    "fip-snapshot": ("finetune", False, "snapshot"),
    "lora": ("lora", True, None),
    "fip-lora-snapshot": ("lora", True, "snapshot"),
}
# Old-domain texts the tokenizer learns from (at least the memory's).
TOKENIZER_TEXTS = 4000


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import _rss_kb  # noqa: E402  (VmRSS / VmHWM in kB)


def _reset_peak():
    """Frees what can be freed, then resets VmHWM to the resident memory
    (Linux >= 4.0; glibc's `malloc_trim` hands freed heap back)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def floor(method, batch, memory_batch):
    """The compute floor of a step relative to its reference method's."""
    storage = METHODS[method][2]
    extra = {None: 0.0, "outputs": 1.0, "top_k": 1.0,
             "snapshot": 4.0 / 3.0}[storage]
    return (batch + extra * memory_batch) / batch


def measured_floor(method, reference, settings):
    """The floor with the snapshot's forward pass as measured.

    `reference["forward_ms"]`: a forward pass on the B_mem memory sequences
    alone (`predict_on_batch`) in the reference's process; the rest of the
    floor is as in `floor`. `None` without that measurement.
    """
    storage = METHODS[method][2]
    if storage != "snapshot":
        return floor(method, settings["batch"], settings["memory_batch"])
    if "forward_ms" not in reference:
        return None
    return (1 + settings["memory_batch"] / settings["batch"]
            + reference["forward_ms"] / reference["step_ms"])


def _pseudo_words(n, seed):
    """Seeded texts of pseudo-words (when WordNet is not installed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words = ["".join(rng.choice(syllables, rng.integers(1, 4)))
             for _ in range(3000)]
    return np.array([" ".join(rng.choice(words, rng.integers(4, 16)))
                     for _ in range(n)])


def texts(old, new):
    """`(tokenizer texts, old-domain texts, new-domain texts, source)`."""
    import numpy as np

    import keras_fip

    tokenizer_n = max(TOKENIZER_TEXTS, old)
    try:
        domains = keras_fip.datasets.gloss_domains(
            ("noun", "verb"), train=tokenizer_n, holdout=0, test=0, seed=0)
        nouns, verbs = domains["noun"]["train"], domains["verb"]["train"]
        source = "wordnet"
    except (OSError, ValueError):
        nouns = _pseudo_words(tokenizer_n, 0)
        verbs = _pseudo_words(new, 1)
        source = "pseudo-words"
    verbs = verbs[:new] if len(verbs) >= new else \
        verbs[np.arange(new) % len(verbs)]
    return nouns, nouns[:old], verbs, source


def child(method, config, steps, repeats, capacity, top_k, lora_rank):
    import keras
    import numpy as np

    import keras_fip
    from keras_fip import anchors as anchor_storage
    from keras_fip import language

    settings = CONFIGS[config]
    batch, memory_batch = settings["batch"], settings["memory_batch"]
    _, lora, storage = METHODS[method]
    tokenizer_texts, old, new, source = texts(capacity, batch * steps)
    tokenizer = language.train_byte_bpe_tokenizer(
        tokenizer_texts, num_merges=settings["vocabulary"] - 257)
    lm = language.small_gpt2_causal_lm(
        tokenizer, seed=0, **{k: settings[k] for k in MODEL_KEYS})
    if lora:
        lm.backbone.enable_lora(lora_rank)
    x, y, weight = lm.preprocessor(new.tolist())
    x = {k: keras.ops.convert_to_numpy(v) for k, v in x.items()}
    y, weight = (keras.ops.convert_to_numpy(y),
                 keras.ops.convert_to_numpy(weight))
    baseline = _rss_kb("VmRSS")

    optimizer = keras.optimizers.Adam(1e-3)
    if storage is not None:
        optimizer = keras_fip.FIPOptimizer.default_of_0_5(
            optimizer, memory_batch_size=memory_batch,
            memory=keras_fip.Memory(capacity, anchor_storage=storage,
                                    top_k=top_k))
    lm.compile(optimizer=optimizer, weighted_metrics=[],
               loss=keras.losses.SparseCategoricalCrossentropy(
                   from_logits=True))

    class Timer:
        """Epoch times, started after and stopped before the other
        callbacks (the memory's reshuffle and the task's end excluded)."""

        def __init__(self):
            self.times, self.cpu_times, timer = [], [], self

            class Start(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    timer.begin = time.perf_counter()
                    timer.cpu_begin = time.process_time()

            class Stop(keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    if epoch > 0:  # epoch 0 compiles
                        timer.times.append(
                            (time.perf_counter() - timer.begin) / steps)
                        timer.cpu_times.append(
                            (time.process_time() - timer.cpu_begin) / steps)
                        # Before the task's end (the memory's add).
                        timer.timed_peak_kb = _rss_kb("VmHWM")
                    else:
                        timer.warm_up = time.perf_counter() - timer.begin
                        timer.warm_up_peak_kb = _rss_kb("VmHWM")
                        _reset_peak()  # the timed epochs' own peak
                        timer.resident_kb = _rss_kb("VmRSS")

            self.start, self.stop = Start(), Stop()

    timer = Timer()
    callbacks = [timer.stop]
    memory = {}
    remember = time.perf_counter()
    if storage is not None:
        keras_fip.callbacks.remember_task(lm, 0, old)
        callbacks.append(keras_fip.callbacks.TaskBoundary(1, new))
        fip_memory = optimizer.memory
        assert fip_memory.is_active and fip_memory.anchor_storage == storage
        spec = fip_memory.spec
        input_bytes = sum(int(np.prod(s["shape"])) *
                          np.dtype(s["dtype"]).itemsize
                          for s in spec["inputs"])
        weight_bytes = sum(int(np.prod(v.shape)) *
                           np.dtype(v.dtype).itemsize
                           for v in lm.trainable_variables)
        formula = anchor_storage.footprint_bytes(
            storage, capacity, input_bytes, spec["outputs"]["shape"],
            top_k, weight_bytes)
        assert fip_memory.nbytes == formula, (fip_memory.nbytes, formula)
        memory = {"nbytes": fip_memory.nbytes, "formula_bytes": formula}
    remember = time.perf_counter() - remember
    anchor_peak_kb = _rss_kb("VmHWM")
    _reset_peak()  # the warm-up's own peak
    callbacks.append(timer.start)
    keras.utils.set_random_seed(0)
    keras.Model.fit(lm, x, y, sample_weight=weight, batch_size=batch,
                    epochs=1 + repeats, shuffle=False, verbose=0,
                    callbacks=callbacks)
    peaks = {"anchor": anchor_peak_kb, "warm_up": timer.warm_up_peak_kb,
             "timed": timer.timed_peak_kb, "end": _rss_kb("VmHWM")}
    forward = {}
    if storage is None:  # a reference: time a forward pass on B_mem too
        # (after the peaks are read: compiling `predict` is not training)
        batch_x = {k: v[:memory_batch] for k, v in x.items()}
        times = []
        for i in range(3 + 2 * repeats):
            begin = time.perf_counter()
            keras.Model.predict_on_batch(lm, batch_x)  # no preprocessor
            if i >= 3:  # the first calls compile
                times.append(time.perf_counter() - begin)
        forward = {"forward_ms": 1000 * float(np.median(times))}
    return {
        "step_ms": 1000 * float(np.median(timer.times)),
        "cpu_ms": 1000 * float(np.median(timer.cpu_times)),
        "peak_mb": (max(peaks.values()) - baseline) / 1024,
        "phase_peak_mb": {k: (v - baseline) / 1024 for k, v in peaks.items()},
        "resident_mb": (timer.resident_kb - baseline) / 1024,
        "training_peak_mb": (timer.timed_peak_kb - baseline) / 1024,
        "step_peak_mb": (timer.timed_peak_kb - timer.resident_kb) / 1024,
        "remember_s": remember, "warm_up_s": timer.warm_up,
        "floor": floor(method, batch, memory_batch),
        "vocabulary": tokenizer.vocabulary_size(),
        "parameters": int(lm.count_params()),
        "trainable_parameters": int(sum(int(np.prod(v.shape))
                                        for v in lm.trainable_variables)),
        "text": source, **memory, **forward,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", choices=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=list(METHODS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--cores", type=int, default=0,
                        help="CPU cores each child is pinned to (0: all)")
    parser.add_argument("--child", metavar="METHOD")
    parser.add_argument("--out", default="results")
    args = parser.parse_args()
    options = ["--config", args.config, "--steps", str(args.steps),
               "--repeats", str(args.repeats), "--capacity",
               str(args.capacity), "--top-k", str(args.top_k),
               "--lora-rank", str(args.lora_rank)]
    if args.child:
        print(json.dumps(child(args.child, args.config, args.steps,
                               args.repeats, args.capacity, args.top_k,
                               args.lora_rank)))
        return
    import numpy as np

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    methods = list(args.methods)
    for method in list(methods):  # every row needs its reference
        if METHODS[method][0] not in methods:
            methods.insert(0, METHODS[method][0])
    methods = [m for m in METHODS if m in methods]
    cores = sorted(os.sched_getaffinity(0))
    if args.cores:
        cores = cores[-args.cores:]

    def pin():
        os.sched_setaffinity(0, cores)  # inherited by every thread

    begin = time.time()
    best = {}
    for round_ in range(args.rounds):
        for method in methods:
            run = subprocess.run([sys.executable, __file__, "--child",
                                  method, *options],
                                 capture_output=True, text=True,
                                 preexec_fn=pin)
            if run.returncode:
                sys.stderr.write(run.stderr)
                raise SystemExit(f"{method} failed (exit {run.returncode})")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"round {round_} {method}: {result['step_ms']:.1f} ms/step,"
                  f" peak {result['peak_mb']:.0f} MB "
                  f"({time.time() - begin:.0f} s)", flush=True)
            keep = best.get(method)
            if keep is None or result["step_ms"] < keep["step_ms"]:
                best[method] = dict(result, cpu_ms=min(
                    result["cpu_ms"], keep["cpu_ms"]) if keep else
                    result["cpu_ms"])
            else:
                keep["cpu_ms"] = min(keep["cpu_ms"], result["cpu_ms"])
            if "forward_ms" in result:
                best[method]["forward_ms"] = min(
                    result["forward_ms"], keep.get("forward_ms", np.inf)
                    if keep else np.inf)
    settings = CONFIGS[args.config]
    rows = []
    for method in methods:
        result, reference = best[method], best[METHODS[method][0]]
        rows.append({
            "backend": backend, "config": args.config, "method": method,
            "reference": METHODS[method][0], **result,
            "time_ratio": result["step_ms"] / reference["step_ms"],
            "ratio_over_floor":
                result["step_ms"] / reference["step_ms"] / result["floor"],
            "cpu_ratio": result["cpu_ms"] / reference["cpu_ms"],
            "measured_floor": measured_floor(method, reference, settings),
            "peak_ratio": result["peak_mb"] / reference["peak_mb"],
            "training_peak_ratio":
                result["training_peak_mb"] / reference["training_peak_mb"],
        })
    first = rows[0]
    print(f"\nbackend {backend}, config {args.config}: GPT-2 "
          f"{settings['num_layers']} layers, width {settings['hidden_dim']},"
          f" {settings['sequence_length']} tokens, vocabulary "
          f"{first['vocabulary']}, {first['parameters']:,} parameters; "
          f"batch {settings['batch']}, memory batch "
          f"{settings['memory_batch']}, capacity {args.capacity}, top-k "
          f"{args.top_k}, LoRA rank {args.lora_rank}; {first['text']} text."
          f"\nMedian step over {args.repeats}×{args.steps} steps, best of "
          f"{args.rounds} rounds, each child on CPU core(s) {cores}; "
          f"{time.time() - begin:.0f} s.")
    print("| method | ms/step | ratio | CPU ms/step | CPU ratio | floor | "
          "floor, measured forward | peak MB | ratio | training MB | ratio "
          "| memory nbytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        nbytes = f"{r['nbytes']:,}" if "nbytes" in r else "–"
        measured = "–" if r["measured_floor"] is None \
            else f"{r['measured_floor']:.2f}"
        print(f"| {r['method']} | {r['step_ms']:.1f} | {r['time_ratio']:.2f} "
              f"| {r['cpu_ms']:.1f} | {r['cpu_ratio']:.2f} | "
              f"{r['floor']:.2f} | {measured} | {r['peak_mb']:.0f} | "
              f"{r['peak_ratio']:.2f} | {r['training_peak_mb']:.0f} | "
              f"{r['training_peak_ratio']:.2f} | {nbytes} |")
    for r in rows:
        if "forward_ms" in r:
            print(f"{r['method']}: a forward pass on the "
                  f"{settings['memory_batch']} memory sequences "
                  f"(predict_on_batch) takes {r['forward_ms']:.1f} ms, "
                  f"{r['forward_ms'] / r['step_ms']:.2f} of its step (the "
                  "floor assumes 1/3).")
    print("\npeak resident MB by phase (anchor = remember_task, warm_up = "
          "the new task's start, compilation and first epoch, timed, "
          "end = the task's end):")
    print("| method | anchor | warm_up | timed | end |")
    print("|---|---|---|---|---|")
    for r in rows:
        phases = r["phase_peak_mb"]
        print(f"| {r['method']} | " + " | ".join(
            f"{phases[k]:.0f}" for k in ("anchor", "warm_up", "timed",
                                         "end")) + " |")
    print("setup s (remember_task + warm-up epoch): " + ", ".join(
        f"{r['method']} {r['remember_s'] + r['warm_up_s']:.1f}"
        for r in rows))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out,
                        f"causal_lm_speed_{args.config}_{backend}.json")
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
