"""FIP's state follows the model's layout; only assigned state is copied.

- On every backend: which non-trainable variables training assigns
  (`keras_fip.model_state`), that only those are copied, that a run which
  copies nothing it need not equals one that copies everything (the old
  state spec), and that a `keras.distribution` on TensorFlow or PyTorch is
  refused with a message.
- On JAX, in subprocesses with host devices (`XLA_FLAGS`): every per-weight
  copy FIP keeps (snapshot anchors, the model-state copy, a term's weights,
  Adam's slots) is sharded like its weight, per-sample arrays are cut
  along the batch axis; and (large tier) two tasks of a Gemma and a Llama
  CausalLM under `ModelParallel` with KerasHub's layout maps equal the
  one-device run (`tests/layout_run.py`).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_fip
from conftest import BACKEND
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip import layouts
from keras_fip import model_state
from keras_fip.arrays import as_numpy

HERE = os.path.dirname(__file__)


def _frozen_batchnorm_model(seed=0):
    """Dense (frozen) → BatchNorm → Dense: 2 frozen weights, 2 statistics."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Dense(4)])
    model.layers[0].trainable = False
    return model


def test_assigned_in_training_tells_statistics_from_frozen_weights():
    model = _frozen_batchnorm_model()
    flags = model_state.assigned_in_training(
        model, np.zeros((3, 8), "float32"))
    paths = [v.path for v in model.non_trainable_variables]
    assert dict(zip(paths, flags)) == {
        paths[0]: False, paths[1]: False, paths[2]: True, paths[3]: True}


def _run_two_tasks(optimizer, model):
    model.compile(optimizer=optimizer, loss=sparse_ce())
    for t, task in enumerate(toy_tasks()):
        model.fit(*task, batch_size=8, epochs=2, shuffle=False, verbose=0,
                  callbacks=[keras_fip.callbacks.TaskBoundary(t, *task)])
    return [as_numpy(v) for v in model.trainable_variables]


def test_only_state_that_training_assigns_is_copied_and_steps_are_equal():
    model = _frozen_batchnorm_model()
    optimizer = keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-2),
                                       memory=keras_fip.Memory(16))
    weights = _run_two_tasks(optimizer, model)
    cycle = optimizer.task_cycle
    assert cycle.copied_state == [2, 3]
    assert len(cycle.model_state) == 2
    assert float(as_numpy(optimizer.memory_loss)) > 0  # task 1 used it
    spec = cycle.get_config()["state_spec"]
    assert [s["copy"] for s in spec] == [False, False, True, True]
    assert spec[0]["path"] == model.non_trainable_variables[0].path
    # A spec written before 0.8 (no "copy") copies everything; the steps
    # read the same values, so the run is the same.
    config = optimizer.get_config()
    config["state_spec"] = [{"shape": s["shape"], "dtype": s["dtype"]}
                            for s in spec]
    everything = keras_fip.FIPOptimizer.from_config(config)
    assert len(everything.task_cycle.model_state) == 4
    again = _run_two_tasks(everything, _frozen_batchnorm_model())
    for got, want in zip(again, weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_keras_file_keeps_which_state_is_copied(tmp_path):
    model = _frozen_batchnorm_model()
    optimizer = keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-2),
                                       memory=keras_fip.Memory(16))
    _run_two_tasks(optimizer, model)
    path = str(tmp_path / "frozen.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    cycle = loaded.optimizer.task_cycle
    assert cycle.copied_state == [2, 3]
    for copy, original in zip(cycle.model_state,
                              optimizer.task_cycle.model_state):
        np.testing.assert_array_equal(as_numpy(copy), as_numpy(original))
    task = toy_tasks()[1]
    loaded.fit(*task, batch_size=8, epochs=1, verbose=0,
               callbacks=[keras_fip.callbacks.TaskBoundary(1, *task)])


@pytest.mark.skipif(BACKEND != "jax", reason="JAX's fit empties variables")
def test_jax_step_reads_the_frozen_state_its_trace_received():
    model = _frozen_batchnorm_model()
    optimizer = keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-2),
                                       memory=keras_fip.Memory(16))
    _run_two_tasks(optimizer, model)
    recorder = model.compute_loss_and_updates
    assert isinstance(recorder, model_state.StateRecorder)
    assert recorder.values is None  # cleared once the step was built


@pytest.mark.skipif(BACKEND == "jax", reason="keras.distribution is JAX's")
def test_a_keras_distribution_is_refused_off_jax():
    mesh = keras.distribution.DeviceMesh((1,), ["batch"],
                                         devices=["cpu:0"])
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(device_mesh=mesh))
    try:
        model = make_mlp(hidden=(4,), inputs=8, classes=4)
        model.compile(optimizer=keras_fip.FIPOptimizer(
            keras.optimizers.Adam(), memory=keras_fip.Memory(8)),
            loss=sparse_ce())
        task = toy_tasks()[0]
        with pytest.raises(ValueError, match="only on the JAX backend"):
            model.fit(*task, epochs=1, verbose=0,
                      callbacks=[keras_fip.callbacks.TaskBoundary(0, *task)])
    finally:
        keras.distribution.set_distribution(None)
    assert layouts.current_distribution() is None


_MODEL_PARALLEL = r"""
import json
import numpy as np, keras, keras_fip
from keras_fip.terms import TowardWeights
from conftest import toy_tasks, sparse_ce
mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"],
                                     devices=keras.distribution.list_devices())
layout_map = keras.distribution.LayoutMap(mesh)
layout_map[".*dense.*kernel"] = (None, "model")
layout_map[".*dense.*bias"] = ("model",)
keras.distribution.set_distribution(keras.distribution.ModelParallel(
    layout_map=layout_map, batch_dim_name="batch"))
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8,)),
                          keras.layers.Dense(16, activation="relu"),
                          keras.layers.BatchNormalization(),
                          keras.layers.Dense(4)])
target = [np.zeros(v.shape, "float32") for v in model.trainable_variables]
optimizer = keras_fip.FIPOptimizer(
    keras.optimizers.Adam(1e-2),
    memory=keras_fip.Memory(16, anchor_storage="snapshot"),
    objectives=[TowardWeights(target, weight=0.1)])
model.compile(optimizer=optimizer, loss=sparse_ce())
for t, task in enumerate(toy_tasks()):
    model.fit(*task, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(t, *task)])
spec = lambda v: [None if s is None else str(s)
                  for s in v.value.sharding.spec]
by_weight = {}
for v in model.trainable_variables:
    by_weight[v.path.replace("/", "_")] = spec(v)
pairs = []
for w, c in zip(model.trainable_variables, optimizer.memory.weight_copies):
    pairs.append(("snapshot", w.path, spec(w), spec(c)))
nts = model.non_trainable_variables
for i, c in zip(optimizer.task_cycle.copied_state,
                optimizer.task_cycle.model_state):
    pairs.append(("model_state", nts[i].path, spec(nts[i]), spec(c)))
for v in optimizer.variables:
    for name, weight_spec in by_weight.items():
        if v.name.startswith(name + "_"):
            pairs.append(("optimizer", v.name, weight_spec, spec(v)))
memory = optimizer.memory
print(json.dumps({
    "pairs": pairs,
    "per_sample": [spec(v) for v in [memory.labels,
                                     *keras.tree.flatten(memory.inputs)]],
    "invariance": float(keras.ops.convert_to_numpy(optimizer.memory_loss))}))
"""


def _subprocess(code_or_args, devices=4, timeout=600):
    env = dict(os.environ, KERAS_BACKEND="jax", OMP_NUM_THREADS="1",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    command = ([sys.executable, "-c", code_or_args]
               if isinstance(code_or_args, str)
               else [sys.executable, *code_or_args])
    out = subprocess.run(command, env=env, cwd=HERE, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution is JAX's")
def test_every_copy_is_sharded_like_its_weight_under_model_parallel():
    result = _subprocess(_MODEL_PARALLEL)
    kinds = {kind for kind, *_ in result["pairs"]}
    # snapshot anchors, BatchNorm statistics, TowardWeights' target and
    # Adam's slots are all per-weight copies
    assert kinds == {"snapshot", "model_state", "optimizer"}, kinds
    sharded = [p for p in result["pairs"] if "model" in p[2]]
    assert len(sharded) >= 8, result["pairs"]
    for kind, path, weight, copy in result["pairs"]:
        assert copy == weight, (kind, path, weight, copy)
    for spec in result["per_sample"]:
        assert spec[0] == "batch", result["per_sample"]
    assert result["invariance"] > 0


def _layout_run(devices, *options):
    return _subprocess(["layout_run.py", "--devices", str(devices),
                        *options], devices=4)


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution is JAX's")
@pytest.mark.parametrize("options", [
    ("--arch", "gemma", "--storage", "snapshot"),
    ("--arch", "llama", "--storage", "outputs", "--lora"),
], ids=["gemma-snapshot", "llama-outputs-lora"])
def test_model_parallel_causal_lm_matches_one_device(options):
    sharded, one = _layout_run(4, *options), _layout_run(1, *options)
    for copy in sharded["copies"]:
        assert copy["copy"] == copy["weight"], copy
    if "--lora" not in options:
        assert any("model" in c["weight"] for c in sharded["copies"])
    else:  # the frozen base is read in place, never copied
        assert sharded["non_trainable"] > 0
        assert sharded["state_copies"] == 0
    for array in sharded["per_sample"]:
        assert array["spec"][0] == "batch", array
    assert sharded["fip_nbytes_per_device"] < one["fip_nbytes_per_device"]
    assert sharded["invariance"] > 0
    assert sharded["invariance"] == pytest.approx(one["invariance"],
                                                  rel=1e-3)
    for got, want in zip(sharded["weights"], one["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
