"""`MetricSolve`: the exact FIP step, by conjugate gradient on the metric."""

import keras
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.metric_product import METRICS
from keras_fip.metric_product import REDUCTIONS
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.weight_variables import add_weight_variables
from keras_fip.tree_math import dot


def _axpy(a, xs, ys):
    """a·x + y for lists of tensors (a a float32 scalar)."""
    return [ops.cast(a, y.dtype) * ops.cast(x, y.dtype) + y
            for x, y in zip(xs, ys)]


@keras.saving.register_keras_serializable(package="keras_fip")
class MetricSolve(DirectionTerm):
    """d ← (g + μI)⁻¹ d: the direction that solves FIP's step exactly.

    FIP's step minimises the output movement plus the objective's slope,

        θ* = argmin_θ ½ θᵀ(g + μI)θ + θᵀ d   ⇒   (g + μI) θ* = −d,

    with d = β∇L (and whatever the terms before this one added) and
    g = Σ_x J_xᵀ H J_x the metric of the protected outputs on this step's
    memory batch, at the current weights (`keras_fip.metric_product`). The
    term solves (g + μI) s = d by `iterations` steps of conjugate gradient, each
    one metric-vector product (a JVP and a VJP over the memory batch; g is
    never formed), inside the compiled train step; the inner optimizer then
    applies s as the gradient, so with `SGD(learning_rate=1)` the weights
    move by exactly θ* = −s. μ > 0 keeps the system well posed where g is
    singular (it is: rank g ≤ memory batch × outputs): along directions g
    does not see, s = d/μ; along an eigenvector of g with eigenvalue λ the
    direction is shrunk to d/(λ + μ). Put `StepNorm(ε, mode="clip")` after
    it for the trust region ‖θ‖ ≤ ε.

    CG stops improving once the residual ‖d − (g + μI)s‖ is below
    `tolerance`·‖d‖ (later iterations leave s as it is: the budget is fixed
    so the step compiles to a fixed graph). The last step's relative
    residual is kept in the optimizer variable `last_residual`.

    With `warm_start=True` CG starts from the previous step's solution (one
    copy of the weights more); otherwise from 0. While the memory holds
    no anchored sample the term does nothing.

    Args:
        damping: μ > 0 (float, default 10: of μ = 1, 10, 100 the best
            mean validation accuracy over four streams,
            `benchmarks/select_default.py`).
        iterations: CG iterations per step (int ≥ 1, default 5: on
            Split-digits validation K = 1, 2, 5, 10 gave 0.967, 0.968, 0.976,
            0.972, `benchmarks/cg_budget.py`).
        metric: `"logit"` (JᵀJ, the paper's g, default) or `"fisher"`
            (the softmax Fisher, ∝ the Hessian of the KL and Bhattacharyya
            distances at the anchor).
        reduction: `"sum"` or `"mean"` (default) over the memory batch.
        tolerance: relative residual at which CG stops improving
            (default 1e-4).
        warm_start: start CG from the last step's solution (default False).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    term = keras_fip.terms.MetricSolve(damping=1.0, iterations=5)
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.SGD(0.1), memory=keras_fip.Memory(capacity=20),
        terms=[term, keras_fip.terms.StepNorm(0.1, mode="clip")])
    ```
    """

    def __init__(self, damping=10.0, iterations=5, metric="logit",
                 reduction="mean", tolerance=1e-4, warm_start=False):
        self.damping = check_number("damping", damping, positive=True)
        if isinstance(iterations, bool) or not isinstance(iterations, int) \
                or iterations < 1:
            raise ValueError(
                f"`iterations` must be an int >= 1 (CG steps); got "
                f"{iterations!r}.")
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; expected one of "
                             f"{METRICS}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"Unknown reduction {reduction!r}; expected "
                             f"one of {REDUCTIONS}.")
        self.iterations = iterations
        self.metric = metric
        self.reduction = reduction
        self.tolerance = check_number("tolerance", tolerance, positive=True)
        self.warm_start = bool(warm_start)
        self.last_residual = None
        self._previous = None

    def build(self, optimizer, variables):
        if optimizer.memory is None:
            raise ValueError(
                "MetricSolve needs the optimizer to have a keras_fip.Memory "
                "(the protected inputs g is measured on): pass "
                "memory=keras_fip.Memory(capacity).")
        self.last_residual = optimizer.add_variable(
            shape=(), dtype="float32", name="cg_residual")
        if self.warm_start:
            self._previous = add_weight_variables(optimizer, variables,
                                                  "cg_solution")

    def activity(self, step):
        return step.memory_active

    def solve(self, rhs, step):
        """`(s, relative residual)` with (g + μI) s ≈ rhs, by CG."""
        damping = ops.convert_to_tensor(self.damping, "float32")

        def apply(v):
            gv = step.metric_product(v, self.metric, self.reduction)
            return _axpy(damping, v, gv)

        if self._previous is None:
            x = [ops.zeros_like(b) for b in rhs]
            r = list(rhs)
        else:
            x = [ops.cast(self._previous[i].value, b.dtype)
                 for i, b in zip(step.indices, rhs)]
            r = _axpy(-1.0, apply(x), rhs)
        p = list(r)
        rs = dot(r, r)
        floor = ops.square(self.tolerance) * ops.maximum(dot(rhs, rhs),
                                                         1e-30)
        for _ in range(self.iterations):
            ap = apply(p)
            converged = ops.less_equal(rs, floor)
            alpha = ops.where(converged, 0.0,
                              rs / ops.maximum(dot(p, ap), 1e-30))
            x = _axpy(alpha, p, x)
            r = _axpy(-alpha, ap, r)
            new_rs = dot(r, r)
            ratio = ops.where(converged, 0.0, new_rs / ops.maximum(rs, 1e-30))
            p = _axpy(ratio, p, r)
            rs = ops.where(converged, rs, new_rs)
        return x, ops.sqrt(rs / ops.maximum(dot(rhs, rhs), 1e-30))

    def __call__(self, direction, step):
        if not step.has_memory:
            return direction
        step.memory_batch()  # drawn outside the branch (JAX threads state)

        def solved():
            s, residual = self.solve(direction, step)
            return residual, s

        def skip():
            return ops.zeros((), "float32"), list(direction)

        residual, direction = fip_backend.memory_cond(step.memory_active,
                                                      solved, skip)
        self.last_residual.assign(residual)
        if self._previous is not None:
            for i, s in zip(step.indices, direction):
                self._previous[i].assign(ops.cast(s, self._previous[i].dtype))
        return direction

    def residual(self):
        """The last step's relative CG residual (a float)."""
        return float(as_numpy(self.last_residual))

    def get_config(self):
        return {"damping": self.damping, "iterations": self.iterations,
                "metric": self.metric, "reduction": self.reduction,
                "tolerance": self.tolerance, "warm_start": self.warm_start}
