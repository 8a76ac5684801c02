"""Two FIP tasks on a small KerasHub CausalLM, on one or several devices.

Run by `tests/test_layouts.py` in a subprocess (JAX), once on one device
and once on 4 host devices with `keras.distribution.ModelParallel` and the
backbone's own layout map (a mesh of 2 × 2, axes "batch" and "model"):
it prints one JSON line with the final weights and, for every piece of
state FIP keeps per weight or per sample, its sharding next to its
weight's.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax \\
        python tests/layout_run.py --devices 4 --arch gemma

Options: `--arch gemma|llama`, `--storage snapshot|outputs`, `--lora`
(LoRA rank 2 on the backbone; the frozen base is then not copied).
"""

import argparse
import json

import keras
import keras_hub
import numpy as np

import keras_fip
from keras_fip import layouts

VOCABULARY, SEQUENCE, SAMPLES = 64, 8, 16


def backbone(arch):
    """A two-layer backbone whose sharded axes divide by 2."""
    if arch == "gemma":
        return keras_hub.models.GemmaBackbone(
            vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=2,
            num_key_value_heads=2, hidden_dim=16, intermediate_dim=32,
            head_dim=8)
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=2,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32)


def task(seed):
    """Token sequences (inputs, next-token labels) of one task."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCABULARY, (SAMPLES, SEQUENCE + 1)).astype("int32")
    x = {"token_ids": ids[:, :-1],
         "padding_mask": np.ones((SAMPLES, SEQUENCE), "int32")}
    return x, ids[:, 1:]


def spec_of(variable):
    """The array's partition spec as a list (`None`: not sharded)."""
    sharding = variable.value.sharding
    spec = getattr(sharding, "spec", None)
    if spec is None:
        return []
    return [None if s is None else str(s) for s in spec]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--arch", default="gemma")
    parser.add_argument("--storage", default="snapshot")
    parser.add_argument("--lora", action="store_true")
    args = parser.parse_args()
    classes = {"gemma": keras_hub.models.GemmaBackbone,
               "llama": keras_hub.models.LlamaBackbone}
    if args.devices > 1:
        mesh = keras.distribution.DeviceMesh(
            (2, args.devices // 2), ["batch", "model"],
            devices=keras.distribution.list_devices()[:args.devices])
        keras.distribution.set_distribution(keras.distribution.ModelParallel(
            layout_map=classes[args.arch].get_layout_map(mesh),
            batch_dim_name="batch"))
    net = backbone(args.arch)
    if args.lora:
        net.enable_lora(2)
    model = (keras_hub.models.GemmaCausalLM if args.arch == "gemma"
             else keras_hub.models.LlamaCausalLM)(backbone=net,
                                                  preprocessor=None)
    rng = np.random.default_rng(0)
    for v in model.weights:  # the same start on any number of devices
        if "float" in str(v.dtype):
            v.assign(rng.normal(0, 0.05, v.shape).astype(v.dtype))
    optimizer = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3),
        memory=keras_fip.Memory(8, anchor_storage=args.storage),
        memory_batch_size=4)
    model.compile(optimizer=optimizer, loss=keras.losses.
                  SparseCategoricalCrossentropy(from_logits=True))
    for t in range(2):
        x, y = task(t)
        steps = 4 if t == 0 else 2
        model.fit(x, y, batch_size=SAMPLES // steps, epochs=1,
                  shuffle=False, verbose=0,
                  callbacks=[keras_fip.callbacks.TaskBoundary(t, x, y)])
    memory = optimizer.memory
    trainable = model.trainable_variables
    non_trainable = model.non_trainable_variables
    copies = [(w, c) for w, c in zip(trainable, memory.weight_copies)]
    copies += [(non_trainable[i], c) for i, c in zip(
        optimizer.task_cycle.copied_state, optimizer.task_cycle.model_state)]
    print(json.dumps({
        "weights": [np.asarray(keras.ops.convert_to_numpy(v)).tolist()
                    for v in trainable],
        "memory_active": bool(memory.is_active),
        "invariance": float(keras.ops.convert_to_numpy(
            optimizer.memory_loss)),
        "copies": [{"path": w.path, "weight": spec_of(w), "copy": spec_of(c)}
                   for w, c in copies],
        "non_trainable": len(non_trainable),
        "state_copies": len(optimizer.task_cycle.model_state),
        "per_sample": [{"name": v.name, "shape": list(v.shape),
                        "spec": spec_of(v)}
                       for v in [*memory.anchor_variables, memory.labels,
                                 *keras.tree.flatten(memory.inputs)]],
        "fip_nbytes_per_device": _bytes_per_device(
            [c for _, c in copies]
            + [*memory.anchor_variables,
               *keras.tree.flatten(memory.inputs)]),
        "weight_nbytes_per_device": _bytes_per_device(trainable),
    }))


def _bytes_per_device(variables):
    """The largest bytes any one device holds of `variables`."""
    per_device = {}
    for v in variables:
        for device, n in layouts.shard_bytes(v).items():
            per_device[device] = per_device.get(device, 0) + n
    return max(per_device.values()) if per_device else 0


if __name__ == "__main__":
    main()
