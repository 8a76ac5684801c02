import keras
import numpy as np
import pytest

import keras_fip
from conftest import make_mlp
from keras_fip.arrays import as_numpy


def _data(n_per_class, classes, features=64, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(classes, n_per_class)
    x = rng.random((len(y), features)).astype("float32")
    return x, y


def test_capacity_must_be_positive_integer():
    with pytest.raises(ValueError, match="capacity must be > 0"):
        keras_fip.Memory(0)
    with pytest.raises(ValueError, match="capacity must be > 0"):
        keras_fip.Memory(-3)
    with pytest.raises(TypeError, match="integer"):
        keras_fip.Memory(2.5)


def test_class_balanced_across_tasks():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=20, seed=1)
    x0, y0 = _data(30, [0, 1])
    memory.build(model, x0)
    memory.add(x0, y0, task_id=0)
    _, labels, tasks, _ = memory.stored()
    assert np.bincount(labels).tolist() == [10, 10]
    x1, y1 = _data(30, [2, 3, 4, 5], seed=1)
    memory.add(x1, y1, task_id=1)
    _, labels, tasks, _ = memory.stored()
    assert memory.size == 20
    # 6 classes share 20 slots: 4 classes get 3, 2 classes get 4.
    assert sorted(np.bincount(labels).tolist()) == [3, 3, 3, 3, 4, 4]
    assert set(tasks[labels >= 2]) == {1} and set(tasks[labels < 2]) == {0}


def test_kept_old_samples_are_a_subset_of_the_originals():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=8)
    x0, y0 = _data(10, [0, 1])
    memory.build(model, x0)
    memory.add(x0, y0)
    before, _, _, _ = memory.stored()
    memory.add(*_data(10, [2, 3], seed=3), task_id=1)
    after, labels, _, _ = memory.stored()
    for row in after[labels < 2]:
        assert any(np.array_equal(row, b) for b in before)


def test_scarce_class_leaves_slots_to_others():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=10)
    x = np.random.rand(12, 64).astype("float32")
    y = np.array([0] * 2 + [1] * 10)
    memory.build(model, x)
    memory.add(x, y)
    _, labels, _, _ = memory.stored()
    assert np.bincount(labels).tolist() == [2, 8]


def test_reservoir_without_labels():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=16, seed=0)
    x = np.random.default_rng(0).random((100, 64)).astype("float32")
    memory.build(model, x)
    memory.add(x[:50])
    memory.add(x[50:], task_id=1)
    _, labels, tasks, _ = memory.stored()
    assert memory.size == 16 and set(labels) == {-1}
    assert 0 < (tasks == 1).sum() < 16  # both halves represented
    with pytest.raises(ValueError, match="unlabelled"):
        memory.add(x[:4], np.zeros(4, int))


def test_consolidate_stores_model_outputs_and_activates():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=12)
    x, y = _data(10, [0, 1, 2])
    memory.build(model, x)
    memory.add(x, y)
    assert not memory.is_active
    memory.consolidate(model)
    assert memory.is_active
    inputs, _, _, anchors = memory.stored()
    np.testing.assert_allclose(
        anchors, as_numpy(model(inputs)), rtol=1e-5, atol=1e-6
    )


def test_next_batch_walks_a_permutation():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=6)
    x, y = _data(2, [0, 1, 2])
    memory.build(model, x)
    memory.add(x, y)
    memory.consolidate(model)
    inputs, _, _, _ = memory.stored()
    seen = []
    for _ in range(3):
        batch, _, _ = memory.next_batch(2)
        seen.extend(as_numpy(batch).tolist())
    assert sorted(map(tuple, seen)) == sorted(map(tuple, inputs.tolist()))


def test_dict_inputs():
    inputs = {
        "a": keras.Input((3,), name="a"),
        "b": keras.Input((2,), name="b"),
    }
    out = keras.layers.Dense(4)(
        keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    )
    model = keras.Model(inputs, out)
    x = {"a": np.random.rand(8, 3).astype("float32"),
         "b": np.random.rand(8, 2).astype("float32")}
    y = np.arange(8) % 4
    memory = keras_fip.Memory(capacity=4)
    memory.build(model, x)
    memory.add(x, y)
    memory.consolidate(model)
    stored, _, _, _ = memory.stored()
    assert set(stored) == {"a", "b"} and stored["a"].shape == (4, 3)
    with pytest.raises(ValueError, match="do not fit the memory"):
        memory.add({"a": x["a"]}, y)
    with pytest.raises(ValueError, match="do not fit the memory"):
        memory.add(x["a"], y)


def test_nested_input_structures():
    a, b, c = (keras.Input((3,)), keras.Input((2,)), keras.Input((1,)))
    out = keras.layers.Dense(4)(keras.layers.Concatenate()([a, b, c]))
    model = keras.Model({"pair": [a, b], "single": c}, out)
    x = {"pair": [np.random.rand(8, 3).astype("float32"),
                  np.random.rand(8, 2).astype("float32")],
         "single": np.random.rand(8, 1).astype("float32")}
    memory = keras_fip.Memory(capacity=4)
    memory.build(model, x)
    memory.add(x, np.arange(8) % 4)
    memory.consolidate(model)
    stored = memory.stored()[0]
    assert stored["pair"][0].shape == (4, 3)
    assert stored["single"].shape == (4, 1)
    batch, anchors, _ = memory.next_batch(2)
    assert as_numpy(batch["pair"][1]).shape == (2, 2)
    np.testing.assert_allclose(
        as_numpy(model(batch)), as_numpy(anchors),
        rtol=1e-5, atol=1e-6)
    clone = keras_fip.Memory.from_config(memory.get_config())
    assert [tuple(v.shape) for v in clone.variables] == [
        tuple(v.shape) for v in memory.variables]
    with pytest.raises(ValueError, match="do not fit the memory"):
        memory.add({"pair": x["pair"][:1], "single": x["single"]},
                   np.arange(8) % 4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((5, 63), "float32"), "do not fit the memory"),
        ((np.zeros((5, 64), "float32"),), "do not fit the memory"),
    ],
)
def test_inputs_that_do_not_fit_are_rejected(bad, match):
    model = make_mlp()
    memory = keras_fip.Memory(capacity=4)
    memory.build(model, np.zeros((2, 64), "float32"))
    with pytest.raises(ValueError, match=match):
        memory.add(bad, np.zeros(5, int))


def test_build_with_inputs_the_model_cannot_take():
    model = make_mlp()
    with pytest.raises(ValueError, match="do not fit the model"):
        keras_fip.Memory(4).build(model, np.zeros((2, 10), "float32"))


def test_bad_labels_are_rejected():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=4)
    x = np.zeros((4, 64), "float32")
    memory.build(model, x)
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        memory.add(x, np.zeros(3, int))
    with pytest.raises(ValueError, match=">= 0"):
        memory.add(x, np.array([0, -1, 0, 1]))
    with pytest.raises(ValueError, match="integer class ids"):
        memory.add(x, np.array([0.5, 1, 0, 1]))


def test_use_before_build_is_explained():
    with pytest.raises(ValueError, match="not built"):
        keras_fip.Memory(4).add(np.zeros((2, 64)), np.zeros(2, int))


def test_config_round_trip_rebuilds_the_same_variables():
    model = make_mlp()
    memory = keras_fip.Memory(capacity=5, seed=3)
    memory.build(model, np.zeros((2, 64), "float32"))
    clone = keras_fip.Memory.from_config(memory.get_config())
    assert clone.capacity == 5 and clone.seed == 3
    assert [tuple(v.shape) for v in clone.variables] == [
        tuple(v.shape) for v in memory.variables
    ]
