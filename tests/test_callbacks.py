import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from conftest import compile_fip
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip.arrays import as_numpy


def _model():
    return make_mlp(hidden=(16,), inputs=8, classes=4)


def test_accuracy_matrix_rows_and_history_logs():
    task0, task1 = toy_tasks()
    model = _model()
    compile_fip(model, inner=keras.optimizers.Adam(1e-2))
    matrix = keras_fip.callbacks.AccuracyMatrix([task0, task1])
    histories = []
    for t, task in enumerate((task0, task1)):
        h = model.fit(*task, epochs=3, batch_size=4, verbose=0, callbacks=[
            keras_fip.callbacks.TaskBoundary(t, *task), matrix])
        histories.append(h.history)
    R = matrix.matrix
    assert R.shape == (2, 2)
    assert "accuracy_task_0" in histories[0]
    assert "accuracy_task_1" not in histories[0]
    assert len(histories[1]["accuracy_task_1"]) == 3
    # The logged value at the last epoch is the matrix entry.
    assert histories[1]["accuracy_task_0"][-1] == pytest.approx(R[1, 0])
    assert R[0, 0] > 0.9


def test_accuracy_matrix_needs_tasks():
    with pytest.raises(ValueError, match="at least one task"):
        keras_fip.callbacks.AccuracyMatrix([])


def test_path_recorder_measures_distance_length_and_drift():
    task0, task1 = toy_tasks()
    model = _model()
    compile_fip(model, inner=keras.optimizers.Adam(1e-2))
    path = keras_fip.callbacks.PathRecorder(
        every_n_steps=2, every_n_epochs=1, eval_data=[task0, task1],
        keep_weights=True,
    )
    for t, task in enumerate((task0, task1)):
        h = model.fit(*task, epochs=2, batch_size=8, verbose=0, callbacks=[
            keras_fip.callbacks.TaskBoundary(t, *task), path])
    records = path.records
    assert records[0]["distance"] == 0.0 and records[0]["step"] == 0
    assert records[-1]["step"] == 16  # 2 tasks × 2 epochs × 4 steps
    lengths = [r["length"] for r in records]
    assert all(b >= a for a, b in zip(lengths, lengths[1:]))
    assert records[-1]["length"] >= records[-1]["distance"] > 0
    # No protected memory during the first fit, then a finite drift.
    assert np.isnan(records[1]["drift"])
    assert np.isfinite(records[-1]["drift"])
    assert len(records[-1]["accuracy"]) == 2
    assert "path_distance" in h.history and len(path.weights) == len(records)
    final = np.concatenate(
        [as_numpy(v).ravel() for v in model.trainable_variables]
    )
    np.testing.assert_allclose(path.weights[-1], final, rtol=1e-6)


def _metric_setup():
    model = make_mlp(hidden=(5,), inputs=3, classes=4, seed=1)
    protected = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    return model, protected


def _flat(model):
    return np.concatenate(
        [as_numpy(v).ravel() for v in model.trainable_variables]
    ).astype("float64")


@pytest.mark.parametrize("metric", ["logit", "fisher"])
def test_path_recorder_metric_length_is_the_formed_metric_norm(metric):
    from test_geometry import _explicit

    model, protected = _metric_setup()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.integers(0, 4, size=16)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=sparse_ce())
    w0, g0 = _flat(model), _explicit(model, protected, metric)
    path = keras_fip.callbacks.PathRecorder(
        every_n_steps=1, every_n_epochs=None, metric_inputs=protected,
        metric=metric, subspace_k=3)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[path])
    move = _flat(model) - w0
    first, moved = path.records
    assert first["metric_increment"] == 0.0
    assert np.isnan(first["subspace_share"])
    want = np.sqrt(move @ g0 @ move)
    assert want > 0
    assert moved["metric_increment"] == pytest.approx(want, rel=1e-4)
    assert moved["metric_length"] == pytest.approx(want, rel=1e-4)
    # The share of the move in the span of g0's top-3 eigenvectors.
    _, vectors = np.linalg.eigh(g0)
    top = vectors[:, -3:]
    share = np.sum((top.T @ move) ** 2) / (move @ move)
    assert 0 <= moved["subspace_share"] <= 1
    assert moved["subspace_share"] == pytest.approx(share, rel=1e-3,
                                                    abs=1e-6)
    assert moved["top_eigenvalue"] == pytest.approx(
        np.linalg.eigvalsh(_explicit(model, protected, metric))[-1],
        rel=1e-4)


def test_path_recorder_share_is_one_inside_the_top_subspace_and_adds_up():
    from test_geometry import _explicit

    model, protected = _metric_setup()
    path = keras_fip.callbacks.PathRecorder(
        metric_inputs=protected, metric="fisher", subspace_k=2)
    path.set_model(model)
    path.record()
    w0 = _flat(model)
    values, vectors = np.linalg.eigh(_explicit(model, protected, "fisher"))
    inside = 0.3 * vectors[:, -1] - 0.2 * vectors[:, -2]
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    model.set_weights(keras_fip.geometry.unflatten(w0 + inside, shapes))
    entry = path.record()
    assert entry["subspace_share"] == pytest.approx(1.0, abs=1e-4)
    want = np.sqrt(0.09 * values[-1] + 0.04 * values[-2])
    assert entry["metric_increment"] == pytest.approx(want, rel=1e-4)
    # A move orthogonal to the top-2 eigenvectors of g here has share 0.
    _, here = np.linalg.eigh(_explicit(model, protected, "fisher"))
    outside = 0.1 * here[:, 0]
    model.set_weights(
        keras_fip.geometry.unflatten(w0 + inside + outside, shapes))
    last = path.record()
    assert last["subspace_share"] == pytest.approx(0.0, abs=1e-4)
    assert last["metric_length"] == pytest.approx(
        entry["metric_increment"] + last["metric_increment"])


def test_path_recorder_rejects_bad_metric_arguments():
    with pytest.raises(ValueError, match="Unknown metric"):
        keras_fip.callbacks.PathRecorder(metric="hessian")
    with pytest.raises(ValueError, match="Unknown reduction"):
        keras_fip.callbacks.PathRecorder(reduction="max")
    with pytest.raises(ValueError, match="needs `metric_inputs`"):
        keras_fip.callbacks.PathRecorder(subspace_k=3)
    with pytest.raises(ValueError, match="`subspace_k` must be a positive"):
        keras_fip.callbacks.PathRecorder(metric_inputs=np.zeros((2, 3)),
                                         subspace_k=0)


def test_path_recorder_rejects_bad_intervals():
    with pytest.raises(ValueError, match="every_n_steps"):
        keras_fip.callbacks.PathRecorder(every_n_steps=0)


def test_task_boundary_rejects_labels_outside_the_head():
    task0, _ = toy_tasks()
    model = _model()
    compile_fip(model)
    bad = (task0[0], task0[1] + 4)
    with pytest.raises(ValueError, match="outside the model's 4-way head"):
        model.fit(*bad, epochs=1, verbose=0, callbacks=[
            keras_fip.callbacks.TaskBoundary(0, *bad)])


def test_task_boundary_needs_an_fip_optimizer():
    task0, _ = toy_tasks()
    model = _model()
    model.compile(optimizer="adam", loss=sparse_ce())
    with pytest.raises(ValueError, match="Compile with optimizer=keras_fip"):
        model.fit(*task0, epochs=1, verbose=0, callbacks=[
            keras_fip.callbacks.TaskBoundary(0, *task0)])


def test_task_boundary_rejects_bad_task_id():
    with pytest.raises(ValueError, match="task_id"):
        keras_fip.callbacks.TaskBoundary(-1, np.zeros((2, 8)))


def test_resuming_a_task_keeps_the_anchor():
    task0, task1 = toy_tasks()
    model = _model()
    fip = compile_fip(model, inner=keras.optimizers.Adam(1e-2))
    model.fit(*task0, epochs=2, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(0, *task0)])
    model.fit(*task1, epochs=1, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)])
    anchors = fip.memory.stored()[3].copy()
    boundary = keras_fip.callbacks.TaskBoundary(1, *task1)
    boundary.set_model(model)
    boundary.on_train_begin()  # same task again: no re-anchoring
    np.testing.assert_array_equal(fip.memory.stored()[3], anchors)
    keras_fip.callbacks.TaskBoundary(2, *task1).set_model(model)
    nxt = keras_fip.callbacks.TaskBoundary(2, *task1)
    nxt.set_model(model)
    nxt.on_train_begin()  # a new task re-anchors on the current network
    assert int(as_numpy(fip.task_cycle.current_task)) == 2


def test_first_task_without_boundary_then_with_one_retraces():
    # The step traced before the memory existed must pick the memory up.
    task0, task1 = toy_tasks()
    model = _model()
    fip = compile_fip(model, inner=keras.optimizers.Adam(1e-2))
    model.fit(*task0, epochs=2, verbose=0)
    fip.memory.build(model, task0[0])
    fip.memory.add(*task0)
    # Two epochs: D is 0 at the anchor, where the first step is taken.
    model.fit(*task1, epochs=2, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)])
    assert float(as_numpy(fip.invariance_loss)) > 0.0


def test_remember_task_anchors_a_network_trained_before_fip():
    task0, task1 = toy_tasks()
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=sparse_ce())
    model.fit(*task0, epochs=20, verbose=0)  # trained without keras_fip
    finetuned = keras.models.clone_model(model)
    finetuned.set_weights(model.get_weights())
    fip = compile_fip(model, inner=keras.optimizers.Adam(1e-2))
    keras_fip.callbacks.remember_task(model, 0, *task0)
    inputs, labels, tasks, anchors = fip.memory.stored()
    assert len(labels) == len(task0[1]) and (tasks == 0).all()
    # Anchored to the network as it is now, before any FIP step.
    np.testing.assert_allclose(anchors, as_numpy(model(inputs)),
                               rtol=1e-5, atol=1e-5)
    model.fit(*task1, epochs=20, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, *task1)])
    assert float(as_numpy(fip.invariance_loss)) != 0.0
    finetuned.compile(optimizer=keras.optimizers.Adam(1e-2), loss=sparse_ce())
    finetuned.fit(*task1, epochs=20, verbose=0)
    def drift(network):  # probability movement on task 0's inputs
        now = as_numpy(ops.softmax(network(inputs)))
        return np.abs(now - as_numpy(ops.softmax(anchors))).mean()

    assert drift(model) < 0.5 * drift(finetuned), (drift(model),
                                                   drift(finetuned))
    assert keras_fip.evaluation.accuracy(model, *task0) >= (
        keras_fip.evaluation.accuracy(finetuned, *task0))


def test_remember_task_needs_a_continual_optimizer():
    task0, _ = toy_tasks()
    model = _model()
    model.compile(optimizer="adam", loss=sparse_ce())
    with pytest.raises(ValueError, match="Compile with optimizer=keras_fip"):
        keras_fip.callbacks.remember_task(model, 0, *task0)
