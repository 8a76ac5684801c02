"""Each baseline's defining mechanism, on the current backend."""

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
from keras_fip.arrays import as_numpy
from keras_fip.step import Step

JIT = BACKEND != "torch"
ALL = {
    "er": baselines.ReplayOptimizer,
    "derpp": baselines.DERPPOptimizer,
    "agem": baselines.AGEMOptimizer,
    "lwf": baselines.LwFOptimizer,
    "ewc": baselines.EWCOptimizer,
    "si": baselines.SIOptimizer,
}


def _weights(model):
    return [as_numpy(v).copy() for v in model.trainable_variables]


def _compiled(optimizer):
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    model.compile(optimizer=optimizer, loss=sparse_ce(), jit_compile=JIT)
    return model


def _fit(model, task, task_id, epochs=2, **kwargs):
    model.fit(*task, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(task_id, *task)],
              **kwargs)


@pytest.mark.parametrize("name", sorted(ALL))
def test_first_task_is_exactly_the_inner_optimizer(name):
    task0, _ = toy_tasks()
    model = _compiled(ALL[name](keras.optimizers.Adam(1e-2)))
    _fit(model, task0, 0)
    plain = _compiled(keras.optimizers.Adam(1e-2))
    plain.fit(*task0, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(_weights(model), _weights(plain)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL))
def test_config_round_trip(name):
    optimizer = ALL[name](keras.optimizers.SGD(0.1))
    config = optimizer.get_config()
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(clone) is ALL[name] and clone.get_config() == config


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (baselines.ReplayOptimizer, {"weight": -1.0}, "weight"),
        (baselines.DERPPOptimizer, {"logit_weight": float("nan")},
         "logit_weight"),
        (baselines.DERPPOptimizer, {"label_weight": -1.0}, "label_weight"),
        (baselines.LwFOptimizer, {"temperature": 0.0}, "temperature"),
        (baselines.EWCOptimizer, {"decay": 1.5}, "decay"),
        (baselines.EWCOptimizer, {"weight": -2.0}, "weight"),
        (baselines.SIOptimizer, {"damping": 0.0}, "damping"),
        (baselines.AGEMOptimizer, {"memory_batch_size": 0},
         "memory_batch_size"),
    ],
)
def test_bad_arguments_are_explained(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(keras.optimizers.Adam(), **kwargs)


def test_agem_direction_never_opposes_the_memory_gradient():
    rng = np.random.default_rng(0)
    opposed = 0
    for _ in range(50):
        g = [rng.normal(size=(3, 4)).astype("float32"),
             rng.normal(size=(4,)).astype("float32")]
        m = [rng.normal(size=(3, 4)).astype("float32"),
             rng.normal(size=(4,)).astype("float32")]
        d = [as_numpy(t) for t in baselines.GradientProjectionTerm().combine(
            [ops.convert_to_tensor(t) for t in g],
            [ops.convert_to_tensor(t) for t in m])]
        overlap = sum(np.sum(a * b) for a, b in zip(g, m))
        projected = sum(np.sum(a * b) for a, b in zip(d, m))
        assert projected >= -1e-4
        if overlap >= 0:  # no conflict: the gradient passes unchanged
            for a, b in zip(d, g):
                np.testing.assert_allclose(a, b, rtol=1e-6)
        else:
            opposed += 1
            assert abs(projected) < 1e-4  # projected onto the boundary
    assert opposed > 10


def test_agem_trains_with_an_active_memory():
    task0, task1 = toy_tasks()
    agem = baselines.AGEMOptimizer(keras.optimizers.Adam(1e-2),
                                   memory=keras_fip.Memory(16))
    model = _compiled(agem)
    _fit(model, task0, 0)
    _fit(model, task1, 1)
    assert float(as_numpy(agem.memory_loss)) > 0


def test_ewc_penalty_is_zero_at_the_anchor_and_quadratic_away():
    task0, _ = toy_tasks()
    ewc = baselines.EWCOptimizer(keras.optimizers.Adam(1e-2), weight=10.0)
    model = _compiled(ewc)
    _fit(model, task0, 0, epochs=3)
    assert ewc.penalty() == 0.0
    fisher = [as_numpy(f) for f in ewc.importance]
    assert sum(f.sum() for f in fisher) > 0
    assert all((f >= 0).all() for f in fisher)
    start = _weights(model)
    rng = np.random.default_rng(0)
    delta = [0.05 * rng.normal(size=w.shape).astype("float32") for w in start]
    penalties = []
    for scale in (1.0, 2.0):
        for v, w, d in zip(model.trainable_variables, start, delta):
            v.assign(w + scale * d)
        penalties.append(ewc.penalty())
    assert penalties[0] > 0
    assert penalties[1] == pytest.approx(4 * penalties[0], rel=1e-3)
    # Its gradient λ F (w − w*) is what the step adds to fit's gradient.
    variables = model.trainable_variables
    zeros = [ops.zeros(v.shape) for v in variables]
    values = [ops.convert_to_tensor(as_numpy(v)) for v in variables]
    step = Step(ewc, zeros, values, variables)
    direction = ewc.terms[0](zeros, step)
    for d, f, dl in zip(direction, fisher, delta):
        np.testing.assert_allclose(as_numpy(d), 10.0 * f * 2 * dl,
                                   rtol=1e-4, atol=1e-7)


def test_si_importance_is_path_integral_over_squared_displacement():
    task0, _ = toy_tasks()
    si = baselines.SIOptimizer(keras.optimizers.SGD(0.05), weight=1.0,
                               damping=0.1)
    model = _compiled(si)
    start = _weights(model)

    class Capture(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model  # syncs JAX state
            self.omega = [as_numpy(o).copy()
                          for o in si.path_integral]

    capture = Capture()
    model.fit(*task0, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[capture, keras_fip.callbacks.TaskBoundary(0, *task0)])
    end = _weights(model)
    # Plain SGD: each step adds lr·g² ≥ 0 to ω.
    assert all((o >= -1e-7).all() for o in capture.omega)
    assert sum(o.sum() for o in capture.omega) > 0
    for omega_sum, o, w0, w1, a in zip(si.importance, capture.omega, start,
                                       end, si.anchor):
        np.testing.assert_allclose(
            as_numpy(omega_sum),
            np.maximum(o, 0) / ((w1 - w0) ** 2 + 0.1), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(as_numpy(a), w1)
    assert all(not as_numpy(o).any() for o in si.path_integral)


def test_si_omega_is_minus_gradient_times_step():
    si = baselines.SIOptimizer(keras.optimizers.SGD(0.5))
    var = keras.Variable(np.array([1.0, -2.0], "float32"))
    si.build([var])
    grad = np.array([0.2, -0.4], "float32")
    si.apply([ops.convert_to_tensor(grad)], [var])
    np.testing.assert_allclose(
        as_numpy(si.path_integral[0]), 0.5 * grad**2, rtol=1e-6)


def test_derpp_keeps_the_logits_of_storage_time():
    task0, task1 = toy_tasks()
    derpp = baselines.DERPPOptimizer(keras.optimizers.Adam(1e-2),
                                     memory=keras_fip.Memory(16))
    model = _compiled(derpp)
    _fit(model, task0, 0)
    inputs0, _, _, anchors0 = derpp.memory.stored()
    _fit(model, task1, 1)
    inputs1, _, tasks1, anchors1 = derpp.memory.stored()
    for x, a in zip(inputs1[tasks1 == 0], anchors1[tasks1 == 0]):
        match = np.flatnonzero((inputs0 == x).all(axis=1))[0]
        np.testing.assert_allclose(a, anchors0[match], rtol=1e-6)
    new_outputs = as_numpy(model(inputs1[tasks1 == 1]))
    np.testing.assert_allclose(anchors1[tasks1 == 1], new_outputs, rtol=1e-4,
                               atol=1e-5)


def test_lwf_distills_the_new_task_inputs_from_the_task_start():
    task0, task1 = toy_tasks()
    lwf = baselines.LwFOptimizer(keras.optimizers.Adam(1e-2),
                                 memory=keras_fip.Memory(32))
    model = _compiled(lwf)
    _fit(model, task0, 0)
    assert not lwf.memory.is_active  # nothing to distill from at task 0
    teacher = as_numpy(model(task1[0]))
    _fit(model, task1, 1)
    inputs, labels, tasks, anchors = lwf.memory.stored()
    assert set(tasks) == {1} and set(labels) == {-1}
    for x, a in zip(inputs, anchors):
        row = np.flatnonzero((task1[0] == x).all(axis=1))[0]
        np.testing.assert_allclose(a, teacher[row], rtol=1e-4, atol=1e-5)
    assert float(as_numpy(lwf.memory_loss)) > 0


def test_replay_with_zero_weight_is_the_inner_optimizer():
    task0, task1 = toy_tasks()
    er = baselines.ReplayOptimizer(keras.optimizers.Adam(1e-2),
                                   memory=keras_fip.Memory(16),
                                   weight=0.0)
    model = _compiled(er)
    _fit(model, task0, 0)
    _fit(model, task1, 1)
    plain = _compiled(keras.optimizers.Adam(1e-2))
    for t in (task0, task1):
        plain.fit(*t, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(_weights(model), _weights(plain)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert float(as_numpy(er.memory_loss)) > 0  # it was replayed


@pytest.mark.large
def test_replay_remembers_what_finetuning_forgets(digits_stream):
    def run(optimizer):
        model = make_mlp(hidden=(64,))
        model.compile(optimizer=optimizer, loss=sparse_ce(), jit_compile=JIT)
        stream = keras_fip.datasets.TaskStream(digits_stream.tasks[:2])
        return keras_fip.fit_stream(model, stream, epochs=5, verbose=0).matrix

    er = run(baselines.ReplayOptimizer(keras.optimizers.Adam(1e-3)))
    ft = run(keras.optimizers.Adam(1e-3))
    assert er[1, 0] > ft[1, 0] + 0.5
