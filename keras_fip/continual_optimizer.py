"""`ContinualOptimizer`: the wrapper every continual-learning method shares.

A continual optimizer wraps a Keras optimizer (the `LossScaleOptimizer`
pattern): each step it turns the gradient `fit` computed into a *direction*
(`_direction`, written with `keras.ops`, run inside the compiled step) and
hands that to the inner optimizer. Between tasks, `TaskBoundary` calls its
host-side hooks `begin_task`, `end_epoch` and `end_task`. Its own state
(`_extra_variables`) lives in Keras variables, so compiled steps see updates,
JAX threads it through `stateless_apply` and `.keras` files keep it.
"""

import math

import keras
from keras import ops

from keras_fip import backend as fip_backend


def _check_number(name, value, allow_none=False, positive=False):
    """Validates a finite hyper-parameter; returns it as a float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"`{name}` must be a finite number {bound}; got {value}."
        )
    return value


class ContinualOptimizer(keras.optimizers.Optimizer):
    """Base class: an inner optimizer plus a per-step direction.

    Subclasses implement `_direction(grads, values, variables)` (values in
    the order of `variables`, the optimizer's trainable variables) and may
    override `_build_own`, `_extra_variables`, `_after_update`, `_project`
    (with `_projected_indices`: the variables it reads old values of) and
    the task hooks. They never see the batch: what they need from old tasks
    lives in their own state.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that applies the
            direction (Adam, SGD, AdamW, ...).
        name: the optimizer's name.
    """

    def __init__(self, inner_optimizer, name=None, **kwargs):
        cls = type(self).__name__
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
                f"({type(inner_optimizer).__name__})."
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self._model = None
        # Set when a step was traced before the state it needs existed:
        # TaskBoundary then traces the train function again.
        self.traced_without_memory = False

    # ------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------
    def build(self, var_list):
        if self.built:
            return
        self._build_own(var_list)
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def _build_own(self, var_list):
        """Creates the subclass's variables (`self.add_variable...`)."""

    def _extra_variables(self):
        """State kept outside `self._variables` (e.g. a memory's)."""
        return []

    @property
    def _own_variables(self):
        return self._variables + self._extra_variables()

    @property
    def variables(self):
        return self._own_variables + self.inner_optimizer.variables

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

    # ------------------------------------------------------------------
    # The model
    # ------------------------------------------------------------------
    def bind(self, model):
        """Tells the optimizer which model it trains (`TaskBoundary` does).

        Args:
            model: the compiled Keras model this optimizer trains.
        """
        if not isinstance(model, keras.Model):
            raise TypeError(f"bind() needs a keras.Model; got {model!r}.")
        self._model = model

    def _require_model(self):
        if self._model is None:
            raise ValueError(
                f"{type(self).__name__} has task state but no model to run "
                "it through. Pass keras_fip.callbacks.TaskBoundary(...) to "
                "fit(), or call `optimizer.bind(model)` before training."
            )
        return self._model

    def _model_order(self, trainable_variables):
        """Index into `trainable_variables` of each model trainable var."""
        position = {id(v): i for i, v in enumerate(trainable_variables)}
        order = []
        for v in self._require_model().trainable_variables:
            if id(v) not in position:
                raise ValueError(
                    f"The model's trainable variable {v.path!r} is not among "
                    "the variables this optimizer updates: the model changed "
                    "(new layers, or `trainable` flags) after compile. Call "
                    "`model.compile(...)` again."
                )
            order.append(position[id(v)])
        return order

    # ------------------------------------------------------------------
    # Task hooks (host side, called by keras_fip.callbacks.TaskBoundary)
    # ------------------------------------------------------------------
    def begin_task(self, model, task_id, x, y=None):
        """Called when `fit` starts on task `task_id`."""
        self.bind(model)

    def end_epoch(self, epoch):
        """Called after every epoch."""

    def end_task(self, model, task_id, x, y=None):
        """Called when `fit` ends on task `task_id`."""

    # ------------------------------------------------------------------
    # The step
    # ------------------------------------------------------------------
    def _direction(self, grads, values, variables):
        raise NotImplementedError

    def _after_update(self, grads, old_values, new_values):
        """Sees each step's gradient and weight change (e.g. for SI)."""

    def _has_after_update(self):
        return type(self)._after_update is not ContinualOptimizer._after_update

    def _has_projection(self):
        """Whether `_project` constrains the weights (off by default)."""
        return False

    def _project(self, old_values, new_values):
        """Maps each step's new weights onto a constraint set (e.g. a
        sparsity mask), given the weights before the step; returns the
        projected values. Called only when `_has_projection()`."""
        return new_values

    def _old_value_indices(self):
        """Indices of the variables whose pre-step values the step needs.

        Every one when `_after_update` is used; otherwise those `_project`
        reads (`_projected_indices`), so a projection onto a few variables
        does not copy the whole network each step; none without either hook.
        """
        if self._has_after_update():
            return frozenset(range(len(self._trainable_variables)))
        if self._has_projection():
            return frozenset(self._projected_indices())
        return frozenset()

    def _projected_indices(self):
        """Indices of the variables `_project` reads old values of (all)."""
        return range(len(self._trainable_variables))

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        variables = list(trainable_variables or self._trainable_variables)
        grads = [
            ops.zeros_like(v) if g is None else fip_backend.to_dense(g)
            for g, v in zip(grads, variables)
        ]
        needed = self._old_value_indices()
        old = None
        if needed:
            old = [ops.copy(v.value) if i in needed else None
                   for i, v in enumerate(variables)]
        direction = self._direction(grads, [v.value for v in variables],
                                    variables)
        self.inner_optimizer.apply(direction, trainable_variables)
        if old is None:
            return
        if self._has_projection():
            current = [v.value for v in variables]
            projected = self._project(old, current)
            for variable, value, before in zip(variables, projected, current):
                if value is not before:
                    variable.assign(value)
        if self._has_after_update():
            self._after_update(grads, old, [v.value for v in variables])

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if not self.built:
            raise ValueError(
                f"To call `stateless_apply`, {type(self).__name__} must be "
                "built: call `optimizer.build(trainable_variables)` first."
            )
        own = self._own_variables
        own_values = optimizer_variables[: len(own)]
        inner_values = optimizer_variables[len(own) :]
        variables = self._trainable_variables
        grads = [
            ops.zeros_like(v) if g is None else g
            for g, v in zip(grads, trainable_variables)
        ]
        # The step count too, so a direction may depend on the step.
        counter = [
            (v, value) for v, value in zip(self.inner_optimizer.variables,
                                           inner_values)
            if v is self.inner_optimizer.iterations
        ]
        with keras.StatelessScope(
            state_mapping=list(zip(own, own_values)) + counter
        ) as scope:
            direction = self._direction(grads, list(trainable_variables),
                                        variables)
            new_trainable, new_inner = self.inner_optimizer.stateless_apply(
                inner_values, direction, trainable_variables
            )
            if self._has_projection():
                new_trainable = self._project(list(trainable_variables),
                                              list(new_trainable))
            if self._has_after_update():
                self._after_update(grads, list(trainable_variables),
                                   list(new_trainable))
        new_own = [scope.get_current_value(v) for v in own]
        return new_trainable, new_own + list(new_inner)

    # ------------------------------------------------------------------
    # Saving
    # ------------------------------------------------------------------
    def load_own_variables(self, store):
        if len(store.keys()) != len(self.variables):
            raise ValueError(
                f"Cannot restore {type(self).__name__} {self.name!r}: the "
                f"file holds {len(store.keys())} optimizer variables but "
                f"this optimizer has {len(self.variables)}. Its memory, "
                "settings or inner optimizer differ from the saved one."
            )
        super().load_own_variables(store)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        return cls(inner, **config)
