"""`FIPOptimizer`: take any Keras optimizer along a functionally invariant path.

Raghavan et al., "Engineering flexible machine learning systems by traversing
functionally invariant paths", Nature Machine Intelligence 2024
(arXiv 2205.00334). Each FIP step solves

    θ* = argmin_θ  θᵀ g(w) θ + β θᵀ ∇L(w)      subject to ‖θ‖ ≤ ε,

g the metric of the outputs the network must keep, L the secondary objective.
As in the paper's reference code, θᵀ g θ is measured by an output distance D
between the network and its anchor (by default the network at the start of
the task) on a batch of protected inputs from a `Memory`; near the anchor D
is the quadratic form of g. The direction handed to the inner optimizer is

    d = β ∇L(w) + ∇_w Σ_{x ∈ memory batch} D(f(x; w), f(x; w₀)),

∇L being the gradient `model.fit` computed for the new task. With a
`sparse_target` (`keras_fip.sparsity.SparseTarget`) the pull λ (w − P_s(w))
toward the magnitude-pruned network is added: the sparsification path. With
`step_norm=ε`, d is rescaled to global L2 norm ε (`SGD(learning_rate=1.0)`
then moves exactly ε per step, as the reference sparsification does).
"""

import keras
from keras import ops

from keras_fip import distances
from keras_fip.continual_optimizer import _check_number
from keras_fip.memory_optimizer import MemoryOptimizer
from keras_fip.memory_optimizer import global_norm
from keras_fip.sparsity.sparse_target import SparseTarget

REDUCTIONS = ("sum", "mean")
ANCHORS = ("task_start", "stored")


@keras.saving.register_keras_serializable(package="keras_fip")
class FIPOptimizer(MemoryOptimizer):
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
        sparse_target: a `keras_fip.sparsity.SparseTarget`: walk toward a
            magnitude-sparse network (sparsification). Its pull applies
            from the first step, memory or not (then d = β ∇L + pull).
        anchors: which outputs a protected input x is kept near.
            `"task_start"` (default, the reference code): every stored
            sample is re-anchored when a task begins, D(f(x; w), f(x; w₀))
            with w₀ the network at the start of the current task, so each
            task's path starts where the network is. `"stored"`: a sample
            keeps the outputs the network gave when its own task ended,
            D(f(x; w), f(x; w_τ(x))), so drift over a long task sequence
            does not compound (the path also pulls back what earlier
            tasks moved).
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
        sparse_target=None,
        anchors="task_start",
        name=None,
        **kwargs,
    ):
        distances.get(distance)
        if isinstance(sparse_target, dict):
            sparse_target = keras.saving.deserialize_keras_object(
                sparse_target)
        if sparse_target is not None and not isinstance(sparse_target,
                                                        SparseTarget):
            raise TypeError(
                "`sparse_target` must be a keras_fip.sparsity.SparseTarget; "
                f"got {sparse_target!r}."
            )
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"Unknown reduction {reduction!r}. Expected 'sum' (the "
                "reference code) or 'mean'."
            )
        if anchors not in ANCHORS:
            raise ValueError(
                f"Unknown anchors {anchors!r}. Expected 'task_start' "
                "(re-anchor every stored sample when a task begins, the "
                "reference code) "
                "or 'stored' (keep the outputs each sample had when its task "
                "ended)."
            )
        super().__init__(inner_optimizer, memory=memory,
                         memory_batch_size=memory_batch_size, name=name,
                         **kwargs)
        self._initial_beta = _check_number("beta", beta)
        self._initial_step_norm = _check_number(
            "step_norm", step_norm, allow_none=True, positive=True
        )
        self.distance = distance
        self.reduction = reduction
        self.from_logits = bool(from_logits)
        self.sparse_target = sparse_target
        self.anchors = anchors

    @property
    def refresh_anchors(self):
        """Whether a task start re-anchors every stored sample."""
        return self.anchors == "task_start"

    def _build_own(self, var_list):
        super()._build_own(var_list)
        if self.sparse_target is not None:
            self.sparse_target.build(self, var_list)
        self._beta = self.add_variable(
            shape=(), dtype="float32", name="beta",
            initializer=keras.initializers.Constant(self._initial_beta),
        )
        self._step_norm = self.add_variable(
            shape=(), dtype="float32", name="step_norm",
            initializer=keras.initializers.Constant(
                self._initial_step_norm or 0.0
            ),
        )

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
    def invariance_loss(self):
        """The invariance term D of the last step (a Keras variable)."""
        return self.memory_loss

    def _check_outputs(self, shape):
        distances.check_output_shape(self.distance, shape)

    def _memory_loss(self, outputs, anchors, labels):
        per_sample = distances.get(self.distance)(
            outputs, anchors, from_logits=self.from_logits
        )
        if self.reduction == "sum":
            return ops.sum(per_sample)
        return ops.mean(per_sample)

    def _scaled(self, grads):
        beta = self._beta.value
        return [ops.cast(beta, g.dtype) * g for g in grads]

    def _normalised(self, direction):
        """`direction` rescaled to global L2 norm ε (if `step_norm` is set)."""
        if self._initial_step_norm is None:
            return direction
        factor = self._step_norm.value / ops.maximum(
            global_norm(direction), 1e-12
        )
        return [ops.cast(factor, d.dtype) * d for d in direction]

    def _combine(self, grads, memory_grads):
        """d = β ∇L + ∇D, rescaled to global norm ε when `step_norm` is set."""
        direction = [g + m for g, m in zip(self._scaled(grads), memory_grads)]
        if self.sparse_target is not None:
            return direction  # normalised after the sparse pull
        return self._normalised(direction)

    def _without_memory(self, grads):
        if self.sparse_target is None:
            return super()._without_memory(grads)
        return self._scaled(grads)

    def _direction(self, grads, values, variables):
        direction = super()._direction(grads, values, variables)
        if self.sparse_target is None:
            return direction
        direction = self.sparse_target.pull(direction, values,
                                            self.iterations.value)
        return self._normalised(direction)

    def _has_projection(self):
        return (self.sparse_target is not None
                and self.sparse_target.hard_mask_step is not None)

    def _project(self, old_values, new_values):
        return self.sparse_target.project(old_values, new_values)

    def _projected_indices(self):
        return self.sparse_target.chosen_indices

    def get_config(self):
        config = super().get_config()
        beta, step_norm = self._initial_beta, self._initial_step_norm
        if self.built:
            beta = float(ops.convert_to_numpy(self._beta))
            if step_norm is not None:
                step_norm = float(ops.convert_to_numpy(self._step_norm))
        config.update(
            beta=beta,
            distance=self.distance,
            reduction=self.reduction,
            from_logits=self.from_logits,
            step_norm=step_norm,
            anchors=self.anchors,
        )
        if self.sparse_target is not None:
            config["sparse_target"] = keras.saving.serialize_keras_object(
                self.sparse_target)
        return config
