import numpy as np
import pytest

from keras_fip.datasets import TaskStream
from keras_fip.datasets import permuted_digits
from keras_fip.datasets import rotated_digits
from keras_fip.datasets.task_stream import Task


def test_split_digits_protocol(digits_stream):
    assert len(digits_stream) == 5
    assert [t.classes for t in digits_stream] == [
        (0, 1), (2, 3), (4, 5), (6, 7), (8, 9)
    ]
    total = sum(len(t.y_train) + len(t.y_test) for t in digits_stream)
    assert total == 1797
    for task in digits_stream:
        assert set(np.unique(task.y_train)) == set(task.classes)
        assert task.x_train.dtype == np.float32 and task.x_train.max() <= 1.0
    assert digits_stream.num_classes == 10


def test_permuted_digits_keeps_labels_and_permutes_pixels():
    pytest.importorskip("sklearn")
    stream = permuted_digits(num_tasks=3, seed=1)
    first, second = stream[0], stream[1]
    np.testing.assert_array_equal(first.y_train, second.y_train)
    assert not np.array_equal(first.x_train, second.x_train)
    np.testing.assert_allclose(
        np.sort(first.x_train, axis=1), np.sort(second.x_train, axis=1)
    )


def test_split_by_class_groups_and_joint():
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20) % 4
    stream = TaskStream.split_by_class(
        x, y, x, y, classes_per_task=[(3, 0), (1, 2)]
    )
    assert stream[0].classes == (3, 0)
    assert set(stream[0].y_test) == {0, 3}
    xj, yj = stream.joint()
    assert len(yj) == 20


def test_bad_streams_are_rejected():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="no training or no test"):
        TaskStream.split_by_class(x, y, x, y, classes_per_task=[(0,), (7,)])
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        TaskStream.split_by_class(x, y[:3], x, y, classes_per_task=1)
    with pytest.raises(ValueError, match="classes_per_task"):
        TaskStream.split_by_class(x, y, x, y, classes_per_task=0)
    with pytest.raises(ValueError, match="num_tasks"):
        TaskStream.permuted(x, y, x, y, num_tasks=0)
    with pytest.raises(ValueError, match="at least one task"):
        TaskStream([])


def test_holdout_replaces_test_sets_with_training_tails():
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20) % 4
    stream = TaskStream.split_by_class(x, y, x[:4], y[:4],
                                       classes_per_task=2)
    validation = stream.holdout(0.2)
    for original, held in zip(stream, validation):
        assert len(held.y_train) == 8 and len(held.y_test) == 2
        np.testing.assert_array_equal(held.x_train, original.x_train[:8])
        np.testing.assert_array_equal(held.x_test, original.x_train[8:])
        assert held.classes == original.classes
    assert len(stream[0].y_train) == 10  # the original is unchanged
    with pytest.raises(ValueError, match="must lie in"):
        stream.holdout(1.0)
    with pytest.raises(ValueError, match="too few"):
        stream.holdout(0.01)


def test_holdout_validates_every_class_of_a_sorted_task():
    # Split-WordNet's tasks hold one category, then the other: a plain
    # tail would validate on the second category only.
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.repeat([0, 1], 10)
    stream = TaskStream([Task("sorted", x, y, x[:2], y[:2], (0, 1))])
    held = stream.holdout(0.2)[0]
    assert np.bincount(held.y_test).tolist() == [2, 2]
    np.testing.assert_array_equal(held.x_test[:, 0], [16, 18, 36, 38])
    assert np.bincount(held.y_train).tolist() == [8, 8]


def test_derived_streams_keep_what_the_loader_set():
    # A text stream's model needs `vocabulary_size` on its validation
    # stream too.
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20) % 4
    stream = TaskStream.split_by_class(x, y, x[:4], y[:4],
                                       classes_per_task=2)
    stream.vocabulary_size = 123
    assert stream.holdout(0.2).vocabulary_size == 123
    assert stream.map_inputs(lambda a: a * 2).vocabulary_size == 123


def test_map_inputs_reshapes_every_task_and_keeps_labels():
    x = np.arange(80, dtype="float32").reshape(20, 4)
    y = np.arange(20) % 4
    stream = TaskStream.split_by_class(x, y, x[:8], y[:8],
                                       classes_per_task=2, name="toy")
    images = stream.map_inputs(lambda a: a.reshape(-1, 2, 2, 1))
    assert images.name == "toy" and len(images) == len(stream)
    for original, mapped in zip(stream, images):
        assert mapped.x_train.shape == (len(original.y_train), 2, 2, 1)
        np.testing.assert_array_equal(
            mapped.x_test.reshape(len(mapped.x_test), -1), original.x_test)
        np.testing.assert_array_equal(mapped.y_train, original.y_train)
        assert mapped.classes == original.classes
    assert stream[0].x_train.shape[1:] == (4,)  # the original is unchanged
    with pytest.raises(ValueError, match="map each sample to one sample"):
        stream.map_inputs(lambda a: a[:1])


def test_joint_shuffles_pairs_only_when_seeded():
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20) % 4
    stream = TaskStream.split_by_class(x, y, x, y, classes_per_task=2)
    _, ys = stream.joint()
    assert set(ys[:10]) == {0, 1} and set(ys[10:]) == {2, 3}  # task order
    xa, ya = stream.joint(seed=3)
    _, yb = stream.joint(seed=3)
    np.testing.assert_array_equal(ya, yb)  # reproducible
    assert not np.array_equal(ya, ys)
    assert sorted(ya) == sorted(ys)
    np.testing.assert_array_equal(xa[:, 0] // 2 % 4, ya)  # pairs kept


def test_rotated_digits_turns_each_task_and_keeps_labels():
    stream = rotated_digits((0, 1, 2))
    assert len(stream) == 3 and stream.num_classes == 10
    first, turned = stream[0].x_train[0], stream[1].x_train[0]
    np.testing.assert_array_equal(
        turned.reshape(8, 8), np.rot90(first.reshape(8, 8)))
    np.testing.assert_array_equal(stream[2].y_test, stream[0].y_test)
    with pytest.raises(ValueError, match="quarter_turns"):
        rotated_digits(())
