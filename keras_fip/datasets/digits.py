"""Split-, Permuted- and Rotated-digits from scikit-learn's 8×8 digits.

scikit-learn ships the 1,797 real digits (no download), so these streams
run offline. Protocol (docs/protocols.md): pixels / 16 as float32,
`train_test_split(test_size=0.3, random_state=0, stratify=y)`.
"""

import numpy as np

from keras_fip.datasets.task_stream import Task
from keras_fip.datasets.task_stream import TaskStream


def load_digits_split(test_size=0.3, random_state=0):
    """`(x_train, y_train, x_test, y_test)` of the digits, 64 features."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise ImportError(
            "The digits streams need scikit-learn: pip install scikit-learn"
        ) from error
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=random_state, stratify=y
    )
    return x_train, y_train, x_test, y_test


def split_digits(classes_per_task=2, test_size=0.3, random_state=0):
    """Class-incremental Split-digits: tasks (0,1), (2,3), ..., (8,9).

    Args:
        classes_per_task: classes per task (2 gives the 5-task stream).
        test_size: test fraction of the stratified split.
        random_state: seed of the split.

    Returns:
        A `TaskStream`; labels are the original digits (one 10-way head).

    Example:

    ```python
    stream = keras_fip.datasets.split_digits()
    len(stream), stream[0].classes      # 5, (0, 1)
    ```
    """
    x_train, y_train, x_test, y_test = load_digits_split(test_size,
                                                         random_state)
    return TaskStream.split_by_class(
        x_train,
        y_train,
        x_test,
        y_test,
        classes_per_task=classes_per_task,
        name="split_digits",
    )


def permuted_digits(num_tasks=5, seed=0, test_size=0.3, random_state=0):
    """Domain-incremental Permuted-digits: each task permutes the pixels.

    Args:
        num_tasks: the number of tasks (task 0 is unpermuted).
        seed: seed of the pixel permutations.
        test_size: test fraction of the stratified split.
        random_state: seed of the split.

    Returns:
        A `TaskStream` whose tasks all have the ten digit classes.
    """
    x_train, y_train, x_test, y_test = load_digits_split(test_size,
                                                         random_state)
    return TaskStream.permuted(
        x_train, y_train, x_test, y_test, num_tasks, seed=seed,
        name="permuted_digits",
    )


def rotated_digits(quarter_turns=(0, 1, 2, 3), test_size=0.3,
                   random_state=0):
    """Domain-incremental Rotated-digits: each task turns the 8×8 images.

    Args:
        quarter_turns: one task per entry, its images rotated by that many
            quarter turns counter-clockwise (`np.rot90`; an 8×8 image has
            no other lossless rotation).
        test_size: test fraction of the stratified split.
        random_state: seed of the split.

    Returns:
        A `TaskStream` of flat 64-pixel inputs; every task has the ten
        digit classes.

    Example:

    ```python
    stream = keras_fip.datasets.rotated_digits()
    len(stream), stream[1].x_train.shape[1]      # 4, 64
    ```
    """
    turns = [int(k) for k in quarter_turns]
    if not turns:
        raise ValueError("`quarter_turns` is empty: give one entry per task.")
    x_train, y_train, x_test, y_test = load_digits_split(test_size,
                                                         random_state)

    def turned(x, k):
        images = np.rot90(x.reshape(len(x), 8, 8), k, axes=(1, 2))
        return np.ascontiguousarray(images.reshape(len(x), 64))

    classes = tuple(int(c) for c in np.unique(y_train))
    return TaskStream([
        Task(name=f"rotated_digits/{90 * k % 360}", x_train=turned(x_train, k),
             y_train=y_train, x_test=turned(x_test, k), y_test=y_test,
             classes=classes) for k in turns], name="rotated_digits")


__all__ = ["load_digits_split", "permuted_digits", "rotated_digits",
           "split_digits"]
