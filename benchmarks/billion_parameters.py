"""FIP + LoRA on a billion-parameter KerasHub model under `ModelParallel`.

A KerasHub decoder built from a config (random weights, bfloat16; no
download) is spread over the devices of a `keras.distribution.DeviceMesh`
with its backbone's `get_layout_map` and `ModelParallel`, LoRA adapters
are enabled, and each method trains the same batches of token ids in its
own child process:

- `lora`: Adam on the LoRA adapters (the reference).
- `fip-lora-snapshot`: `FIPOptimizer(Adam)` on the same adapters, a memory
  of `--capacity` old sequences with snapshot anchors (a copy of the
  adapters), put in with `remember_task`; `TaskBoundary(1, ...)`.
- `reference-kl`: `keras_fip.baselines.ReferenceKLOptimizer(Adam)` on the
  same adapters: λ KL(start ‖ model) on the new sequences (its memory holds
  the new task's inputs and a snapshot of the adapters).

What is measured, per child:

- **Bytes per device, from the arrays' shards**: for every variable v,
  `v.value.addressable_shards[k].data.nbytes` on device k, grouped into the
  frozen base weights, the trainable weights (the adapters), the inner
  optimizer's slots, and the continual optimizer's own state: the memory's
  inputs and bookkeeping, the weight snapshot (the anchors), the copy of
  the model's non-trainable state, and the rest (counters). The table
  prints, per group, device 0, the largest device and the total over the
  devices divided by the group's logical size (1.00: cut over the
  devices; the device count: replicated).
- **The formula** beside FIP's added state: its share of one copy of what
  it protects (the trainable weights' bytes on the device, as they are
  laid out) plus the memory's per-sample arrays cut over the mesh's batch
  axis, N · (s + 12) / b (s the bytes of one stored input; label, task id
  and anchored flag, int32 each), plus its sampling order, 4 N bytes
  (replicated), plus the scalars (counters, replicated). On one device
  this is `keras_fip.anchors.footprint_bytes`.
- **Step time**: the median of `--steps` timed steps (one step per
  epoch, after a warm-up epoch that compiles), and its ratio to LoRA's,
  beside two floors. The cost model: a LoRA step is a forward and a
  backward pass on B new sequences, and the backward pass of a frozen base
  computes only the activations' gradients (≈ one forward pass), so a
  step ≈ 2 forward passes; FIP with a snapshot adds a forward and backward
  pass on B_mem memory sequences and a forward pass of the snapshot on
  them: floor = 1 + B_mem/B · (1 + 1/2). The measured floor puts the
  measured forward pass on B_mem sequences (`predict_on_batch` in the
  LoRA child) in place of the 1/2: 1 + B_mem/B + forward/step.
- **Peak memory**: the child's VmHWM (`/proc/self/status`) over the whole
  run, and its rise over the resident memory once the model and the data
  are built; the ratio to LoRA's.

The parent launches the children with `KERAS_BACKEND=jax`,
`OMP_NUM_THREADS=1` and `XLA_FLAGS=--xla_force_host_platform_device_count=
<devices>` (CPU host devices) unless `--no-host-devices` is given (a GPU or
TPU host, whose own accelerators form the mesh).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/billion_parameters.py \\
        --mesh 1 8 --steps 1             # docs/results/billion_parameters.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/billion_parameters.py \\
        --config tiny --steps 2          # a smoke run, two minutes
    .venv/bin/python benchmarks/billion_parameters.py \\
        --report results/billion_parameters_1b.json   # print a saved run

`--config 1b` (default): a Llama with TinyLlama-1.1B's shape (vocabulary
32,000, 22 layers, width 2048, MLP 5632, 32 query and 4 key/value heads),
1.1 billion parameters; `--config 300m`: the same with 4 layers;
`--config tiny`: a 2-layer Gemma for smoke runs. (Gemma 2B's shape is not
offered: its single key/value head cannot be cut over a "model" axis
larger than 1 by KerasHub's Gemma layout map.) Mesh
`--mesh 2 4` ("batch", "model"); batch 8, memory batch 8, 16 tokens,
memory of 32 sequences, LoRA rank 4. On CPU host devices the (1, 8) mesh
is much faster at 1B (34 s per LoRA step against 168 s on (2, 4), where
the weights KerasHub cuts over "batch" are gathered every step); about 14
minutes for the three methods with `--steps 1` on 2 cores. Output: a
Markdown table and `--out`/billion_parameters_<config>.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONFIGS = {
    "1b": {"arch": "llama", "vocabulary_size": 32000, "num_layers": 22,
           "num_query_heads": 32, "num_key_value_heads": 4,
           "hidden_dim": 2048, "intermediate_dim": 5632},
    "300m": {"arch": "llama", "vocabulary_size": 32000, "num_layers": 4,
             "num_query_heads": 32, "num_key_value_heads": 4,
             "hidden_dim": 2048, "intermediate_dim": 5632},
    "tiny": {"arch": "gemma", "vocabulary_size": 1024, "num_layers": 2,
             "num_query_heads": 4, "num_key_value_heads": 4,
             "hidden_dim": 64, "intermediate_dim": 256, "head_dim": 16},
}
METHODS = ("lora", "fip-lora-snapshot", "reference-kl")
GROUPS = ("frozen base", "adapters (trainable)", "inner optimizer slots",
          "memory inputs", "snapshot (anchors)", "model-state copy",
          "counters")
HOST_COLLECTIVE_FLAGS = (
    "--xla_cpu_collective_call_terminate_timeout_seconds=3600",
    "--xla_cpu_collective_timeout_seconds=3600")
ADDED = ("memory inputs", "snapshot (anchors)", "model-state copy",
         "counters")


def _kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def build(config, mesh_shape, sequence_length, seed=0):
    """The distributed CausalLM (LoRA not yet enabled) and the mesh."""
    import keras
    import keras_hub

    settings = dict(CONFIGS[config])
    arch = settings.pop("arch")
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh(
        tuple(mesh_shape), ["batch", "model"], devices=devices)
    classes = {"llama": (keras_hub.models.LlamaBackbone,
                         keras_hub.models.LlamaCausalLM),
               "gemma": (keras_hub.models.GemmaBackbone,
                         keras_hub.models.GemmaCausalLM)}
    backbone_class, lm_class = classes[arch]
    layout_map = backbone_class.get_layout_map(mesh)
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"))
    keras.utils.set_random_seed(seed)
    backbone = backbone_class(dtype="bfloat16", **settings)
    lm = lm_class(backbone=backbone, preprocessor=None)
    return lm, mesh


def token_batches(n, sequence_length, vocabulary, seed):
    """`(x, y, sample_weight)`: n random sequences, next-token targets."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocabulary, (n, sequence_length + 1),
                       dtype="int32")
    mask = np.ones((n, sequence_length), bool)
    x = {"token_ids": ids[:, :-1], "padding_mask": mask}
    return x, ids[:, 1:], mask.astype("float32")


def per_device(variables, devices):
    """Bytes of `variables` on each device, summed from their shards
    (`keras_fip.layouts.shard_bytes`), and their logical bytes."""
    import numpy as np

    from keras_fip import layouts

    index = {str(d): i for i, d in enumerate(devices)}
    out = np.zeros(len(devices), dtype=np.int64)
    logical = 0
    for v in variables:
        logical += v.value.size * v.value.dtype.itemsize
        for device, nbytes in layouts.shard_bytes(v).items():
            out[index[device]] += nbytes
    return out, logical


def child(method, args):
    import jax
    import keras
    import numpy as np

    import keras_fip

    start_kb = _kb("VmRSS")
    lm, mesh = build(args.config, args.mesh, args.sequence_length)
    lm.backbone.enable_lora(args.lora_rank)
    devices = jax.devices()  # the mesh's, in id order
    vocabulary = CONFIGS[args.config]["vocabulary_size"]
    batch, memory_batch = args.batch, args.memory_batch
    old_x, _, _ = token_batches(args.capacity, args.sequence_length,
                                vocabulary, seed=1)
    x, y, weight = token_batches(batch * (1 + args.steps),
                                 args.sequence_length, vocabulary, seed=2)
    built_kb = _kb("VmRSS")

    inner = keras.optimizers.Adam(1e-4)
    optimizer = inner
    if method == "fip-lora-snapshot":
        optimizer = keras_fip.FIPOptimizer(
            inner, memory_batch_size=memory_batch,
            memory=keras_fip.Memory(args.capacity,
                                    anchor_storage="snapshot"))
    elif method == "reference-kl":
        optimizer = keras_fip.baselines.ReferenceKLOptimizer(
            inner, weight=0.5, memory_batch_size=memory_batch,
            memory=keras_fip.Memory(len(y), anchor_storage="snapshot"))
    lm.compile(optimizer=optimizer, weighted_metrics=[],
               loss=keras.losses.SparseCategoricalCrossentropy(
                   from_logits=True))

    times = []

    class Start(keras.callbacks.Callback):
        """Each epoch is one step (epoch 0 compiles); listed last."""

        def on_epoch_begin(self, epoch, logs=None):
            self.begin = time.perf_counter()

    class Stop(keras.callbacks.Callback):
        """Listed first: the task's end is outside the timed step."""

        def on_epoch_end(self, epoch, logs=None):
            jax.block_until_ready([v.value for v in lm.trainable_variables])
            times.append(time.perf_counter() - start.begin)

    callbacks = []
    if method == "fip-lora-snapshot":
        keras_fip.callbacks.remember_task(lm, 0, old_x)
    if method != "lora":
        callbacks.append(keras_fip.callbacks.TaskBoundary(1, x))
    anchor_kb = _kb("VmHWM")
    start = Start()
    keras.Model.fit(lm, x, y, sample_weight=weight, batch_size=batch,
                    epochs=1 + args.steps, shuffle=False, verbose=0,
                    callbacks=[Stop(), *callbacks, start])
    fit_kb = _kb("VmHWM")

    # Per-device bytes, from the shards.
    groups = {g: [] for g in GROUPS}
    groups["frozen base"] = list(lm.non_trainable_variables)
    groups["adapters (trainable)"] = list(lm.trainable_variables)
    groups["inner optimizer slots"] = list(inner.variables)
    if method != "lora":
        memory = optimizer.memory
        snapshot = {id(v) for v in memory.snapshot_weights}
        groups["snapshot (anchors)"] = list(memory.snapshot_weights)
        groups["memory inputs"] = [v for v in memory.variables
                                   if id(v) not in snapshot]
        cycle = optimizer.task_cycle
        groups["model-state copy"] = list(cycle.model_state)
        seen = {id(v) for g in groups.values() for v in g}
        groups["counters"] = [v for v in optimizer.variables
                              if id(v) not in seen]
    table = {}
    for name, variables in groups.items():
        shards, logical = per_device(variables, devices)
        table[name] = {"device_0": int(shards[0]), "max": int(shards.max()),
                       "total": int(shards.sum()), "logical": int(logical),
                       "variables": len(variables)}
    formula = None
    if method != "lora":
        stored = sum(np.prod(s.shape[1:]) * np.dtype(s.dtype).itemsize
                     for s in keras.tree.flatten(memory.inputs))
        adapters = per_device(lm.trainable_variables, devices)[0]
        scalars = sum(np.dtype(v.dtype).itemsize for g in ADDED
                      for v in groups[g] if not v.shape)
        formula = {"adapters_max": int(adapters.max()),
                   "scalars": int(scalars),
                   "stored_input_bytes": int(stored),
                   "capacity": memory.capacity,
                   "nbytes": memory.nbytes}

    # A forward pass on B_mem sequences alone (after the peaks are read).
    forward_ms = None
    if method == "lora":
        batch_x = {k: v[:memory_batch] for k, v in x.items()}
        forward = []
        for i in range(2 + args.steps):
            begin = time.perf_counter()
            out = keras.Model.predict_on_batch(lm, batch_x)
            np.asarray(out[:1, :1, :1])
            if i >= 2:
                forward.append(time.perf_counter() - begin)
        forward_ms = 1000 * float(np.median(forward))
    return {
        "method": method, "config": args.config, "mesh": list(args.mesh),
        "devices": len(devices),
        "device_kind": devices[0].platform,
        "mesh_devices": [str(d) for d in mesh.devices.flatten()],
        "parameters": int(lm.count_params()),
        "trainable_parameters": int(sum(
            int(np.prod(v.shape)) for v in lm.trainable_variables)),
        "step_ms": 1000 * float(np.median(times[1:])),
        "step_times_ms": [1000 * t for t in times],
        "forward_ms": forward_ms,
        "start_mb": start_kb / 1024, "built_mb": built_kb / 1024,
        "anchor_peak_mb": anchor_kb / 1024,
        "peak_mb": max(fit_kb, anchor_kb) / 1024,
        "peak_rise_mb": (max(fit_kb, anchor_kb) - built_kb) / 1024,
        "bytes": table, "formula": formula,
        "keras_fip": keras_fip.__file__,
    }


def mib(n, unit=2**20):
    return f"{n / unit:,.2f}"


def report(rows, args):
    lora = rows["lora"]
    first = lora
    print(f"\nconfig {args.config}: {first['parameters']:,} parameters "
          f"({first['trainable_parameters']:,} LoRA, rank "
          f"{args.lora_rank}), bfloat16; mesh {tuple(args.mesh)} "
          f"(batch, model) over {first['devices']} "
          f"{first['device_kind']} devices; batch {args.batch}, memory "
          f"batch {args.memory_batch}, {args.sequence_length} tokens, "
          f"memory {args.capacity} sequences; median of {args.steps} "
          "steps.")
    methods = [m for m in METHODS if m in rows]
    unit, name = ((2**20, "MiB") if lora["bytes"]["frozen base"]["max"]
                  > 2**24 else (2**10, "KiB"))
    print(f"\nBytes per device ({name}): device 0 / largest / copies "
          "(total over devices ÷ logical size).\n")
    print("| state | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for group in GROUPS:
        cells = []
        for m in methods:
            entry = rows[m]["bytes"][group]
            if not entry["variables"]:
                cells.append("–")
                continue
            copies = entry["total"] / max(entry["logical"], 1)
            cells.append(f"{mib(entry['device_0'], unit)} / "
                         f"{mib(entry['max'], unit)} / {copies:.2f}")
        print(f"| {group} | " + " | ".join(cells) + " |")
    for m in methods:
        if rows[m]["formula"] is None:
            continue
        added = sum(rows[m]["bytes"][g]["max"] for g in ADDED)
        f = rows[m]["formula"]
        n, b = f["capacity"], args.mesh[0]
        f["memory_share"] = n * (f["stored_input_bytes"] + 12) / b + 4 * n
        f["bytes"] = f["adapters_max"] + f["memory_share"] + f["scalars"]
        rows[m]["added_max"] = added
        print(f"\n{m}: added state on the largest device "
              f"{added:,} B; formula {f['bytes']:,.0f} B = adapters' share "
              f"{f['adapters_max']:,} + memory N·(s + 12)/b + 4N = "
              f"{n}·({f['stored_input_bytes']} + 12)/{b} + 4·{n} = "
              f"{f['memory_share']:,.0f} + {f['scalars']} of scalars: "
              f"{'within' if added <= f['bytes'] else 'ABOVE'} it "
              f"({added / f['bytes']:.3f}×).")
    ratio = args.memory_batch / args.batch
    model_floor = 1 + ratio * 1.5
    measured = (1 + ratio + lora["forward_ms"] / lora["step_ms"]
                if lora.get("forward_ms") else None)
    share = lora["forward_ms"] / lora["step_ms"]
    print(f"\nLoRA: a forward pass on {args.memory_batch} sequences takes "
          f"{lora['forward_ms']:.0f} ms, {share:.2f} of its step (the cost "
          "model assumes 1/2).\n")
    print("| method | ms/step | ratio to LoRA | floor (cost model) | floor "
          "(measured forward) | peak MiB | ratio | rise MiB | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        r = rows[m]
        floor = "1.00" if m == "lora" else f"{model_floor:.2f}"
        floor_m = "1.00" if m == "lora" else f"{measured:.2f}"
        print(f"| {m} | {r['step_ms']:.0f} | "
              f"{r['step_ms'] / lora['step_ms']:.2f} | {floor} | {floor_m} "
              f"| {r['peak_mb']:,.0f} | {r['peak_mb'] / lora['peak_mb']:.2f}"
              f" | {r['peak_rise_mb']:,.0f} | "
              f"{r['peak_rise_mb'] / lora['peak_rise_mb']:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="1b", choices=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        choices=METHODS)
    parser.add_argument("--mesh", nargs=2, type=int, default=[2, 4],
                        metavar=("BATCH", "MODEL"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--memory-batch", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--capacity", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--no-host-devices", action="store_true",
                        help="use the machine's accelerators as the mesh")
    parser.add_argument("--child", choices=METHODS)
    parser.add_argument("--out", default="results")
    parser.add_argument("--report", metavar="JSON",
                        help="print the tables of a saved run")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        report(saved["rows"], parser.parse_args(saved["argv"]))
        return
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    env = dict(os.environ, KERAS_BACKEND="jax", OMP_NUM_THREADS="1")
    if not args.no_host_devices:
        devices = args.mesh[0] * args.mesh[1]
        flags = [f for f in env.get("XLA_FLAGS", "").split()
                 if "host_platform_device_count" not in f]
        # On a busy machine one host device's thread can reach a
        # collective more than XLA's 40 s after the others (it then aborts
        # the process): wait longer.
        env["XLA_FLAGS"] = " ".join(
            [*flags, f"--xla_force_host_platform_device_count={devices}",
             *HOST_COLLECTIVE_FLAGS])
        env["JAX_PLATFORMS"] = "cpu"
    methods = ["lora", *[m for m in args.methods if m != "lora"]]
    options = [a for a in sys.argv[1:]]
    rows = {}
    begin = time.time()
    for method in methods:
        run = subprocess.run([sys.executable, __file__, *options,
                              "--child", method],
                             capture_output=True, text=True, env=env)
        if run.returncode:
            sys.stderr.write(run.stderr[-5000:])
            raise SystemExit(f"{method} failed (exit {run.returncode})")
        rows[method] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{method}: {rows[method]['step_ms']:.0f} ms/step, peak "
              f"{rows[method]['peak_mb']:,.0f} MiB "
              f"({time.time() - begin:.0f} s)", flush=True)
    report(rows, args)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"billion_parameters_{args.config}.json")
    with open(path, "w") as f:
        json.dump({"argv": sys.argv[1:], "rows": rows}, f, indent=1)
    print(f"\n{path}")


if __name__ == "__main__":
    main()
