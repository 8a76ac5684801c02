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

    d = β ∇L(w) + λ ∇_w mean_{x ∈ memory batch} D(f(x; w), f(x; w₀))
        + Σ_j ∇O_j(w),

∇L being the gradient `model.fit` computed for the new task and O_j the
weight-space objectives (a pull toward a sparse network, toward another
network, ...). By default (since 0.7) class scores are compared by the
squared distance of their logits, whose metric is the paper's g = JᵀJ,
β = 10 and λ = 1: chosen on the validation splits of eleven streams by the worst
case (`docs/results/scale_free.md`). Other balances between ∇L and ∇D
(`balance=`) state the trade-off without units (`keras_fip.terms.balance`).
With `step_norm=ε`, d is rescaled to global L2 norm ε (`SGD(learning_rate=
1.0)` then moves exactly ε per step).

With `damping=μ` the step is solved exactly instead of being left to the
penalty: the direction handed over is s = (g + μI)⁻¹ d, g the metric of the
protected outputs on the memory batch at the current weights, by a few
conjugate-gradient iterations inside the train step (`MetricSolve`); with
`step_norm=ε` the trust region ‖s‖ ≤ ε then clips instead of rescaling.

`FIPOptimizer` is a preset: a `ContinualOptimizer` with the terms
`[ScaleGradient(β), Invariance(distance, reduction, weight=λ) (or a
balance of keras_fip.terms.balance), *objectives, MetricSolve(μ) (with
damping), StepNorm(ε)]`.
"""

import keras

from keras_fip.checks import check_number
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.memory import memory_or_default
from keras_fip.terms.balance import DriftBound
from keras_fip.terms.balance import ProjectedInvariance
from keras_fip.terms.balance import RelativeInvariance
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.invariance import Invariance
from keras_fip.terms.metric_solve import MetricSolve
from keras_fip.terms.scale import ScaleGradient
from keras_fip.terms.step_norm import StepNorm

# The paper's reference code (the default of keras_fip 0.1 and 0.2).
REFERENCE_SETTINGS = {"distance": "bhattacharyya", "reduction": "sum",
                      "invariance_weight": 1.0,
                      "beta": 1.0, "anchors": "task_start", "damping": None}

# The default of keras_fip 0.3 to 0.6 (chosen on four streams' validation
# splits): the penalty step, β = 0.3, the distance each head's loss picks
# (Bhattacharyya for class scores), summed over the memory batch.
SETTINGS_0_5 = {"balance": "penalty", "beta": 0.3, "distance": "auto",
                "class_distance": "bhattacharyya", "reduction": "sum",
                "invariance_weight": 1.0, "anchors": "task_start",
                "damping": None}

# The metric the exact step solves with, by default: the one whose quadratic
# form the distance is near the anchor (see keras_fip.geometry).
METRIC_OF = {"squared_l2": "logit", "logit_l2": "logit",
             "bhattacharyya": "fisher", "kl": "fisher"}


# How the task direction is balanced against the protected outputs
# (`keras_fip.terms.balance`): "penalty" is the reference code's d = β∇L +
# ∇D; the others are scale-free.
BALANCES = ("penalty", "relative", "projected", "bound")
DEFAULT_RATIO = {"relative": 1.0, "projected": 0.5}
DEFAULT_DRIFT_BOUND = 0.02


def _invariance_term(balance, reduction, ratio, drift_bound,
                     invariance_weight, **settings):
    """The invariance term of a balance (`keras_fip.terms.balance`)."""
    if balance not in BALANCES:
        raise ValueError(f"Unknown balance {balance!r}; expected one of "
                         f"{BALANCES}.")
    given = {"ratio": ratio, "drift_bound": drift_bound,
             "invariance_weight": (None if invariance_weight == 1.0
                                   else invariance_weight)}
    allowed = {"penalty": ("invariance_weight",),
               "relative": ("ratio",), "projected": ("ratio",),
               "bound": ("drift_bound",)}[balance]
    extra = [k for k, v in given.items() if v is not None
             and k not in allowed]
    if balance != "penalty" and reduction != "mean":
        extra.append("reduction")
    if extra:
        raise ValueError(
            f"balance={balance!r} does not take {extra}: it takes "
            f"{list(allowed)}. invariance_weight (and reduction='sum') "
            "weigh the penalty step; ratio is the unitless pull of "
            "'relative' and 'projected'; drift_bound is the bound of "
            "'bound'.")
    label_weight = check_number("label_weight", settings.pop("label_weight"))
    beta = settings.pop("beta")
    if balance == "penalty":
        return Invariance(
            reduction=reduction, weight=invariance_weight,
            label_weight=_label_weight_in_term(label_weight, beta),
            **settings)
    if label_weight:
        raise ValueError(
            f"label_weight is a setting of the penalty step (balance="
            f"'penalty'); balance={balance!r} does not take it. Keep labels "
            "with keras_fip.terms.RelativeInvariance(label_weight=...) in a "
            "ContinualOptimizer, or use the penalty step.")
    if balance == "bound":
        bound = DEFAULT_DRIFT_BOUND if drift_bound is None else drift_bound
        return DriftBound(bound=bound, **settings)
    ratio = DEFAULT_RATIO[balance] if ratio is None else ratio
    cls = RelativeInvariance if balance == "relative" else \
        ProjectedInvariance
    return cls(weight=ratio, **settings)


def _label_weight_in_term(label_weight, beta):
    """γ_term with β ∇L + ∇(λ D + γ_term CE) = β (∇L + γ ∇CE) + λ ∇D."""
    return float(label_weight) * float(beta)


def _metric_of(distance, class_distance="logit_l2"):
    if distance == "auto":  # until bind() reads the heads' distances
        return METRIC_OF[class_distance]
    if distance not in METRIC_OF:
        raise ValueError(
            f"No default metric for the exact step with distance "
            f"{distance!r}: pass metric='logit' or metric='fisher'.")
    return METRIC_OF[distance]


def _objectives(objectives, sparse_target):
    objectives = list(objectives or [])
    if isinstance(sparse_target, dict):
        sparse_target = keras.saving.deserialize_keras_object(sparse_target)
    if sparse_target is not None:
        objectives.append(sparse_target)
    objectives = [keras.saving.deserialize_keras_object(o)
                  if isinstance(o, dict) else o for o in objectives]
    for objective in objectives:
        if not isinstance(objective, DirectionTerm):
            raise TypeError(
                "FIP's objectives must be keras_fip.terms.DirectionTerm "
                "instances such as keras_fip.sparsity.SparseTarget(0.9) or "
                f"keras_fip.terms.TowardWeights(...); got {objective!r}."
            )
    return objectives


@keras.saving.register_keras_serializable(package="keras_fip")
class FIPOptimizer(ContinualOptimizer):
    """Wraps a Keras optimizer so each step keeps the protected outputs.

    Use it with `model.compile` and the default `fit` loop; the callback
    `keras_fip.callbacks.TaskBoundary` manages the memory between tasks. With
    an empty (or not yet anchored) memory and no objective the step is
    exactly the inner optimizer's.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that applies the
            combined direction (Adam, SGD, AdamW, ...).
        memory: the `keras_fip.Memory` of protected inputs. Defaults to a
            new `Memory(capacity=200)`.
        beta: weight β ≥ 0 of the secondary objective's gradient (the one
            `fit` computes). A Keras variable once built: callbacks may
            change it with `optimizer.beta.assign(...)`. Default 10 (since
            0.7, with the logit distance averaged over the memory batch;
            0.6 had 0.3 with the Bhattacharyya sum, the reference code 1).
            With an SGD inner optimizer β multiplies the task's step once
            a memory is active: lower the learning rate to match.
        distance: output distance D: `"auto"` (default: each output
            head's follows its compiled loss, `keras_fip.heads`: class
            scores → `class_distance`; sigmoid units →
            `"bernoulli_bhattacharyya"`; regression → `"squared_l2"`),
            or one of `keras_fip.distances.DISTANCES` for every head, or a
            dict `{head name: distance}`.
        reduction: `"mean"` over the memory batch (default; since 0.7) or
            `"sum"` (the reference code and 0.6: the invariance weight
            grows with `memory_batch_size`; the penalty step only).
        from_logits: whether the model outputs logits (softmax or sigmoid
            is applied before the distribution distances) or
            probabilities; `None` (default) reads it from each head's
            output activation, else its loss.
        token_reduction: for sequence outputs (a KerasHub `CausalLM`'s
            `(batch, sequence, vocabulary)` logits): a memory sequence's
            distance is the `"mean"` (default) or `"sum"` of its per-token
            distances over its real tokens (the memory input
            `"padding_mask"`; padded positions count for nothing).
        memory_batch_size: protected inputs drawn per step (default 32).
        step_norm: ε. `None` (default) hands the direction over as it is;
            a number > 0 rescales it to that global L2 norm first.
        objectives: weight-space secondary objectives, a list of
            `keras_fip.terms.DirectionTerm` (e.g.
            `keras_fip.sparsity.SparseTarget`: walk toward a magnitude-sparse
            network; `keras_fip.terms.TowardWeights`: toward another
            network). They act from the first step, memory or not (then
            d = β ∇L + Σ ∇O_j).
        sparse_target: shorthand for `objectives=[sparse_target]`.
        anchors: which outputs a protected input x is kept near.
            `"task_start"` (default, the reference code): every stored
            sample is re-anchored when a task begins, D(f(x; w), f(x; w₀))
            with w₀ the network at the start of the current task, so each
            task's path starts where the network is. `"stored"`: a sample
            keeps the outputs the network gave when its own task ended,
            D(f(x; w), f(x; w_τ(x))), so drift over a long task sequence
            does not compound (the path also pulls back what earlier
            tasks moved).
        damping: μ > 0 for the exact step (`keras_fip.terms.MetricSolve`):
            the direction handed to the inner optimizer is (g + μI)⁻¹ d;
            `None` (default) hands d over as it is (the penalty form).
        metric: the metric g of the exact step, `"logit"` (JᵀJ) or
            `"fisher"`; `None` picks the one the distance approximates
            (`"logit"` for squared L2, `"fisher"` for Bhattacharyya / KL).
        solver_iterations: conjugate-gradient iterations per step of the
            exact step (default 5; each one JVP and one VJP on the memory
            batch).
        heads: for a model with several outputs (a dict or list of
            heads), the names of the heads to protect; `None` (default)
            protects every head, each by its own distance, summed.
        balance: how the step weighs the new task against the protected
            outputs: `"penalty"` (default: d = β ∇L + λ ∇D), or a
            scale-free balance of `keras_fip.terms.balance`: `"relative"`
            (the pull ∇D rescaled to `ratio` times ‖β ∇L‖), `"projected"`
            (the part of ∇L that raises D removed, then that pull) or
            `"bound"` (the pull's ratio adapted by dual ascent so that the
            mean drift stays ≤ `drift_bound`). On the suite's validation
            splits the penalty step held best in the worst case.
        ratio: ρ of `"relative"` (default 1.0) and `"projected"` (default
            0.5).
        drift_bound: δ of `"bound"` (default 0.02, in the distance's
            units).
        label_weight: γ ≥ 0 (default 0: FIP, label-free). With γ > 0 the
            penalty step also fits the memory's stored labels:
            d = β (∇L + γ ∇CE(f(x_mem), y_mem)) + λ ∇D, the label-keeping
            FIP (a model with one class-score output and a memory given
            labels). DER++'s default weight is 2.
        class_distance: the distance `"auto"` gives class-score heads:
            `"logit_l2"` (default; since 0.7: squared distance of the
            logits, g = JᵀJ; probabilities are compared as log p),
            `"bhattacharyya"` (the reference code and 0.6) or `"kl"`.
            Files saved before 0.7 load with `"bhattacharyya"`.
        invariance_weight: λ ≥ 0, the weight of ∇D in the penalty step
            (default 1.0).
        name: the optimizer's name.

    The defaults of keras_fip 0.3 to 0.6 are
    `FIPOptimizer.default_of_0_5(inner, memory)`.

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    fip = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3), memory=keras_fip.Memory(capacity=40))
    model.compile(optimizer=fip,
                  loss=keras.losses.SparseCategoricalCrossentropy(
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
        beta=10.0,
        distance="auto",
        reduction="mean",
        from_logits=None,
        memory_batch_size=32,
        token_reduction="mean",
        step_norm=None,
        objectives=None,
        sparse_target=None,
        anchors="task_start",
        damping=None,
        metric=None,
        solver_iterations=5,
        heads=None,
        balance="penalty",
        ratio=None,
        drift_bound=None,
        label_weight=0.0,
        class_distance="logit_l2",
        invariance_weight=1.0,
        name=None,
        **kwargs,
    ):
        scale = ScaleGradient(beta)
        invariance = _invariance_term(
            balance, reduction, ratio, drift_bound, invariance_weight,
            beta=beta, distance=distance, from_logits=from_logits,
            token_reduction=token_reduction, heads=heads,
            label_weight=label_weight, class_distance=class_distance)
        objectives = _objectives(objectives, sparse_target)
        solve = None if damping is None else MetricSolve(
            damping, solver_iterations,
            metric or _metric_of(distance, class_distance),
            invariance.reduction)
        norm = None if step_norm is None else StepNorm(
            step_norm, mode="rescale" if solve is None else "clip")
        terms = [scale, invariance, *objectives]
        terms += [t for t in (solve, norm) if t is not None]
        super().__init__(
            inner_optimizer, terms=terms, memory=memory_or_default(memory),
            memory_batch_size=memory_batch_size, anchors=anchors,
            name=name, **kwargs)
        self._scale = scale
        self._invariance = invariance
        self.balance = balance
        self._label_weight = float(label_weight)
        self._step_norm = norm
        self._solve = solve
        self._metric_given = metric is not None
        self.objectives = objectives

    def bind(self, model, sample_inputs=None):
        super().bind(model, sample_inputs)
        protected = self._invariance.protected
        if self._solve is not None and not self._metric_given and protected:
            self._solve.metric = _metric_of(protected[0].distance)

    @classmethod
    def reference_code(cls, inner_optimizer, memory=None, **overrides):
        """FIP with the settings of the paper's reference code.

        The penalty step with the Bhattacharyya distance summed over the
        memory batch, β = 1, every stored sample re-anchored when a task
        begins (`REFERENCE_SETTINGS`; the default of keras_fip 0.1 and
        0.2). `overrides` replace any of them.

        ```python
        import keras, keras_fip
        fip = keras_fip.FIPOptimizer.reference_code(keras.optimizers.Adam())
        assert fip.distance == "bhattacharyya" and fip.anchors == "task_start"
        ```
        """
        return cls(inner_optimizer, memory=memory,
                   **{**REFERENCE_SETTINGS, **overrides})

    @classmethod
    def default_of_0_5(cls, inner_optimizer, memory=None, **overrides):
        """FIP with the defaults of keras_fip 0.3 to 0.6.

        The penalty step d = 0.3 ∇L + ∇ Σ_batch D, D each head's distance
        from its loss (`SETTINGS_0_5`); `overrides` replace any setting.

        ```python
        import keras, keras_fip
        fip = keras_fip.FIPOptimizer.default_of_0_5(keras.optimizers.Adam())
        assert fip.balance == "penalty" and fip.reduction == "sum"
        ```
        """
        return cls(inner_optimizer, memory=memory,
                   **{**SETTINGS_0_5, **overrides})

    @property
    def beta(self):
        """β, a Keras variable once the optimizer is built."""
        return self._scale.beta if self.built else self._scale.current()

    @property
    def ratio(self):
        """ρ of the `"relative"` and `"projected"` balances, else `None`."""
        return getattr(self._invariance, "ratio", None)

    @property
    def drift_bound(self):
        """δ of the `"bound"` balance, else `None`."""
        return getattr(self._invariance, "bound", None)

    @property
    def class_distance(self):
        """The distance `"auto"` gives class-score heads."""
        return self._invariance.class_distance

    @property
    def invariance_weight(self):
        """λ, the penalty step's weight of ∇D (`None` for the other
        balances)."""
        return self._invariance.weight if self.balance == "penalty" \
            else None

    @property
    def label_weight(self):
        """γ, the weight of the memory's label loss relative to the new
        task's (0: label-free)."""
        return self._label_weight

    @property
    def step_norm(self):
        """ε, or `None` when the direction is not rescaled."""
        if self._step_norm is None:
            return None
        return self._step_norm.epsilon if self.built else \
            self._step_norm.current()

    @property
    def distance(self):
        return self._invariance.distance

    @property
    def reduction(self):
        return self._invariance.reduction

    @property
    def from_logits(self):
        return self._invariance.from_logits

    @property
    def heads(self):
        """The names of the protected heads (`None`: every head)."""
        return self._invariance.heads

    @property
    def token_reduction(self):
        return self._invariance.token_reduction

    @property
    def refresh_anchors(self):
        """Whether a task start re-anchors every stored sample."""
        return self.anchors == "task_start"

    @property
    def invariance_term(self):
        """The `keras_fip.terms.Invariance` term (its protected heads and
        distances, `drift`)."""
        return self._invariance

    @property
    def invariance_loss(self):
        """The invariance term D of the last step (a Keras variable)."""
        return self._invariance.last_loss

    def get_config(self):
        config = self._base_config()
        penalty = self.balance == "penalty"
        config.update(
            balance=self.balance,
            beta=self._scale.current(),
            ratio=self.ratio,
            drift_bound=self.drift_bound,
            label_weight=self.label_weight,
            class_distance=self.class_distance,
            invariance_weight=(self._invariance.weight if penalty
                               else None),
            distance=self.distance,
            reduction=self.reduction,
            from_logits=self.from_logits,
            token_reduction=self.token_reduction,
            heads=self.heads,
            step_norm=(None if self._step_norm is None
                       else self._step_norm.current()),
            anchors=self.anchors,
            damping=None if self._solve is None else self._solve.damping,
            metric=None if self._solve is None else self._solve.metric,
            solver_iterations=(5 if self._solve is None
                               else self._solve.iterations),
            objectives=[keras.saving.serialize_keras_object(o)
                        for o in self.objectives],
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A file written before the exact step existed took the penalty
        # step: keep it so, whatever the constructor's default now is.
        config = {"damping": None, "metric": None, **config}
        # Files of keras_fip 0.6 and before took the penalty step, with β
        # and the reduction saved.
        config.setdefault("balance", "penalty")
        # Before 0.7, "auto" compared class scores by Bhattacharyya and the
        # invariance term had weight 1.
        config.setdefault("class_distance", "bhattacharyya")
        if config["balance"] == "penalty":
            config.setdefault("invariance_weight", 1.0)
        # Files of keras_fip 0.5 and before name the distance and
        # from_logits explicitly (their defaults then), so they load as
        # they were saved.
        return super().from_config(config, custom_objects)
