"""The memory of protected inputs, their labels and their anchors.

`Memory` keeps, as Keras variables of fixed shape, a class-balanced sample of
the inputs of finished tasks, their labels and task ids, and their anchors
(what the network's outputs are kept near; `keras_fip.anchors` owns how they
are stored and taken). Because it is Keras state, a compiled train step sees
a new task's memory without being re-traced, JAX threads it through
`stateless_apply`, and a `.keras` file keeps it (its variables are saved
with the optimizer that owns it). Inputs may be any structure `keras.tree`
walks: an array, a dict (KerasHub's token ids and padding masks), lists, or
nestings of them; one variable per leaf. The model may return several
outputs (a dict or list of heads): one anchor per head.

Filling (host side, between tasks): `add(x, y)` keeps `capacity // C` samples
of each of the C classes seen so far (free slots go to classes with more
samples), or does reservoir sampling when there are no labels.
`consolidate` then anchors the stored samples on the model as it is now
(`keras_fip.anchors.anchor_memory`). When a task's samples are added or
anchored is not the memory's business: the optimizer's
`keras_fip.task_cycle.TaskCycle` decides.

Sampling (inside the compiled step): `next_indices` walks a permutation of
the stored samples, `batch_size` at a time, so each pass sees every sample
once; `gather` reads a batch; `shuffle` draws a new permutation with NumPy
(the same on every backend).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_fip import anchors as anchor_storages
from keras_fip import layouts
from keras_fip import memory_spec
from keras_fip import nested
from keras_fip.arrays import as_numpy
from keras_fip.memory_selection import class_balanced_keep
from keras_fip.memory_selection import reservoir_keep


class Memory:
    """Fixed-capacity memory of protected inputs and their anchors.

    Args:
        capacity: the number of samples kept over all tasks (> 0).
        seed: seed of the NumPy generator that picks the kept samples and
            the sampling order (so runs repeat exactly on every backend).
        anchor_storage: how the anchors are kept: `"auto"` (default: the
            outputs when they are small, else a weight snapshot),
            `"outputs"`, `"top_k"` or `"snapshot"`. See
            `keras_fip.anchors` for each one's bytes and error.
        top_k: k, the classes kept per output position with `"top_k"`
            (default 32).
        from_logits: whether the model outputs logits (for the top-k
            log-probabilities; default `True`).
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
        self.requested_storage, self.top_k = anchor_storages.check_storage(
            anchor_storage, top_k)
        self.from_logits = bool(from_logits)
        self.spec = None
        self.storage = None
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
            ValueError: the inputs do not fit the model.
        """
        if self.built:
            return
        self._build_from_spec(memory_spec.build_spec(
            model, sample_inputs, self.requested_storage, self.capacity,
            self.top_k), model)

    def _build_from_spec(self, spec, model=None):
        """Creates the variables; under a `keras.distribution`, per-sample
        arrays are cut along the batch axis and weight copies like their
        weights (`keras_fip.layouts`; by the spec's paths when `model` is
        not given, as when a file is loaded)."""
        cap = self.capacity
        spec = memory_spec.complete(spec, self.top_k)

        def variable(shape, dtype, name, layout=None):
            v = keras.Variable(
                np.zeros(shape, dtype=dtype),
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                layout=layout,
                name=f"memory_{name}",
            )
            self._variables.append(v)
            return v

        def per_sample(shape, dtype, name):
            return variable(shape, dtype, name, layouts.per_sample(shape))

        self.num_stored = variable((), "int32", "num_stored")
        self.num_active = variable((), "int32", "num_active")
        self.cursor = variable((), "int32", "cursor")
        self.num_seen = variable((), "int32", "num_seen")
        self.order = variable((cap,), "int32", "order")
        self.labels = per_sample((cap,), "int32", "labels")
        self.task_ids = per_sample((cap,), "int32", "task_ids")
        self.anchored = per_sample((cap,), "int32", "anchored")
        self._input_structure = spec["input_structure"]
        self._input_variables = [
            per_sample((cap, *s["shape"]), s["dtype"], f"inputs_{i}")
            for i, s in enumerate(spec["inputs"])
        ]
        stored = spec["anchors"]
        self.storage = anchor_storages.get(stored["storage"],
                                           stored["top_k"])
        self.anchor_variables = [
            per_sample((cap, *shape), dtype, name)
            for name, shape, dtype in self.storage.variable_specs(
                memory_spec.output_shapes(spec))
        ]
        weights = (model.trainable_variables if model is not None
                   else [None] * len(stored["weights"]))
        self.weight_copies = [
            variable(w["shape"], w["dtype"], f"snapshot_{i}",
                     layouts.like_weight(weight) if weight is not None
                     else layouts.of_path(w.get("path"), w["shape"]))
            for i, (w, weight) in enumerate(zip(stored["weights"], weights))
        ]
        self.spec = spec

    @property
    def anchor_storage(self):
        """The storage's name (`"auto"` resolved once built)."""
        if not self.built:
            return self.requested_storage
        return self.storage.name

    @property
    def weight_specs(self):
        """Shapes and dtypes of the weights a snapshot storage copies."""
        return self.spec["anchors"]["weights"]

    @property
    def snapshot_weights(self):
        """The weight copies (the anchor network w₀ of a snapshot)."""
        return self.weight_copies

    @property
    def output_shapes(self):
        """The per-sample shape of each output head."""
        return memory_spec.output_shapes(self.spec)

    @property
    def output_structure(self):
        """The template of the model's outputs (`0`: a single head)."""
        return memory_spec.output_template(self.spec)

    @property
    def nbytes(self):
        """The bytes the memory's state takes (every variable)."""
        return int(sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize
                       for v in self._variables))

    @property
    def inputs(self):
        """The input variables: one, or a dict like the model's inputs."""
        return nested.pack(self._input_structure, self._input_variables)

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

    def stored_inputs(self, rows=None):
        """The stored inputs (of the samples `rows`, default all), NumPy."""
        self._require_built("read")
        rows = np.arange(self.size) if rows is None else rows
        return nested.pack(self._input_structure,
                           [as_numpy(v)[rows] for v in self._input_variables])

    def stored(self):
        """Returns the stored `(inputs, labels, task_ids, anchors)`.

        `anchors` are the per-sample anchor arrays in the storage's order
        (`keras_fip.anchors`): for `"outputs"` the anchor outputs (one
        array, or a list with one per head), for `"top_k"` the pair
        `(indices, log_probs)` per head, for `"snapshot"` `None` (see
        `snapshot_weights`).
        """
        self._require_built("read")
        n = self.size
        leaves = [as_numpy(v)[:n] for v in self.anchor_variables]
        return (self.stored_inputs(), as_numpy(self.labels)[:n],
                as_numpy(self.task_ids)[:n], self._grouped(leaves))

    def _grouped(self, leaves):
        """Anchor arrays per head, one head unwrapped (`stored()`'s form)."""
        if not leaves:
            return None
        per_head = len(leaves) // len(self.output_shapes)
        groups = [leaves[i] if per_head == 1 else tuple(leaves[i:i + per_head])
                  for i in range(0, len(leaves), per_head)]
        return groups[0] if len(groups) == 1 else groups

    def add(self, x, y=None, task_id=0, keep_anchors=True):
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
            keep_anchors: `True` (default) moves the kept samples' anchors
                with them (the new ones unanchored); `False` neither reads
                nor writes the anchors and marks every sample unanchored,
                for a memory whose every sample is re-anchored next
                (`consolidate(refresh=True)`, FIP's task start): no copy of
                the N anchors.
        """
        self._require_built("add samples to")
        leaves = memory_spec.check_inputs(self.spec, x)
        n = nested.num_samples(leaves)
        memory_spec.check_padding_mask(x)
        size = self.size
        old_leaves = [as_numpy(v)[:size] for v in self._input_variables]
        labels = as_numpy(self.labels)[:size]
        tasks = as_numpy(self.task_ids)[:size]
        anchors = [as_numpy(v)[:size] for v in self.anchor_variables] \
            if keep_anchors else []
        flags = as_numpy(self.anchored)[:size] if keep_anchors \
            else np.zeros((size,), "int32")
        labelled_before = size > 0 and labels.min() >= 0
        if size > 0 and (y is None) == labelled_before:
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
                size, n, num_adds, self.capacity, rng)
            new_labels = np.full((n,), -1, "int64")
        else:
            new_labels = memory_spec.class_ids(y, n)
            keep_old, keep_new = class_balanced_keep(
                labels, new_labels, self.capacity, rng)
        merged = [np.concatenate([old[keep_old], new[keep_new]])
                  for old, new in zip(old_leaves, leaves)]
        merged_labels = np.concatenate([labels[keep_old], new_labels[keep_new]])
        merged_tasks = np.concatenate([tasks[keep_old], new_tasks[keep_new]])
        merged_anchors = [
            np.concatenate([a[keep_old],
                            np.zeros((len(keep_new), *a.shape[1:]), a.dtype)])
            for a in anchors
        ]
        merged_flags = np.concatenate([flags[keep_old],
                                       np.zeros(len(keep_new))])
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
            [np.zeros((0, *v.shape[1:])) for v in self.anchor_variables],
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
        for v, a in zip(self.anchor_variables, anchors):
            v.assign(padded(a, v.dtype))
        self.anchored.assign(padded(flags, "int32"))
        self.num_stored.assign(n)
        self.num_active.assign(0)  # anchors are stale until consolidate
        self.shuffle()

    def consolidate(self, model,
                    batch_size=anchor_storages.ANCHOR_BATCH_SIZE,
                    refresh=True, tasks=()):
        """Anchors the stored samples on the model as it is now.

        See `keras_fip.anchors.anchor_memory` (this calls it).

        Args:
            model: the protected model.
            batch_size: the samples per compiled anchoring pass (default
                32); the outputs are encoded and stored chunk by chunk, so
                anchoring holds one chunk's outputs beyond the anchors.
            refresh: `True` re-anchors every sample (FIP: the anchor is the
                network at the start of the task); `False` anchors only the
                samples not anchored yet (DER keeps the outputs a sample had
                when it was stored).
            tasks: with `refresh=False`, the ids of tasks whose samples are
                re-anchored too.

        Raises:
            ValueError: the model's outputs on some stored inputs (or its
                weights, for a snapshot) are not finite; the memory is left
                as it was.
        """
        self._require_built("consolidate")
        anchor_storages.anchor_memory(self, model, batch_size, refresh, tasks)

    def activate(self):
        """Protects every stored sample from the next step on."""
        self.num_active.assign(self.size)
        self.cursor.assign(0)

    def state(self, anchors=True):
        """A NumPy copy of every variable (for `restore`).

        Args:
            anchors: `False` leaves out the anchor variables (`None` in
                their place; `restore` then leaves them as they are): for
                an update that does not write them (`add(...,
                keep_anchors=False)`), without a copy of the N anchors.
        """
        self._require_built("read")
        skip = set() if anchors else {id(v) for v in self.anchor_variables}
        return [None if id(v) in skip else np.array(as_numpy(v))
                for v in self._variables]

    def restore(self, state):
        """Writes back what `state()` returned (`None`: left as it is)."""
        for v, value in zip(self._variables, state):
            if value is not None:
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
    def next_indices(self, batch_size):
        """The slots of the next `batch_size` samples; advances the cursor.

        Written with `keras.ops` for use inside a compiled train step. With
        an inactive memory the batch is made of slot 0 and must be unused.
        """
        active = ops.maximum(self.num_active.value, 1)
        positions = ops.mod(
            self.cursor.value + ops.arange(batch_size, dtype="int32"), active
        )
        index = ops.take(self.order.value, positions, axis=0)
        self.cursor.assign(ops.mod(self.cursor.value + batch_size, active))
        return index

    def gather(self, index):
        """`(inputs, anchor_leaves, labels)` of the slots `index` (in-graph).

        `anchor_leaves` are the per-sample anchor arrays in the storage's
        order; `storage.batch` turns them into one `Anchor` per head.
        """
        inputs = nested.pack(
            self._input_structure,
            [ops.take(v.value, index, axis=0) for v in self._input_variables],
        )
        leaves = [ops.take(v.value, index, axis=0)
                  for v in self.anchor_variables]
        labels = ops.take(self.labels.value, index, axis=0)
        return inputs, leaves, labels

    def next_batch(self, batch_size):
        """Returns the next `(inputs, anchors, labels)`; advances.

        `anchors` in the form of `stored()`.

        Args:
            batch_size: the number of samples to return.
        """
        inputs, leaves, labels = self.gather(self.next_indices(batch_size))
        return inputs, self._grouped(leaves), labels

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
