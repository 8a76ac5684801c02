import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from conftest import BACKEND
from conftest import compile_fip
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip.arrays import as_numpy

JIT = BACKEND != "torch"  # XLA on TensorFlow, jax.jit on JAX


def _weights(model):
    return [as_numpy(v).copy() for v in model.trainable_variables]


def _fit(model, x, y, callbacks=(), epochs=2):
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
              callbacks=list(callbacks))


def _run_plain(task):
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=sparse_ce(),
                  jit_compile=JIT)
    _fit(model, *task)
    return _weights(model)


@pytest.mark.parametrize("with_boundary", [False, True])
def test_empty_memory_is_exactly_the_inner_optimizer(with_boundary):
    task, _ = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    compile_fip(model, inner=keras.optimizers.Adam(1e-2), beta=3.0,
                step_norm=0.01, jit_compile=JIT)
    callbacks = (
        [keras_fip.callbacks.TaskBoundary(0, *task)] if with_boundary else [])
    _fit(model, *task, callbacks=callbacks)
    for got, want in zip(_weights(model), _run_plain(task)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _two_tasks(**fip_kwargs):
    task0, task1 = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = compile_fip(model, capacity=16, jit_compile=JIT, **fip_kwargs)
    _fit(model, *task0, callbacks=[keras_fip.callbacks.TaskBoundary(0, *task0)],
         epochs=5)
    return model, fip, task0, task1


def test_active_memory_adds_the_invariance_term():
    model, fip, task0, task1 = _two_tasks(inner=keras.optimizers.Adam(1e-2))
    assert fip.memory.is_active and fip.memory.size == 16
    _fit(model, *task1, callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)])
    assert float(as_numpy(fip.invariance_loss)) > 1e-4
    assert model.jit_compile == JIT


def test_step_norm_sets_the_step_length():
    model, fip, _, task1 = _two_tasks(
        inner=keras.optimizers.SGD(learning_rate=1.0), step_norm=0.05
    )
    boundary = keras_fip.callbacks.TaskBoundary(1, *task1)
    before = _weights(model)
    x, y = task1
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0,
              callbacks=[boundary])
    step = math.sqrt(sum(np.sum((a - b) ** 2)
                         for a, b in zip(_weights(model), before)))
    assert step == pytest.approx(0.05, rel=1e-4)


def _probability_drift(beta):
    # Plain SGD: no momentum carried over from task 0 moves the weights.
    model, fip, _, task1 = _two_tasks(inner=keras.optimizers.SGD(0.05))
    fip.beta.assign(beta)
    inputs, _, _, anchors = fip.memory.stored()
    _fit(model, *task1, callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)])
    assert float(as_numpy(fip.beta)) == beta
    now = as_numpy(ops.softmax(model(inputs)))
    return np.abs(now - as_numpy(ops.softmax(anchors))).max()


def test_beta_is_a_variable_callbacks_can_change():
    # β = 0 leaves only the invariance term: the protected outputs stay put,
    # while β = 1 lets the new task pull them.
    without_task, with_task = _probability_drift(0.0), _probability_drift(1.0)
    assert without_task < 0.2 * with_task


def _task0_anchors_after_task1(anchors):
    model, fip, task0, task1 = _two_tasks(inner=keras.optimizers.Adam(1e-2),
                                          anchors=anchors)
    inputs, _, _, at_task0_end = fip.memory.stored()
    _fit(model, *task1, callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)])
    # Anchors are taken when the next task begins.
    fip.begin_task(model, 2, *task1)
    now_inputs, _, tasks, now_anchors = fip.memory.stored()
    assert set(tasks) == {0, 1}
    # Match the task-0 samples still kept to the rows stored after task 0.
    rows = [int(np.flatnonzero((inputs == x).all(axis=1))[0])
            for x in now_inputs[tasks == 0]]
    outputs_now = as_numpy(model(now_inputs[tasks == 0]))
    return now_anchors[tasks == 0], at_task0_end[rows], outputs_now


def test_stored_anchors_keep_the_outputs_each_task_ended_with():
    kept, at_task0_end, outputs_now = _task0_anchors_after_task1("stored")
    np.testing.assert_allclose(kept, at_task0_end, rtol=1e-6)
    assert np.abs(outputs_now - at_task0_end).max() > 1e-3  # the model moved


def test_task_start_anchors_follow_the_network():
    kept, at_task0_end, outputs_now = _task0_anchors_after_task1("task_start")
    np.testing.assert_allclose(kept, outputs_now, rtol=1e-4, atol=1e-5)
    assert np.abs(kept - at_task0_end).max() > 1e-3


def test_active_memory_without_a_model_is_explained():
    model, fip, _, task1 = _two_tasks()
    other = make_mlp(hidden=(16,), inputs=8, classes=4)
    fresh = keras_fip.FIPOptimizer(keras.optimizers.Adam(), memory=fip.memory)
    other.compile(optimizer=fresh, loss=sparse_ce(), jit_compile=JIT)
    with pytest.raises(ValueError, match="no model to run it through"):
        _fit(other, *task1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"beta": -0.1}, ValueError, "beta"),
        ({"beta": float("nan")}, ValueError, "beta"),
        ({"step_norm": float("inf")}, ValueError, "step_norm"),
        ({"step_norm": 0.0}, ValueError, "step_norm"),
        ({"step_norm": "big"}, TypeError, "step_norm"),
        ({"distance": "cosine"}, ValueError, "Unknown distance"),
        ({"reduction": "max"}, ValueError, "Unknown reduction"),
        ({"anchors": "task_end"}, ValueError, "Unknown anchors"),
        ({"memory_batch_size": 0}, ValueError, "memory_batch_size"),
        ({"memory": "mem"}, TypeError, "keras_fip.Memory"),
        ({"learning_rate": 0.1}, ValueError, "inner optimizer"),
    ],
)
def test_bad_arguments_are_explained(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_fip.FIPOptimizer(keras.optimizers.Adam(), **kwargs)


def test_inner_must_be_an_optimizer():
    with pytest.raises(TypeError, match="keras.optimizers.Optimizer"):
        keras_fip.FIPOptimizer("adam")
    with pytest.raises(ValueError, match="cannot wrap another"):
        keras_fip.FIPOptimizer(keras_fip.FIPOptimizer(keras.optimizers.Adam()))


def test_outputs_the_distance_cannot_use_are_explained():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    compile_fip(model)
    task0, _ = toy_tasks()
    with pytest.raises(ValueError, match="num_classes"):
        _fit(model, task0[0], task0[1] * 0.0,
             callbacks=[keras_fip.callbacks.TaskBoundary(0, task0[0])])


def test_get_config_round_trip():
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.SGD(0.1, momentum=0.9),
        memory=keras_fip.Memory(30, seed=4),
        beta=2.0, distance="kl", reduction="mean", from_logits=False,
        memory_batch_size=7, step_norm=0.01, anchors="stored",
    )
    config = fip.get_config()
    assert config["anchors"] == "stored"
    clone = keras_fip.FIPOptimizer.from_config(config)
    assert clone.get_config() == config
    via_keras = keras.optimizers.deserialize(keras.optimizers.serialize(fip))
    assert isinstance(via_keras, keras_fip.FIPOptimizer)
    assert via_keras.get_config() == config
    assert isinstance(clone.inner_optimizer, keras.optimizers.SGD)
    assert not clone.refresh_anchors


def test_keras_file_round_trip_resumes_with_the_memory(tmp_path):
    model, fip, task0, task1 = _two_tasks(inner=keras.optimizers.Adam(1e-2))
    _fit(model, *task1, callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)],
         epochs=1)
    path = str(tmp_path / "fip.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer
    assert isinstance(restored, keras_fip.FIPOptimizer)
    for a, b in zip(fip.memory.stored(), restored.memory.stored()):
        np.testing.assert_array_equal(a, b)
    assert int(as_numpy(restored.task_cycle.current_task)) == 1
    assert int(as_numpy(restored.iterations)) == int(
        as_numpy(fip.iterations)
    )
    # Both continue the same task identically: same memory, same anchors.
    for m in (model, loaded):
        _fit(m, *task1, callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)],
             epochs=1)
    for got, want in zip(_weights(loaded), _weights(model)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_loading_into_a_different_optimizer_fails_loudly():
    model, fip, _, _ = _two_tasks()
    store = {}
    fip.save_own_variables(store)
    other = keras_fip.FIPOptimizer(keras.optimizers.Adam())
    other.build(model.trainable_variables)
    with pytest.raises(ValueError, match="Cannot restore FIPOptimizer"):
        other.load_own_variables(store)
