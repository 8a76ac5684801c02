"""Diversity objectives: walk away from the path's start, keeping its function.

The paper's robustness application walks an FIP from a trained network N1
whose secondary objective *diversifies* the network while the invariance
term holds N1's outputs on the protected (clean) inputs; networks sampled
along the path form an ensemble (`keras_fip.ensembles.PathEnsemble`). The
paper names the objective only ("weight diversification"); two forms are
here, compared in the robust-ensembles results page:

- `AwayFromStart`, in weight space: maximise ‖w − w₀‖, the distance to the
  path's start w₀ (N1). Its gradient direction is the unit vector
  u = (w − w₀)/‖w − w₀‖ (a fixed seeded random unit vector while w = w₀),
  so d ← d − λ u: a push of constant size λ straight outward.
- `AdversarialOutputDiversity`, in function space: change the network's
  outputs on N1's own adversarial inputs x̃ = FGSM_N1(x, ε), built from the
  memory batch each step: toward N1's clean answer ŷ₀ (cross-entropy,
  default) or away from N1's answer on x̃ (−D). The clean memory inputs
  stay held by the invariance term; only the responses off the data
  manifold, where attacks on N1 land, are changed.

Both hold w₀ as optimizer variables (`keras_fip.terms.weight_variables`,
saved in `.keras` files), copied when the optimizer is built and again at
every task start (`TaskBoundary`, `remember_task`), so the path starts
where the walk does.
"""

import keras
import numpy as np
from keras import ops

from keras_fip import attacks
from keras_fip import backend as fip_backend
from keras_fip import compat
from keras_fip import distances
from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import renamed_attribute
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.weight_variables import add_weight_variables
from keras_fip.terms.weight_variables import read_all
from keras_fip.terms.weight_variables import write_all


class PathStartTerm(DirectionTerm):
    """Base class of terms that measure the walk from the path's start w₀.

    `start` holds w₀, one optimizer variable per trainable variable: the
    weights when the optimizer is built, then at each task start.
    """

    def build(self, optimizer, variables):
        self.start = add_weight_variables(optimizer, variables, "path_start",
                                          read_all(variables))

    def begin_task(self, optimizer, model, task):
        if not optimizer.built:
            return  # `build` copies the weights as they are then
        write_all(self.start, compat.optimizer_trainable_variables(optimizer))

    def distance(self, variables):
        """‖w − w₀‖ for the given variables (a float, host side)."""
        return float(np.sqrt(sum(
            np.sum((as_numpy(v).astype("float64") - as_numpy(s)) ** 2)
            for v, s in zip(variables, self.start))))

    def _start_values(self, step):
        return [self.start[i].value for i in step.indices]


@keras.saving.register_keras_serializable(package="keras_fip")
class AwayFromStart(PathStartTerm):
    """d ← d − λ·u, u = (w − w₀)/‖w − w₀‖: maximise the distance to w₀.

    The gradient of −λ‖w − w₀‖; at w = w₀, where it is undefined, u is a
    fixed random unit vector drawn from `seed` (stored, so a resumed walk
    continues the same way). With `FIPOptimizer(step_norm=ε)` the
    invariance term bends the push onto directions that keep the protected
    outputs: the walk leaves N1 as fast as the ε-steps allow.

    Args:
        weight: λ ≥ 0, the term's weight: the size of the outward push
            (default 1.0), to weigh against the invariance gradient.
            `strength` is its deprecated 0.5 name.
        seed: the integer seed of the initial direction (default 0).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(3)])
    away = keras_fip.terms.AwayFromStart(weight=1.0)
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.SGD(1.0), step_norm=0.01, beta=0.0, objectives=[away]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.rand(64, 4).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    keras_fip.callbacks.remember_task(model, 0, x, y)  # protect these outputs
    model.fit(x, y, epochs=3, verbose=0)
    assert away.distance(model.trainable_variables) > 0.05
    ```
    """

    strength = renamed_attribute("strength", "weight", since="0.6")

    @renamed_arguments(since="0.6", strength="weight")
    def __init__(self, weight=1.0, seed=0):
        self.weight = check_number("weight", weight)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an integer; got {seed!r}.")
        self.seed = seed

    def build(self, optimizer, variables):
        super().build(optimizer, variables)
        rng = np.random.default_rng(self.seed)
        draws = [rng.standard_normal(tuple(v.shape)) for v in variables]
        norm = np.sqrt(sum(np.sum(r ** 2) for r in draws)) or 1.0
        self.initial_direction = add_weight_variables(
            optimizer, variables, "away_direction",
            [r / norm for r in draws])

    def __call__(self, direction, step):
        moved = [ops.cast(w, "float32") - ops.cast(s, "float32")
                 for w, s in zip(step.values, self._start_values(step))]
        length = ops.sqrt(sum(ops.sum(m * m) for m in moved))
        at_start = ops.less_equal(length, 1e-12)
        scale = self.weight / ops.maximum(length, 1e-12)
        return [
            d - ops.cast(ops.where(
                at_start, self.weight * self.initial_direction[i].value,
                scale * m), d.dtype)
            for d, m, i in zip(direction, moved, step.indices)]

    def get_config(self):
        return {"weight": self.weight, "seed": self.seed}


#: What `AdversarialOutputDiversity` does with the outputs on x̃.
OBJECTIVES = ("clean_label", "away")


@keras.saving.register_keras_serializable(package="keras_fip")
class AdversarialOutputDiversity(PathStartTerm):
    """Change the outputs on N1's adversarial inputs, not on the clean ones.

    Each step, on the memory batch's inputs x (the protected ones), with
    w₀ the path's start (N1) and ε the attack budget:

        ŷ₀ = argmax f(x; w₀),  x̃ = clip(x + ε·u(∇ₓ CE(f(x; w₀), ŷ₀)))

    (u = sign for L∞; `keras_fip.attacks.fgsm_inputs`: N1's own FGSM
    inputs, where transfer attacks from N1 land), then with
    `objective="clean_label"` (default)

        L_div = (1/N) Σᵢ CE(f(x̃ᵢ; w), ŷ₀ᵢ):

    the network is moved to answer on x̃ what N1 answers on x, so it
    disagrees with N1 exactly where N1 is fooled; with `objective="away"`

        L_div = −(1/N) Σᵢ D(f(x̃ᵢ; w), f(x̃ᵢ; w₀))

    (D from `keras_fip.distances`, KL by default, N1's outputs held
    constant): move away from N1's responses whatever they are. Its
    gradient is 0 at w = w₀ (D is at its minimum there), so the walk only
    leaves N1 once something else has moved it; "clean_label" has a
    gradient from the first step. Then d ← d + λ ∇L_div, while the
    invariance term keeps f(x; w) at N1's clean outputs. Costs one
    input-gradient pass and one forward pass of N1 and one forward-backward
    pass of the network on the memory batch per step. Needs a memory of
    array inputs (classifiers).

    Args:
        weight: λ ≥ 0, the term's weight (default 1.0; `strength` is its
            deprecated 0.5 name).
        epsilon: ε ≥ 0 of the adversarial inputs (default 0.1), in input
            units.
        objective: `"clean_label"` (default) or `"away"`.
        norm: `"inf"` (default) or `2`.
        distance: for `"away"`: `"kl"` (default), `"bhattacharyya"` or
            `"squared_l2"`.
        clip: the valid input range `(low, high)` (default `(0, 1)`) or
            `None`.
        from_logits: whether the model outputs logits (default `True`).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(3)])
    diverse = keras_fip.terms.AdversarialOutputDiversity(epsilon=0.2)
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.SGD(1.0), step_norm=0.01, beta=0.0,
        objectives=[diverse]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.rand(64, 4).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    keras_fip.callbacks.remember_task(model, 0, x, y)
    model.fit(x, y, epochs=3, verbose=0)
    assert diverse.distance(model.trainable_variables) > 0.02
    ```
    """

    strength = renamed_attribute("strength", "weight", since="0.6")

    @renamed_arguments(since="0.6", strength="weight")
    def __init__(self, weight=1.0, epsilon=0.1, objective="clean_label",
                 norm="inf", distance="kl", clip=(0.0, 1.0),
                 from_logits=True):
        self.weight = check_number("weight", weight)
        self.epsilon = check_number("epsilon", epsilon)
        if objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {OBJECTIVES}; got "
                             f"{objective!r}.")
        self.objective = objective
        self.norm = attacks.check_norm(norm)
        distances.get(distance)
        self.distance_name = distance
        self.clip = attacks.check_clip(clip)
        self.from_logits = bool(from_logits)

    def build(self, optimizer, variables):
        if optimizer.memory is None:
            raise ValueError(
                "AdversarialOutputDiversity perturbs the memory's inputs: "
                "give the optimizer a keras_fip.Memory (FIPOptimizer has "
                "one unless memory=None).")
        super().build(optimizer, variables)

    def begin_task(self, optimizer, model, task):
        super().begin_task(optimizer, model, task)
        memory = optimizer.memory
        if memory.built and isinstance(memory.spec["input_structure"],
                                       (dict, list, tuple)):
            raise ValueError(
                "AdversarialOutputDiversity perturbs a single array input; "
                "this model takes structured inputs (a dict or tuple, e.g. "
                "token ids). Use AwayFromStart instead.")

    def activity(self, step):
        return step.memory_active

    def loss(self, step, inputs):
        """`(L_div, ∇L_div)` on a batch of protected `inputs`."""
        start = self._start_values(step)
        inputs = ops.cast(inputs, "float32")

        def start_predict(x):  # N1, differentiable in x for the attack
            return step.outputs_at(start, x)

        labels = ops.argmax(start_predict(inputs), axis=-1)
        adversarial = ops.stop_gradient(attacks.fgsm_inputs(
            start_predict, inputs, labels, self.epsilon, self.norm,
            self.clip, self.from_logits))
        count = ops.cast(ops.shape(inputs)[0], "float32")
        if self.objective == "clean_label":
            def objective(outputs):
                return attacks.cross_entropy(
                    outputs, labels, self.from_logits) / count
        else:
            anchors = ops.stop_gradient(start_predict(adversarial))
            distance = distances.get(self.distance_name)

            def objective(outputs):
                return -ops.mean(distance(outputs, anchors,
                                          from_logits=self.from_logits))

        return step.outputs_gradient(adversarial, objective)

    def __call__(self, direction, step):
        if not step.has_memory:
            return direction
        inputs, _, _ = step.memory_batch()

        def diversify():
            _, grads = self.loss(step, inputs)
            return [d + ops.cast(self.weight, d.dtype) * g
                    for d, g in zip(direction, grads)]

        return fip_backend.memory_cond(step.memory_active, diversify,
                                       lambda: list(direction))

    def get_config(self):
        return {"weight": self.weight, "epsilon": self.epsilon,
                "objective": self.objective, "norm": self.norm,
                "distance": self.distance_name,
                "clip": None if self.clip is None else list(self.clip),
                "from_logits": self.from_logits}
