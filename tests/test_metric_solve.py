"""The exact FIP step: conjugate gradient on (g + μI) inside the train step."""

import keras
import numpy as np
import pytest

import keras_fip
from conftest import BACKEND
from conftest import make_mlp
from conftest import sparse_ce
from keras_fip import backend as fip_backend
from keras_fip import terms
from keras_fip.arrays import as_numpy
from test_geometry import _explicit

JIT = BACKEND != "torch"
RNG = np.random.default_rng(0)
X_MEMORY = RNG.normal(size=(4, 2)).astype("float32")
Y_MEMORY = np.array([0, 1, 0, 1])
X_NEW = RNG.normal(size=(6, 2)).astype("float32")
Y_NEW = np.arange(6) % 2


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays]).astype("float64")


def _gradient(model, x, y):
    loss_fn = sparse_ce()

    def loss(values):
        out, _ = model.stateless_call(values, [], x, training=False)
        return loss_fn(y, out)

    _, grads = fip_backend.value_and_grad(
        loss, [w.value for w in model.trainable_variables])
    return _flat([as_numpy(g) for g in grads])


def _one_exact_step(solve, epsilon):
    """(weights before, weights after, metric, gradient, term) of one step."""
    model = make_mlp(hidden=(3,), inputs=2, classes=2, seed=3)
    chain = [solve] + ([] if epsilon is None else
                       [terms.StepNorm(epsilon, mode="clip")])
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(1.0), terms=chain,
        memory=keras_fip.Memory(4), memory_batch_size=4)
    model.compile(optimizer=optimizer, loss=sparse_ce(), jit_compile=JIT)
    keras_fip.callbacks.remember_task(model, 0, X_MEMORY, Y_MEMORY)
    before = _flat([as_numpy(w) for w in model.trainable_variables])
    metric = _explicit(model, X_MEMORY, solve.metric)
    if solve.reduction == "mean":
        metric /= len(X_MEMORY)
    gradient = _gradient(model, X_NEW, Y_NEW)
    model.fit(X_NEW, Y_NEW, batch_size=6, epochs=1, shuffle=False,
              verbose=0, callbacks=[keras_fip.callbacks.TaskBoundary(
                  1, X_NEW, Y_NEW)])
    after = _flat([as_numpy(w) for w in model.trainable_variables])
    return before, after, metric, gradient, solve


@pytest.mark.large
@pytest.mark.parametrize("metric", ["logit", "fisher"])
def test_the_exact_step_is_the_closed_form_solution(metric):
    # 17 weights: 20 CG iterations solve the system to float precision.
    solve = terms.MetricSolve(damping=0.1, iterations=20, metric=metric,
                              tolerance=1e-6)
    before, after, g, grad, _ = _one_exact_step(solve, epsilon=None)
    want = -np.linalg.solve(g + 0.1 * np.eye(len(g)), grad)
    np.testing.assert_allclose(after - before, want, rtol=1e-3,
                               atol=1e-4 * np.abs(want).max())
    # The step moves the outputs less than the plain gradient step of the
    # same length would: θᵀgθ/‖θ‖² < ∇Lᵀg∇L/‖∇L‖².
    step = after - before
    assert step @ g @ step / (step @ step) < grad @ g @ grad / (grad @ grad)


@pytest.mark.large
def test_the_cg_residual_falls_below_its_tolerance():
    solve = terms.MetricSolve(damping=0.5, iterations=25, tolerance=1e-3)
    before, after, g, grad, term = _one_exact_step(solve, epsilon=None)
    assert term.residual() <= 1e-3
    # The true residual of the solution the step took, not only CG's own.
    s = before - after
    true = np.linalg.norm((g + 0.5 * np.eye(len(g))) @ s - grad)
    assert true / np.linalg.norm(grad) <= 2e-3


def test_a_small_budget_leaves_a_residual_it_reports():
    solve = terms.MetricSolve(damping=1e-3, iterations=1, tolerance=1e-8)
    *_, term = _one_exact_step(solve, epsilon=None)
    assert term.residual() > 1e-8


@pytest.mark.large
def test_the_trust_region_clips_the_exact_step_to_epsilon():
    solve = terms.MetricSolve(damping=0.1, iterations=20, tolerance=1e-6)
    before, after, g, grad, _ = _one_exact_step(solve, epsilon=0.05)
    free = -np.linalg.solve(g + 0.1 * np.eye(len(g)), grad)
    assert np.linalg.norm(free) > 0.05  # the constraint is active
    step = after - before
    assert np.linalg.norm(step) <= 0.05 * (1 + 1e-5)
    np.testing.assert_allclose(step, 0.05 * free / np.linalg.norm(free),
                               rtol=1e-3, atol=1e-6)


@pytest.mark.large
def test_a_short_direction_is_left_inside_the_trust_region():
    solve = terms.MetricSolve(damping=0.1, iterations=20, tolerance=1e-6)
    before, after, g, grad, _ = _one_exact_step(solve, epsilon=1e3)
    want = -np.linalg.solve(g + 0.1 * np.eye(len(g)), grad)
    np.testing.assert_allclose(after - before, want, rtol=1e-3,
                               atol=1e-4 * np.abs(want).max())


def test_warm_start_keeps_the_last_solution_and_round_trips(tmp_path):
    solve = terms.MetricSolve(damping=0.1, iterations=3, warm_start=True)
    before, after, *_ = _one_exact_step(solve, epsilon=None)
    kept = _flat([as_numpy(v) for v in solve._previous])
    np.testing.assert_allclose(kept, before - after, rtol=1e-5, atol=1e-7)


def test_without_an_anchored_memory_the_step_is_the_inner_optimizers():
    model = make_mlp(hidden=(3,), inputs=2, classes=2, seed=3)
    plain = make_mlp(hidden=(3,), inputs=2, classes=2, seed=3)
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), terms=[terms.MetricSolve(1e-3)],
        memory=keras_fip.Memory(4)), loss=sparse_ce(), jit_compile=JIT)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), loss=sparse_ce(),
                  jit_compile=JIT)
    for m in (model, plain):
        m.fit(X_NEW, Y_NEW, batch_size=6, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, plain.trainable_variables):
        np.testing.assert_allclose(as_numpy(a), as_numpy(b), rtol=1e-6)


def test_a_fip_with_the_exact_step_survives_a_keras_file(tmp_path):
    solve = terms.MetricSolve(damping=0.3, iterations=4, metric="fisher",
                              reduction="sum", tolerance=1e-5)
    model = make_mlp(hidden=(3,), inputs=2, classes=2, seed=3)
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), memory=keras_fip.Memory(4),
        terms=[solve, terms.StepNorm(0.2, mode="clip")]),
        loss=sparse_ce(), jit_compile=JIT)
    keras_fip.callbacks.remember_task(model, 0, X_MEMORY, Y_MEMORY)
    model.fit(X_NEW, Y_NEW, epochs=1, verbose=0, callbacks=[
        keras_fip.callbacks.TaskBoundary(1, X_NEW, Y_NEW)])
    path = str(tmp_path / "exact.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer.find_term(terms.MetricSolve)
    assert restored.get_config() == solve.get_config()
    clip = loaded.optimizer.find_term(terms.StepNorm)
    assert clip.mode == "clip" and clip.current() == pytest.approx(0.2)
    assert restored.residual() == pytest.approx(solve.residual())


@pytest.mark.parametrize("kwargs, message", [
    ({"damping": 0.0}, "damping"),
    ({"damping": -1.0}, "damping"),
    ({"iterations": 0}, "iterations"),
    ({"iterations": 2.5}, "iterations"),
    ({"metric": "hessian"}, "Unknown metric"),
    ({"reduction": "max"}, "Unknown reduction"),
    ({"tolerance": 0.0}, "tolerance"),
])
def test_bad_arguments_are_explained(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        terms.MetricSolve(**kwargs)


def test_a_bad_trust_region_mode_is_explained():
    with pytest.raises(ValueError, match="Unknown StepNorm mode"):
        terms.StepNorm(0.1, mode="project")


def test_the_exact_step_needs_a_memory():
    model = make_mlp(hidden=(3,), inputs=2, classes=2)
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), terms=[terms.MetricSolve()]),
        loss=sparse_ce())
    with pytest.raises(ValueError, match="needs the optimizer to have"):
        model.fit(X_NEW, Y_NEW, verbose=0)


def test_fip_with_damping_is_the_exact_step_preset(tmp_path):
    fip = keras_fip.FIPOptimizer(keras.optimizers.SGD(1.0),
                                 memory=keras_fip.Memory(4),
                                 memory_batch_size=4, damping=0.1,
                                 distance="squared_l2", reduction="mean",
                                 solver_iterations=20, step_norm=1e3)
    kinds = [type(t).__name__ for t in fip.terms]
    assert kinds == ["ScaleGradient", "Invariance", "MetricSolve", "StepNorm"]
    solve = fip.find_term(terms.MetricSolve)
    assert (solve.metric, solve.reduction) == ("logit", "mean")
    assert fip.find_term(terms.StepNorm).mode == "clip"
    config = fip.get_config()
    assert (config["damping"], config["metric"],
            config["solver_iterations"]) == (0.1, "logit", 20)
    again = keras_fip.FIPOptimizer.from_config(config)
    assert again.find_term(terms.MetricSolve).get_config() == \
        solve.get_config()
    # A config written before the exact step existed stays a penalty step.
    old = {k: v for k, v in config.items()
           if k not in ("damping", "metric", "solver_iterations")}
    assert keras_fip.FIPOptimizer.from_config(old).find_term(
        terms.MetricSolve) is None


def test_the_exact_step_metric_follows_the_distance():
    def metric_of(**kwargs):
        fip = keras_fip.FIPOptimizer(keras.optimizers.SGD(), damping=1.0,
                                     **kwargs)
        return fip.find_term(terms.MetricSolve).metric

    assert metric_of(distance="bhattacharyya") == "fisher"
    assert metric_of(distance="kl") == "fisher"
    assert metric_of(distance="squared_l2") == "logit"
    assert metric_of(distance="kl", metric="logit") == "logit"
    penalty = keras_fip.FIPOptimizer(keras.optimizers.SGD(), step_norm=0.1)
    assert penalty.find_term(terms.MetricSolve) is None
    assert penalty.find_term(terms.StepNorm).mode == "rescale"
