"""The scale-free balances (`keras_fip.terms.balance`) and label keeping.

Each balance's step is checked against a direction formed by hand in
NumPy (float64) on a one-hidden-layer MLP: the task gradient of the batch's
mean cross-entropy, m = ∇ of the mean squared-L2 distance to the stored
anchors over the whole memory, combined as the term's docstring says, and
taken by SGD(1).
"""

import keras
import numpy as np
import pytest

import keras_fip
from conftest import BACKEND
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip import terms
from keras_fip.arrays import as_numpy
from keras_fip.callbacks import TaskBoundary
from keras_fip.callbacks import remember_task

JIT = BACKEND != "torch"
CAPACITY = 16


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gradients(params, x, d_logits_of):
    w1, b1, w2, b2 = params
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ w2 + b2
    d_logits = d_logits_of(logits)
    d_hidden = (d_logits @ w2.T) * (pre > 0)
    return [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_logits,
            d_logits.sum(0)]


def _flat(tensors):
    return np.concatenate([np.ravel(t) for t in tensors])


def _reference(params, x, y, memory_x, anchors):
    """(∇ mean CE, ∇ mean squared-L2 distance, the distance)."""
    def ce(logits):
        p = _softmax(logits)
        p[np.arange(len(y)), y] -= 1.0
        return p / len(y)

    def l2(logits):
        return 2.0 * (logits - anchors) / len(anchors)

    w1, b1, w2, b2 = params
    logits = np.maximum(memory_x @ w1 + b1, 0) @ w2 + b2
    distance = float(np.mean(np.sum((logits - anchors) ** 2, -1)))
    return (_flat(_gradients(params, x, ce)),
            _flat(_gradients(params, memory_x, l2)), distance)


class _Perturb(keras.callbacks.Callback):
    """Moves the weights off the anchor once the task has begun (the
    memory is anchored when `fit` starts), and records them."""

    def on_train_begin(self, logs=None):
        rng = np.random.default_rng(1)
        self.model.set_weights([
            w + 0.3 * rng.normal(size=w.shape).astype("float32")
            for w in self.model.get_weights()])
        self.before = [np.asarray(w, "float64")
                       for w in self.model.get_weights()]
        self.memory = self.model.optimizer.memory.stored()


def _one_step(balance, **settings):
    """Weights before and after one SGD(1) step of task 1, the memory."""
    (x0, y0), (x1, y1) = toy_tasks(n=64)
    model = make_mlp(hidden=(8,), inputs=8, classes=4)
    settings = {"distance": "squared_l2", "beta": 1.0, **settings}
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.SGD(1.0), memory=keras_fip.Memory(CAPACITY),
        memory_batch_size=CAPACITY, anchors="stored", balance=balance,
        **settings)
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    remember_task(model, 0, x0, y0)
    perturb = _Perturb()
    model.fit(x1, y1, batch_size=len(x1), epochs=1, shuffle=False,
              verbose=0, callbacks=[TaskBoundary(1, x1, y1), perturb])
    after = _flat(model.get_weights())
    inputs, _, _, anchors = perturb.memory
    grad, pull, distance = _reference(
        perturb.before, x1.astype("float64"), y1,
        np.asarray(inputs, "float64"), np.asarray(anchors, "float64"))
    return _flat(perturb.before) - after, grad, pull, distance, fip


def _close(step, want):
    np.testing.assert_allclose(step, want, rtol=2e-3,
                               atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_the_default_step_is_beta_task_plus_lambda_logit_pull(beta):
    """FIPOptimizer's default: class scores compared by the squared
    distance of their logits (distance="auto"), averaged over the memory
    batch, d = β ∇L + λ ∇D (λ = 1 by default)."""
    step, grad, pull, _, fip = _one_step("penalty", distance="auto",
                                         beta=beta)
    assert fip.invariance_term.protected[0].distance == "logit_l2"
    _close(step, beta * grad + pull)


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_relative_step_is_the_task_gradient_plus_a_pull_of_fixed_ratio(
        ratio):
    step, grad, pull, _, _ = _one_step("relative", ratio=ratio)
    scale = ratio * np.linalg.norm(grad) / np.linalg.norm(pull)
    _close(step, grad + scale * pull)
    # The pull's share of the step is the ratio, whatever the scales.
    assert np.linalg.norm(step - grad) == pytest.approx(
        ratio * np.linalg.norm(grad), rel=2e-3)


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_projected_step_removes_what_raises_the_distance(ratio):
    step, grad, pull, _, _ = _one_step("projected", ratio=ratio)
    overlap = min(0.0, grad @ pull) / (pull @ pull)
    want = grad - overlap * pull + \
        ratio * np.linalg.norm(grad) / np.linalg.norm(pull) * pull
    _close(step, want)
    # To first order, −step does not raise the distance.
    assert step @ pull >= -1e-6 * np.linalg.norm(step) * np.linalg.norm(pull)


def test_drift_bound_steps_with_its_multiplier_then_updates_it():
    step, grad, pull, distance, fip = _one_step(
        "bound", drift_bound=0.05)
    term = fip.invariance_term
    _close(step, grad + 0.1 * np.linalg.norm(grad) / np.linalg.norm(pull)
           * pull)
    # The perturbed network drifts beyond δ: λ grows by exp(η · clip(...)).
    excess = np.clip(distance / 0.05 - 1.0, -1.0, 1.0)
    assert excess > 0
    assert term.current_multiplier() == pytest.approx(
        0.1 * np.exp(0.05 * excess), rel=1e-4)


def test_drift_bound_multiplier_shrinks_inside_the_bound_and_restarts():
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-3),
                                 memory=keras_fip.Memory(CAPACITY),
                                 balance="bound", drift_bound=10.0)
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    for task_id, task in enumerate(toy_tasks()):
        model.fit(*task, batch_size=8, epochs=1, verbose=0,
                  callbacks=[TaskBoundary(task_id, *task)])
    term = fip.invariance_term
    # 4 steps of task 1, each well inside δ = 10: λ = 0.1 · exp(−0.05)^4.
    assert term.current_multiplier() == pytest.approx(
        0.1 * np.exp(-0.05 * 4), rel=1e-4)
    term.begin_task(fip, model, None)
    assert term.current_multiplier() == pytest.approx(0.1)


def _trained_with_loss_scale(balance, scale, **settings):
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-2, epsilon=1e-12),
        memory=keras_fip.Memory(CAPACITY), balance=balance,
        distance="bhattacharyya", **settings)
    loss = sparse_ce()
    model.compile(optimizer=fip, loss=lambda y, z: scale * loss(y, z),
                  jit_compile=JIT)
    for task_id, task in enumerate(toy_tasks()):
        model.fit(*task, batch_size=8, epochs=2, shuffle=False,
                  verbose=0, callbacks=[TaskBoundary(task_id, *task)])
    return _flat(model.get_weights())


@pytest.mark.parametrize("balance", ["relative", "projected", "bound"])
def test_a_scale_free_step_does_not_move_with_the_loss_scale(balance):
    """Scaling the task's loss by 100 scales d and the pull alike: with
    Adam, whose update is invariant to the direction's scale, the weights
    after training are the same (to float32 rounding, which Adam's tiny
    epsilon amplifies on near-zero gradients). The penalty step, whose
    balance is absolute, moves far more."""
    gap = np.abs(_trained_with_loss_scale(balance, 1.0)
                 - _trained_with_loss_scale(balance, 100.0)).max()
    assert gap < 1e-3
    penalty_gap = np.abs(
        _trained_with_loss_scale("penalty", 1.0, beta=0.1)
        - _trained_with_loss_scale("penalty", 100.0, beta=0.1)).max()
    # Measured: 30 to 200 times the scale-free gap on the three backends.
    assert penalty_gap > 10 * gap


@pytest.mark.parametrize("balance", ["relative", "projected", "bound"])
def test_a_balanced_fip_round_trips_through_a_keras_file(tmp_path, balance):
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = keras_fip.FIPOptimizer(keras.optimizers.Adam(1e-2),
                                 memory=keras_fip.Memory(CAPACITY),
                                 balance=balance, drift_bound=(
                                     0.001 if balance == "bound" else None))
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    tasks = toy_tasks()
    for task_id, task in enumerate(tasks):
        model.fit(*task, batch_size=8, epochs=1, verbose=0,
                  callbacks=[TaskBoundary(task_id, *task)])
    path = str(tmp_path / "balanced.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer
    assert restored.balance == balance
    assert restored.ratio == fip.ratio
    assert restored.drift_bound == fip.drift_bound
    assert restored.invariance_weight is None
    assert type(restored.invariance_term) is type(fip.invariance_term)
    if balance == "bound":
        assert restored.invariance_term.current_multiplier() == \
            pytest.approx(fip.invariance_term.current_multiplier())
        assert fip.invariance_term.current_multiplier() > 0.1
    # Both continue the same way.
    restored.bind(loaded)
    for m in (model, loaded):
        m.fit(*tasks[1], batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(_flat(loaded.get_weights()),
                               _flat(model.get_weights()), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("term", [
    terms.RelativeInvariance(weight=0.5, distance="kl", label_weight=1.0),
    terms.ProjectedInvariance(weight=0.0, heads=["out"]),
    terms.DriftBound(bound=0.1, rate=0.2, initial_multiplier=1.0,
                     multiplier_range=(0.5, 4.0)),
])
def test_balance_terms_round_trip_their_config(term):
    config = keras.saving.serialize_keras_object(term)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(term)
    assert again.get_config() == term.get_config()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"balance": "ratio"}, ValueError, "Unknown balance"),
    ({"balance": "relative", "invariance_weight": 0.3}, ValueError,
     "does not take"),
    ({"balance": "bound", "ratio": 1.0}, ValueError, "does not take"),
    ({"balance": "penalty", "drift_bound": 0.1}, ValueError,
     "does not take"),
    ({"balance": "relative", "reduction": "sum"}, ValueError,
     "does not take"),
    ({"balance": "relative", "ratio": -1.0}, ValueError, "weight"),
    ({"balance": "bound", "drift_bound": 0.0}, ValueError, "bound"),
    ({"balance": "bound", "label_weight": 1.0}, ValueError, "penalty step"),
    ({"balance": "relative", "label_weight": 1.0}, ValueError,
     "penalty step"),
    ({"label_weight": -0.5}, ValueError, "label_weight"),
])
def test_bad_balance_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_fip.FIPOptimizer(keras.optimizers.Adam(), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"multiplier_range": (0.0, 1.0)}, "0 < λ_min"),
    ({"multiplier_range": 3.0}, "pair"),
    ({"initial_multiplier": 200.0}, "outside"),
    ({"rate": 0.0}, "rate"),
])
def test_bad_drift_bound_arguments_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        terms.DriftBound(**kwargs)


def test_label_keeping_fip_adds_the_memory_label_loss():
    """With γ > 0 the penalty step is β (∇L + γ ∇CE_mem) + λ ∇D: the
    logged memory loss is λ D + β γ CE (β = 10), and at the anchor D = 0."""
    (x0, y0), (x1, y1) = toy_tasks(n=64)
    model = make_mlp(hidden=(8,), inputs=8, classes=4)
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.SGD(0.0), memory=keras_fip.Memory(CAPACITY),
        memory_batch_size=CAPACITY, label_weight=2.0)
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    remember_task(model, 0, x0, y0)
    inputs, labels, _, _ = fip.memory.stored()
    model.fit(x1, y1, batch_size=len(x1), epochs=1, verbose=0,
              callbacks=[TaskBoundary(1, x1, y1)])
    ce = float(np.mean(as_numpy(keras.losses.sparse_categorical_crossentropy(
        labels, model.predict(inputs, verbose=0), from_logits=True))))
    assert float(as_numpy(fip.invariance_loss)) == pytest.approx(
        10.0 * 2.0 * ce, rel=1e-4)


def test_label_keeping_needs_labelled_memory():
    (x0, _), (x1, y1) = toy_tasks(n=64)
    model = make_mlp(hidden=(8,), inputs=8, classes=4)
    fip = keras_fip.FIPOptimizer(keras.optimizers.Adam(),
                                 memory=keras_fip.Memory(CAPACITY),
                                 label_weight=1.0)
    model.compile(optimizer=fip, loss=sparse_ce(), jit_compile=JIT)
    remember_task(model, 0, x0)  # no labels: a reservoir memory
    with pytest.raises(ValueError, match="unlabelled"):
        model.fit(x1, y1, epochs=1, verbose=0,
                  callbacks=[TaskBoundary(1, x1, y1)])


def test_label_keeping_needs_one_class_head():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, {"a": keras.layers.Dense(4)(hidden),
                                 "b": keras.layers.Dense(1)(hidden)})
    fip = keras_fip.FIPOptimizer(keras.optimizers.Adam(),
                                 memory=keras_fip.Memory(CAPACITY),
                                 label_weight=1.0)
    model.compile(optimizer=fip, loss={"a": sparse_ce(), "b": "mse"},
                  jit_compile=JIT)
    (x0, y0), _ = toy_tasks(n=64)
    y = {"a": y0, "b": np.zeros((len(y0), 1), "float32")}
    with pytest.raises(ValueError, match="one class-score output"):
        model.fit(x0, y, epochs=1, verbose=0,
                  callbacks=[TaskBoundary(0, x0, y)])
        remember_task(model, 1, x0, y)


def _as_saved_by_0_6(config):
    """A config as keras_fip 0.6 wrote it: no balance, label weight, class
    distance or invariance weight."""
    for key in ("balance", "ratio", "drift_bound", "label_weight",
                "class_distance", "invariance_weight"):
        config.pop(key)
    return config


def test_configs_of_0_6_load_with_the_settings_they_were_saved_with():
    saved = keras_fip.FIPOptimizer(keras.optimizers.Adam(),
                                   reduction="sum").get_config()
    saved["invariance_weight"] = 0.5  # (dropped below, as 0.6 had none)
    loaded = keras_fip.FIPOptimizer.from_config(_as_saved_by_0_6(saved))
    assert loaded.balance == "penalty" and loaded.reduction == "sum"
    assert loaded.class_distance == "bhattacharyya"
    assert loaded.invariance_weight == 1.0 and loaded.beta == 10.0
    term = keras.saving.deserialize_keras_object(
        {"class_name": "Invariance", "module": "keras_fip.terms.invariance",
         "config": {"distance": "auto", "reduction": "sum"},
         "registered_name": "keras_fip>Invariance"})
    assert term.class_distance == "bhattacharyya"


def test_the_default_of_0_5_is_kept_by_name_and_round_trips():
    old = keras_fip.FIPOptimizer.default_of_0_5(keras.optimizers.Adam())
    assert (old.balance, old.beta, old.reduction, old.class_distance,
            old.invariance_weight) == ("penalty", 0.3, "sum",
                                       "bhattacharyya", 1.0)
    again = keras_fip.FIPOptimizer.from_config(old.get_config())
    assert (again.reduction, again.class_distance, again.invariance_weight) \
        == ("sum", "bhattacharyya", 1.0)
    new = keras_fip.FIPOptimizer(keras.optimizers.Adam())
    assert (new.reduction, new.class_distance, new.invariance_weight) == (
        "mean", "logit_l2", 1.0)
    with pytest.raises(ValueError, match="class_distance"):
        keras_fip.FIPOptimizer(keras.optimizers.Adam(),
                               class_distance="squared_l2")
