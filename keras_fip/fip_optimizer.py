"""`FIPOptimizer`: take any Keras optimizer along a functionally invariant path.

Raghavan et al., "Engineering flexible machine learning systems by traversing
functionally invariant paths", Nature Machine Intelligence 2024
(arXiv 2205.00334). Each FIP step solves

    θ* = argmin_θ  θᵀ g(w) θ + β θᵀ ∇L(w)      subject to ‖θ‖ ≤ ε,

g the metric of the outputs the network must keep, L the secondary objective.
As in the paper's reference code, θᵀ g θ is measured by an output distance D
between the network and its anchor (the network at the start of the task) on
a batch of protected inputs from a `Memory`; near the anchor D is the
quadratic form of g. The direction handed to the inner optimizer is

    d = β ∇L(w) + ∇_w Σ_{x ∈ memory batch} D(f(x; w), f(x; w₀)),

∇L being the gradient `model.fit` computed for the new task. With
`step_norm=ε`, d is rescaled to global L2 norm ε (`SGD(learning_rate=1.0)`
then moves exactly ε per step, as the reference sparsification does).
"""

import math

import keras
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip import distances
from keras_fip.memory import Memory

REDUCTIONS = ("sum", "mean")


def _check_non_negative(name, value, allow_none=False, positive=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number; got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"`{name}` must be a finite number {bound}; got {value}.")
    return value


@keras.saving.register_keras_serializable(package="keras_fip")
class FIPOptimizer(keras.optimizers.Optimizer):
    """Wraps a Keras optimizer so each step keeps the protected outputs.

    Use it with `model.compile` and the default `fit` loop; the callback
    `keras_fip.callbacks.TaskBoundary` manages the memory between tasks. With
    an empty (or not yet anchored) memory the step is exactly the inner
    optimizer's.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that applies the
            combined direction (Adam, SGD, AdamW, ...).
        memory: the `keras_fip.Memory` of protected inputs. Defaults to a
            new `Memory(capacity=200)`.
        beta: weight β ≥ 0 of the secondary objective's gradient (the one
            `fit` computes). A Keras variable once built: callbacks may
            change it with `optimizer.beta.assign(...)`.
        distance: output distance D: `"bhattacharyya"` (the reference
            code, default), `"squared_l2"` (on logits: the JᵀJ metric) or
            `"kl"`. See `keras_fip.distances`.
        reduction: `"sum"` over the memory batch (the reference code: the
            invariance weight grows with `memory_batch_size`) or `"mean"`.
        from_logits: whether the model outputs logits (softmax is applied
            before the distribution distances) or probabilities.
        memory_batch_size: protected inputs drawn per step.
        step_norm: ε. `None` (default) hands the direction over as it is;
            a number > 0 rescales it to that global L2 norm first.
        name: the optimizer's name.

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3), memory=keras_fip.Memory(capacity=40))
    model.compile(optimizer=fip, loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = np.random.rand(64, 8).astype("float32"), np.arange(64) % 4
    for task_id, (xt, yt) in enumerate([(x[:32], y[:32]), (x[32:], y[32:])]):
        model.fit(xt, yt, epochs=2, verbose=0, callbacks=[
            keras_fip.callbacks.TaskBoundary(task_id, xt, yt)])
    ```
    """

    def __init__(
        self,
        inner_optimizer,
        memory=None,
        beta=1.0,
        distance="bhattacharyya",
        reduction="sum",
        from_logits=True,
        memory_batch_size=32,
        step_norm=None,
        name=None,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(
                f"FIPOptimizer does not take `{'`, `'.join(kwargs)}`. Set "
                "learning rate, clipping, weight decay and EMA on the "
                "inner optimizer."
            )
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "`inner_optimizer` must be a keras.optimizers.Optimizer "
                f"instance such as keras.optimizers.Adam(1e-3); got "
                f"{inner_optimizer!r}."
            )
        if isinstance(inner_optimizer, FIPOptimizer):
            raise ValueError("An FIPOptimizer cannot wrap another one.")
        if memory is None:
            memory = Memory(capacity=200)
        if not isinstance(memory, Memory):
            raise TypeError(
                f"`memory` must be a keras_fip.Memory; got {memory!r}."
            )
        distances.get(distance)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"Unknown reduction {reduction!r}. Expected 'sum' (the "
                "reference code) or 'mean'."
            )
        if (
            isinstance(memory_batch_size, bool)
            or not isinstance(memory_batch_size, int)
            or memory_batch_size <= 0
        ):
            raise ValueError(
                "`memory_batch_size` must be a positive integer; got "
                f"{memory_batch_size!r}."
            )
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.memory = memory
        self._initial_beta = _check_non_negative("beta", beta)
        self._initial_step_norm = _check_non_negative(
            "step_norm", step_norm, allow_none=True, positive=True
        )
        self.distance = distance
        self.reduction = reduction
        self.from_logits = bool(from_logits)
        self.memory_batch_size = memory_batch_size
        self._model = None
        # Set when a step was traced with no memory: the compiled train
        # function must be traced again once the memory exists.
        self.traced_without_memory = False

    # ------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------
    def build(self, var_list):
        if self.built:
            return
        self._beta = self.add_variable(
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self._initial_beta),
            name="beta",
        )
        self._step_norm = self.add_variable(
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(
                self._initial_step_norm or 0.0
            ),
            name="step_norm",
        )
        self.invariance_loss = self.add_variable(
            shape=(), dtype="float32", name="invariance_loss"
        )
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def beta(self):
        """β, a Keras variable once the optimizer is built."""
        return self._beta if self.built else self._initial_beta

    @property
    def step_norm(self):
        """ε, or `None` when the direction is not rescaled."""
        if self._initial_step_norm is None:
            return None
        return self._step_norm if self.built else self._initial_step_norm

    @property
    def _own_variables(self):
        return self._variables + self.memory.variables

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
    # The model the memory is run through
    # ------------------------------------------------------------------
    def bind(self, model):
        """Tells the optimizer which model the protected outputs belong to.

        `keras_fip.callbacks.TaskBoundary` calls this; call it yourself to
        train on an active memory without that callback.

        Args:
            model: the compiled Keras model this optimizer trains.
        """
        if not isinstance(model, keras.Model):
            raise TypeError(f"bind() needs a keras.Model; got {model!r}.")
        if self.memory.built:
            distances.check_output_shape(
                self.distance, (None, *self.memory.spec["outputs"]["shape"])
            )
        self._model = model

    def _model_order(self, trainable_variables):
        """Index into `trainable_variables` of each model trainable var."""
        position = {id(v): i for i, v in enumerate(trainable_variables)}
        order = []
        for v in self._model.trainable_variables:
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
    # The FIP step
    # ------------------------------------------------------------------
    def _invariance(self, model_values, state, inputs, anchors):
        outputs, _ = self._model.stateless_call(
            model_values, state, inputs, training=False
        )
        per_sample = distances.get(self.distance)(
            outputs, anchors, from_logits=self.from_logits
        )
        if self.reduction == "sum":
            return ops.sum(per_sample)
        return ops.mean(per_sample)

    def _direction(self, grads, trainable_values, trainable_variables):
        """The FIP direction d = β ∇L + ∇D, optionally rescaled to ε."""
        if not self.memory.built:
            self.traced_without_memory = True
            return grads  # nothing to protect: the inner optimizer's step
        if self._model is None:
            raise ValueError(
                "FIPOptimizer has a memory but no model to run it through. "
                "Pass keras_fip.callbacks.TaskBoundary(...) to fit(), or "
                "call `optimizer.bind(model)` before training."
            )
        order = self._model_order(trainable_variables)
        grads = [
            ops.zeros_like(v) if g is None else ops.convert_to_tensor(g)
            for g, v in zip(grads, trainable_values)
        ]
        inputs, anchors = self.memory.next_batch(self.memory_batch_size)
        state = [v.value for v in self.memory.model_state]
        model_values = [trainable_values[i] for i in order]
        active = ops.greater(self.memory.num_active.value, 0)

        def protect():
            value, model_grads = fip_backend.value_and_grad(
                lambda values: self._invariance(values, state, inputs, anchors),
                model_values,
            )
            invariance_grads = [ops.zeros_like(g) for g in grads]
            for i, g in zip(order, model_grads):
                invariance_grads[i] = ops.cast(g, grads[i].dtype)
            return ops.cast(value, "float32"), invariance_grads

        def skip():
            return ops.zeros((), "float32"), [ops.zeros_like(g) for g in grads]

        value, invariance_grads = ops.cond(active, protect, skip)
        self.invariance_loss.assign(value)
        scale = ops.where(active, self._beta.value, 1.0)
        direction = [
            ops.cast(scale, g.dtype) * g + ig
            for g, ig in zip(grads, invariance_grads)
        ]
        if self._initial_step_norm is not None:
            norm = ops.sqrt(
                sum(ops.sum(ops.square(ops.cast(d, "float32"))) for d in direction)
            )
            factor = ops.where(
                active, self._step_norm.value / ops.maximum(norm, 1e-12), 1.0
            )
            direction = [ops.cast(factor, d.dtype) * d for d in direction]
        return direction

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        variables = list(trainable_variables or self._trainable_variables)
        direction = self._direction(
            list(grads), [v.value for v in variables], variables
        )
        self.inner_optimizer.apply(direction, trainable_variables)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if not self.built:
            raise ValueError(
                "To call `stateless_apply`, FIPOptimizer must be built: call "
                "`optimizer.build(trainable_variables)` first."
            )
        own = self._own_variables
        own_values = optimizer_variables[: len(own)]
        inner_values = optimizer_variables[len(own) :]
        with keras.StatelessScope(state_mapping=list(zip(own, own_values))) as scope:
            direction = self._direction(
                list(grads), list(trainable_variables), self._trainable_variables
            )
        new_own = [scope.get_current_value(v) for v in own]
        new_trainable, new_inner = self.inner_optimizer.stateless_apply(
            inner_values, direction, trainable_variables
        )
        return new_trainable, new_own + list(new_inner)

    # ------------------------------------------------------------------
    # Saving
    # ------------------------------------------------------------------
    def load_own_variables(self, store):
        if len(store.keys()) != len(self.variables):
            raise ValueError(
                f"Cannot restore FIPOptimizer {self.name!r}: the file holds "
                f"{len(store.keys())} optimizer variables but this optimizer "
                f"has {len(self.variables)}. The memory or the inner "
                "optimizer differs from the saved one (was the optimizer "
                "built for this model?)."
            )
        super().load_own_variables(store)

    def get_config(self):
        beta = self._initial_beta
        step_norm = self._initial_step_norm
        if self.built:
            beta = float(ops.convert_to_numpy(self._beta))
            if step_norm is not None:
                step_norm = float(ops.convert_to_numpy(self._step_norm))
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(
                self.inner_optimizer
            ),
            "memory": self.memory.get_config(),
            "beta": beta,
            "distance": self.distance,
            "reduction": self.reduction,
            "from_logits": self.from_logits,
            "memory_batch_size": self.memory_batch_size,
            "step_norm": step_norm,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        memory = Memory.from_config(config.pop("memory"))
        return cls(inner, memory=memory, **config)
