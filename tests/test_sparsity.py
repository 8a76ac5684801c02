"""Sparsification along an FIP: target, schedules, step length, saving."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip import sparsity
from keras_fip.arrays import as_numpy

JIT = "auto"


def _trained_model():
    (xa, ya), (xb, yb) = toy_tasks(n=128)
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    model = make_mlp(hidden=(32,), inputs=8, classes=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=sparse_ce())
    model.fit(x, y, epochs=5, verbose=0)
    return model, x, y


def _kernels(model):
    return [as_numpy(v) for v in model.trainable_variables
            if v.path.endswith("kernel")]


@pytest.mark.parametrize("scope", ["global", "per_variable"])
def test_target_has_the_requested_sparsity(scope):
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(30, 20)).astype("float32"),
              5 * rng.normal(size=(20, 7)).astype("float32")]
    limits = as_numpy(sparsity.thresholds(values, 0.7, scope))
    pruned = [np.abs(v) < t for v, t in zip(values, limits)]
    if scope == "global":
        total = sum(v.size for v in values)
        assert sum(p.sum() for p in pruned) == int(0.7 * total)
        assert pruned[0].mean() > pruned[1].mean()  # smaller weights go first
    else:
        for p, v in zip(pruned, values):
            assert p.sum() == int(0.7 * v.size)
    assert (as_numpy(sparsity.thresholds(values, 0.0, scope))
            == [np.abs(v).min() for v in values]).all() or scope == "global"


def test_one_shot_pruning_and_report():
    model, _, _ = _trained_model()
    biases = [as_numpy(v) for v in model.trainable_variables
              if v.path.endswith("bias")]
    report = sparsity.prune_low_magnitude(model, 0.8)
    assert report["overall"] == pytest.approx(
        int(0.8 * report["size"]) / report["size"])
    assert set(report["variables"]) == {
        v.path for v in model.trainable_variables if v.path.endswith("kernel")}
    for v, b in zip([v for v in model.trainable_variables
                     if v.path.endswith("bias")], biases):
        np.testing.assert_array_equal(as_numpy(v), b)
    per = sparsity.prune_low_magnitude(model, 0.9, scope="per_variable")
    for row in per["variables"].values():
        assert row["sparsity"] >= 0.9 - 1 / row["size"]


def test_sparse_fip_steps_have_length_eps_and_close_the_gap():
    model, x, y = _trained_model()
    target = sparsity.SparseTarget(0.8, weight=0.1)
    fip = keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(learning_rate=1.0), memory=keras_fip.Memory(64),
        step_norm=0.01, beta=0.0, memory_batch_size=16, sparse_target=target)
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    keras_fip.callbacks.remember_task(model, 0, x, y)
    before = [as_numpy(v) for v in model.trainable_variables]
    model.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, x, y)])
    after = [as_numpy(v) for v in model.trainable_variables]
    step = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    np.testing.assert_allclose(step, 0.01, rtol=1e-3)
    first_gap = float(as_numpy(target.gap))
    # The first step is taken at the anchor, where D = 0.
    assert float(as_numpy(fip.invariance_loss)) == pytest.approx(0.0,
                                                                 abs=1e-6)
    model.fit(x, y, batch_size=16, epochs=40, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(1, x, y)])
    assert float(as_numpy(target.gap)) < 0.5 * first_gap
    assert float(as_numpy(fip.invariance_loss)) > 0  # D active on the walk
    assert float(as_numpy(target.sparsity)) == pytest.approx(0.8)


@pytest.mark.large
def test_pruning_stop_hard_mask_and_saved_zeros(tmp_path):
    model, x, y = _trained_model()
    schedule = sparsity.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=40)
    fip = keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(learning_rate=1.0), memory=keras_fip.Memory(64),
        step_norm=0.05, memory_batch_size=16,
        sparse_target=sparsity.SparseTarget(schedule, weight=1.0))
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    keras_fip.callbacks.remember_task(model, 0, x, y)
    stop = keras_fip.callbacks.PruningStop(tolerance=0.3)
    history = model.fit(x, y, batch_size=32, epochs=200, verbose=0,
                        callbacks=[stop, keras_fip.callbacks.TaskBoundary(
                            1, x, y)])
    assert stop.stopped_epoch is not None and stop.stopped_epoch < 199
    assert history.history["sparse_gap"][-1] < 0.3
    report = sparsity.make_pruning_permanent(model)
    assert report["overall"] >= 0.9 - 1 / report["size"]
    path = str(tmp_path / "sparse.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    zeros = sum(int((k == 0).sum()) for k in _kernels(loaded))
    assert zeros == report["zeros"]
    restored = loaded.optimizer.find_term(sparsity.SparseTarget)
    assert isinstance(restored.schedule, sparsity.PolynomialDecay)
    assert restored.schedule.final_sparsity == 0.9
    np.testing.assert_allclose(
        as_numpy(restored.threshold),
        as_numpy(fip.find_term(sparsity.SparseTarget).threshold))


def _drift(model, x, anchor):
    """Mean total-variation distance of the softmax outputs from `anchor`."""
    p = as_numpy(ops.softmax(model.predict(x, verbose=0)))
    q = as_numpy(ops.softmax(anchor))
    return float(0.5 * np.abs(p - q).sum(axis=1).mean())


def test_hard_mask_step_walks_an_fip_inside_the_sparse_subspace(tmp_path):
    model, x, y = _trained_model()
    anchor = model.predict(x, verbose=0)
    target = sparsity.SparseTarget(
        sparsity.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=10),
        weight=1.0, hard_mask_step=15)
    fip = keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(learning_rate=1.0), memory=keras_fip.Memory(256),
        step_norm=0.05, beta=0.0, memory_batch_size=64, sparse_target=target)
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    keras_fip.callbacks.remember_task(model, 0, x, y)
    # One step per epoch: steps 0..15, the last one cuts.
    model.fit(x[:32], y[:32], batch_size=32, epochs=16, verbose=0)
    kernels = {i for i, v in enumerate(model.trainable_variables)
               if v.path.endswith("kernel")}
    assert fip._old_value_indices() == kernels  # no copies of the biases
    total = sum(k.size for k in _kernels(model))
    mask = [k == 0 for k in _kernels(model)]
    assert sum(int(m.sum()) for m in mask) == int(0.8 * total)
    assert float(as_numpy(target.gap)) > 0  # the cut's residual
    at_cut = _drift(model, x, anchor)
    before = [as_numpy(v) for v in model.trainable_variables]
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    after = [as_numpy(v) for v in model.trainable_variables]
    step = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    np.testing.assert_allclose(step, 0.05, rtol=1e-3)  # all of ε is used
    model.fit(x[:32], y[:32], batch_size=32, epochs=40, verbose=0)
    for k, m in zip(_kernels(model), mask):
        np.testing.assert_array_equal(k == 0, m)  # the same zeros, exactly
    assert float(as_numpy(target.gap)) == 0
    assert _drift(model, x, anchor) < 0.7 * at_cut  # D restores the outputs
    path = str(tmp_path / "hard.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer.find_term(sparsity.SparseTarget)
    assert restored.hard_mask_step == 15
    assert float(as_numpy(restored.phase)) == 2.0
    for k, m in zip(_kernels(loaded), mask):
        np.testing.assert_array_equal(k == 0, m)


def test_masked_fine_tuning_keeps_zeros():
    model, x, y = _trained_model()
    sparsity.prune_low_magnitude(model, 0.7)
    zeros = [k == 0 for k in _kernels(model)]
    before = _kernels(model)
    model.compile(optimizer=sparsity.MaskedOptimizer(
        keras.optimizers.Adam(1e-2)), loss=sparse_ce(), jit_compile=JIT)
    model.fit(x, y, epochs=3, verbose=0)
    for k, z, b in zip(_kernels(model), zeros, before):
        assert (k[z] == 0).all()
        assert not np.allclose(k[~z], b[~z])
    config = model.optimizer.get_config()
    clone = sparsity.MaskedOptimizer.from_config(config)
    assert clone.prune is None


def test_schedules_follow_tfmot():
    poly = sparsity.PolynomialDecay(0.2, 0.8, begin_step=10, end_step=20,
                                    frequency=5)
    values = [float(as_numpy(poly.sparsity(t)))
              for t in (0, 10, 15, 20, 99)]
    np.testing.assert_allclose(values, [0.2, 0.2, 0.8 - 0.6 * 0.125, 0.8,
                                        0.8], rtol=1e-6)
    beats = [bool(as_numpy(poly.should_update(t)))
             for t in (5, 10, 12, 15, 20)]
    assert beats == [False, True, False, True, True]
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(poly))
    assert again.get_config() == poly.get_config()
    assert isinstance(sparsity.schedules.get(0.5), sparsity.ConstantSparsity)


@pytest.mark.parametrize("make, error, match", [
    (lambda: sparsity.SparseTarget(1.0), ValueError, r"\[0, 1\)"),
    (lambda: sparsity.SparseTarget(-0.1), ValueError, r"\[0, 1\)"),
    (lambda: sparsity.SparseTarget("most"), TypeError, "sparsity"),
    (lambda: sparsity.SparseTarget(0.5, weight=-1), ValueError, "weight"),
    (lambda: sparsity.SparseTarget(0.5, scope="layer"), ValueError, "scope"),
    (lambda: sparsity.SparseTarget(0.5, prune=[]), ValueError, "prune"),
    (lambda: sparsity.PolynomialDecay(0.1, 0.9, begin_step=100, end_step=50),
     ValueError, "end_step"),
    (lambda: sparsity.SparseTarget(sparsity.PolynomialDecay(
        0.0, 0.9, begin_step=0, end_step=100), hard_mask_step=50),
     ValueError, "final sparsity"),
    (lambda: sparsity.SparseTarget(0.5, hard_mask_step=-1), ValueError,
     "hard_mask_step"),
    (lambda: sparsity.ConstantSparsity(0.5, frequency=0), ValueError,
     "frequency"),
    (lambda: sparsity.prune_low_magnitude(make_mlp(), 1.5), ValueError,
     r"\[0, 1\)"),
    (lambda: keras_fip.callbacks.PruningStop(0), ValueError, "tolerance"),
    (lambda: keras_fip.FIPOptimizer.default_of_0_5(keras.optimizers.SGD(),
                                    sparse_target=0.9), TypeError,
     "SparseTarget"),
])
def test_bad_settings_are_explained(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_pattern_matching_nothing_is_explained():
    model, x, y = _trained_model()
    with pytest.raises(ValueError, match="no variable path matching"):
        sparsity.prune_low_magnitude(model, 0.5, prune="*conv*")
    fip = keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(), sparse_target=sparsity.SparseTarget(
            0.5, prune=["*attention*/kernel"]))
    model.compile(optimizer=fip, loss=sparse_ce())
    with pytest.raises(ValueError, match="Nothing to prune"):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="needs `sparsity`"):
        sparsity.make_pruning_permanent(make_mlp())
