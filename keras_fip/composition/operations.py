"""Operations that take a network to a new one, through `fit`.

Each operation compiles the network it is given with a keras_fip optimizer
(or a baseline's), records the tasks the network knows with
`keras_fip.callbacks.remember_task`, and trains it with `model.fit` for a
budget of optimizer steps:

- `LearnTask(task)`: FIP, β ∇L on the new task + ∇D keeping the known
  tasks' outputs (`FIPOptimizer`); the network then knows `task` too.
- `Sparsify(s)`: FIP toward the s-sparse network (`SparseTarget`: a ramp,
  then a hard mask), D on the known tasks, then `make_pruning_permanent`.
- `MoveToward(network)`: FIP toward another network's weights
  (`TowardWeights`), D on the known tasks.
- `FineTune(task)`: baseline, the inner optimizer on the new task alone;
  the network then knows `task` too.
- `MagnitudePrune(s)`: baseline, one-shot magnitude pruning, then masked
  fine-tuning on the known tasks (`MaskedOptimizer`).

A network with exact zeros among its pruned kernels keeps them: learning
and fine-tuning then mask the direction (`keras_fip.sparsity.MaskGradient`,
`MaskedOptimizer`), so sparsify → learn stays sparse (`keep_sparsity=True`,
the default).

The data: an operation of `steps` steps with batch size b fits one epoch
of `steps` batches, whose `steps · b` samples are consecutive passes over
the training data, each in the order of
`numpy.random.default_rng([seed, k]).permutation(n)` for pass k
(`training_order`): a KerasHub task with a preprocessor ignores
`fit(shuffle=True)`, so the order is drawn here, the same on every
backend. The memory holds every training sample of the known tasks unless
`memory_size` says fewer.

Operations are Keras-serializable (`get_config`), so a network's lineage
stores the operation that made it and `keras_fip.composition.operation_of`
rebuilds it. They are applied by `keras_fip.composition.Composer`, which
loads the parent, measures and saves the result.

Example:

```python
import keras_fip
from keras_fip.composition import LearnTask, Sparsify
learn_b = LearnTask("B", steps=200)
sparsify = Sparsify(0.7, steps=300)
sparsify.describe()            # 'sparsify 70%'
```
"""

import copy

import keras
import numpy as np

from keras_fip.callbacks.task_boundary import remember_task
from keras_fip.checks import check_number
from keras_fip.fip_optimizer import FIPOptimizer
from keras_fip.memory import Memory
from keras_fip.sparsity import schedules
from keras_fip.sparsity.magnitude import make_pruning_permanent
from keras_fip.sparsity.magnitude import prune_low_magnitude
from keras_fip.sparsity.magnitude import sparsity_report
from keras_fip.sparsity.masked_optimizer import MaskedOptimizer
from keras_fip.sparsity.masked_optimizer import MaskGradient
from keras_fip.sparsity.selection import check_patterns
from keras_fip.sparsity.sparse_target import SparseTarget
from keras_fip.terms.toward import TowardWeights


def training_order(n, steps, batch_size, seed):
    """The sample indices an operation trains on, in order.

    `steps · batch_size` indices: consecutive passes over `range(n)`, pass k
    in the order `numpy.random.default_rng([seed, k]).permutation(n)`.
    """
    total = steps * batch_size
    passes = -(-total // n)
    order = [np.random.default_rng([seed, k]).permutation(n)
             for k in range(passes)]
    return np.concatenate(order)[:total]


def take(data, indices):
    """`data` (an array or a nest of arrays, as `fit` takes it) at
    `indices`."""
    return keras.tree.map_structure(lambda a: np.asarray(a)[indices], data)


def concatenate(parts):
    """The (x, y) pairs in `parts` joined along the sample axis."""
    xs = [x for x, _ in parts]
    ys = [y for _, y in parts]
    x = keras.tree.map_structure(lambda *a: np.concatenate(a), *xs)
    y = keras.tree.map_structure(lambda *a: np.concatenate(a), *ys)
    return x, y


def as_arrays(data):
    """A flat list or tuple of numbers or strings as an array; a nest of
    arrays (dict inputs) as it is."""
    if isinstance(data, (list, tuple)) and all(
            np.isscalar(item) for item in data):
        return np.asarray(data)
    return data


def sample_count(data):
    """The number of samples in `data` (an array or a nest of arrays)."""
    return len(keras.tree.flatten(as_arrays(data))[0])


def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(
            value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got "
                         f"{value!r}.")
    return int(value)


def _check_fraction(name, value, low_open=False):
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and (0 < value < 1 if low_open else 0 <= value < 1))
    if not ok:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"`{name}` must be a number in {interval}; got "
                         f"{value!r}.")
    return float(value)


def _optimizer_config(optimizer, default):
    """A Keras optimizer (or its config) as a config to build copies from."""
    if optimizer is None:
        optimizer = default
    if isinstance(optimizer, dict):
        optimizer = keras.optimizers.deserialize(copy.deepcopy(optimizer))
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "`inner_optimizer` must be a keras.optimizers.Optimizer (a "
            "template: each application builds a fresh copy), e.g. "
            f"keras.optimizers.Adam(1e-3); got {optimizer!r}.")
    config = keras.optimizers.serialize(optimizer)
    # Keras numbers optimizers' names (adam, adam_1, ...) per process: the
    # name would make two equal operations differ.
    config["config"].pop("name", None)
    return config


def _fip_settings(settings, taken):
    """FIPOptimizer keyword arguments, checked now rather than at apply."""
    settings = dict(settings or {})
    clash = sorted(set(settings) & set(taken))
    if clash:
        raise ValueError(
            f"`settings` may not set {clash}: the operation sets them "
            "from its own arguments.")
    FIPOptimizer(keras.optimizers.SGD(), **settings)  # raises if wrong
    return settings


class Operation:
    """Takes a network to a new one, in place, through `fit`.

    Subclasses implement `apply(model, context)`, `describe()` and
    `get_config()`; `knows_after(knows)` says which tasks the result knows.
    """

    def slug(self):
        """A short name for the result's file: `<parent>-<slug>`."""
        raise NotImplementedError

    def describe(self):
        """A short label of the operation (a graph edge's)."""
        raise NotImplementedError

    def knows_after(self, knows):
        return list(knows)

    def check(self, context):
        """Raises before any training when `context` lacks what is needed."""

    def apply(self, model, context):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return (type(self) is type(other)
                and self.get_config() == other.get_config())

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class _Training(Operation):
    """What every training operation shares: a budget and an optimizer."""

    def __init__(self, steps, batch_size, inner_optimizer, prune,
                 default_optimizer, min_steps=1):
        self.steps = _check_count("steps", steps, minimum=min_steps)
        self.batch_size = _check_count("batch_size", batch_size)
        self.inner_optimizer = _optimizer_config(inner_optimizer,
                                                 default_optimizer)
        self.prune = check_patterns(prune)

    #: whether the operation trains on the known tasks' data.
    trains_on_known_tasks = True

    def check(self, context):
        if self.trains_on_known_tasks and self.steps and not context.knows:
            raise ValueError(
                f"{type(self).__name__} trains on the tasks the network "
                "knows, and this one knows none. Start the chain with "
                "Composer.start(model, name, knows=[...]) naming the tasks "
                "it was trained on, or learn a task first.")

    def inner(self):
        return keras.optimizers.deserialize(
            copy.deepcopy(self.inner_optimizer))

    def fit(self, model, x, y, context):
        """One `fit` epoch of `steps` batches in `training_order`."""
        order = training_order(sample_count(x), self.steps, self.batch_size,
                               context.seed)
        model.fit(take(x, order), take(y, order), batch_size=self.batch_size,
                  epochs=1, shuffle=False, verbose=0)

    def is_sparse(self, model):
        return sparsity_report(model, self.prune)["zeros"] > 0

    def remember(self, model, context):
        for task_id, name in enumerate(context.knows):
            remember_task(model, task_id, *context.training_data(name))

    def memory(self, context, memory_size):
        """A memory for every known sample (or `memory_size` of them); with
        no known task it stays empty and the step is the inner
        optimizer's."""
        capacity = memory_size
        if capacity is None:
            capacity = (sample_count(context.known_training_data()[0])
                        if context.knows else 1)
        return Memory(capacity, seed=context.seed)

    def _base_config(self):
        return {"steps": self.steps, "batch_size": self.batch_size,
                "inner_optimizer": copy.deepcopy(self.inner_optimizer),
                "prune": list(self.prune) if self.prune else None}


def _adam():
    return keras.optimizers.Adam(1e-3)


class _NewTask:
    """Learning a task the network does not know yet."""

    trains_on_known_tasks = False

    def _check_task(self, task):
        if not isinstance(task, str) or not task:
            raise ValueError(f"`task` must be a task's name (a non-empty "
                             f"string); got {task!r}.")
        return task

    def knows_after(self, knows):
        return list(knows) + [self.task]

    def check(self, context):
        if self.task in context.knows:
            raise ValueError(
                f"The network already knows task {self.task!r} (it knows "
                f"{context.knows}); learn a task it does not know.")
        context.training_data(self.task)


@keras.saving.register_keras_serializable(package="keras_fip")
class LearnTask(_NewTask, _Training):
    """Learn a new task along an FIP: keep the known tasks' outputs.

    The network is compiled with `FIPOptimizer(inner_optimizer,
    memory=Memory(memory_size), **settings)` (β ∇L on the new task, ∇D on
    the memory of the known tasks' training samples, remembered with
    `remember_task`), and fitted on the task for `steps` steps.

    Args:
        task: the new task's name (its training data is the composer's).
        steps: optimizer steps (default 200).
        batch_size: batch size (default 32).
        inner_optimizer: a Keras optimizer used as a template (default
            `Adam(1e-3)`).
        memory_size: protected samples; `None` (default) keeps every
            training sample of the known tasks.
        settings: more `FIPOptimizer` arguments (`beta`,
            `memory_batch_size`, `distance`, ...); default: its defaults.
        keep_sparsity: when the network has exact zeros among its pruned
            kernels, keep them (the direction is masked there; default
            True).
        prune: glob patterns of the pruned kernels (default: dense,
            einsum-dense and convolution kernels).

    Example:

    ```python
    op = keras_fip.composition.LearnTask("B", steps=100,
                                         settings={"beta": 10.0})
    ```
    """

    def __init__(self, task, steps=200, batch_size=32, inner_optimizer=None,
                 memory_size=None, settings=None, keep_sparsity=True,
                 prune=None):
        super().__init__(steps, batch_size, inner_optimizer, prune, _adam())
        self.task = self._check_task(task)
        self.memory_size = (None if memory_size is None
                            else _check_count("memory_size", memory_size))
        self.settings = _fip_settings(settings, ("memory", "objectives",
                                                 "sparse_target"))
        self.keep_sparsity = bool(keep_sparsity)

    def slug(self):
        return f"learn{self.task}"

    def describe(self):
        return f"learn {self.task}"

    def apply(self, model, context):
        objectives = ([MaskGradient(self.prune)]
                      if self.keep_sparsity and self.is_sparse(model) else [])
        optimizer = FIPOptimizer(
            self.inner(), memory=self.memory(context, self.memory_size),
            objectives=objectives, **self.settings)
        model.compile(optimizer=optimizer, loss=context.loss)
        self.remember(model, context)
        self.fit(model, *context.training_data(self.task), context)

    def get_config(self):
        return {**self._base_config(), "task": self.task,
                "memory_size": self.memory_size,
                "settings": dict(self.settings),
                "keep_sparsity": self.keep_sparsity}


@keras.saving.register_keras_serializable(package="keras_fip")
class Sparsify(_Training):
    """Make the network s-sparse along an FIP, keeping the known tasks.

    `FIPOptimizer(inner_optimizer, memory=Memory(memory_size),
    sparse_target=SparseTarget(PolynomialDecay(0 → s over the first
    `ramp` of the steps), weight=strength, hard_mask_step=hard_mask_at ·
    steps), **settings)`, fitted on the known tasks' training data (the β
    term) with those samples in the memory (the ∇D term); then
    `make_pruning_permanent`: the fraction s of the pruned kernels' weights
    is exactly zero.

    Args:
        sparsity: s in (0, 1).
        steps: optimizer steps (default 500).
        batch_size: batch size (default 32).
        inner_optimizer: a Keras optimizer as a template (default
            `Adam(1e-3)`).
        strength: λ of the pull toward the sparse network (default 10).
        ramp: the fraction of the steps over which the target sparsity
            rises from 0 to s (default 0.25).
        hard_mask_at: the fraction of the steps at which the mask becomes
            hard (default 0.3; then an FIP inside the sparse subspace);
            `None`: only the final hard mask (the reference code's path).
        frequency: recompute the magnitude threshold every this many steps
            (default 1).
        memory_size: protected samples (default: all the known tasks').
        settings: more `FIPOptimizer` arguments.
        prune: glob patterns of the kernels to prune (default: dense,
            einsum-dense and convolution kernels).

    Example:

    ```python
    op = keras_fip.composition.Sparsify(0.9, steps=1000)
    ```
    """

    def __init__(self, sparsity, steps=500, batch_size=32,
                 inner_optimizer=None, strength=10.0, ramp=0.25,
                 hard_mask_at=0.3, frequency=1, memory_size=None,
                 settings=None, prune=None):
        super().__init__(steps, batch_size, inner_optimizer, prune, _adam())
        self.sparsity = _check_fraction("sparsity", sparsity, low_open=True)
        self.strength = check_number("strength", strength)
        self.ramp = _check_fraction("ramp", ramp, low_open=True)
        if hard_mask_at is not None:
            hard_mask_at = _check_fraction("hard_mask_at", hard_mask_at,
                                           low_open=True)
            if hard_mask_at < self.ramp:
                raise ValueError(
                    f"`hard_mask_at` ({hard_mask_at}) comes before the ramp "
                    f"ends ({self.ramp}): the mask would freeze below the "
                    "target sparsity. Use hard_mask_at >= ramp.")
        self.hard_mask_at = hard_mask_at
        self.frequency = _check_count("frequency", frequency)
        self.memory_size = (None if memory_size is None
                            else _check_count("memory_size", memory_size))
        self.settings = _fip_settings(settings, ("memory", "objectives",
                                                 "sparse_target"))

    def slug(self):
        return f"sparse{round(self.sparsity * 100)}"

    def describe(self):
        return f"sparsify {self.sparsity:.0%}"

    def target(self):
        """The `SparseTarget` of this operation."""
        ramp_end = max(1, int(self.ramp * self.steps))
        hard = (None if self.hard_mask_at is None
                else max(ramp_end, int(self.hard_mask_at * self.steps)))
        schedule = schedules.PolynomialDecay(
            0.0, self.sparsity, begin_step=0, end_step=ramp_end,
            frequency=self.frequency)
        return SparseTarget(schedule, weight=self.strength,
                            prune=self.prune, hard_mask_step=hard)

    def apply(self, model, context):
        optimizer = FIPOptimizer(
            self.inner(), memory=self.memory(context, self.memory_size),
            sparse_target=self.target(), **self.settings)
        model.compile(optimizer=optimizer, loss=context.loss)
        self.remember(model, context)
        self.fit(model, *context.known_training_data(), context)
        make_pruning_permanent(model)

    def get_config(self):
        return {**self._base_config(), "sparsity": self.sparsity,
                "strength": self.strength, "ramp": self.ramp,
                "hard_mask_at": self.hard_mask_at,
                "frequency": self.frequency,
                "memory_size": self.memory_size,
                "settings": dict(self.settings)}


@keras.saving.register_keras_serializable(package="keras_fip")
class MoveToward(_Training):
    """Walk toward another network's weights, keeping the known tasks.

    `FIPOptimizer(inner_optimizer, objectives=[TowardWeights(w_target,
    weight=strength)], beta=0, step_norm=step_norm, **settings)` with the
    known tasks' training samples in the memory: each step of length ε
    moves toward the target while D keeps the outputs (the paper's
    connecting of two optima). The target is a network of the composer's
    directory (by name) or a `.keras` file of the same architecture.

    Args:
        target: a network's name in the composer, or a `.keras` path.
        steps: optimizer steps (default 500).
        strength: λ of the pull (default 1).
        step_norm: ε, each step's length (default 0.01).
        batch_size: batch size (default 32).
        inner_optimizer: default `SGD(1.0)` (with `step_norm` it moves ε).
        memory_size: protected samples (default: all the known tasks').
        settings: more `FIPOptimizer` arguments (`beta` defaults to 0:
            the known tasks' loss plays no part).

    Example:

    ```python
    op = keras_fip.composition.MoveToward("B-from-scratch", steps=500)
    ```
    """

    def __init__(self, target, steps=500, strength=1.0, step_norm=0.01,
                 batch_size=32, inner_optimizer=None, memory_size=None,
                 settings=None):
        super().__init__(steps, batch_size, inner_optimizer, None,
                         keras.optimizers.SGD(1.0))
        if not isinstance(target, str) or not target:
            raise ValueError(f"`target` must be a network's name or a "
                             f".keras path; got {target!r}.")
        self.target = target
        self.strength = check_number("strength", strength)
        self.step_norm = check_number("step_norm", step_norm, positive=True)
        self.memory_size = (None if memory_size is None
                            else _check_count("memory_size", memory_size))
        self.settings = _fip_settings(
            {"beta": 0.0, **(settings or {})},
            ("memory", "objectives", "sparse_target", "step_norm"))

    def slug(self):
        name = self.target.rsplit("/", 1)[-1].removesuffix(".keras")
        return f"toward-{name}"

    def describe(self):
        return f"toward {self.slug()[len('toward-'):]}"

    def check(self, context):
        context.target_weights(self.target)

    def apply(self, model, context):
        weights = context.target_weights(self.target)
        if len(weights) != len(model.trainable_variables) or any(
                tuple(w.shape) != tuple(v.shape)
                for w, v in zip(weights, model.trainable_variables)):
            raise ValueError(
                f"The target {self.target!r} is not of the network's "
                "architecture: its trainable weights' shapes differ. Move "
                "toward a network with the same layers.")
        toward = TowardWeights(weights, weight=self.strength)
        optimizer = FIPOptimizer(
            self.inner(), memory=self.memory(context, self.memory_size),
            objectives=[toward], step_norm=self.step_norm, **self.settings)
        model.compile(optimizer=optimizer, loss=context.loss)
        self.remember(model, context)
        self.fit(model, *context.known_training_data(), context)

    def get_config(self):
        config = self._base_config()
        del config["prune"]
        return {**config, "target": self.target, "strength": self.strength,
                "step_norm": self.step_norm,
                "memory_size": self.memory_size,
                "settings": dict(self.settings)}


@keras.saving.register_keras_serializable(package="keras_fip")
class FineTune(_NewTask, _Training):
    """Baseline: learn a new task by plain fine-tuning (no memory).

    The inner optimizer alone, on the new task's training data; on a
    network with exact zeros among its pruned kernels (with
    `keep_sparsity`) wrapped in `MaskedOptimizer`, so they stay zero.

    Args:
        task: the new task's name.
        steps: optimizer steps (default 200).
        batch_size: batch size (default 32).
        inner_optimizer: default `Adam(1e-3)`.
        keep_sparsity: keep exact zeros zero (default True).
        prune: glob patterns of the pruned kernels.

    Example:

    ```python
    op = keras_fip.composition.FineTune("B", steps=100)
    ```
    """

    def __init__(self, task, steps=200, batch_size=32, inner_optimizer=None,
                 keep_sparsity=True, prune=None):
        super().__init__(steps, batch_size, inner_optimizer, prune, _adam())
        self.task = self._check_task(task)
        self.keep_sparsity = bool(keep_sparsity)

    def slug(self):
        return f"finetune{self.task}"

    def describe(self):
        return f"fine-tune {self.task}"

    def apply(self, model, context):
        optimizer = self.inner()
        if self.keep_sparsity and self.is_sparse(model):
            optimizer = MaskedOptimizer(optimizer, prune=self.prune)
        model.compile(optimizer=optimizer, loss=context.loss)
        self.fit(model, *context.training_data(self.task), context)

    def get_config(self):
        return {**self._base_config(), "task": self.task,
                "keep_sparsity": self.keep_sparsity}


@keras.saving.register_keras_serializable(package="keras_fip")
class MagnitudePrune(_Training):
    """Baseline: one-shot magnitude pruning, then masked fine-tuning.

    `prune_low_magnitude(model, s)` (one global threshold), then
    `MaskedOptimizer(inner_optimizer)` on the known tasks' training data
    for `steps` steps (0: one-shot only).

    Args:
        sparsity: s in (0, 1).
        steps: masked fine-tuning steps (default 500; 0 for none).
        batch_size: batch size (default 32).
        inner_optimizer: default `Adam(1e-3)`.
        prune: glob patterns of the kernels to prune.

    Example:

    ```python
    op = keras_fip.composition.MagnitudePrune(0.7, steps=500)
    ```
    """

    def __init__(self, sparsity, steps=500, batch_size=32,
                 inner_optimizer=None, prune=None):
        super().__init__(steps, batch_size, inner_optimizer, prune, _adam(),
                         min_steps=0)
        self.sparsity = _check_fraction("sparsity", sparsity, low_open=True)

    def slug(self):
        return f"magnitude{round(self.sparsity * 100)}"

    def describe(self):
        return f"magnitude {self.sparsity:.0%}"

    def apply(self, model, context):
        prune_low_magnitude(model, self.sparsity, self.prune)
        if self.steps == 0:
            return
        model.compile(optimizer=MaskedOptimizer(self.inner(),
                                                prune=self.prune),
                      loss=context.loss)
        self.fit(model, *context.known_training_data(), context)

    def get_config(self):
        return {**self._base_config(), "sparsity": self.sparsity}
