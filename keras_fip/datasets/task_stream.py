"""`TaskStream`: a sequence of tasks built from plain arrays."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Task:
    """One task of a stream: its name, classes and train/test arrays.

    (What a continual optimizer hands its terms at a task boundary is
    `keras_fip.task_cycle.TaskData`, the task id and the data only.)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple = ()


def _check_pair(x, y, split):
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise ValueError(
            f"The {split} set has {len(x)} inputs but {len(y)} labels."
        )
    return x, y


def _take(x, index):
    """Rows `index` of an array or of every array in a dict."""
    if isinstance(x, dict):
        return {key: value[index] for key, value in x.items()}
    return x[index]


class TaskStream:
    """An ordered list of `Task`s; iterate over it to train task by task.

    Build one from any arrays, for example MNIST from `keras.datasets`:

    ```python
    (x, y), (xt, yt) = keras.datasets.mnist.load_data()
    stream = keras_fip.datasets.TaskStream.split_by_class(
        x / 255.0, y, xt / 255.0, yt, classes_per_task=2)
    for task in stream:
        model.fit(task.x_train, task.y_train)
    ```

    Args:
        tasks: a list of `Task`.
        name: the stream's name.
    """

    def __init__(self, tasks, name="stream"):
        tasks = list(tasks)
        if not tasks:
            raise ValueError("A TaskStream needs at least one task.")
        self.tasks = tasks
        self.name = name

    def _derived(self, tasks, name):
        """A new stream of `tasks` that keeps what a loader set on this one
        (`vocabulary_size`, `categories`, ...)."""
        stream = TaskStream(tasks, name=name)
        for key, value in vars(self).items():
            if key not in ("tasks", "name"):
                setattr(stream, key, value)
        return stream

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self):
        return len(self.tasks)

    def __getitem__(self, index):
        return self.tasks[index]

    def test_sets(self):
        """`[(x_test, y_test), ...]`, one pair per task."""
        return [(t.x_test, t.y_test) for t in self.tasks]

    def joint(self, upto=None, seed=None):
        """All training data of the first `upto` tasks (default: all).

        Args:
            upto: how many tasks, from the first.
            seed: if given, the samples are shuffled with this seed;
                otherwise they come task after task. Shuffle for a KerasHub
                model with a preprocessor: its `fit` turns arrays into a
                `tf.data.Dataset` and ignores `shuffle=True`, so sorted data
                would be learned one task after the other.

        Returns:
            `(x, y)`.
        """
        tasks = self.tasks[: len(self.tasks) if upto is None else upto]
        x = np.concatenate([t.x_train for t in tasks])
        y = np.concatenate([t.y_train for t in tasks])
        if seed is None:
            return x, y
        order = np.random.default_rng(seed).permutation(len(y))
        return x[order], y[order]

    def holdout(self, fraction=0.2):
        """A stream for choosing settings: each task's test set is replaced.

        In every task the last `fraction` of each class's training samples
        becomes its test set (stratified, so a task whose samples are sorted
        by class is still validated on all its classes) and the rest, in
        their order, its training set, so settings can be compared without
        looking at the real test data.

        ```python
        import keras_fip
        stream = keras_fip.datasets.split_digits()
        validation = stream.holdout(0.2)
        assert set(validation[0].y_test) == set(stream[0].y_train)
        ```

        Args:
            fraction: the share of each class's training data held out, in
                (0, 1).

        Returns:
            A new `TaskStream`; this one is unchanged.
        """
        if not 0 < fraction < 1:
            raise ValueError(
                f"`fraction` must lie in (0, 1); got {fraction}."
            )
        tasks = []
        for task in self.tasks:
            held = np.zeros(len(task.y_train), bool)
            for label in np.unique(task.y_train):
                where = np.flatnonzero(task.y_train == label)
                count = int(round(fraction * len(where)))
                held[where[len(where) - count:]] = True
            if held.all() or not held.any():
                raise ValueError(
                    f"Task {task.name!r} has {len(task.y_train)} training "
                    f"samples: too few to hold out {fraction} of them."
                )
            train, test = np.flatnonzero(~held), np.flatnonzero(held)
            tasks.append(dataclasses.replace(
                task, x_train=_take(task.x_train, train),
                y_train=task.y_train[train], x_test=_take(task.x_train, test),
                y_test=task.y_train[test]))
        return self._derived(tasks, self.name + "/holdout")

    def map_inputs(self, function, name=None):
        """A stream whose training and test inputs are `function(x)`.

        For a model that reads the same data in another shape, e.g. the
        flat 64-pixel digits as 8×8×1 images for a `ViTImageClassifier`:

        ```python
        import keras_fip
        stream = keras_fip.datasets.split_digits()
        images = stream.map_inputs(lambda x: x.reshape(-1, 8, 8, 1))
        assert images[0].x_test.shape[1:] == (8, 8, 1)
        ```

        Args:
            function: maps an array of inputs (samples first) to an array
                with the same number of samples.
            name: the new stream's name (default: this one's).

        Returns:
            A new `TaskStream`; labels, classes and this stream are
            unchanged.
        """
        tasks = []
        for task in self.tasks:
            x_train, x_test = function(task.x_train), function(task.x_test)
            for split, before, after in (("training", task.x_train, x_train),
                                         ("test", task.x_test, x_test)):
                if len(after) != len(before):
                    raise ValueError(
                        f"`function` turned the {len(before)} {split} "
                        f"inputs of task {task.name!r} into {len(after)}; "
                        "it must map each sample to one sample."
                    )
            tasks.append(dataclasses.replace(task, x_train=x_train,
                                             x_test=x_test))
        return self._derived(tasks, name or self.name)

    @property
    def num_classes(self):
        """One more than the largest label of any task."""
        return int(max(np.max(t.y_train) for t in self.tasks)) + 1

    @classmethod
    def split_by_class(
        cls,
        x_train,
        y_train,
        x_test,
        y_test,
        classes_per_task=None,
        class_order=None,
        name="split",
    ):
        """Class-incremental split: each task owns a group of classes.

        Labels keep their original ids (one head over all classes, no task
        id at test time).

        Args:
            x_train: training inputs (an array).
            y_train: training labels, as class ids.
            x_test: test inputs.
            y_test: test labels.
            classes_per_task: an int (consecutive groups of `class_order`)
                or a list of class groups such as `[(0, 1), (2, 3)]`.
            class_order: the order of classes before grouping (default:
                sorted).
            name: the stream's name.
        """
        x_train, y_train = _check_pair(x_train, y_train, "training")
        x_test, y_test = _check_pair(x_test, y_test, "test")
        classes = np.unique(y_train) if class_order is None else class_order
        classes = [int(c) for c in classes]
        if classes_per_task is None:
            raise ValueError(
                "Pass `classes_per_task`: an int or a list of class groups."
            )
        if isinstance(classes_per_task, (int, np.integer)):
            if classes_per_task <= 0:
                raise ValueError(
                    f"`classes_per_task` must be > 0; got {classes_per_task}."
                )
            k = int(classes_per_task)
            groups = [classes[i : i + k] for i in range(0, len(classes), k)]
        else:
            groups = [list(g) for g in classes_per_task]
        tasks = []
        for i, group in enumerate(groups):
            train = np.isin(y_train, group)
            test = np.isin(y_test, group)
            if not train.any() or not test.any():
                raise ValueError(
                    f"Task {i} (classes {group}) has no training or no test "
                    "samples; check the class ids."
                )
            tasks.append(
                Task(
                    name=f"{name}/{'-'.join(str(c) for c in group)}",
                    x_train=x_train[train],
                    y_train=y_train[train],
                    x_test=x_test[test],
                    y_test=y_test[test],
                    classes=tuple(group),
                )
            )
        return cls(tasks, name=name)

    @classmethod
    def permuted(
        cls, x_train, y_train, x_test, y_test, num_tasks, seed=0,
        name="permuted",
    ):
        """Domain-incremental stream: each task permutes the input features.

        Task 0 keeps the identity permutation; every task has all classes.

        Args:
            x_train: training inputs; flattened per sample before
                permuting (and keeping that flat shape), as are `x_test`.
            y_train: training labels, as class ids.
            x_test: test inputs.
            y_test: test labels.
            num_tasks: the number of tasks (> 0).
            seed: seed of the permutations.
            name: the stream's name.
        """
        if num_tasks <= 0:
            raise ValueError(f"`num_tasks` must be > 0; got {num_tasks}.")
        x_train, y_train = _check_pair(x_train, y_train, "training")
        x_test, y_test = _check_pair(x_test, y_test, "test")
        x_train = x_train.reshape(len(x_train), -1)
        x_test = x_test.reshape(len(x_test), -1)
        rng = np.random.default_rng(seed)
        d = x_train.shape[1]
        tasks = []
        for i in range(num_tasks):
            perm = np.arange(d) if i == 0 else rng.permutation(d)
            tasks.append(
                Task(
                    name=f"{name}/{i}",
                    x_train=x_train[:, perm],
                    y_train=y_train,
                    x_test=x_test[:, perm],
                    y_test=y_test,
                    classes=tuple(int(c) for c in np.unique(y_train)),
                )
            )
        return cls(tasks, name=name)
