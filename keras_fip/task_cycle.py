"""`TaskCycle`: one continual optimizer's task life cycle, in one place.

A continual optimizer owns one `TaskCycle`. It holds which task is being
trained, which one last ended, a fingerprint of the current task's data, the
anchoring policy of the optimizer's `Memory` and a copy of the model state
that training assigns (BatchNorm statistics, seed states), taken when a
task begins, for the memory's forward passes (state training never
assigns, such as a frozen base under LoRA, is read where it lives and not
copied: `keras_fip.model_state`). All of it is Keras state, saved with the
optimizer and restored by `load_model`, `load_weights` and
`BackupAndRestore`; each copy has its variable's distribution layout.

The life cycle (host side; `TaskBoundary` and `remember_task` call it
through `ContinualOptimizer.begin_task` / `end_task`):

- `bind(model, x)`: builds the memory and the snapshot for the model, so
  every variable a step reads exists before the step is first traced.
- `begin(model, task)`: a new task id anchors the memory once — every
  stored sample on the network as it is now (`anchors="task_start"`, FIP's
  reference code), or only the samples of the task that just ended
  (`"stored"`, DER's logits at storage time) — and snapshots the model
  state. The same id with the same data resumes (the anchors stay); the
  same id with other data, or an id lower than the last finished task's,
  is refused.
- `begin_epoch(epoch)`: a new sampling order of the memory (from epoch 1;
  done at an epoch's start, so a checkpoint written at an epoch's end by
  any callback resumes into the same order).
- `end(model, task)`: the task's samples join the memory and, with
  `"task_start"`, every sample is anchored on the network as it is: one
  anchoring pass per boundary, in chunks. The next `begin` anchors again
  only if the weights changed since (so
  `EarlyStopping(restore_best_weights=True)` gives the same anchors in
  either callback order). With `"stored"` only the new samples are
  anchored. The outputs must be finite, or the memory is left as it was.
  Ending the same task twice does nothing.

With `holds="current_task"` (LwF) the memory holds the new task's inputs
instead, refilled and anchored when a task begins and never kept.
"""

import dataclasses
import warnings
import zlib

import keras
import numpy as np
from keras import ops
from keras import tree

from keras_fip import backend as fip_backend
from keras_fip import layouts
from keras_fip import model_state
from keras_fip.arrays import as_numpy

ANCHORS = ("task_start", "stored")
HOLDS = ("finished_tasks", "current_task")


@dataclasses.dataclass
class TaskData:
    """A task as the life cycle sees it (its id and data), handed to terms.

    Not `keras_fip.datasets.Task`, a task of a dataset stream (with its
    train and test splits and classes).

    Attributes:
        task_id: the task's integer id (0, 1, ...).
        x: its inputs as the model's forward pass takes them.
        y: its integer labels, or `None`.
    """

    task_id: int
    x: object
    y: object = None

    def fingerprint(self):
        """A 31-bit checksum of the task's samples, in any order.

        Each sample's bytes (inputs and label) are checksummed, and the
        sorted checksums checksummed again: the same data shuffled has the
        same fingerprint, other data (almost surely) another.
        """
        leaves = [np.asarray(leaf) for leaf in tree.flatten(self.x)]
        if self.y is not None:
            leaves.append(np.asarray(self.y))
        rows = [np.ascontiguousarray(leaf).reshape(len(leaf), -1)
                for leaf in leaves]
        per_sample = np.array([
            zlib.crc32(b"".join(row[i].tobytes() for row in rows))
            for i in range(len(rows[0]))], dtype=np.uint32)
        checksum = zlib.crc32(np.sort(per_sample).tobytes())
        return checksum & 0x7FFFFFFF


def _read_int(variable):
    return int(as_numpy(variable))


def _sums(values):
    """(Σw, Σw²) of each array, in float32, stacked."""
    return ops.stack([f(ops.cast(w, "float32"))
                      for w in values for f in (ops.sum, _sum_of_squares)])


def _sum_of_squares(w):
    return ops.sum(ops.square(w))


# One compiled reduction (JAX would keep an executable per weight shape
# for eager ops, resident for the whole run).
_compiled_sums = fip_backend.compile_function(_sums)


def _weights_checksum(model):
    """(Σw, Σw²) of every floating weight, reduced on device (float32).

    Equal weights give equal sums (the same reduction of the same values);
    weights that changed almost surely do not.
    """
    values = [v.value for v in model.weights if "float" in str(v.dtype)]
    return tuple(as_numpy(_compiled_sums(values)).tolist()) if values \
        else ()


def _shapes(variables):
    """`[(shape, dtype)]` of variables or of `state_spec` entries."""
    return [(list(v["shape"]), v["dtype"]) if isinstance(v, dict)
            else (list(v.shape), v.dtype) for v in variables]


class TaskCycle:
    """The task ids, anchoring policy and model-state snapshot of one
    optimizer.

    Args:
        memory: the optimizer's `keras_fip.Memory`, or `None` (EWC, SI).
        anchors: `"task_start"` or `"stored"` (see the module docstring).
        holds: `"finished_tasks"` (default) or `"current_task"` (LwF).
        state_spec: shapes and dtypes of the model-state snapshot, as
            written by `get_config`; leave `None` (built at `bind`).
    """

    def __init__(self, memory=None, anchors="task_start",
                 holds="finished_tasks", state_spec=None):
        if anchors not in ANCHORS:
            raise ValueError(
                f"Unknown anchors {anchors!r}. Expected 'task_start' "
                "(re-anchor every stored sample when a task begins, the "
                "reference code) or 'stored' (keep the outputs each sample "
                "had when its task ended)."
            )
        if holds not in HOLDS:
            raise ValueError(
                f"Unknown holds {holds!r}; expected one of {HOLDS}.")
        self.memory = memory
        self.anchors = anchors
        self.holds = holds

        def counter(name):
            return keras.Variable(-1, dtype="int32", trainable=False,
                                  aggregation="only_first_replica", name=name)

        self.current_task = counter("current_task")
        self.committed_task = counter("committed_task")
        self.fingerprint = keras.Variable(
            0, dtype="int32", trainable=False,
            aggregation="only_first_replica", name="task_fingerprint")
        # The optimizer's step count when the last task ended.
        self.ended_at_step = keras.Variable(
            0, dtype="int32", trainable=False,
            aggregation="only_first_replica", name="ended_at_step")
        self.model_state = []
        self.state_spec = None
        # Host side: a checksum of the weights a task_start end anchored
        # the memory on (`None`: the next begin anchors).
        self._anchored_weights = None
        if state_spec is not None:
            self.build_state(state_spec)

    @property
    def variables(self):
        """All the state, in a fixed order (saved by the optimizer)."""
        memory = self.memory.variables if self.memory is not None and \
            self.memory.built else []
        return [self.current_task, self.committed_task, self.fingerprint,
                self.ended_at_step, *memory, *self.model_state]

    # ------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------
    def build_state(self, spec, model=None):
        """Creates the model-state copies described by `spec`.

        Only the variables training assigns are copied
        (`keras_fip.model_state`); each copy has its variable's layout.

        Args:
            spec: one `{"shape", "dtype", "path", "copy"}` per
                non-trainable variable of the model (`state_spec`, as
                saved in a config; a spec without `"copy"` copies every
                variable, as files of 0.7 and before did).
            model: the model, to lay each copy out like its variable
                (else by the spec's path).
        """
        spec = [dict(s) for s in spec]
        originals = (model.non_trainable_variables if model is not None
                     else [None] * len(spec))
        self.model_state = []
        for i, (s, original) in enumerate(zip(spec, originals)):
            if not s.setdefault("copy", True):
                continue
            layout = (layouts.like_weight(original) if original is not None
                      else layouts.of_path(s.get("path"), s["shape"]))
            self.model_state.append(keras.Variable(
                np.zeros(s["shape"], s["dtype"]), dtype=s["dtype"],
                trainable=False, aggregation="only_first_replica",
                layout=layout, name=f"model_state_{i}"))
        self.state_spec = spec

    @property
    def copied_state(self):
        """The indices, among the model's non-trainable variables, of
        those the optimizer keeps a copy of."""
        return [i for i, s in enumerate(self.state_spec or []) if s["copy"]]

    def state_values(self, model):
        """Every non-trainable value a memory pass reads, in the model's
        order: the copy where one is kept, else the variable's own value
        (`keras_fip.model_state.live_value`)."""
        copies = dict(zip(self.copied_state, self.model_state))
        return [copies[i].value if i in copies
                else model_state.live_value(model, i)
                for i in range(len(model.non_trainable_variables))]

    def bind(self, model, sample_inputs=None):
        """Builds the memory and the model-state snapshot for `model`.

        Returns:
            Whether any variable was created (the step must be traced
            again if it was traced before).
        """
        created = False
        if self.memory is not None and not self.memory.built:
            if sample_inputs is None:
                raise ValueError(
                    "The memory is not built yet and no task data was "
                    "given to build it from: pass TaskBoundary(task_id, x, "
                    "y) to fit(), or call remember_task(model, ...).")
            self.memory.build(model, sample_inputs)
            created = True
        shapes = _shapes(model.non_trainable_variables)
        if self.state_spec is None:
            self.build_state(self._state_spec(model, sample_inputs), model)
            self.snapshot(model)
            created = True
        elif shapes != _shapes(self.state_spec):
            raise ValueError(
                "The model's non-trainable variables changed since this "
                f"optimizer was built ({len(self.state_spec)} then, "
                f"{len(shapes)} now): a layer was frozen or added. A "
                "continual optimizer is built for one set of variables. "
                "Compile again with a new optimizer that keeps the memory, "
                "e.g. model.compile(optimizer=keras_fip.FIPOptimizer("
                "keras.optimizers.Adam(), memory=old.memory), ...)."
            )
        model_state.record_step_state(model)
        if self.memory is not None and self.memory.built:
            _check_output_shape(model, self.memory)
        return created

    def _state_spec(self, model, sample_inputs):
        """`state_spec` for `model`: shape, dtype, path, and whether it is
        copied (training assigns it; all of them when no inputs show)."""
        variables = model.non_trainable_variables
        if sample_inputs is None and self.memory is not None \
                and self.memory.built:
            sample_inputs = self.memory.stored_inputs(np.arange(1))
        copied = ([True] * len(variables) if sample_inputs is None else
                  model_state.assigned_in_training(model, sample_inputs))
        return [{"shape": list(v.shape), "dtype": v.dtype, "path": v.path,
                 "copy": bool(c)} for v, c in zip(variables, copied)]

    def snapshot(self, model):
        """Copies the model state training assigns, for the memory's
        passes (on device: each copy keeps its variable's layout)."""
        variables = model.non_trainable_variables
        for copy, i in zip(self.model_state, self.copied_state):
            copy.assign(ops.copy(variables[i].value))

    # ------------------------------------------------------------------
    # The life cycle
    # ------------------------------------------------------------------
    def begin(self, model, task, step=0, known=False):
        """Starts (or resumes) `task`; anchors the memory once.

        Args:
            model: the protected model.
            task: the `TaskData`.
            step: the optimizer's step count now (to tell whether steps
                were taken outside any task since the last one ended).
            known: whether the network was already trained on `task`
                (`remember_task`): steps taken before it are then its own,
                and nothing is checked about them.

        Raises:
            ValueError: the task id is reused with other data or goes back,
                or this is the first task, its id is above 0 and the
                optimizer already took steps (see `_check_untracked`).
        """
        current = _read_int(self.current_task)
        fingerprint = task.fingerprint()
        if current == task.task_id:
            if _read_int(self.fingerprint) != fingerprint:
                raise ValueError(
                    f"Task {task.task_id} was begun before with other data. "
                    "A task id may be reused only to resume the same task "
                    "(same x and y); give a new task its own id, e.g. "
                    f"TaskBoundary({max(current, self.last_task) + 1}, x, y)."
                )
            return False  # resuming: keep the anchors
        if task.task_id < max(current, self.last_task):
            raise ValueError(
                f"Task ids must not go back: task {task.task_id} comes after "
                f"task {max(current, self.last_task)}. Give each new task a "
                "larger id than the last one."
            )
        outside = step - _read_int(self.ended_at_step)
        if (not known and self.last_task < 0 and step > 0
                and not (self.memory is not None and self.memory.size)):
            _check_untracked(task.task_id, current, step)
        elif (not known and self.last_task >= 0 and current == self.last_task
              and outside > 0):
            warnings.warn(
                f"{outside} optimizer steps were trained after task "
                f"{self.last_task} ended and before task {task.task_id} "
                "began, outside any TaskBoundary: whatever they learned is "
                "not in the memory and was not protected as a task. Pass "
                "keras_fip.callbacks.TaskBoundary(task_id, x, y) to every "
                "task's fit().", stacklevel=3)
        if self.memory is not None:
            if self.holds == "current_task":
                self.memory.clear()
                self.memory.add(task.x, None, task_id=task.task_id)
                self.memory.consolidate(model)
                if self.last_task < 0:
                    self.memory.num_active.assign(0)  # no old network yet
            elif self.memory.size and not self._anchored_on_this(model):
                self.memory.consolidate(
                    model, refresh=self.anchors == "task_start",
                    tasks=(self.last_task,))
        self._anchored_weights = None
        self.snapshot(model)
        self.current_task.assign(task.task_id)
        self.fingerprint.assign(fingerprint)
        return True

    def begin_epoch(self, epoch):
        """A new memory sampling order for every epoch after the first."""
        if epoch > 0 and self.memory is not None and self.memory.built:
            self.memory.shuffle(salt=epoch)

    def end(self, model, task, step=0):
        """Ends `task`: its samples join the memory. Returns whether it
        ended now (`False`: it had ended before).

        With `anchors="stored"` the new samples are anchored on the
        network as it is (their outputs when stored). With `"task_start"`
        every sample is anchored on the network as it is, the one
        anchoring pass of this boundary: the memory protects the old tasks
        from here on (a `fit` without a `TaskBoundary`, `remember_task`),
        and the next `begin` anchors again only if the weights changed in
        between (`EarlyStopping(restore_best_weights=True)` listed after
        `TaskBoundary`, steps outside any task).
        """
        if self.last_task == task.task_id:
            return False
        if self.memory is not None and self.holds == "finished_tasks":
            # task_start re-anchors every sample: the N anchors are neither
            # moved nor backed up (they are written only once every chunk
            # succeeded).
            stored = self.anchors == "stored"
            before = self.memory.state(anchors=stored)
            try:
                self.memory.add(task.x, task.y, task_id=task.task_id,
                                keep_anchors=stored)
                self.memory.consolidate(model, refresh=not stored)
            except Exception:
                self.memory.restore(before)
                raise
            if not stored:
                self._anchored_weights = _weights_checksum(model)
            self.snapshot(model)
        self.committed_task.assign(task.task_id)
        self.ended_at_step.assign(step)
        return True

    def _anchored_on_this(self, model):
        """Whether the memory's anchors are those of `model`'s weights now
        (a task_start end anchored them, and nothing changed since)."""
        return (self.anchors == "task_start"
                and self._anchored_weights is not None
                and self.memory.is_active
                and _weights_checksum(model) == self._anchored_weights)

    @property
    def last_task(self):
        """The id of the last task that ended (-1: none)."""
        return _read_int(self.committed_task)

    def get_config(self):
        return {"anchors": self.anchors, "holds": self.holds,
                "state_spec": self.state_spec}


def _check_untracked(task_id, current, steps):
    """Steps taken before the first task ended: refused or warned.

    The memory holds no task yet, so whatever those steps taught the
    network is protected by nothing. A first task numbered above 0 says a
    task came before it: that is refused, before any step of the new task
    (the network still knows the old one, so recording it costs nothing).
    A first task numbered 0 may follow a deliberate warm-up: a warning.
    """
    if current >= 0:
        what = (f"task {current} began but never ended (its fit did not "
                f"finish), so its samples are not in the memory")
        fix_id = current
    else:
        what = ("they ran before any TaskBoundary, so the memory holds no "
                "earlier task")
        fix_id = 0
    record = (f"keras_fip.callbacks.remember_task(model, {fix_id}, x, y) "
              "with that task's data (the network still knows it)")
    if task_id > 0:
        raise ValueError(
            f"Task {task_id} is the first task to begin, but the optimizer "
            f"has already taken {steps} steps: {what}. Task {task_id} "
            "would overwrite whatever they learned, unprotected. Record "
            f"that task first: {record}, then fit task {task_id} again. If "
            "those steps were a warm-up to leave unprotected, number this "
            "task 0, or compile with a new optimizer before it."
        )
    warnings.warn(
        f"The optimizer took {steps} steps before task 0 began: {what}. If "
        "they taught the network a task to keep, task 0 will overwrite it: "
        f"stop, call {record}, and train this task as task "
        f"{fix_id + 1}. If they were a warm-up, nothing is lost.",
        stacklevel=4)


def _check_output_shape(model, memory):
    """Refuses a model whose outputs no longer fit the stored anchors."""
    expected = [tuple(s) for s in memory.output_shapes]
    try:
        spec = model.compute_output_spec(
            tree.map_structure(
                lambda v: keras.KerasTensor((1, *v.shape[1:]), v.dtype),
                memory.inputs))
        shapes = [tuple(s.shape[1:]) for s in tree.flatten(spec)]
    except Exception:  # a model that cannot run symbolically: skip
        return
    if shapes != expected:
        shape, expected = (shapes[0], expected[0]) if len(shapes) == 1 \
            and len(expected) == 1 else (shapes, expected)
        raise ValueError(
            f"The model's outputs have per-sample shape {shape} but "
            f"the memory's anchors were stored with shape {expected}"
            ": the head grew (or shrank) after the memory was built. "
            "Allocate the whole head up front (one output per class of "
            "every task), or start a new Memory for the new head."
        )
