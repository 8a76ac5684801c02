"""The memory of protected inputs and the anchor outputs of the network.

`Memory` keeps, as Keras variables of fixed shape, a class-balanced sample of
the inputs of finished tasks, their labels and task ids, and the outputs the
network gave them at the start of the current task (the *anchor*). Because it
is Keras state, a compiled train step sees a new task's memory without being
re-traced, JAX threads it through `stateless_apply`, and a `.keras` file keeps
it (its variables are saved with the optimizer that owns it). Inputs may be
any structure `keras.tree` walks: an array, a dict (KerasHub's token ids and
padding masks), lists, or nestings of them; one variable per leaf.

Filling (host side, between tasks): `add(x, y)` keeps `capacity // C` samples
of each of the C classes seen so far (free slots go to classes with more
samples), or does reservoir sampling when there are no labels. `consolidate`
then computes the anchor outputs of the stored inputs with the model as it
is now; outputs that are not finite are refused, so a diverged network never
poisons the memory. When a task's samples are added or anchored is not the
memory's business: the optimizer's `keras_fip.task_cycle.TaskCycle` decides.

Sampling (inside the compiled step): `next_batch` walks a permutation of the
stored samples, `batch_size` at a time, so each pass sees every sample once;
`shuffle` draws a new permutation with NumPy (the same on every backend).

Anchors (`anchor_storage`, see `keras_fip.anchor_storage`): the anchor
outputs themselves (`"outputs"`), the top-k log-probabilities per output
position (`"top_k"`), or only a copy of the model's trainable weights at
the task's start, the anchors being recomputed in the step
(`"snapshot"`); `"auto"` picks outputs or snapshot by size. `nbytes` is
what the memory holds, `keras_fip.anchor_storage.footprint_bytes` its
formula.
"""

import math

import keras
import numpy as np
from keras import ops
from keras import tree

from keras_fip import anchor_storage as storages
from keras_fip.memory_selection import class_balanced_keep
from keras_fip.memory_selection import reservoir_keep
from keras_fip.arrays import as_numpy


def _flatten(x):
    """`(structure, leaves)` of an input structure (`keras.tree`).

    `structure` is a JSON-able template of `x` whose leaves are their
    positions in `leaves` (`0` for a single array); `leaves` are NumPy
    arrays. Any nesting of dicts, lists and tuples works (tuples come back
    as lists after a config round trip).
    """
    leaves = [np.asarray(leaf) for leaf in tree.flatten(x)]
    positions = iter(range(len(leaves)))
    structure = tree.map_structure(lambda _: next(positions), x)
    return _plain(structure), leaves


def _plain(structure):
    """The template with tuples as lists (what JSON keeps)."""
    if isinstance(structure, dict):
        return {k: _plain(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_plain(v) for v in structure]
    return structure


def _pack(structure, leaves):
    return tree.pack_sequence_as(structure, list(leaves))


def _describe(structure, shapes):
    if structure == 0:
        return f"an array of per-sample shape {tuple(shapes[0])}"
    shaped = _pack(structure, [tuple(s) for s in shapes])
    return f"the structure {shaped}"


def _legacy_structure(keys):
    """The template for the `input_keys` of keras_fip 0.1 specs."""
    return 0 if keys is None else {k: i for i, k in enumerate(keys)}


def _num_samples(leaves):
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "Every memory input array needs the same leading (sample) axis; "
            f"got leading sizes {sorted(str(s) for s in sizes)}."
        )
    return sizes.pop()


def _labels_as_ints(y, n):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=1)  # one-hot labels
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise ValueError(
            f"Memory got {n} inputs but {y.shape[0]} labels; pass one "
            "integer class label per input (or y=None for reservoir "
            "sampling)."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(
                "Memory labels must be integer class ids (or one-hot rows); "
                f"got non-integer values such as {y[np.mod(y, 1) != 0][:3]}."
            )
    y = y.astype("int64")
    if y.size and y.min() < 0:
        raise ValueError(
            f"Memory labels must be class ids >= 0; got {int(y.min())}."
        )
    return y


class Memory:
    """Fixed-capacity memory of protected inputs and their anchor outputs.

    Args:
        capacity: the number of samples kept over all tasks (> 0).
        seed: seed of the NumPy generator that picks the kept samples and
            the sampling order (so runs repeat exactly on every backend).
        anchor_storage: how the anchors are kept: `"auto"` (default: the
            outputs when they are small, else a weight snapshot),
            `"outputs"`, `"top_k"` or `"snapshot"`. See
            `keras_fip.anchor_storage` for each one's bytes and error.
        top_k: k, the classes kept per output position with `"top_k"`.
        from_logits: whether the model outputs logits (for the top-k
            log-probabilities).
        spec: the shapes and dtypes of the stored tensors, as written by
            `get_config`. Leave `None`: the memory is built from the first
            data and model it sees (`build`).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    memory = keras_fip.Memory(capacity=6)
    x = np.random.rand(30, 4).astype("float32")
    y = np.repeat([0, 1, 2], 10)
    memory.build(model, x)
    memory.add(x, y)            # keeps 2 samples per class
    memory.consolidate(model)   # anchors = the model's outputs now
    memory.size                 # 6
    ```
    """

    def __init__(self, capacity, seed=0, anchor_storage="auto", top_k=32,
                 from_logits=True, spec=None):
        if isinstance(capacity, bool) or not isinstance(
            capacity, (int, np.integer)
        ):
            raise TypeError(
                f"Memory capacity must be an integer; got {capacity!r}."
            )
        if capacity <= 0:
            raise ValueError(
                f"Memory capacity must be > 0; got {capacity}. It is the "
                "number of protected samples kept over all tasks."
            )
        self.capacity = int(capacity)
        self.seed = int(seed)
        self.requested_storage, self.top_k = storages.check_storage(
            anchor_storage, top_k)
        self.from_logits = bool(from_logits)
        self.spec = None
        self._variables = []
        if spec is not None:
            self._build_from_spec(spec)

    # ------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------
    @property
    def built(self):
        return self.spec is not None

    def build(self, model, sample_inputs):
        """Allocates the memory for `model`'s inputs and outputs.

        Args:
            model: the Keras model whose outputs are protected.
            sample_inputs: a few inputs (array or dict of arrays, leading
                sample axis) showing the structure, shapes and dtypes.

        Raises:
            ValueError: the inputs do not fit the model, or the model has
                more than one output.
        """
        if self.built:
            return
        structure, leaves = _flatten(sample_inputs)
        _num_samples(leaves)
        outputs = _call_model(model, _pack(structure, [a[:1] for a in leaves]))
        weights = [{"shape": list(v.shape), "dtype": v.dtype}
                   for v in model.trainable_variables]
        storage = storages.resolve(
            self.requested_storage, self.capacity, outputs.shape[1:],
            sum(math.prod(w["shape"]) for w in weights))
        spec = {
            "input_structure": structure,
            "inputs": [
                {"shape": list(a.shape[1:]), "dtype": str(a.dtype)}
                for a in leaves
            ],
            "outputs": {"shape": list(outputs.shape[1:])},
            "anchors": {"storage": storage, "top_k": self.top_k,
                        "weights": weights if storage == "snapshot" else []},
        }
        self._build_from_spec(spec)

    def _build_from_spec(self, spec):
        cap = self.capacity

        def variable(shape, dtype, name):
            v = keras.Variable(
                np.zeros(shape, dtype=dtype),
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=f"memory_{name}",
            )
            self._variables.append(v)
            return v

        self.num_stored = variable((), "int32", "num_stored")
        self.num_active = variable((), "int32", "num_active")
        self.cursor = variable((), "int32", "cursor")
        self.num_seen = variable((), "int32", "num_seen")
        self.order = variable((cap,), "int32", "order")
        self.labels = variable((cap,), "int32", "labels")
        self.task_ids = variable((cap,), "int32", "task_ids")
        self.anchored = variable((cap,), "int32", "anchored")
        if "input_structure" not in spec:
            spec = dict(spec, input_structure=_legacy_structure(
                spec["input_keys"]))
        self._input_structure = spec["input_structure"]
        self._input_variables = [
            variable((cap, *s["shape"]), s["dtype"], f"inputs_{i}")
            for i, s in enumerate(spec["inputs"])
        ]
        anchors = spec.get("anchors") or {
            "storage": "outputs", "top_k": self.top_k, "weights": []}
        self._anchor_variables = [
            variable((cap, *shape), dtype, name)
            for name, shape, dtype in storages.anchor_shapes(
                anchors["storage"], spec["outputs"]["shape"],
                anchors["top_k"])
        ]
        self.snapshot_weights = [
            variable(w["shape"], w["dtype"], f"snapshot_{i}")
            for i, w in enumerate(anchors["weights"])
        ]
        self.spec = {k: spec[k]
                     for k in ("input_structure", "inputs", "outputs")}
        self.spec["anchors"] = anchors

    @property
    def anchor_storage(self):
        """The storage in use (`"auto"` resolved once built)."""
        if not self.built:
            return self.requested_storage
        return self.spec["anchors"]["storage"]

    @property
    def anchor_outputs(self):
        """The anchor-output variable (`anchor_storage="outputs"` only)."""
        if self.anchor_storage != "outputs":
            raise AttributeError(
                f"This memory keeps its anchors as {self.anchor_storage!r}, "
                "not as outputs.")
        return self._anchor_variables[0]

    @property
    def nbytes(self):
        """The bytes the memory's state takes (every variable)."""
        return int(sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize
                       for v in self._variables))

    @property
    def inputs(self):
        """The input variables: one, or a dict like the model's inputs."""
        return _pack(self._input_structure, self._input_variables)

    @property
    def variables(self):
        """All the memory's state, in a fixed order (saved by its owner)."""
        return list(self._variables)

    # ------------------------------------------------------------------
    # Host-side updates (between tasks)
    # ------------------------------------------------------------------
    @property
    def size(self):
        """The number of samples stored."""
        return int(as_numpy(self.num_stored)) if self.built else 0

    @property
    def is_active(self):
        """Whether the optimizer protects the memory (stored and anchored)."""
        if not self.built:
            return False
        return int(as_numpy(self.num_active)) > 0

    def stored(self):
        """Returns the stored `(inputs, labels, task_ids, anchors)`.

        `anchors` are the anchor outputs (`anchor_storage="outputs"`), the
        pair `(indices, log_probs)` (`"top_k"`), or `None` (`"snapshot"`:
        see `snapshot_weights`).
        """
        self._require_built("read")
        n = self.size
        inputs = _pack(
            self._input_structure,
            [as_numpy(v)[:n] for v in self._input_variables],
        )
        labels = as_numpy(self.labels)[:n]
        tasks = as_numpy(self.task_ids)[:n]
        return inputs, labels, tasks, self._anchors_of(
            self._stored_anchor_leaves())

    def _stored_anchor_leaves(self):
        """The per-sample anchor arrays of the stored samples (host)."""
        return [as_numpy(v)[: self.size] for v in self._anchor_variables]

    def _anchors_of(self, leaves):
        """Anchor arrays (or tensors) in the form `stored()` returns."""
        if self.anchor_storage == "outputs":
            return leaves[0]
        if self.anchor_storage == "top_k":
            return tuple(leaves)
        return None

    def add(self, x, y=None, task_id=0):
        """Adds a finished task's samples, keeping the memory balanced.

        With labels, each class seen so far keeps `capacity // C` samples
        (slots a class cannot fill go to the others); without labels the
        memory is a reservoir sample of everything added. The anchors of the
        memory are stale afterwards: call `consolidate` before training.

        Args:
            x: inputs, an array or dict of arrays with a leading sample axis,
                of the structure and shapes the memory was built with.
            y: integer class labels (or one-hot rows), or `None`.
            task_id: the id stored with these samples.
        """
        self._require_built("add samples to")
        leaves = self._check_inputs(x)
        n = _num_samples(leaves)
        old_leaves = [as_numpy(v)[: self.size] for v in self._input_variables]
        labels = as_numpy(self.labels)[: self.size]
        tasks = as_numpy(self.task_ids)[: self.size]
        anchors = self._stored_anchor_leaves()
        _check_padding_mask(x)
        flags = as_numpy(self.anchored)[: self.size]
        labelled_before = self.size > 0 and labels.min() >= 0
        if self.size > 0 and (y is None) == labelled_before:
            raise ValueError(
                "A memory holds either labelled samples (class-balanced) or "
                "unlabelled ones (reservoir); this one holds "
                f"{'labelled' if labelled_before else 'unlabelled'} samples "
                f"and was given {'no labels' if y is None else 'labels'}."
            )
        num_adds = int(as_numpy(self.num_seen))
        rng = np.random.default_rng([self.seed, num_adds, n, int(task_id)])
        new_tasks = np.full((n,), int(task_id), "int64")
        if y is None:
            keep_old, keep_new = reservoir_keep(
                self.size, n, num_adds, self.capacity, rng)
            new_labels = np.full((n,), -1, "int64")
        else:
            new_labels = _labels_as_ints(y, n)
            keep_old, keep_new = class_balanced_keep(
                labels, new_labels, self.capacity, rng)
        merged = [
            np.concatenate([old[keep_old], new[keep_new]])
            for old, new in zip(old_leaves, leaves)
        ]
        merged_labels = np.concatenate([labels[keep_old], new_labels[keep_new]])
        merged_tasks = np.concatenate([tasks[keep_old], new_tasks[keep_new]])
        merged_anchors = [
            np.concatenate([a[keep_old],
                            np.zeros((len(keep_new), *a.shape[1:]), a.dtype)])
            for a in anchors
        ]
        merged_flags = np.concatenate([flags[keep_old], np.zeros(len(keep_new))])
        self._write(merged, merged_labels, merged_tasks, merged_anchors,
                    merged_flags)
        self.num_seen.assign(num_adds + n)

    def clear(self):
        """Empties the memory (its shapes stay)."""
        self._require_built("clear")
        empty = np.zeros((0,), "int64")
        self._write(
            [np.zeros((0, *s["shape"])) for s in self.spec["inputs"]],
            empty, empty,
            [np.zeros((0, *v.shape[1:])) for v in self._anchor_variables],
            empty,
        )
        self.num_seen.assign(0)

    def _write(self, inputs, labels, tasks, anchors, flags):
        n = len(labels)
        cap = self.capacity

        def padded(array, dtype):
            out = np.zeros((cap, *array.shape[1:]), dtype=dtype)
            out[:n] = array
            return out

        for v, a in zip(self._input_variables, inputs):
            v.assign(padded(a, v.dtype))
        self.labels.assign(padded(labels, "int32"))
        self.task_ids.assign(padded(tasks, "int32"))
        for v, a in zip(self._anchor_variables, anchors):
            v.assign(padded(a, v.dtype))
        self.anchored.assign(padded(flags, "int32"))
        self.num_stored.assign(n)
        self.num_active.assign(0)  # anchors are stale until consolidate
        self.shuffle()

    def consolidate(self, model, batch_size=256, refresh=True, tasks=()):
        """Anchors the stored samples on the model as it is now.

        Computes the anchor outputs (inference mode) of the samples that
        need them and activates the memory.

        Args:
            model: the protected model.
            batch_size: the batch size of the anchor forward passes.
            refresh: `True` re-anchors every sample (FIP: the anchor is the
                network at the start of the task); `False` anchors only the
                samples not anchored yet (DER keeps the outputs a sample had
                when it was stored).
            tasks: with `refresh=False`, the ids of tasks whose samples are
                re-anchored too.

        Raises:
            ValueError: the model's outputs on some stored inputs are not
                finite (NaN or inf); the memory is left as it was.
        """
        self._require_built("consolidate")
        n = self.size
        if self.anchor_storage == "snapshot":
            self._snapshot(model)
            self.anchored.assign(np.where(np.arange(self.capacity) < n, 1, 0)
                                 .astype("int32"))
            self.num_active.assign(n)
            self.cursor.assign(0)
            return
        flags = as_numpy(self.anchored)
        if refresh:
            todo = np.arange(n)
        else:
            task_ids = as_numpy(self.task_ids)[:n]
            todo = np.flatnonzero((flags[:n] == 0)
                                  | np.isin(task_ids, list(tasks)))
        if len(todo):
            outputs = self._outputs(model, todo, batch_size)
            bad = ~np.isfinite(outputs.reshape(len(todo), -1)).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"The model's outputs on {int(bad.sum())} of "
                    f"{len(todo)} memory inputs are not finite (NaN or "
                    "inf): the network diverged (non-finite task data, or a "
                    "learning rate too high). They were not stored as "
                    "anchors; the memory is as it was. Restore the weights "
                    "of a finite network (a checkpoint) and train again."
                )
            encoded = storages.encode(self.anchor_storage, outputs,
                                      self.spec["anchors"]["top_k"],
                                      self.from_logits)
            for v, new in zip(self._anchor_variables, encoded):
                values = as_numpy(v).copy()
                values[todo] = new
                v.assign(values)
            flags = flags.copy()
            flags[todo] = 1
            self.anchored.assign(flags)
        self.num_active.assign(n)
        self.cursor.assign(0)

    def _outputs(self, model, rows, batch_size):
        """The model's outputs on the stored samples `rows` (host)."""
        leaves = [as_numpy(v)[rows] for v in self._input_variables]
        outputs = []
        for start in range(0, len(rows), batch_size):
            batch = _pack(
                self._input_structure,
                [a[start : start + batch_size] for a in leaves],
            )
            outputs.append(as_numpy(_call_model(model, batch)))
        return np.concatenate(outputs)

    def _snapshot(self, model):
        """Copies the model's trainable weights: the anchor network w₀."""
        weights = model.trainable_variables
        expected = [tuple(w["shape"]) for w in self.spec["anchors"]["weights"]]
        if [tuple(v.shape) for v in weights] != expected:
            raise ValueError(
                "The model's trainable weights changed since this memory was "
                f"built ({len(expected)} then, {len(weights)} now; e.g. "
                "LoRA enabled or layers frozen afterwards): a weight "
                "snapshot is taken of one set of weights. Build a new "
                "Memory for the new set.")
        values = [as_numpy(v) for v in weights]
        if not all(np.isfinite(a).all() for a in values
                   if np.issubdtype(a.dtype, np.floating)):
            raise ValueError(
                "The model's weights are not finite (NaN or inf): the "
                "network diverged. They were not stored as the anchor "
                "snapshot; the memory is as it was. Restore the weights of "
                "a finite network (a checkpoint) and train again.")
        for copy, value in zip(self.snapshot_weights, values):
            copy.assign(value)

    def state(self):
        """A NumPy copy of every variable (for `restore`)."""
        self._require_built("read")
        return [np.array(as_numpy(v)) for v in self._variables]

    def restore(self, state):
        """Writes back what `state()` returned."""
        for v, value in zip(self._variables, state):
            v.assign(value)

    def shuffle(self, salt=0):
        """Draws a new sampling order of the stored samples (NumPy)."""
        n = self.size
        rng = np.random.default_rng(
            [self.seed, int(as_numpy(self.num_seen)), 7, salt]
        )
        order = np.zeros((self.capacity,), "int32")
        order[:n] = rng.permutation(n)
        self.order.assign(order)
        self.cursor.assign(0)

    # ------------------------------------------------------------------
    # In-graph sampling (inside the compiled train step)
    # ------------------------------------------------------------------
    def next_batch(self, batch_size):
        """Returns the next `(inputs, anchors, labels)`; advances.

        Written with `keras.ops` for use inside a compiled train step. With
        an inactive memory the batch is made of slot 0 and must be unused.
        `anchors` are in the form of `stored()`: `None` for a snapshot
        memory (the step recomputes them from `snapshot_weights`).

        Args:
            batch_size: the number of samples to return.
        """
        active = ops.maximum(self.num_active.value, 1)
        positions = ops.mod(
            self.cursor.value + ops.arange(batch_size, dtype="int32"), active
        )
        index = ops.take(self.order.value, positions, axis=0)
        inputs = _pack(
            self._input_structure,
            [ops.take(v.value, index, axis=0) for v in self._input_variables],
        )
        anchors = self._anchors_of(
            [ops.take(v.value, index, axis=0) for v in self._anchor_variables])
        labels = ops.take(self.labels.value, index, axis=0)
        self.cursor.assign(ops.mod(self.cursor.value + batch_size, active))
        return inputs, anchors, labels

    # ------------------------------------------------------------------
    # Checks and serialization
    # ------------------------------------------------------------------
    def _require_built(self, action):
        if not self.built:
            raise ValueError(
                f"Cannot {action} a memory that is not built. Call "
                "`memory.build(model, sample_inputs)` first (the "
                "keras_fip.callbacks.TaskBoundary callback does it)."
            )

    def _check_inputs(self, x):
        """Returns the leaves of `x`; raises if they do not fit the spec."""
        structure, leaves = _flatten(x)
        expected = [s["shape"] for s in self.spec["inputs"]]
        shapes = [list(a.shape[1:]) for a in leaves]
        if structure != self._input_structure or shapes != expected:
            raise ValueError(
                "Memory inputs do not fit the memory (and model) they are "
                f"for: expected {_describe(self._input_structure, expected)}, got "
                f"{_describe(structure, shapes)}. Pass inputs shaped like the "
                "model's inputs (a dict with the same keys for dict-input "
                "models)."
            )
        return leaves

    def get_config(self):
        return {"capacity": self.capacity, "seed": self.seed,
                "anchor_storage": self.requested_storage,
                "top_k": self.top_k, "from_logits": self.from_logits,
                "spec": self.spec}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return (
            f"<Memory capacity={self.capacity} stored={self.size} "
            f"active={self.is_active} anchors={self.anchor_storage!r}>"
        )


def memory_or_default(memory):
    """`memory`, or a new `Memory(capacity=200)` when it is `None`."""
    return Memory(capacity=200) if memory is None else memory


def _call_model(model, inputs):
    """Runs `model` in inference mode; explains input mismatches."""
    try:
        outputs = model(inputs, training=False)
    except Exception as error:  # re-raised with what the user can fix
        raise ValueError(
            "The memory inputs do not fit the model: calling the model on "
            f"inputs {_describe(*_shapes(inputs))} "
            f"failed with {type(error).__name__}: {error}"
        ) from error
    if isinstance(outputs, (list, tuple, dict)):
        raise ValueError(
            "FIP protects a model with a single output tensor; this model "
            f"returns a {type(outputs).__name__} of outputs. Protect one "
            "head by building a model that returns it."
        )
    return outputs


def _check_padding_mask(x, key="padding_mask"):
    """Refuses a padding mask that is not 0/1 (KerasHub's convention)."""
    if not isinstance(x, dict) or key not in x:
        return
    mask = np.asarray(x[key])
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(
            f"The memory input {key!r} must hold 0/1 (or booleans): 1 for a "
            "real token, 0 for padding; got values such as "
            f"{np.unique(mask)[:5].tolist()}. Pass the preprocessor's "
            "padding mask as it is.")


def _shapes(inputs):
    structure, leaves = _flatten(inputs)
    return structure, [a.shape[1:] for a in leaves]
