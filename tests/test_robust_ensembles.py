"""Attacks, PathEnsemble and the diversity terms, on each backend."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from conftest import make_mlp
from conftest import sparse_ce
from keras_fip import attacks
from keras_fip.ensembles import PathEnsemble
from keras_fip.terms import AdversarialOutputDiversity
from keras_fip.terms import AwayFromStart


def _tiny(seed=0, hidden=5):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)),
                             keras.layers.Dense(hidden, activation="tanh"),
                             keras.layers.Dense(4)])


def _np_cross_entropy(model, x, y):
    logits = model.predict(x, verbose=0).astype("float64")
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].sum()


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    x, y, xt, yt = keras_fip.datasets.digits.load_digits_split()
    return x[:600], y[:600], xt[:200], yt[:200]


@pytest.fixture(scope="module")
def trained_mlp(digits):
    x, y, _, _ = digits
    model = make_mlp(hidden=(32,), seed=1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=sparse_ce())
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model


# ----------------------------------------------------------------------
# Attacks
# ----------------------------------------------------------------------
def test_input_gradient_matches_finite_differences():
    model = _tiny()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 3)).astype("float32")
    y = np.array([0, 2, 3])

    def predict(inputs):
        return model(inputs, training=False)

    _, grad = attacks.input_gradient(predict, ops.convert_to_tensor(x), y)
    grad = ops.convert_to_numpy(grad)
    h = 1e-2
    numeric = np.zeros_like(x, dtype="float64")
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (_np_cross_entropy(model, up, y)
                          - _np_cross_entropy(model, down, y)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-4)


def test_attacks_get_stronger_with_epsilon_and_pgd_beats_fgsm(trained_mlp,
                                                                digits):
    _, _, xt, yt = digits
    clean = attacks.accuracy(trained_mlp, xt, yt)
    assert clean > 0.85
    fgsm, pgd = [], []
    for eps in (0.02, 0.05, 0.1, 0.2):
        fgsm.append(attacks.accuracy(trained_mlp, attacks.fgsm(
            trained_mlp, xt, yt, eps), yt))
        pgd.append(attacks.accuracy(trained_mlp, attacks.pgd(
            trained_mlp, xt, yt, eps, steps=10), yt))
    assert fgsm[0] < clean and pgd[0] < clean
    assert all(a >= b for a, b in zip(fgsm, fgsm[1:])), fgsm
    assert all(a >= b for a, b in zip(pgd, pgd[1:])), pgd
    assert all(p <= f for p, f in zip(pgd, fgsm)), (pgd, fgsm)
    assert pgd[-1] < 0.2


@pytest.mark.parametrize("norm", ["inf", 2])
def test_adversarial_inputs_stay_in_the_ball_and_the_range(trained_mlp,
                                                            digits, norm):
    _, _, xt, yt = digits
    eps = 0.3 if norm == "inf" else 1.5
    for x_adv in (attacks.fgsm(trained_mlp, xt, yt, eps, norm=norm),
                  attacks.pgd(trained_mlp, xt, yt, eps, norm=norm, steps=5),
                  attacks.pgd(trained_mlp, xt, yt, eps, norm=norm, steps=5,
                              random_start=False, batch_size=64)):
        assert x_adv.shape == xt.shape and x_adv.dtype == np.float32
        delta = (x_adv - xt).reshape(len(xt), -1)
        size = (np.abs(delta).max(axis=1) if norm == "inf"
                else np.linalg.norm(delta, axis=1))
        assert size.max() <= eps * (1 + 1e-5) + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert size.mean() > 0.1 * eps  # it moved


def test_pgd_is_reproducible_and_unclipped_range(trained_mlp, digits):
    _, _, xt, yt = digits
    a = attacks.pgd(trained_mlp, xt, yt, 0.1, seed=3)
    b = attacks.pgd(trained_mlp, xt, yt, 0.1, seed=3)
    np.testing.assert_array_equal(a, b)
    free = attacks.fgsm(trained_mlp, xt, yt, 0.5, clip=None)
    assert free.max() > 1 or free.min() < 0
    zero = attacks.pgd(trained_mlp, xt, yt, 0.0)
    np.testing.assert_array_equal(zero, xt)


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), "epsilon"),
    (lambda m, x, y: attacks.pgd(m, x, y, -1), "epsilon"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=0), "steps"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, step_size=0), "step_size"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, norm=1), "norm"),
    (lambda m, x, y: attacks.fgsm(m, x * 16, y, 0.1), "outside"),
    (lambda m, x, y: attacks.fgsm(m, x, y[:-1], 0.1), "labels"),
    (lambda m, x, y: attacks.fgsm(m, x, y * 1.0, 0.1), "integers"),
    (lambda m, x, y: attacks.fgsm(m, x, y, 0.1, clip=(1, 0)), "clip"),
])
def test_attack_bad_arguments(trained_mlp, digits, call, message):
    _, _, xt, yt = digits
    with pytest.raises((ValueError, TypeError), match=message):
        call(trained_mlp, xt[:8], yt[:8])


# ----------------------------------------------------------------------
# PathEnsemble
# ----------------------------------------------------------------------
def _members(count=3):
    base = _tiny(seed=0)
    return base, [[w + 0.3 * k * np.random.default_rng(k).standard_normal(
        w.shape).astype("float32") for w in base.get_weights()]
        for k in range(count)]


def test_path_ensemble_averages_member_softmax_and_logits():
    base, weights = _members()
    x = np.random.default_rng(1).uniform(size=(6, 3)).astype("float32")
    ensemble = PathEnsemble.from_weights(base, weights)
    logits = np.stack([m.predict(x, verbose=0) for m in ensemble.members])
    soft = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0),
                               soft.mean(0), rtol=1e-5, atol=1e-6)
    assert not ensemble.outputs_logits
    by_logits = PathEnsemble(ensemble.members, average="logits")
    np.testing.assert_allclose(by_logits.predict(x, verbose=0),
                               logits.mean(0), rtol=1e-5, atol=1e-6)
    assert by_logits.outputs_logits
    ensemble.compile(loss="sparse_categorical_crossentropy",
                     metrics=["accuracy"])
    _, accuracy = ensemble.evaluate(x, np.argmax(soft.mean(0), 1),
                                    verbose=0)
    assert accuracy == 1.0


def test_path_ensemble_from_path_recorder_weights():
    model = _tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=sparse_ce())
    x = np.random.default_rng(0).uniform(size=(32, 3)).astype("float32")
    y = np.arange(32) % 4
    path = keras_fip.callbacks.PathRecorder(every_n_epochs=1,
                                            keep_weights=True)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[path])
    flats = path.weights[-2:]
    ensemble = PathEnsemble.from_weights(model, flats)
    np.testing.assert_allclose(ensemble.members[-1].predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="trainable weights"):
        PathEnsemble.from_weights(model, [flats[0][:-1]])


def test_path_ensemble_keras_round_trip(tmp_path):
    base, weights = _members()
    ensemble = PathEnsemble.from_weights(base, weights, average="logits")
    x = np.random.default_rng(2).uniform(size=(5, 3)).astype("float32")
    expected = ensemble.predict(x, verbose=0)
    path = os.path.join(tmp_path, "ensemble.keras")
    ensemble.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PathEnsemble) and len(loaded.members) == 3
    assert loaded.average == "logits"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


def test_whitebox_gradient_is_the_averaged_prediction_gradient():
    base, weights = _members()
    ensemble = PathEnsemble.from_weights(base, weights)
    x = ops.convert_to_tensor(
        np.random.default_rng(3).uniform(size=(4, 3)).astype("float32"))
    y = np.array([0, 1, 2, 3])

    def averaged(inputs):
        return ops.mean(ops.stack([ops.softmax(m(inputs), axis=-1)
                                   for m in ensemble.members]), axis=0)

    _, ensemble_grad = attacks.input_gradient(
        lambda v: ensemble(v), x, y, from_logits=False)
    _, averaged_grad = attacks.input_gradient(averaged, x, y,
                                              from_logits=False)
    member_grads = [ops.convert_to_numpy(attacks.input_gradient(
        lambda v, m=m: m(v), x, y)[1]) for m in ensemble.members]
    ensemble_grad = ops.convert_to_numpy(ensemble_grad)
    np.testing.assert_allclose(ensemble_grad,
                               ops.convert_to_numpy(averaged_grad),
                               rtol=1e-5, atol=1e-7)
    summed = np.mean(member_grads, axis=0)
    assert np.abs(ensemble_grad - summed).max() > 1e-3 * np.abs(
        summed).max()
    # fgsm/pgd on the ensemble read its output kind: probabilities here.
    by_default = attacks.fgsm(ensemble, ops.convert_to_numpy(x), y, 0.1)
    explicit = attacks.fgsm(ensemble, ops.convert_to_numpy(x), y, 0.1,
                            from_logits=False)
    np.testing.assert_array_equal(by_default, explicit)


def test_path_ensemble_bad_arguments():
    base, weights = _members()
    with pytest.raises(ValueError, match="at least one member"):
        PathEnsemble([])
    with pytest.raises(ValueError, match="empty"):
        PathEnsemble.from_weights(base, [])
    with pytest.raises(ValueError, match="different architecture"):
        PathEnsemble([base, _tiny(hidden=7)])
    with pytest.raises(ValueError, match="average"):
        PathEnsemble([base], average="median")
    with pytest.raises(ValueError, match="probabilities"):
        PathEnsemble([base], average="logits", from_logits=False)
    with pytest.raises(TypeError, match="keras.Model"):
        PathEnsemble([base, "net"])


# ----------------------------------------------------------------------
# Diversity terms
# ----------------------------------------------------------------------
def _walk(term, trained_mlp, digits, epochs=4):
    x, y, _, _ = digits
    model = keras.models.clone_model(trained_mlp)
    model.set_weights(trained_mlp.get_weights())
    model.compile(optimizer=keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(1.0), memory=keras_fip.Memory(len(y)),
        memory_batch_size=64, beta=1.0, step_norm=0.01, objectives=[term]),
        loss=sparse_ce())
    keras_fip.callbacks.remember_task(model, 0, x, y)
    before = keras.ops.convert_to_numpy(ops.softmax(model.predict(
        x, verbose=0)))
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    after = keras.ops.convert_to_numpy(ops.softmax(model.predict(
        x, verbose=0)))
    return model, np.abs(after - before).sum(axis=1)


def _plain_walk(trained_mlp, digits, steps):
    """The same ε-steps along the outward push without the invariance."""
    x, y, _, _ = digits
    model = keras.models.clone_model(trained_mlp)
    model.set_weights(trained_mlp.get_weights())
    rng = np.random.default_rng(0)
    direction = [rng.standard_normal(w.shape) for w in model.get_weights()]
    norm = np.sqrt(sum(np.sum(d ** 2) for d in direction))
    model.set_weights([w + steps * 0.01 * d / norm for w, d in
                       zip(model.get_weights(), direction)])
    before = keras.ops.convert_to_numpy(ops.softmax(trained_mlp.predict(
        x, verbose=0)))
    after = keras.ops.convert_to_numpy(ops.softmax(model.predict(
        x, verbose=0)))
    return np.abs(after - before).sum(axis=1)


def test_away_from_start_moves_far_while_protected_outputs_hold(
        trained_mlp, digits):
    term = AwayFromStart(weight=1.0)
    model, change = _walk(term, trained_mlp, digits)
    steps = 4 * int(np.ceil(len(digits[1]) / 32))
    distance = term.distance(model.trainable_variables)
    # ε-steps nearly all outward: at least half the path length away.
    assert distance > 0.5 * steps * 0.01
    # Stated tolerance: protected outputs move by a total-variation
    # ‖Δp‖₁ of at most 0.05 on average, and clearly less than a straight
    # random move of the same length (measured: about half of it).
    assert change.mean() < 0.05
    assert change.mean() < 0.75 * _plain_walk(trained_mlp, digits,
                                            distance / 0.01).mean()


def test_adversarial_output_diversity_repairs_n1_attacks(trained_mlp, digits):
    x, y, xt, yt = digits
    term = AdversarialOutputDiversity(weight=10.0, epsilon=0.1)
    model, change = _walk(term, trained_mlp, digits, epochs=10)
    assert term.distance(model.trainable_variables) > 0.1
    assert change.mean() < 0.1
    x_adv = attacks.fgsm(trained_mlp, x, y, 0.1)
    assert attacks.accuracy(model, x_adv, y) > \
        attacks.accuracy(trained_mlp, x_adv, y) + 0.03  # measured 4-7
    assert attacks.accuracy(model, xt, yt) > \
        attacks.accuracy(trained_mlp, xt, yt) - 0.05


def test_diversity_terms_round_trip(tmp_path, trained_mlp, digits):
    term = AdversarialOutputDiversity(weight=0.5, epsilon=0.2, norm=2,
                                      objective="away", clip=None)
    clone = type(term).from_config(term.get_config())
    assert clone.get_config() == term.get_config()
    away = AwayFromStart(weight=2.0, seed=4)
    assert AwayFromStart.from_config(away.get_config()).get_config() == \
        away.get_config()
    model, _ = _walk(AwayFromStart(1.0), trained_mlp, digits, epochs=1)
    path = os.path.join(tmp_path, "walk.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    (objective,) = loaded.optimizer.objectives
    assert isinstance(objective, AwayFromStart)
    x = digits[0][:16]
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6,
                               atol=1e-6)


def test_diversity_term_bad_arguments():
    with pytest.raises(ValueError, match="epsilon"):
        AdversarialOutputDiversity(epsilon=-0.1)
    with pytest.raises(ValueError, match="weight"):
        AwayFromStart(weight=-1)
    with pytest.raises(TypeError, match="seed"):
        AwayFromStart(seed=0.5)
    with pytest.raises(ValueError, match="objective"):
        AdversarialOutputDiversity(objective="far")
    with pytest.raises(ValueError, match="norm"):
        AdversarialOutputDiversity(norm=3)
    with pytest.raises(ValueError, match="clip"):
        AdversarialOutputDiversity(clip=(1.0, 0.0))
    model = _tiny()
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), terms=[AdversarialOutputDiversity()]),
        loss=sparse_ce())
    x = np.random.default_rng(0).uniform(size=(8, 3)).astype("float32")
    with pytest.raises(ValueError, match="Memory"):
        model.fit(x, np.arange(8) % 4, verbose=0)
