"""Keras workflows a user combines with FIP: each works or is refused.

Every row of the docs' "Keras workflows" table has a test here, on the
current backend (the suite runs once per backend).
"""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from conftest import BACKEND
from conftest import Interrupt
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip.arrays import as_numpy

JIT = BACKEND != "torch"
TaskBoundary = keras_fip.callbacks.TaskBoundary


def _weights(model):
    return [as_numpy(v).copy() for v in model.trainable_variables]


def _model(seed=0, classes=4):
    return make_mlp(hidden=(16,), inputs=8, classes=classes, seed=seed)


def _fip(**kwargs):
    return keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-2),
                                  memory=keras_fip.Memory(16), **kwargs)


def _compiled(seed=0, optimizer=None, classes=4):
    model = _model(seed, classes)
    model.compile(optimizer=optimizer or _fip(), loss=sparse_ce(),
                  jit_compile=JIT)
    return model


def _fit(model, task, task_id, epochs=3, callbacks=(), **kwargs):
    return model.fit(*task, batch_size=8, epochs=epochs, shuffle=False,
                     verbose=0, callbacks=[TaskBoundary(task_id, *task),
                                           *callbacks], **kwargs)


def _memory_arrays(optimizer):
    return [as_numpy(v).copy() for v in optimizer.memory.variables]


# ----------------------------------------------------------------------
# Saving, loading, resuming
# ----------------------------------------------------------------------
def test_load_weights_restores_the_weights_and_the_memory(tmp_path):
    task0, task1 = toy_tasks()
    model = _compiled()
    _fit(model, task0, 0)
    _fit(model, task1, 1, epochs=1)
    path = str(tmp_path / "fip.weights.h5")
    model.save_weights(path)
    other = _compiled(seed=1)
    _fit(other, task0, 0, epochs=1)
    other.load_weights(path)
    for got, want in zip(_weights(other), _weights(model)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_memory_arrays(other.optimizer),
                         _memory_arrays(model.optimizer)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.large
@pytest.mark.parametrize("fresh", [False, True], ids=["same", "fresh"])
def test_backup_and_restore_resumes_as_if_never_interrupted(tmp_path, fresh):
    task0, task1 = toy_tasks()

    def run(backup=None, interrupt=None, model=None):
        model = model or _compiled()
        _fit(model, task0, 0)
        callbacks = [c for c in (backup, interrupt) if c is not None]
        _fit(model, task1, 1, epochs=4, callbacks=callbacks)
        return model

    whole = run()
    backup_dir = str(tmp_path / "backup")
    interrupted = _compiled()
    with pytest.raises(KeyboardInterrupt):
        run(keras.callbacks.BackupAndRestore(backup_dir), Interrupt(1),
            model=interrupted)
    resumed = _compiled() if fresh else interrupted
    if fresh:
        _fit(resumed, task0, 0)
    else:
        resumed.fit(*task1, batch_size=8, epochs=0, verbose=0)
    _fit(resumed, task1, 1, epochs=4,
         callbacks=[keras.callbacks.BackupAndRestore(backup_dir)])
    for got, want in zip(_weights(resumed), _weights(whole)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(_memory_arrays(resumed.optimizer),
                         _memory_arrays(whole.optimizer)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.large
def test_checkpoint_of_the_last_epoch_holds_the_finished_task(tmp_path):
    task0, task1 = toy_tasks()
    model = _compiled()
    path = str(tmp_path / "epoch.keras")
    _fit(model, task0, 0,
         callbacks=[keras.callbacks.ModelCheckpoint(path)])
    loaded = keras.saving.load_model(path)
    inputs, labels, tasks, _ = loaded.optimizer.memory.stored()
    assert loaded.optimizer.memory.size == 16 and set(tasks) == {0}
    assert loaded.optimizer.task_cycle.last_task == 0
    # The next task from the checkpoint equals the next task in memory.
    _fit(loaded, task1, 1)
    _fit(model, task1, 1)
    for got, want in zip(_weights(loaded), _weights(model)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_file_of_the_previous_release_is_refused_with_the_version():
    model = _compiled()
    _fit(model, toy_tasks()[0], 0, epochs=1)
    config = model.optimizer.get_config()
    del config["keras_fip_version"]  # as keras_fip 0.1 wrote it
    old = keras_fip.FIPOptimizer.from_config(config)
    old.build(model.trainable_variables)
    store = {str(i): np.zeros(()) for i in range(len(old.variables) - 1)}
    with pytest.raises(ValueError, match="keras_fip 0.1.0.*compile=False"):
        old.load_own_variables(store)


# ----------------------------------------------------------------------
# Mixed precision and wrapped inner optimizers
# ----------------------------------------------------------------------
@pytest.mark.large
@pytest.mark.parametrize("how", ["policy", "wrapper"])
def test_loss_scaling_wraps_fip(how):
    task0, task1 = toy_tasks()
    if how == "policy":
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
        fip = _fip()
        optimizer = (fip if how == "policy"
                     else keras.optimizers.LossScaleOptimizer(fip))
        model.compile(optimizer=optimizer, loss=sparse_ce(), jit_compile=JIT)
        _fit(model, task0, 0)
        _fit(model, task1, 1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert fip.memory.is_active
    assert float(as_numpy(fip.invariance_loss)) > 0
    assert all(np.isfinite(w).all() for w in _weights(model))


@pytest.mark.large
@pytest.mark.parametrize("inner_kwargs", [
    {"gradient_accumulation_steps": 2}, {"use_ema": True}],
    ids=["accumulation", "ema"])
def test_inner_optimizer_features_run_under_fip(inner_kwargs):
    task0, task1 = toy_tasks()
    fip = keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-2, **inner_kwargs),
                                 memory=keras_fip.Memory(16))
    model = _compiled(optimizer=fip)
    before = _weights(model)
    _fit(model, task0, 0)
    _fit(model, task1, 1)
    assert float(as_numpy(fip.invariance_loss)) > 0
    assert any(np.abs(a - b).max() > 1e-4
               for a, b in zip(_weights(model), before))


# ----------------------------------------------------------------------
# Changing the model
# ----------------------------------------------------------------------
@pytest.mark.large
def test_freezing_a_layer_between_tasks_is_refused_with_the_rule():
    task0, task1 = toy_tasks()
    model = _compiled()
    _fit(model, task0, 0)
    model.layers[0].trainable = False
    with pytest.raises(ValueError, match="memory=old.memory"):
        _fit(model, task1, 1)
    # The rule works: a new optimizer that keeps the memory.
    old = model.optimizer
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-2), memory=old.memory), loss=sparse_ce(),
        jit_compile=JIT)
    frozen = as_numpy(model.layers[0].kernel).copy()
    _fit(model, task1, 1)
    np.testing.assert_array_equal(
        as_numpy(model.layers[0].kernel), frozen)
    assert float(as_numpy(model.optimizer.invariance_loss)) > 0


def test_a_grown_head_is_refused_with_the_rule():
    task0, task1 = toy_tasks()
    model = _compiled(classes=2)
    _fit(model, task0, 0)
    grown = keras.Sequential([model.layers[0], keras.layers.Dense(4)])
    grown.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-2), memory=model.optimizer.memory),
        loss=sparse_ce(), jit_compile=JIT)
    with pytest.raises(ValueError, match="whole head up front"):
        _fit(grown, task1, 1)


# ----------------------------------------------------------------------
# Non-finite values
# ----------------------------------------------------------------------
def test_non_finite_task_data_is_refused_at_once():
    x, y = toy_tasks()[0]
    x = x.copy()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        TaskBoundary(0, x, y)


def test_a_diverged_network_never_enters_the_memory():
    task0, task1 = toy_tasks()
    model = _compiled()
    _fit(model, task0, 0)
    before = _memory_arrays(model.optimizer)
    for v in model.trainable_variables:
        v.assign(ops.full(v.shape, np.inf))
    with pytest.raises(ValueError, match="not finite"):
        _fit(model, task1, 1, epochs=1,
             callbacks=[keras.callbacks.TerminateOnNaN()])
    for got, want in zip(_memory_arrays(model.optimizer), before):
        np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------
# TaskBoundary's arguments
# ----------------------------------------------------------------------
@pytest.mark.parametrize("x, y, error, match", [
    (np.zeros((0, 8), "float32"), np.zeros((0,), "int32"), ValueError,
     "no samples"),
    (np.zeros((4, 8), "float32"), np.zeros((3,), "int32"), ValueError,
     "same number of samples"),
    (np.zeros((4, 8), "float32"), np.array(["a", "b", "a", "b"]),
     TypeError, "integer class ids"),
    ((i for i in range(3)), None, TypeError, "as arrays"),
    ({"a": np.zeros((4, 2)), "b": np.zeros((5, 2))}, None, ValueError,
     "leading"),
], ids=["empty", "lengths", "string-labels", "generator", "dict-lengths"])
def test_bad_task_boundary_arguments_are_refused(x, y, error, match):
    with pytest.raises(error, match=match):
        TaskBoundary(1, x, y)


def test_a_dataset_is_refused_with_how_to_pass_arrays():
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros((4, 8), "float32"), np.zeros((4,), "int32")

    with pytest.raises(TypeError, match="as arrays"):
        TaskBoundary(0, Batches())


def test_a_reused_task_id_with_other_data_is_refused():
    task0, task1 = toy_tasks()
    model = _compiled()
    _fit(model, task0, 0)
    _fit(model, task1, 1)
    x2, y2 = task1[0] + 1.0, task1[1]
    with pytest.raises(ValueError, match="own id"):
        _fit(model, (x2, y2), 1)
    with pytest.raises(ValueError, match="must not go back"):
        _fit(model, (x2, y2), 0)
    # The same task again (even shuffled) resumes.
    order = np.random.default_rng(0).permutation(len(task1[1]))
    _fit(model, (task1[0][order], task1[1][order]), 1, epochs=1)


def test_training_outside_any_task_boundary_warns_once():
    task0, task1 = toy_tasks()
    model = _compiled()
    _fit(model, task0, 0)
    model.fit(*task1, batch_size=8, epochs=1, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        _fit(model, task1, 1)
    assert len([w for w in caught if "outside any" in str(w.message)]) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        _fit(model, task1, 1, epochs=1)  # resuming the same task: no more
    assert not [w for w in caught if "outside any" in str(w.message)]


# ----------------------------------------------------------------------
# EarlyStopping
# ----------------------------------------------------------------------
@pytest.mark.large
def test_early_stopping_restores_before_anchoring_in_either_order():
    task0, task1 = toy_tasks()
    anchors = []
    for boundary_first in (True, False):
        model = _compiled()
        stop = keras.callbacks.EarlyStopping(
            monitor="loss", patience=0, restore_best_weights=True,
            start_from_epoch=0)
        boundary = TaskBoundary(0, *task0)
        callbacks = [boundary, stop] if boundary_first else [stop, boundary]
        model.fit(*task0, batch_size=8, epochs=6, verbose=0,
                  callbacks=callbacks)
        model.optimizer.begin_task(model, 1, *task1)  # anchors for good
        anchors.append(model.optimizer.memory.stored()[3])
        outputs = as_numpy(model(model.optimizer.memory.stored()[0]))
        np.testing.assert_allclose(anchors[-1], outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(anchors[0], anchors[1], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------
_DATA_PARALLEL = r"""
import os, json
import numpy as np, keras, keras_fip
from keras_fip.arrays import as_numpy
from conftest import toy_tasks, make_mlp, sparse_ce
devices = int(os.environ["DEVICES"])
if devices > 1:
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()[:devices]))
task0, task1 = toy_tasks()
model = make_mlp(hidden=(16,), inputs=8, classes=4)
model.compile(optimizer=keras_fip.FIPOptimizer(
    keras.optimizers.Adam(1e-2), memory=keras_fip.Memory(16)),
    loss=sparse_ce())
for t, task in enumerate((task0, task1)):
    model.fit(*task, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(t, *task)])
print(json.dumps([as_numpy(v).tolist()
                  for v in model.trainable_variables]))
"""


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution is JAX's")
def test_data_parallel_on_two_devices_matches_one_device():
    import json

    def run(devices):
        env = dict(os.environ, DEVICES=str(devices), KERAS_BACKEND="jax",
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
        out = subprocess.run(
            [sys.executable, "-c", _DATA_PARALLEL], env=env,
            cwd=os.path.dirname(__file__), capture_output=True, text=True,
            timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return [np.array(w) for w in json.loads(out.stdout.splitlines()[-1])]

    for got, want in zip(run(2), run(1)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


_MIRRORED = r"""
import json, os
import tensorflow as tf
replicas = int(os.environ["REPLICAS"])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, keras_fip
from keras_fip.arrays import as_numpy
from conftest import toy_tasks, make_mlp, sparse_ce
strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            if replicas > 1 else tf.distribute.get_strategy())
task0, task1 = toy_tasks()
with strategy.scope():
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    optimizer = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-2), memory=keras_fip.Memory(16),
        memory_batch_size=8)
    model.compile(optimizer=optimizer, loss=sparse_ce())
for t, task in enumerate((task0, task1)):
    model.fit(*task, batch_size=8, epochs=3, shuffle=False, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(t, *task)])
print(json.dumps({
    "weights": [as_numpy(v).tolist()
                for v in model.trainable_variables],
    "invariance": float(as_numpy(
        optimizer.invariance_loss)),
    "cursor": int(as_numpy(optimizer.memory.cursor))}))
"""


@pytest.mark.large
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute is TF's")
def test_mirrored_strategy_on_two_replicas_matches_one_device():
    import json

    def run(replicas):
        env = dict(os.environ, KERAS_BACKEND="tensorflow",
                   REPLICAS=str(replicas))
        out = subprocess.run([sys.executable, "-c", _MIRRORED], env=env,
                             cwd=os.path.dirname(__file__),
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.splitlines()[-1])

    two, one = run(2), run(1)
    # The memory batch is one global batch: the same invariance term and
    # the same cursor as on one device, and the same weights.
    assert two["invariance"] == pytest.approx(one["invariance"], rel=1e-4)
    assert two["cursor"] == one["cursor"]
    for got, want in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
