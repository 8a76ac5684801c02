"""`ContinualOptimizer`: an inner Keras optimizer plus a chain of terms.

Every continual-learning method in keras_fip is one class, this one, with
a different list of direction terms (`keras_fip.terms`). Each step, inside
Keras's compiled train step, it

1. builds a `keras_fip.step.Step` from the gradient ∇L that `fit` computed
   and the weights w;
2. asks every term whether it acts this step (`activity`): `step.active`
   is true when any non-modifier term does;
3. runs the one loop d ← term(d, step) over the terms in order, from
   d = ∇L (modifiers such as β and the ε-normalisation follow
   `step.active`, so with nothing to protect the step is exactly the inner
   optimizer's);
4. hands d to the inner optimizer (Adam, SGD, ...), which applies it with
   its own learning rate, momentum, clipping, weight decay and EMA;
5. lets the terms that project (a hard sparsity mask) map the new weights,
   and those that observe (SI) see the step.

Like `keras.optimizers.LossScaleOptimizer` it wraps its inner optimizer:
learning rate and iteration count are the inner optimizer's, and its
`variables` are its own (the terms'), then the task life cycle's
(`keras_fip.task_cycle.TaskCycle`: task ids, memory, model-state snapshot),
then the inner optimizer's, so Keras's stateless JAX step, `tf.function`,
`LossScaleOptimizer` and `.keras` files all see one flat list.

The optimizer keeps only a weak reference to the model it trains (set by
`TaskBoundary`, `remember_task` or `bind`), so Keras's loader, which walks
everything reachable from the optimizer, never walks back into the model.

Changing the model: the optimizer and its memory are built for one set of
variables and one output shape. Freezing a layer after the first task, or
growing the head, is refused with a message; freeze before compiling and
allocate one output per class of every task, or compile again with a new
optimizer that keeps the memory (`FIPOptimizer(Adam(), memory=old.memory)`).
"""

import warnings
import weakref

import keras
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip import compat
from keras_fip import layouts
from keras_fip import model_state
from keras_fip import version
from keras_fip.arrays import as_numpy
from keras_fip.checks import check_positive_int
from keras_fip.deprecation import upgrade_config
from keras_fip.memory import Memory
from keras_fip.step import Step
from keras_fip.task_cycle import TaskCycle
from keras_fip.task_cycle import TaskData
from keras_fip.terms.base import DirectionTerm

_DIFFERENT = (
    "the file was saved from a different optimizer (other terms, a memory "
    "of another capacity or anchor storage, another inner optimizer) or "
    "for a different model. Compile with the optimizer the file was saved "
    "with, or load the whole model with keras.saving.load_model(path)."
)


def _any(flags):
    """The logical OR of Python and traced booleans (`False` if none)."""
    flags = [f for f in flags if f is not None]
    if any(f is True for f in flags):
        return True
    traced = [f for f in flags if f is not False]
    if not traced:
        return False
    result = traced[0]
    for flag in traced[1:]:
        result = ops.logical_or(result, flag)
    return result


@keras.saving.register_keras_serializable(package="keras_fip")
class ContinualOptimizer(keras.optimizers.Optimizer):
    """A Keras optimizer whose direction is built by a chain of terms.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that applies the
            direction (Adam, SGD, AdamW, ...).
        terms: the `keras_fip.terms.DirectionTerm`s, applied in order.
        memory: a `keras_fip.Memory` for terms that use old tasks' inputs
            (FIP, replay), or `None`.
        memory_batch_size: memory samples drawn per step (shared by every
            term that uses the memory).
        anchors: when the memory's anchor outputs are taken:
            `"task_start"` (every stored sample, when a task begins) or
            `"stored"` (each sample's, when its task ended).
        holds: `"finished_tasks"` (the memory keeps finished tasks'
            samples) or `"current_task"` (LwF: the new task's inputs).
        name: the optimizer's name.

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.terms.Invariance(),
               keras_fip.terms.StepNorm(0.01)],
        memory=keras_fip.Memory(40))
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    x, y = np.random.rand(32, 8).astype("float32"), np.arange(32) % 4
    model.fit(x, y, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(0, x, y)])
    ```
    """

    def __init__(self, inner_optimizer, terms=(), memory=None,
                 memory_batch_size=32, anchors="task_start",
                 holds="finished_tasks", name=None, **kwargs):
        cls = type(self).__name__
        saved_by = kwargs.pop("keras_fip_version", version.__version__)
        if kwargs:
            raise ValueError(
                f"{cls} does not take `{'`, `'.join(kwargs)}`. Set learning "
                "rate, clipping, weight decay and EMA on the inner optimizer."
            )
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "`inner_optimizer` must be a keras.optimizers.Optimizer "
                "instance such as keras.optimizers.Adam(1e-3); got "
                f"{inner_optimizer!r}."
            )
        if isinstance(inner_optimizer, ContinualOptimizer):
            raise ValueError(
                f"{cls} cannot wrap another continual optimizer "
                f"({type(inner_optimizer).__name__}): give one optimizer "
                "all the terms instead."
            )
        if memory is not None and not isinstance(memory, Memory):
            raise TypeError(
                f"`memory` must be a keras_fip.Memory; got {memory!r}."
            )
        terms = list(terms)
        for term in terms:
            if not isinstance(term, DirectionTerm):
                raise TypeError(
                    "Every term must be a keras_fip.terms.DirectionTerm "
                    f"(subclass it to write your own); got {term!r}."
                )
        memory_batch_size = check_positive_int("memory_batch_size",
                                               memory_batch_size)
        super().__init__(learning_rate=0.0, name=name)
        self.memory_batch_size = memory_batch_size
        self.inner_optimizer = inner_optimizer
        self.terms = terms
        self.task_cycle = TaskCycle(memory, anchors=anchors, holds=holds)
        self._model_ref = None
        self._traced = False
        self._saved_by = saved_by
        # A state `load_weights` read before the optimizer was built.
        self._pending_state = None

    # ------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------
    @property
    def memory(self):
        """The `keras_fip.Memory` of protected inputs (or `None`)."""
        return self.task_cycle.memory

    @property
    def anchors(self):
        """`"task_start"` or `"stored"` (see `keras_fip.task_cycle`)."""
        return self.task_cycle.anchors

    @property
    def memory_loss(self):
        """The last step's loss of the first memory term (a variable)."""
        from keras_fip.terms.memory_term import MemoryTerm

        term = self.find_term(MemoryTerm)
        return None if term is None else term.last_loss

    def find_term(self, cls):
        """The first term that is a `cls` instance, or `None`."""
        return next((t for t in self.terms if isinstance(t, cls)), None)

    def add_variable(self, shape, initializer="zeros", dtype=None,
                     aggregation="only_first_replica", layout=None,
                     name=None):
        """`Optimizer.add_variable`, by default with the aggregation
        `"only_first_replica"`: terms update their state inside the step,
        where every `tf.distribute` replica computes the same value."""
        return super().add_variable(shape, initializer=initializer,
                                    dtype=dtype, aggregation=aggregation,
                                    layout=layout, name=name)

    def build(self, var_list):
        if self.built:
            return
        layouts.current_distribution()  # refused on TensorFlow and torch
        super().build(var_list)
        for term in self.terms:
            term.build(self, var_list)
        self.inner_optimizer.build(var_list)

    @property
    def variables(self):
        return (compat.optimizer_own_variables(self)
                + self.task_cycle.variables
                + self.inner_optimizer.variables)

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)
        if getattr(self.inner_optimizer, "use_ema", False):
            # The EMA overwrite leaves each weight sharing its buffer with
            # its average; JAX's next step would donate it twice.
            for variable in var_list:
                variable.assign(ops.copy(variable.value))

    # ------------------------------------------------------------------
    # The model
    # ------------------------------------------------------------------
    def bind(self, model, sample_inputs=None):
        """Tells the optimizer which model it trains and builds its state.

        `TaskBoundary` calls it when `fit` starts (before the step is
        traced, before Keras fixes variable shardings); `remember_task`
        too. Only a weak reference to the model is kept.

        Args:
            model: the compiled Keras model this optimizer trains.
            sample_inputs: inputs as the model's call takes them, to build
                the memory from (needed once, if it is not built).
        """
        if not isinstance(model, keras.Model):
            raise TypeError(f"bind() needs a keras.Model; got {model!r}.")
        layouts.current_distribution()  # refused on TensorFlow and torch
        self._model_ref = weakref.ref(model)
        if self.built:
            self._check_variables(model)
        with fip_backend.variable_scope(model):
            created = self.task_cycle.bind(model, sample_inputs)
            if self._pending_state is not None:
                self._restore_pending(model)
        self._check_memory(model)
        if created and self._traced:
            # A step traced before the memory existed has no memory branch.
            model.train_function = None
            self._traced = False

    def _check_memory(self, model):
        """Refuses a memory whose anchors a term or the policy cannot use."""
        memory = self.memory
        if memory is None or not memory.built:
            return
        if not memory.storage.per_sample and self.anchors == "stored":
            raise ValueError(
                f"A memory whose anchors are kept as {memory.anchor_storage!r}"
                " anchors every sample on the weights at the task's start, "
                "but anchors='stored' keeps each sample's outputs from when "
                "its task ended. Use anchors='task_start', or "
                "keras_fip.Memory(capacity, anchor_storage='outputs').")
        for term in self.terms:
            check = getattr(term, "check_memory", None)
            if check is not None:
                check(memory, model)

    def _require_model(self):
        model = None if self._model_ref is None else self._model_ref()
        if model is None:
            raise ValueError(
                f"{type(self).__name__} has task state but no model to run "
                "it through. Pass keras_fip.callbacks.TaskBoundary(...) to "
                "fit(), or call `optimizer.bind(model)` before training."
            )
        return model

    def _check_variables(self, model):
        known = {id(v) for v in compat.optimizer_trainable_variables(self)}
        new = [v.path for v in model.trainable_variables
               if id(v) not in known]
        if new:
            raise ValueError(
                f"The model has trainable variables this "
                f"{type(self).__name__} was not built for ({new[:3]}): "
                "layers were added or unfrozen after the optimizer was "
                "built. Compile again with a new optimizer that keeps the "
                "memory, e.g. keras_fip.FIPOptimizer(keras.optimizers.Adam("
                "), memory=old.memory)."
            )

    # ------------------------------------------------------------------
    # The task life cycle (host side)
    # ------------------------------------------------------------------
    def begin_task(self, model, task_id, x, y=None, known=False):
        """Starts (or resumes) task `task_id`: `TaskBoundary` calls it when
        `fit` starts. See `keras_fip.task_cycle` for what it does.

        Args:
            model: the model this optimizer trains.
            task_id: the task's id.
            x: its inputs, as the model's forward pass takes them.
            y: its labels, or `None`.
            known: `True` when the network already learned the task
                (`remember_task`): steps taken before it are its own.
        """
        self.bind(model, x)
        task = TaskData(task_id, x, y)
        if self.task_cycle.begin(model, task, self._step_count(),
                                 known=known):
            for term in self.terms:
                term.begin_task(self, model, task)

    def _step_count(self):
        return int(as_numpy(self.iterations))

    def begin_epoch(self, epoch):
        """Called when an epoch starts (reshuffles the memory)."""
        self.task_cycle.begin_epoch(epoch)

    def end_task(self, model, task_id, x, y=None):
        """Ends task `task_id` (once): its samples join the memory and the
        terms consolidate (EWC's Fisher, SI's importance)."""
        if not self.built:
            self.build(model.trainable_variables)
        task = TaskData(task_id, x, y)
        if self.task_cycle.end(model, task, self._step_count()):
            for term in self.terms:
                term.end_task(self, model, task)

    # ------------------------------------------------------------------
    # The step
    # ------------------------------------------------------------------
    def _old_value_indices(self):
        """Indices of the variables whose pre-step values the step needs:
        every one for an observing term, else those a projection reads."""
        needed = set()
        every = frozenset(range(len(
            compat.optimizer_trainable_variables(self))))
        for term in self.terms:
            if term.observes:
                return every
            if term.projects:
                indices = term.projected_indices()
                needed |= every if indices is None else set(indices)
        return frozenset(needed)

    def _direction(self, step):
        """The one loop: d ← term(d, step) over the terms in order."""
        step.active = _any(term.activity(step) for term in self.terms)
        direction = list(step.grads)
        for term in self.terms:
            direction = list(term(direction, step))
        return direction

    def apply(self, grads, trainable_variables=None):
        self._refuse_pending()
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        self._traced = True
        variables = list(trainable_variables
                         or compat.optimizer_trainable_variables(self))
        grads = [
            ops.zeros_like(v) if g is None else fip_backend.to_dense(g)
            for g, v in zip(grads, variables)
        ]
        # Under tf.distribute every replica builds the direction from the
        # global gradient (and the same memory batch), so the step is the
        # one-device step; the inner optimizer sums what it is handed.
        replicas = fip_backend.replicas_in_sync()
        if replicas > 1:
            grads = fip_backend.all_reduce_sum(grads)
            if any(term.projects for term in self.terms):
                raise NotImplementedError(
                    "Terms that project the weights (a hard sparsity mask) "
                    "are not supported under a tf.distribute strategy with "
                    f"{replicas} replicas; train on one device or with JAX's "
                    "keras.distribution.")
        values = [v.value for v in variables]
        model = None if self._model_ref is None else self._model_ref()
        step = Step(self, grads, values, variables, model)
        needed = {step.indices.index(i) for i in self._old_value_indices()
                  if i in step.indices}
        old = [ops.copy(value) if j in needed else None
               for j, value in enumerate(values)]
        direction = self._direction(step)
        if model is not None:  # no traced value may outlive this trace
            model_state.clear_recorded(model)
        if replicas > 1:
            direction = [d / replicas for d in direction]
        self.inner_optimizer.apply(direction, variables)
        if not needed:
            return
        new = [v.value for v in variables]
        for term in self.terms:
            if term.projects:
                projected = term.project(old, new, step)
                for variable, value, before in zip(variables, projected,
                                                   new):
                    if value is not before:
                        variable.assign(value)
                new = [v.value for v in variables]
        for term in self.terms:
            if term.observes:
                term.observe(grads, old, new)

    # ------------------------------------------------------------------
    # Saving
    # ------------------------------------------------------------------
    @property
    def state_built(self):
        """Whether every variable a saved state fills exists: the
        optimizer is built, and so are its memory and model snapshot
        (which `bind` builds for the model)."""
        memory = self.memory
        return (self.built and self.task_cycle.state_spec is not None
                and (memory is None or memory.built))

    def save_own_variables(self, store):
        if self._pending_state is None:
            super().save_own_variables(store)
            return
        # Loaded but not bound yet: the state read is the state to save.
        for i, array in enumerate(self._pending_state):
            store[str(i)] = array

    def load_own_variables(self, store):
        """Restores the saved state (`load_model`, `load_weights`).

        `load_weights` into a freshly compiled model finds this optimizer
        unbuilt: its memory and model snapshot are built from the model
        and the task data, which the file does not hold. The state read is
        then kept and restored when the optimizer is bound to the model
        (the next `fit` with a `TaskBoundary`, `remember_task`, or `bind`).
        """
        arrays = [store[str(i)] for i in range(len(store.keys()))]
        have = len(self.variables)
        if self.state_built or len(arrays) == have:
            self._assign_state(arrays)
        elif len(arrays) > have and self.built:
            raise ValueError(
                f"Cannot restore {type(self).__name__} {self.name!r}: the "
                f"file holds {len(arrays)} optimizer variables and this "
                f"optimizer has {have} so far: it is built but was never "
                "bound to the model, so its memory and model snapshot do "
                "not exist yet and the file cannot be matched to them. "
                "Bind it first, model.optimizer.bind(model, x) with the "
                "task's inputs, then load again; or load into a freshly "
                "compiled model, whose optimizer restores the state when "
                "it is bound."
            )
        elif len(arrays) > have:
            self._pending_state = arrays
            warnings.warn(
                f"{type(self).__name__} {self.name!r} is loaded before it "
                f"is bound to its model, so the {len(arrays)} variables "
                "read (task ids, memory, model snapshot, inner optimizer) "
                "are restored when it is: by the next fit() with "
                "keras_fip.callbacks.TaskBoundary(task_id, x, y), by "
                "remember_task(...), or by model.optimizer.bind(model, x). "
                "(Keras's warning that the inner optimizer's variables "
                "were skipped is about its own copy of them; they are "
                "restored with the rest.)", stacklevel=2)
        else:
            warnings.warn(
                f"Skipping the saved state of {type(self).__name__} "
                f"{self.name!r}: the file holds {len(arrays)} variables, "
                f"fewer than the {have} this optimizer has before it is "
                "bound to its model: it was saved before it was built "
                "(before any training, so it holds no task to restore), or "
                "from a different optimizer.",
                stacklevel=2)

    def _refuse_pending(self):
        if self._pending_state is not None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} holds the state "
                "model.load_weights(...) read (its memory included), which "
                "it restores when it is bound to the model, but it is taking "
                "a step unbound (a fit() without TaskBoundary): training on "
                "would drop that state. Pass keras_fip.callbacks."
                "TaskBoundary(task_id, x, y) to this fit(), or call "
                "model.optimizer.bind(model, x) first; to train without the "
                "saved state, compile with a new optimizer."
            )

    def _restore_pending(self, model):
        """Restores the state `load_weights` read before `bind`."""
        arrays, self._pending_state = self._pending_state, None
        if not self.built:
            self.build(model.trainable_variables)
        self._assign_state(arrays)

    def _assign_state(self, arrays):
        """Assigns saved arrays to `variables`; refuses any mismatch."""
        variables = self.variables
        if len(arrays) != len(variables):
            if self._saved_by != version.__version__:
                cause = (
                    f"the file was written by keras_fip {self._saved_by}, "
                    f"whose optimizer state this release ({version.__version__}"
                    ") does not read. Load the weights alone with "
                    "keras.saving.load_model(path, compile=False), compile "
                    "with a new optimizer and call "
                    "keras_fip.callbacks.remember_task(...) for the tasks "
                    "the network knows."
                )
            else:
                cause = _DIFFERENT
            raise ValueError(
                f"Cannot restore {type(self).__name__} {self.name!r}: the "
                f"file holds {len(arrays)} optimizer variables but "
                f"this optimizer has {len(variables)}: {cause}"
            )
        for variable, array in zip(variables, arrays):
            if tuple(variable.shape) != tuple(array.shape):
                raise ValueError(
                    f"Cannot restore {type(self).__name__} {self.name!r}: "
                    f"the saved {variable.path!r} has shape "
                    f"{tuple(array.shape)} but this optimizer's has "
                    f"{tuple(variable.shape)}: {_DIFFERENT}"
                )
        for variable, array in zip(variables, arrays):
            variable.assign(array)

    def _base_config(self):
        """The config every optimizer shares (presets add their args)."""
        config = {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer),
            "state_spec": self.task_cycle.state_spec,
            "keras_fip_version": version.__version__,
        }
        trained = (compat.optimizer_trainable_variables(self) if self.built
                   else [])
        if any("lora_kernel" in v.path for v in trained):
            # Keras merges LoRA adapters into the kernels when it saves:
            # `keras_fip.saving.restore_optimizer` reads this to refuse.
            config["lora_adapters"] = True
        if self.memory is not None:
            config.update(memory=self.memory.get_config(),
                          memory_batch_size=self.memory_batch_size)
        return config

    def _preset_config(self, *terms):
        """A preset's config: the shared one plus its terms' arguments."""
        config = self._base_config()
        for term in terms:
            config.update(term.get_config())
        return config

    def get_config(self):
        config = self._base_config()
        config.update(
            terms=[keras.saving.serialize_keras_object(t)
                   for t in self.terms],
            anchors=self.anchors,
            holds=self.task_cycle.holds,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = upgrade_config(cls, config)  # a copy, in 0.6 names
        # Files of keras_fip 0.1 carry no version.
        config.setdefault("keras_fip_version", "0.1.0")
        state_spec = config.pop("state_spec", None)
        config.pop("lora_adapters", None)
        config["inner_optimizer"] = keras.saving.deserialize_keras_object(
            config["inner_optimizer"], custom_objects=custom_objects)
        if config.get("memory") is not None:
            config["memory"] = Memory.from_config(config["memory"])
        if "terms" in config:
            config["terms"] = [
                keras.saving.deserialize_keras_object(
                    t, custom_objects=custom_objects)
                for t in config["terms"]]
        optimizer = cls(**config)
        if state_spec is not None:
            # The model-state snapshot a saved optimizer had.
            optimizer.task_cycle.build_state(state_spec)
        return optimizer
