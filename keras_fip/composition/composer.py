"""`Composer`: apply operations one after another, each result a file.

A composer owns a directory of networks. `start(model, name, knows)` saves
the network a chain starts from; `apply(parent, operation)` loads the
parent from its file, applies the operation through `fit`
(`keras_fip.composition.operations`), measures the result on every
evaluation set, and saves it as `<directory>/<name>.keras` with its
lineage inside (`keras_fip.composition.lineage`). The graph of networks is
rebuilt from the files alone (`NetworkGraph.read(directory)`).

The measurements at each network: `accuracy` on each evaluation task (or
the `score` you pass), `sparsity` (the fraction of exact zeros among the
pruned kernels, `keras_fip.sparsity.sparsity_report`),
`distance_from_parent` (‖w − w_parent‖ over the trainable weights),
`seconds` (the operation's wall time).

Saved networks hold no optimizer (the next operation compiles its own), so
a file is the size of the model; the optimizer's state of an operation is
not needed to go on, since every operation re-records the tasks the
network knows from the composer's training data.

Example:

```python
import keras, numpy as np, tempfile, keras_fip
from keras_fip import composition
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
data = {"A": (x[:32], np.arange(32) % 2), "B": (x[32:], 2 + np.arange(32) % 2)}
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                          keras.layers.Dense(4)])
composer = composition.Composer(
    tempfile.mkdtemp(), train=data, evaluate=data,
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
root = composer.start(model, "A", knows=["A"])
sparse = composer.apply(root, composition.Sparsify(0.5, steps=8))
both = composer.apply(sparse, composition.LearnTask("B", steps=8))
both.name                                  # 'A-sparse50-learnB'
both.lineage.measurements["sparsity"]      # 0.5: the zeros were kept
graph = composition.NetworkGraph.read(composer.directory)
assert graph.path_to("A-sparse50-learnB") == ["A", "A-sparse50",
                                              "A-sparse50-learnB"]
```
"""

import dataclasses
import os
import re
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_fip.composition import operations
from keras_fip.composition.lineage import Lineage
from keras_fip.composition.lineage import read_lineage
from keras_fip.composition.lineage import write_lineage
from keras_fip.evaluation import accuracy
from keras_fip.sparsity.magnitude import sparsity_report
from keras_fip.sparsity.selection import check_patterns

IF_EXISTS = ("error", "reuse", "overwrite")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def load_quietly(path, compile=False):
    """`keras.saving.load_model`, without the warning a KerasHub task gives.

    KerasHub tasks compile themselves when built, so loading one whose
    file holds another optimizer's variables warns that they were skipped;
    with `compile=False` nothing is to be restored.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Skipping variable loading for optimizer")
        return keras.saving.load_model(path, compile=compile)


@dataclasses.dataclass
class Network:
    """A network of a composer's graph: its file and its lineage.

    Example:

    ```python
    network = keras_fip.composition.Network.read("runs/digits/A.keras")
    network.lineage.measurements["accuracy"]
    model = network.load_model()
    ```
    """

    name: str
    path: str
    lineage: Lineage

    def load_model(self, compile=False):
        """The network as a Keras model (`keras.saving.load_model`)."""
        return load_quietly(self.path, compile=compile)

    @classmethod
    def read(cls, path):
        lineage = read_lineage(path)
        return cls(lineage.name, path, lineage)


def _check_sets(argument, sets):
    if not isinstance(sets, dict) or not sets:
        raise TypeError(
            f"`{argument}` must be a non-empty dict {{task name: (x, y)}}; "
            f"got {type(sets).__name__}.")
    checked = {}
    for name, pair in sets.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"Task names in `{argument}` must be strings of letters, "
                f"digits and ._+=- (they go into file names); got "
                f"{name!r}.")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"`{argument}[{name!r}]` must be an (x, y) "
                            f"pair as fit takes it; got {type(pair)}.")
        x, y = operations.as_arrays(pair[0]), operations.as_arrays(pair[1])
        n, m = operations.sample_count(x), operations.sample_count(y)
        if n != m or n == 0:
            raise ValueError(f"`{argument}[{name!r}]` has {n} inputs and "
                             f"{m} labels; they must match and be > 0.")
        checked[name] = (x, y)
    return checked


class _Context:
    """What an operation may read: the data, the loss, the seed."""

    def __init__(self, composer, knows, seed):
        self._composer = composer
        self.knows = list(knows)
        self.seed = seed
        self.loss = composer.loss
        self._target_weights = {}

    def training_data(self, task):
        train = self._composer.train
        if task not in train:
            raise KeyError(
                f"No training data for task {task!r}: the composer has "
                f"{sorted(train)}. Pass it in Composer(train={{...}}).")
        return train[task]

    def known_training_data(self):
        return operations.concatenate(
            [self.training_data(t) for t in self.knows])

    def target_weights(self, target):
        """Another network's trainable weights (read once per operation:
        `check` and `apply` both ask)."""
        if target not in self._target_weights:
            self._target_weights[target] = self._read_weights(target)
        return self._target_weights[target]

    def _read_weights(self, target):
        path = self._composer._path_of(target)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No network {target!r}: neither a network of "
                f"{self._composer.directory} nor a .keras file.")
        model = load_quietly(path)
        return [keras.ops.convert_to_numpy(v.value)
                for v in model.trainable_variables]


class Composer:
    """Applies FIP operations to networks and keeps each result as a file.

    Args:
        directory: where the networks' `.keras` files go (created).
        train: `{task name: (x, y)}`, each task's training data as `fit`
            takes it (raw strings for a KerasHub task with a preprocessor).
        evaluate: `{task name: (x, y)}`, the sets each network is measured
            on (validation splits while choosing settings).
        loss: the loss every operation compiles with.
        score: `score(model, x, y) -> float` for each evaluation set
            (default `keras_fip.evaluation.accuracy`).
        prune: glob patterns of the kernels whose sparsity is measured
            (default: dense, einsum-dense and convolution kernels).
        seed: the default seed of each operation (default 0).
        if_exists: when a network's file exists: `"error"` (default),
            `"reuse"` (return it if it was made from the same parent by an
            equal operation; an experiment then resumes), `"overwrite"`.

    Example:

    ```python
    composer = keras_fip.composition.Composer(
        "runs/digits", train={"A": (x_a, y_a), "B": (x_b, y_b)},
        evaluate={"A": (xv_a, yv_a), "B": (xv_b, yv_b)},
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    root = composer.start(model, "A", knows=["A"])
    sparse = composer.apply(root, keras_fip.composition.Sparsify(0.7))
    ```
    """

    def __init__(self, directory, train, evaluate, loss, score=None,
                 prune=None, seed=0, if_exists="error"):
        if loss is None:
            raise ValueError("`loss` is required: every operation compiles "
                             "the network with it.")
        if if_exists not in IF_EXISTS:
            raise ValueError(f"`if_exists` must be one of {IF_EXISTS}; got "
                             f"{if_exists!r}.")
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.train = _check_sets("train", train)
        self.evaluate = _check_sets("evaluate", evaluate)
        self.loss = loss
        self.score = score or accuracy
        self.prune = check_patterns(prune)
        self.seed = seed
        self.if_exists = if_exists

    def _path_of(self, name):
        if name.endswith(".keras"):
            return name
        return os.path.join(self.directory, f"{name}.keras")

    def network(self, name):
        """The network `name` of this composer, read from its file."""
        path = self._path_of(name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No network {name!r} in "
                                    f"{self.directory} (no {path}).")
        return Network.read(path)

    def measure(self, model):
        """The measurements of a network (see the module docstring)."""
        scores = {task: float(self.score(model, x, y))
                  for task, (x, y) in self.evaluate.items()}
        report = sparsity_report(model, self.prune)
        return {"accuracy": scores, "sparsity": float(report["overall"])}

    def _existing(self, name, parent, operation):
        """The network to reuse, or None to (over)write; raises on clash."""
        path = self._path_of(name)
        if not os.path.exists(path) or self.if_exists == "overwrite":
            return None
        if self.if_exists == "error":
            raise FileExistsError(
                f"{path} exists: a network named {name!r} was saved "
                "already. Choose another name, or pass "
                "Composer(if_exists='reuse') to resume an experiment "
                "(or 'overwrite').")
        found = Network.read(path)
        same = (found.lineage.parent == parent and
                found.lineage.operation == (
                    None if operation is None
                    else keras.saving.serialize_keras_object(operation)))
        if not same:
            raise FileExistsError(
                f"{path} holds another network (parent "
                f"{found.lineage.parent!r}, operation "
                f"{found.lineage.operation!r}) than the one asked for; "
                "choose another name.")
        return found

    def _save(self, model, lineage):
        path = self._path_of(lineage.name)
        model.save(path)
        write_lineage(path, lineage)
        return Network(lineage.name, path, lineage)

    def _save_without_optimizer(self, model, lineage):
        """Saves `model`'s architecture and weights, not its optimizer (a
        KerasHub task, compiled when built, would carry Adam's slots)."""
        handle, temporary = tempfile.mkstemp(suffix=".keras",
                                             dir=self.directory)
        os.close(handle)
        try:
            model.save(temporary)
            return self._save(load_quietly(temporary), lineage)
        finally:
            os.remove(temporary)

    def start(self, model, name, knows):
        """Saves `model`, the network a chain starts from.

        Args:
            model: a built Keras model.
            name: its name (letters, digits, `._+=-`).
            knows: the names of the tasks it has learned (each needs
                training data in `train`: the operations protect them).

        Returns:
            Its `Network`.
        """
        if isinstance(knows, str) or not isinstance(knows, (list, tuple)):
            raise TypeError(f"`knows` must be a list of task names; got "
                            f"{knows!r}.")
        for task in knows:
            if task not in self.train:
                raise ValueError(
                    f"The network knows {task!r} but the composer has no "
                    f"training data for it ({sorted(self.train)}): "
                    "operations protect known tasks with their samples.")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"`name` must be letters, digits and ._+=-; "
                             f"got {name!r}.")
        found = self._existing(name, None, None)
        if found is not None:
            return found
        lineage = Lineage(name=name, parent=None, operation=None,
                          knows=list(knows),
                          measurements=self.measure(model), seed=None)
        return self._save_without_optimizer(model, lineage)

    def apply(self, parent, operation, name=None, seed=None):
        """Applies `operation` to a copy of `parent` and saves the result.

        Args:
            parent: a `Network` (or its name).
            operation: a `keras_fip.composition` operation.
            name: the result's name (default `<parent>-<operation slug>`).
            seed: the operation's seed (default the composer's).

        Returns:
            The new `Network`; `network.load_model()` gives the model.
        """
        if isinstance(parent, str):
            parent = self.network(parent)
        if not isinstance(parent, Network):
            raise TypeError(f"`parent` must be a Network or a network's "
                            f"name; got {parent!r}.")
        if not isinstance(operation, operations.Operation):
            raise TypeError(
                "`operation` must be a keras_fip.composition operation "
                "(LearnTask, Sparsify, MoveToward, FineTune, "
                f"MagnitudePrune); got {operation!r}.")
        name = name or f"{parent.name}-{operation.slug()}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"`name` must be letters, digits and ._+=-; "
                             f"got {name!r}.")
        seed = self.seed if seed is None else seed
        context = _Context(self, parent.lineage.knows, seed)
        operation.check(context)
        found = self._existing(name, parent.name, operation)
        if found is not None:
            return found
        model = parent.load_model()
        before = [keras.ops.convert_to_numpy(v.value)
                  for v in model.trainable_variables]
        keras.utils.set_random_seed(seed)
        began = time.time()
        operation.apply(model, context)
        seconds = time.time() - began
        after = [keras.ops.convert_to_numpy(v.value)
                 for v in model.trainable_variables]
        measurements = self.measure(model)
        measurements["distance_from_parent"] = float(np.sqrt(sum(
            np.sum((a.astype("float64") - b) ** 2)
            for a, b in zip(after, before))))
        measurements["seconds"] = seconds
        # Saved without the operation's optimizer: a fresh copy of the
        # parent holding the new weights.
        result = parent.load_model()
        result.set_weights(model.get_weights())
        lineage = Lineage(
            name=name, parent=parent.name,
            operation=keras.saving.serialize_keras_object(operation),
            knows=operation.knows_after(parent.lineage.knows),
            measurements=measurements, seed=seed)
        return self._save(result, lineage)
