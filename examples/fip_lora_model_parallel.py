"""
Title: Continual fine-tuning of a Gemma model with FIP + LoRA, model-parallel
Author: keras_fip contributors
Date created: 2026/12/05
Last modified: 2026/12/05
Description: A Gemma-architecture CausalLM sharded over a device mesh with
    `keras.distribution.ModelParallel` learns a second task through LoRA
    adapters along a functionally invariant path, keeping the first.

## Introduction

A large language model does not fit on one accelerator, so Keras cuts each
weight over a *device mesh*: `keras.distribution.ModelParallel` with the
backbone's `get_layout_map` (the JAX backend). FIP's state follows the
model there: the snapshot of the adapters the memory keeps as its anchor
network is laid out like the adapters, and the memory's stored token ids
are cut along the mesh's batch axis, so each device holds its share of one
copy of what FIP protects plus N / b stored sequences (the guide *Scaling
FIP* has the formula and measurements at 1.1 billion parameters).

This example runs end to end on a CPU in one to two minutes: a tiny
Gemma-architecture model from a config (random weights, no download) on
4 *host devices*, a (2, 2) mesh with axes ("batch", "model"). It

1. trains the whole model on task A (the "pretrained" model),
2. enables LoRA (`backbone.enable_lora(4)`: the base is frozen, only the
   adapters train) and fine-tunes on task B, once with plain Adam and once
   with `FIPOptimizer(Adam)` whose memory keeps task A's sequences with a
   snapshot of the adapters as anchors,
3. prints the loss (and perplexity) on A and B before and after B.

Task A's sequences follow one fixed next-token rule over the lower half of
the vocabulary, task B's another over the upper half: learning B pulls the
probability mass toward B's tokens, which is the forgetting FIP prevents.

    python examples/fip_lora_model_parallel.py

The script sets `KERAS_BACKEND=jax` and
`XLA_FLAGS=--xla_force_host_platform_device_count=4` itself when they are
not set (before JAX starts). On a machine with accelerators, set
`--host-devices 0` to use them, and a mesh that fits them (`--mesh 1 8`
for 8 GPUs or a TPU v3-8 with 8 cores).

## A real preset

With a preset's weights on disk (Kaggle or Hugging Face, e.g.
`gemma_2b_en` or a Gemma 7B), build the model under the distribution the
same way and load the weights instead of the config:

```python
mesh = keras.distribution.DeviceMesh(
    (1, 8), ["batch", "model"], devices=keras.distribution.list_devices())
layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
keras.distribution.set_distribution(keras.distribution.ModelParallel(
    layout_map=layout_map, batch_dim_name="batch"))
lm = keras_hub.models.GemmaCausalLM.from_preset("gemma_7b_en",
                                                dtype="bfloat16")
lm.backbone.enable_lora(rank=4)
lm.compile(optimizer=keras_fip.FIPOptimizer(
    keras.optimizers.Adam(1e-4), memory=keras_fip.Memory(
        256, anchor_storage="snapshot")), ...)
keras_fip.callbacks.remember_task(lm, 0, texts_a)   # raw strings
lm.fit(texts_b, callbacks=[keras_fip.callbacks.TaskBoundary(1, texts_b)])
```

With the preprocessor attached, raw strings go to `fit`, `remember_task`
and `TaskBoundary` alike. Two things to check for a mesh: KerasHub's Gemma
layout cuts the key and value kernels' head axis over the "model" axis, so
the number of key/value heads must divide by it (Gemma 7B has 16; Gemma
2B's single key/value head needs a mesh whose "model" axis is 1, or a
layout map of your own); and choose the memory's capacity N as a multiple
of the "batch" axis's size b, so that its stored sequences are cut over it
(otherwise they are replicated). For several hosts (a TPU pod slice, or
GPUs on several machines), call
`keras.distribution.initialize(job_addresses=..., num_processes=...,
process_id=...)` in each process first: *Scaling FIP* has the recipe.
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _host_devices(count):
    """CPU host devices for JAX (before it starts), unless already set."""
    if count and "host_platform_device_count" not in os.environ.get(
            "XLA_FLAGS", ""):
        # Host devices are threads; on a busy machine one may reach a
        # collective later than XLA's default 40 s allow.
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={count}"
            " --xla_cpu_collective_call_terminate_timeout_seconds=600"
        ).strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


"""
## Two tasks of token sequences

Each task is a fixed permutation of its half of the vocabulary: a sequence
starts at a random token and each next token is the permutation of the
previous one. The model needs no tokenizer: KerasHub's `CausalLM` takes
`{"token_ids", "padding_mask"}` directly when `preprocessor=None`, the
targets being the ids shifted by one.
"""


def task(low, high, n, length, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    rule = rng.permutation(np.arange(low, high))  # next token of low + i
    ids = np.empty((n, length + 1), "int32")
    ids[:, 0] = rng.integers(low, high, n)
    for t in range(length):
        ids[:, t + 1] = rule[ids[:, t] - low]
    mask = np.ones((n, length), bool)
    x = {"token_ids": ids[:, :-1], "padding_mask": mask}
    return x, ids[:, 1:], mask.astype("float32")


"""
## The model, cut over a device mesh

`ModelParallel` must be set *before* the model is built: each weight is
created with the layout the backbone's layout map gives its path (the
adapters too, when `enable_lora` creates them later). A tiny
Gemma config keeps this fast; `dtype="bfloat16"` is what a real preset
uses on accelerators (float32 is faster on a CPU).
"""


def build_model(mesh_shape, vocabulary, dtype):
    import keras
    import keras_hub

    mesh = keras.distribution.DeviceMesh(
        tuple(mesh_shape), ["batch", "model"],
        devices=keras.distribution.list_devices())
    layout_map = keras_hub.models.GemmaBackbone.get_layout_map(mesh)
    # KerasHub's map leaves the LoRA adapters replicated; this cuts each
    # adapter's first factor like its kernel, (heads, hidden, rank).
    layout_map["decoder_block.*attention.*(query|value).lora_kernel_a"] = (
        "model", "batch", None)
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"))
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=vocabulary, num_layers=2, num_query_heads=4,
        num_key_value_heads=4, hidden_dim=64, intermediate_dim=256,
        head_dim=16, dtype=dtype)
    return keras_hub.models.GemmaCausalLM(backbone=backbone,
                                          preprocessor=None)


def compile_with(lm, optimizer):
    import keras

    lm.compile(optimizer=optimizer, weighted_metrics=[],
               loss=keras.losses.SparseCategoricalCrossentropy(
                   from_logits=True))


def loss_on(lm, data, batch):
    import keras

    x, y, weight = data
    return float(keras.Model.evaluate(lm, x, y, sample_weight=weight,
                                      batch_size=batch, verbose=0))


"""
## Task A, then task B through LoRA: plain, and along an FIP

`remember_task` puts task A's sequences in the memory and anchors it on the
model as it is; the `TaskBoundary` of task B's `fit` starts task B. With
LoRA the memory's snapshot anchors are a copy of the adapters only (the
frozen base is shared by the model and its anchor); each FIP step runs
the memory batch through the snapshot (one forward pass) and through the
model (a forward and backward pass).
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description="FIP + LoRA, model-parallel")
    parser.add_argument("--host-devices", type=int, default=4,
                        help="CPU host devices (0: the machine's own)")
    parser.add_argument("--mesh", nargs=2, type=int, default=[2, 2],
                        metavar=("BATCH", "MODEL"))
    parser.add_argument("--vocabulary", type=int, default=256)
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--epochs-a", type=int, default=8)
    parser.add_argument("--epochs-b", type=int, default=8)
    parser.add_argument("--capacity", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    _host_devices(args.host_devices)

    import keras
    import numpy as np

    import keras_fip

    half, batch = args.vocabulary // 2, 16
    data_a = task(1, half, args.samples, args.sequence_length, seed=0)
    data_b = task(half, args.vocabulary, args.samples,
                  args.sequence_length, seed=1)

    keras.utils.set_random_seed(0)
    lm = build_model(args.mesh, args.vocabulary, args.dtype)
    compile_with(lm, keras.optimizers.Adam(1e-2))
    keras.Model.fit(lm, *data_a[:2], sample_weight=data_a[2],
                    batch_size=batch, epochs=args.epochs_a, verbose=0)
    pretrained = lm.get_weights()
    results = {"pretrained": (loss_on(lm, data_a, batch),
                              loss_on(lm, data_b, batch))}

    def fine_tune(fip):
        model = build_model(args.mesh, args.vocabulary, args.dtype)
        model.set_weights(pretrained)
        model.backbone.enable_lora(4)
        optimizer = keras.optimizers.Adam(1e-2)
        callbacks = []
        if fip:
            optimizer = keras_fip.FIPOptimizer.default_of_0_5(
                optimizer, beta=args.beta, memory_batch_size=batch,
                memory=keras_fip.Memory(args.capacity,
                                        anchor_storage="snapshot"))
        compile_with(model, optimizer)
        if fip:
            keras_fip.callbacks.remember_task(
                model, 0, {k: v[:args.capacity]
                           for k, v in data_a[0].items()})
            callbacks = [keras_fip.callbacks.TaskBoundary(1, data_b[0])]
        keras.Model.fit(model, *data_b[:2], sample_weight=data_b[2],
                        batch_size=batch, epochs=args.epochs_b, verbose=0,
                        callbacks=callbacks)
        return model

    lora = fine_tune(fip=False)
    results["LoRA"] = (loss_on(lora, data_a, batch),
                       loss_on(lora, data_b, batch))
    fip = fine_tune(fip=True)
    results["FIP + LoRA"] = (loss_on(fip, data_a, batch),
                             loss_on(fip, data_b, batch))

    print(f"{len(keras.distribution.list_devices())} devices, mesh "
          f"{tuple(args.mesh)} (batch, model); loss (perplexity) per token")
    print("| model | task A | task B |")
    print("|---|---|---|")
    for name, (a, b) in results.items():
        print(f"| {name} | {a:.3f} ({np.exp(a):.1f}) | "
              f"{b:.3f} ({np.exp(b):.1f}) |")

    """
    ## Where FIP's state lives

    Each array's sharding says how it is cut over the mesh: the snapshot
    copies are laid out like the adapters they copy (the first factor cut
    over both axes, as the layout map above says), the stored token ids
    along the "batch" axis: each device holds N / 2 of them.
    """
    memory = fip.optimizer.memory
    layouts = {
        "adapters": [str(v.value.sharding.spec)
                     for v in fip.trainable_variables],
        "snapshot": [str(v.value.sharding.spec)
                     for v in memory.snapshot_weights],
        "stored inputs": [str(v.value.sharding.spec) for v in
                          keras.tree.flatten(memory.inputs)],
    }
    print(f"adapter 0: {layouts['adapters'][0]}, its snapshot: "
          f"{layouts['snapshot'][0]}; stored token ids: "
          f"{layouts['stored inputs'][0]}")
    return results, layouts


if __name__ == "__main__":
    main()
