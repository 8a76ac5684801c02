"""FGE and snapshot schedules, WeightSnapshots and the diversity measures."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_fip.callbacks.weight_snapshots import WeightSnapshots
from keras_fip.ensembles import diversity
from keras_fip.ensembles.schedules import FGESchedule
from keras_fip.ensembles.schedules import SnapshotSchedule


def _fge_reference(i, high, low, c):
    t = ((i % c) + 1) / c
    if t <= 0.5:
        return (1 - 2 * t) * high + 2 * t * low
    return (2 - 2 * t) * low + (2 * t - 1) * high


def _rates(schedule, steps):
    return np.array([float(schedule(i)) for i in range(steps)])


def test_fge_schedule_values():
    schedule = FGESchedule(high=0.1, low=0.01, cycle_steps=10)
    rates = _rates(schedule, 30)
    expected = [_fge_reference(i, 0.1, 0.01, 10) for i in range(30)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    # Low at the midpoint (step c/2 - 1 of each cycle), high at the end.
    np.testing.assert_allclose(rates[[4, 14, 24]], 0.01, rtol=1e-6)
    np.testing.assert_allclose(rates[[9, 19, 29]], 0.1, rtol=1e-6)
    assert rates.min() == pytest.approx(0.01, rel=1e-6)
    assert rates.max() == pytest.approx(0.1, rel=1e-6)
    # Linear: constant slopes -(high - low) / (c/2) then +(high - low) / (c/2).
    slopes = np.diff(rates[:10])
    np.testing.assert_allclose(slopes[:4], -0.018, rtol=1e-5)
    np.testing.assert_allclose(slopes[4:], 0.018, rtol=1e-5)
    assert schedule.member_steps(3) == [5, 15, 25]
    # The rate just before each member step is the low one.
    np.testing.assert_allclose(rates[np.array(schedule.member_steps(3)) - 1],
                               0.01, rtol=1e-6)
    # A tensor step (as the optimizer's int64 iterations) works too.
    assert float(schedule(ops.convert_to_tensor(14))) == pytest.approx(0.01)


def test_snapshot_schedule_values():
    schedule = SnapshotSchedule(high=0.2, cycle_steps=8)
    rates = _rates(schedule, 24)
    i = np.arange(24)
    np.testing.assert_allclose(
        rates, 0.1 * (np.cos(np.pi * (i % 8) / 8) + 1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rates[[0, 8, 16]], 0.2, rtol=1e-6)
    assert (np.diff(rates[:8]) < 0).all()      # annealing within a cycle
    assert rates[7] < 0.01                     # the smallest, before a member
    assert schedule.member_steps(3) == [8, 16, 24]


def _sum_loss(y_true, y_pred):
    return ops.mean(y_pred)


def _unit_gradient_model():
    """One weight w, loss w·mean(x) = w: each SGD step subtracts α(i)."""
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
    ])
    return model


@pytest.mark.parametrize("schedule", [
    FGESchedule(high=0.1, low=0.01, cycle_steps=4),
    SnapshotSchedule(high=0.1, cycle_steps=3),
], ids=["fge", "snapshot"])
def test_schedule_drives_sgd_in_fit(schedule):
    model = _unit_gradient_model()
    model.compile(keras.optimizers.SGD(learning_rate=schedule), _sum_loss)
    every = WeightSnapshots(at_steps=list(range(1, 13)))
    x, y = np.ones((24, 1), "float32"), np.zeros((24, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[every])
    w = np.array([s[0][0, 0] for s in every.snapshots])
    np.testing.assert_allclose(w, -np.cumsum(_rates(schedule, 12)),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("schedule", [
    FGESchedule(high=0.05, low=0.002, cycle_steps=6),
    SnapshotSchedule(high=0.05, cycle_steps=5),
], ids=["fge", "snapshot"])
def test_schedule_survives_a_keras_file(schedule, tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "mse")
    x = np.random.default_rng(0).normal(size=(28, 3)).astype("float32")
    model.fit(x, x[:, :2], batch_size=4, verbose=0)       # 7 steps
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.optimizer._learning_rate
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    assert int(loaded.optimizer.iterations) == 7
    assert float(loaded.optimizer.learning_rate) == pytest.approx(
        float(schedule(7)), rel=1e-6)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(
        float(model.optimizer.learning_rate), rel=1e-6)
    assert restored.member_steps(2) == schedule.member_steps(2)
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config)
    np.testing.assert_allclose(_rates(again, 12), _rates(schedule, 12))


def test_weight_snapshots_across_two_fits_are_independent_copies():
    schedule = FGESchedule(high=0.1, low=0.01, cycle_steps=4)
    model = _unit_gradient_model()
    model.compile(keras.optimizers.SGD(learning_rate=schedule), _sum_loss)
    snaps = WeightSnapshots.for_schedule(schedule, cycles=2)   # [2, 6]
    assert snaps.at_steps == (2, 6)
    x, y = np.ones((16, 1), "float32"), np.zeros((16, 1), "float32")
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[snaps])   # steps 1-4
    first = [w.copy() for w in snaps.snapshots[0]]
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[snaps])   # steps 5-8
    assert snaps.steps == [2, 6] and snaps.step == 8
    cumulative = -np.cumsum(_rates(schedule, 8))
    assert snaps.snapshots[0][0][0, 0] == pytest.approx(cumulative[1])
    assert snaps.snapshots[1][0][0, 0] == pytest.approx(cumulative[5])
    # Later training did not change the copies.
    np.testing.assert_array_equal(snaps.snapshots[0][0], first[0])
    current = model.get_weights()[0]
    assert current[0, 0] == pytest.approx(cumulative[7])
    assert not np.shares_memory(snaps.snapshots[1][0], current)
    snaps.restore(0)
    np.testing.assert_array_equal(model.get_weights()[0], first[0])


def test_weight_snapshots_every_epoch_and_steps_together():
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(2),
                              keras.layers.BatchNormalization()])
    model.compile("sgd", "mse")
    snaps = WeightSnapshots(at_steps=[2, 3], every_n_epochs=2)
    x = np.ones((12, 2), "float32")
    model.fit(x, x, batch_size=4, epochs=4, verbose=0, callbacks=[snaps])
    # Step 3 is also the end of epoch 1 (the first of every 2): one copy.
    assert snaps.steps == [2, 3, 6, 12]
    # All weights, the batch norm's moving statistics included.
    assert len(snaps.snapshots[0]) == len(model.weights) == 6


def test_pairwise_disagreement_and_coherence_on_known_votes():
    votes = np.eye(3)[[[0, 1, 2, 2],
                       [0, 1, 1, 2],
                       [0, 2, 1, 2]]]
    # Pairs (0,1), (0,2), (1,2) differ on 1, 2 and 1 of the 4 inputs.
    assert diversity.pairwise_disagreement(votes) == pytest.approx(1 / 3)
    np.testing.assert_allclose(diversity.coherence(votes),
                               [1, 2 / 3, 2 / 3, 1])
    same = np.repeat(votes[:1], 4, axis=0)
    assert diversity.pairwise_disagreement(same) == 0.0
    np.testing.assert_array_equal(diversity.coherence(same), 1.0)
    # Logits work as well as probabilities: only the argmax counts.
    assert diversity.pairwise_disagreement(10 * votes - 3) == pytest.approx(
        1 / 3)
    # Every member a different class: disagreement 1, coherence 1/M.
    spread = np.eye(4)[np.array([[0], [1], [2], [3]])]
    assert diversity.pairwise_disagreement(spread) == 1.0
    np.testing.assert_allclose(diversity.coherence(spread), [0.25])
    # A 2-2 tie: half the members vote for the majority class.
    tie = np.eye(2)[np.array([[1], [0], [1], [0]])]
    np.testing.assert_allclose(diversity.coherence(tie), [0.5])
    # It matches the pairwise definition on random votes.
    rng = np.random.default_rng(0)
    random = rng.normal(size=(5, 40, 4))
    pred = random.argmax(-1)
    by_pairs = np.mean([np.mean(pred[i] != pred[j])
                        for i, j in itertools.combinations(range(5), 2)])
    assert diversity.pairwise_disagreement(random) == pytest.approx(by_pairs)


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert diversity.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert diversity.linear_cka(x, -2.5 * x @ q) == pytest.approx(1.0,
                                                                 abs=1e-9)
    y = rng.normal(size=(40, 3))
    reference = diversity.linear_cka(x, y)
    assert 0 < reference < 1
    assert diversity.linear_cka(0.1 * x @ q, 7 * y) == pytest.approx(
        reference, rel=1e-9)
    # Centred: adding a constant per feature changes nothing.
    assert diversity.linear_cka(x + 5.0, y) == pytest.approx(reference)
    # Not invariant to an anisotropic scaling.
    assert diversity.linear_cka(x * np.arange(1, 7), x) < 1 - 1e-3
    # The Gram-matrix form (features outnumber inputs) gives the same value.
    wide = rng.normal(size=(40, 3, 30))         # 90 features > 40 inputs
    narrow = wide[:, 0, :20]
    xc = wide.reshape(40, -1) - wide.reshape(40, -1).mean(0)
    yc = narrow - narrow.mean(0)
    direct = (np.linalg.norm(yc.T @ xc) ** 2
              / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))
    assert diversity.linear_cka(wide, narrow) == pytest.approx(direct,
                                                               rel=1e-9)


def _mlp(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(4),
    ])


def _functional(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(h))


def test_layerwise_diversity_of_identical_and_different_members():
    x = np.random.default_rng(0).normal(size=(50, 6)).astype("float32")
    a = _mlp(0)
    twin = _mlp(0)
    same = diversity.layerwise_diversity([a, twin, a], x)
    assert list(same) == [a.layers[0].name, a.layers[2].name]  # with weights
    assert all(abs(v) < 1e-6 for v in same.values())
    other = diversity.layerwise_diversity([a, _mlp(1), _mlp(2)], x,
                                          batch_size=16)
    assert all(0 < v <= 1 for v in other.values())
    named = diversity.layerwise_diversity([a, _mlp(1)], x,
                                          layers=[a.layers[2].name])
    assert list(named) == [a.layers[2].name]
    # Functional members; conv features (6·6·4 = 144) outnumber 50 inputs.
    images = np.random.default_rng(1).normal(size=(50, 8, 8, 1))
    conv = diversity.layerwise_diversity(
        [_functional(0), _functional(3)], images.astype("float32"))
    assert set(conv) == {"conv", "head"} and all(v > 0 for v in conv.values())
    twins = diversity.layerwise_diversity(
        [_functional(0), _functional(0)], images.astype("float32"))
    assert all(abs(v) < 1e-6 for v in twins.values())


def test_member_outputs_feed_the_output_measures():
    x = np.random.default_rng(0).normal(size=(20, 6)).astype("float32")
    members = [_mlp(0), _mlp(0), _mlp(1)]
    outputs = diversity.member_outputs(members, x)
    assert outputs.shape == (3, 20, 4)
    pred = outputs.argmax(-1)
    expected = np.mean([np.mean(pred[i] != pred[j])
                        for i, j in itertools.combinations(range(3), 2)])
    assert diversity.pairwise_disagreement(outputs) == pytest.approx(expected)


@pytest.mark.parametrize("make, message", [
    (lambda: FGESchedule(high=0.01, low=0.1, cycle_steps=4),
     r"`low` \(0.1\) must be <= `high`"),
    (lambda: FGESchedule(high=0.1, low=0.01, cycle_steps=5),
     "must be even.*Use 4 or 6"),
    (lambda: FGESchedule(high=0.1, low=0.01, cycle_steps=0),
     "integer >= 2"),
    (lambda: FGESchedule(high=0.1, low=0.0, cycle_steps=4), "`low`.*> 0"),
    (lambda: FGESchedule(high=0.1, low=0.01, cycle_steps=4).member_steps(0),
     "`cycles` must be a positive integer"),
    (lambda: SnapshotSchedule(high=0.1, cycle_steps=0), "integer >= 2"),
    (lambda: SnapshotSchedule(high=-1.0, cycle_steps=10), "`high`"),
    (lambda: WeightSnapshots(), "needs `at_steps`"),
    (lambda: WeightSnapshots(at_steps=[3, 0]), "positive integers"),
    (lambda: WeightSnapshots(at_steps=[1], every_n_epochs=0),
     "`every_n_epochs`"),
    (lambda: WeightSnapshots.for_schedule(0.1, 3), "no `member_steps"),
    (lambda: diversity.pairwise_disagreement(np.zeros((1, 5, 3))),
     "at least 2 members"),
    (lambda: diversity.coherence(np.zeros((5, 3))), r"array \(M, N, C\)"),
    (lambda: diversity.pairwise_disagreement(
        [np.zeros((5, 3)), np.zeros((4, 3))]), "different shapes|M, N, C"),
    (lambda: diversity.linear_cka(np.zeros((5, 3)), np.zeros((4, 3))),
     "same N >= 2"),
])
def test_bad_arguments_are_explained(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layerwise_diversity_bad_members_and_layers():
    x = np.zeros((10, 6), "float32")
    with pytest.raises(ValueError, match="at least 2 members"):
        diversity.layerwise_diversity([_mlp(0)], x)
    with pytest.raises(ValueError, match=r"Unknown layer name\(s\) \['nope'\]"):
        diversity.layerwise_diversity([_mlp(0), _mlp(1)], x, layers=["nope"])
    wider = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dropout(0.1),
                              keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="architecture of member 0"):
        diversity.layerwise_diversity([_mlp(0), wider], x)
