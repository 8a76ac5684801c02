"""Direction terms: built-in ones, and terms written outside the package."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from conftest import BACKEND
from conftest import make_mlp
from conftest import sparse_ce
from conftest import toy_tasks
from keras_fip import baselines
from keras_fip import terms
from keras_fip.arrays import as_numpy

JIT = BACKEND != "torch"


def _weights(model):
    return [as_numpy(v).copy() for v in model.trainable_variables]


# A term written the way a user would: no optimizer subclass, its own state.
@keras.saving.register_keras_serializable(package="test_terms")
class ScaledAndCounted(terms.DirectionTerm):
    """d ← factor · d, counting the steps it took."""

    def __init__(self, factor=0.5):
        self.factor = factor

    def build(self, optimizer, variables):
        self.steps = optimizer.add_variable(shape=(), dtype="float32",
                                            name="counted_steps")

    def __call__(self, direction, step):
        self.steps.assign(self.steps.value + 1.0)
        return [d * self.factor for d in direction]

    def get_config(self):
        return {"factor": self.factor}


# A memory term written outside the package: DER's logit matching.
class LogitMatch(terms.MemoryTerm):
    def loss(self, outputs, anchors, labels):
        return ops.mean(ops.square(ops.cast(outputs, "float32") - anchors))

    def combine(self, direction, memory_grads):
        return [d + m for d, m in zip(direction, memory_grads)]


def _trained(optimizer, epochs=2, tasks=1):
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    model.compile(optimizer=optimizer, loss=sparse_ce(), jit_compile=JIT)
    for task_id, task in enumerate(toy_tasks()[:tasks]):
        model.fit(*task, batch_size=8, epochs=epochs, shuffle=False,
                  verbose=0, callbacks=[keras_fip.callbacks.TaskBoundary(
                      task_id, *task)]
                  if isinstance(optimizer, keras_fip.ContinualOptimizer)
                  else [])
    return model


def test_a_user_term_trains_without_subclassing_an_optimizer(tmp_path):
    term = ScaledAndCounted(0.5)
    model = _trained(keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.2), terms=[term]))
    # Halving every direction of SGD(0.2) is SGD(0.1), to float precision.
    plain = _trained(keras.optimizers.SGD(0.1))
    for got, want in zip(_weights(model), _weights(plain)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    steps = int(as_numpy(model.optimizer.iterations))
    assert float(as_numpy(term.steps)) == steps == 8
    path = str(tmp_path / "custom.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer.find_term(ScaledAndCounted)
    assert restored.factor == 0.5
    assert float(as_numpy(restored.steps)) == steps


@pytest.mark.large
def test_a_user_memory_term_is_ders_logit_term():
    def run(term):
        optimizer = keras_fip.ContinualOptimizer(
            keras.optimizers.Adam(1e-2), terms=[term],
            memory=keras_fip.Memory(16), anchors="stored")
        return _trained(optimizer, tasks=2), term

    mine, term = run(LogitMatch())
    theirs, _ = run(baselines.DarkReplayTerm(logit_weight=1.0,
                                             label_weight=0.0))
    assert float(as_numpy(term.last_loss)) > 0
    for got, want in zip(_weights(mine), _weights(theirs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_toward_weights_walks_geometrically_to_the_target():
    model = make_mlp(hidden=(16,), inputs=8, classes=4, seed=0)
    target = [w + 1.0 for w in _weights(model)]
    start = _weights(model)
    toward = terms.TowardWeights(target, weight=1.0)
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), terms=[terms.ScaleGradient(0.0), toward]),
        loss=sparse_ce(), jit_compile=JIT)
    x, y = toy_tasks()[0]
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    steps = int(as_numpy(model.optimizer.iterations))
    # d = 0·∇L + (w − w_B): w − w_B shrinks by (1 − 0.1) each step.
    for got, w0, wb in zip(_weights(model), start, target):
        np.testing.assert_allclose(got - wb, 0.9 ** steps * (w0 - wb),
                                   rtol=1e-4, atol=1e-6)
    assert toward.distance(model.trainable_variables) == pytest.approx(
        0.9 ** steps * toward.distance(
            [keras.Variable(w) for w in start]), rel=1e-4)


def test_toward_weights_of_another_shape_is_refused():
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1),
        terms=[terms.TowardWeights([np.zeros((3, 3))])]), loss=sparse_ce())
    with pytest.raises(ValueError, match="same architecture"):
        model.fit(*toy_tasks()[0], epochs=1, verbose=0)


@pytest.mark.parametrize("term", [
    terms.ScaleGradient(0.3), terms.StepNorm(0.02),
    terms.Invariance("kl", "mean", False), terms.TowardWeights(weight=2.0),
    baselines.ReplayTerm(0.5), baselines.DarkReplayTerm(0.1, 0.2),
    baselines.GradientProjectionTerm(), baselines.DistillationTerm(2.0, 3.0),
    baselines.FisherPenaltyTerm(5.0, 0.5), baselines.PathIntegralPenaltyTerm(
        0.2, 0.3),
    keras_fip.sparsity.SparseTarget(0.5, weight=0.2),
], ids=lambda t: type(t).__name__)
def test_term_config_round_trip(term):
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(term))
    assert type(clone) is type(term)
    assert clone.get_config() == term.get_config()


def test_a_chain_round_trips_through_the_optimizer_config():
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1),
        terms=[terms.ScaleGradient(0.5), terms.Invariance(),
               baselines.ReplayTerm(0.3), terms.StepNorm(0.01)],
        memory=keras_fip.Memory(12, seed=3), memory_batch_size=5,
        anchors="stored")
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(clone) is keras_fip.ContinualOptimizer
    assert clone.get_config() == optimizer.get_config()
    assert [type(t) for t in clone.terms] == [type(t) for t in optimizer.terms]


def test_something_that_is_not_a_term_is_refused():
    with pytest.raises(TypeError, match="DirectionTerm"):
        keras_fip.ContinualOptimizer(keras.optimizers.SGD(),
                                     terms=[lambda d, s: d])
    with pytest.raises(TypeError, match="DirectionTerm"):
        keras_fip.FIPOptimizer(keras.optimizers.SGD(), objectives=[0.9])


def test_a_memory_term_without_a_memory_is_refused():
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    model.compile(optimizer=keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), terms=[terms.Invariance()]),
        loss=sparse_ce())
    with pytest.raises(ValueError, match="needs the optimizer to have"):
        model.fit(*toy_tasks()[0], epochs=1, verbose=0)


@pytest.mark.parametrize("active", [True, False])
def test_memory_cond_takes_the_branch_the_predicate_picks(active):
    # On JAX's CPU platform both branches run and `where` selects: the
    # values must still be exactly the chosen branch's, compiled or not.
    from keras_fip import backend as fip_backend

    first = [np.arange(6.0, dtype="float32").reshape(2, 3),
             np.float32(2.0)]
    second = [np.full((2, 3), np.nan, "float32"), np.float32(-1.0)]

    def chosen(pred):
        return fip_backend.memory_cond(
            pred, lambda: [ops.convert_to_tensor(t) for t in first],
            lambda: [ops.convert_to_tensor(t) for t in second])

    expected = first if active else second
    for fn in (chosen, fip_backend.compile_function(chosen)):
        got = fn(ops.convert_to_tensor(active))
        np.testing.assert_array_equal(as_numpy(got[0]), expected[0])
        assert float(as_numpy(got[1])) == float(expected[1])
