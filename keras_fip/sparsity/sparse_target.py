"""`SparseTarget`: the sparse subspace as FIP's secondary objective.

With `FIPOptimizer(..., sparse_target=SparseTarget(s))` each step's
direction gets the pull toward the magnitude-pruned network,

    d = β ∇L + ∇D + λ (w − P_s(w)),

on the chosen variables (zero elsewhere), before the optional rescaling to
global L2 norm ε (`step_norm`): the reference code's sparsification step,
which walks an FIP (D keeps the outputs on the memory) into the subspace
where the fraction s of the weights is zero. λ (w − P_s(w)) is λ w on the
weights below the magnitude threshold and 0 on the others. The threshold is
recomputed on the schedule's steps; `gap` = ‖w − P_s(w)‖ is kept for a stop
criterion (`keras_fip.callbacks.PruningStop`), and
`keras_fip.sparsity.make_pruning_permanent` applies the final hard mask.

With `hard_mask_step=H` the mask becomes hard at step H instead of at the
end: the weights below the threshold are set to zero there, and from then
on the direction is masked and each step is projected back onto the mask,
so the rest of the path is an FIP *inside* the sparse subspace (D restores
the outputs the cut moved; the sparsity stays exact).

Example:

```python
fip = keras_fip.FIPOptimizer(
    keras.optimizers.SGD(1.0), step_norm=0.01,
    sparse_target=keras_fip.sparsity.SparseTarget(0.9, weight=0.1))
```
"""

import keras
from keras import ops

from keras_fip.arrays import as_numpy
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import renamed_attribute
from keras_fip.deprecation import upgrade_config
from keras_fip.sparsity import schedules
from keras_fip.sparsity.magnitude import check_scope
from keras_fip.sparsity.magnitude import thresholds
from keras_fip.sparsity.selection import check_patterns
from keras_fip.sparsity.selection import select
from keras_fip.terms.base import DirectionTerm


@keras.saving.register_keras_serializable(package="keras_fip")
class SparseTarget(DirectionTerm):
    """The pull λ (w − P_s(w)) toward a magnitude-sparse network.

    A direction term: pass it to `FIPOptimizer(objectives=[...])` (or in
    any `ContinualOptimizer`'s `terms`).

    Args:
        sparsity: the target sparsity s: a number in [0, 1) (constant) or a
            `ConstantSparsity` / `PolynomialDecay` schedule over optimizer
            steps.
        weight: λ ≥ 0, the term's weight (default 0.1, the reference
            code's; `strength` is its deprecated 0.5 name). An optimizer
            variable once built (`target.weight.assign(...)`).
        prune: glob patterns on variable paths of the variables to prune
            (default: every trainable `kernel` with 2+ axes: dense,
            einsum-dense and convolution kernels).
        scope: `"global"` (default: one magnitude threshold across all
            pruned variables, the reference code) or `"per_variable"`
            (tfmot).
        hard_mask_step: `None` (default, the reference code: the pull
            alone, hard mask only by `make_pruning_permanent`) or the
            optimizer step at which the mask becomes hard; at or after the
            schedule's final step.

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                              keras.layers.Dense(4)])
    x, y = np.random.rand(64, 8).astype("float32"), np.arange(64) % 4
    target = keras_fip.sparsity.SparseTarget(
        keras_fip.sparsity.PolynomialDecay(0.0, 0.8, begin_step=0,
                                           end_step=10),
        weight=10.0, prune=["*dense*/kernel"], hard_mask_step=12)
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.SGD(1.0), memory=keras_fip.Memory(64),
        step_norm=0.01, sparse_target=target),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras_fip.callbacks.remember_task(model, 0, x, y)  # protect these outputs
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)  # 20 steps, cut at 12
    report = keras_fip.sparsity.sparsity_report(model)
    assert report["zeros"] == int(0.8 * report["size"])
    ```
    """

    strength = renamed_attribute("strength", "weight", since="0.6")

    @renamed_arguments(since="0.6", strength="weight")
    def __init__(self, sparsity, weight=0.1, prune=None, scope="global",
                 hard_mask_step=None):
        self.schedule = schedules.get(sparsity)
        if isinstance(weight, bool) or not isinstance(
                weight, (int, float)) or not weight >= 0:
            raise ValueError(f"`weight` (λ) must be a number >= 0; got "
                             f"{weight!r}.")
        self._initial_weight = float(weight)
        self.prune = check_patterns(prune)
        self.scope = check_scope(scope)
        self.hard_mask_step = self._check_hard_mask_step(hard_mask_step)
        # With a hard mask each step is projected back onto it.
        self.projects = self.hard_mask_step is not None
        self.built = False

    def _check_hard_mask_step(self, step):
        if step is None:
            return None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"`hard_mask_step` must be None or an integer "
                             f">= 0; got {step!r}.")
        if step < self.schedule.final_step:
            raise ValueError(
                f"`hard_mask_step` ({step}) comes before the schedule reaches "
                f"its final sparsity (step {self.schedule.final_step}): the "
                "mask would freeze at a lower sparsity. Use a step at or "
                "after the schedule's end.")
        return step

    def build(self, optimizer, var_list):
        """Creates the state as `optimizer` variables (saved with it)."""
        # The optimizer's variable list is fixed once built: select once.
        self._chosen = select(var_list, self.prune)
        count = len(self._chosen)
        self.weight = optimizer.add_variable(
            shape=(), dtype="float32", name="sparse_strength",
            initializer=keras.initializers.Constant(self._initial_weight))
        self.threshold = optimizer.add_variable(
            shape=(count,), dtype="float32", name="sparse_threshold")
        self.sparsity = optimizer.add_variable(
            shape=(), dtype="float32", name="sparse_sparsity")
        self.gap = optimizer.add_variable(
            shape=(), dtype="float32", name="sparse_gap")
        if self.hard_mask_step is not None:
            # 0: pulling; 1: the step that cuts; 2: walking inside the mask.
            self.phase = optimizer.add_variable(
                shape=(), dtype="float32", name="sparse_phase")
        self.built = True

    @property
    def chosen_indices(self):
        """Indices (in the optimizer's variable list) of the pruned ones."""
        return tuple(self._chosen)

    def projected_indices(self):
        return self.chosen_indices

    def __call__(self, direction, step):
        return self.pull(direction, step.values, step.iterations)

    def _phase(self, step):
        step = ops.cast(step, "int32")
        return (ops.cast(ops.greater_equal(step, self.hard_mask_step),
                         "float32")
                + ops.cast(ops.greater(step, self.hard_mask_step), "float32"))

    def _kept(self, w, limit, phase):
        """The hard mask: |w| ≥ threshold at the cut, w ≠ 0 after it."""
        at_cut = ops.greater_equal(ops.abs(w), ops.cast(limit, w.dtype))
        return ops.where(ops.equal(phase, 1.0), at_cut, ops.not_equal(w, 0))

    def pull(self, direction, values, step):
        """`direction` plus λ (w − P_s(w)) on the pruned variables (masked
        instead, once the mask is hard)."""
        chosen = self._chosen
        pruned = [values[i] for i in chosen]
        update = self.schedule.should_update(step)
        phase = None
        if self.hard_mask_step is not None:
            phase = self._phase(step)
            self.phase.assign(phase)
            # The threshold is fixed once cut; recomputed exactly at the cut.
            update = ops.logical_or(
                ops.logical_and(update, ops.equal(phase, 0.0)),
                ops.equal(phase, 1.0))
        target = self.schedule.sparsity(step)
        limits = ops.cond(
            update,
            lambda: thresholds(pruned, target, self.scope),
            lambda: self.threshold.value,
        )
        self.threshold.assign(limits)
        self.sparsity.assign(ops.where(update, target, self.sparsity.value))
        direction = list(direction)
        weight = self.weight.value
        squared = ops.zeros((), "float32")
        for j, (i, w) in enumerate(zip(chosen, pruned)):
            below = ops.less(ops.abs(w), ops.cast(limits[j], w.dtype))
            pulled = direction[i] + ops.cast(weight, w.dtype) * (
                w * ops.cast(below, w.dtype))
            if phase is not None:
                kept = self._kept(w, limits[j], phase)
                hard = ops.greater(phase, 0.0)
                below = ops.where(hard, ops.logical_not(kept), below)
                pulled = ops.where(
                    hard, direction[i] * ops.cast(kept, w.dtype), pulled)
            direction[i] = pulled
            residual = w * ops.cast(below, w.dtype)  # w − P_s(w)
            squared = squared + ops.sum(ops.square(
                ops.cast(residual, "float32")))
        self.gap.assign(ops.sqrt(squared))
        return direction

    def project(self, old_values, new_values, step=None):
        """After the cut: the new weights with the pruned entries zeroed."""
        phase = self.phase.value
        limits = self.threshold.value
        projected = list(new_values)
        for j, i in enumerate(self._chosen):
            kept = self._kept(old_values[i], limits[j], phase)
            projected[i] = ops.where(
                ops.greater(phase, 0.0),
                new_values[i] * ops.cast(kept, new_values[i].dtype),
                new_values[i])
        return projected

    def get_config(self):
        weight = self._initial_weight
        if self.built:
            weight = float(as_numpy(self.weight))
        return {
            "sparsity": keras.saving.serialize_keras_object(self.schedule),
            "weight": weight,
            "prune": list(self.prune) if self.prune else None,
            "scope": self.scope,
            "hard_mask_step": self.hard_mask_step,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**upgrade_config(cls, config))
