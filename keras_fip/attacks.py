"""Adversarial attacks in `keras.ops`: FGSM and PGD (L∞ and L2), any backend.

An attack looks for x̃ in the ε-ball B = {x̃ : ‖x̃ − x‖ ≤ ε} (intersected
with the valid input range) that raises the cross-entropy of the model's
prediction, L(x̃) = −log p(y | x̃):

- FGSM (Goodfellow et al. 2015): one step, x̃ = clip(x + ε·u(∇ₓL)), with
  u(g) = sign(g) for L∞ and g/‖g‖₂ (per input) for L2 (then often called
  FGM);
- PGD (Madry et al. 2018): from x (or a uniform random point of B),
  `steps` steps x̃ ← clip(x + Π_B(x̃ + α·u(∇ₓL) − x)), Π_B the projection
  onto the ball (clipping δ to [−ε, ε] for L∞, δ·min(1, ε/‖δ‖₂) for L2),
  clip onto the valid range. Default step size α = 2.5·ε/steps.

The input gradient comes from `keras_fip.backend.value_and_grad` (JAX,
TensorFlow or PyTorch autodiff) and each batch runs in one compiled function
(`jax.jit`, `tf.function`; eager torch) over `model.stateless_call`, so the
same code attacks a Keras model on every backend.

**White-box on an ensemble.** A `keras_fip.ensembles.PathEnsemble` outputs
the members' averaged softmax p̄(y | x) = (1/M) Σₘ pₘ(y | x); the attack
differentiates −log p̄(y | x̃), the loss of the averaged prediction (not the
sum of the members' losses, which would attack each member apart).
`from_logits=None` reads what the model outputs (a `PathEnsemble` says;
any other model is taken to output logits).

**Transfer attacks.** Generate x̃ on a source model and evaluate another
on it: `accuracy(target, pgd(source, x, y, 0.1), y)`.

Example:

```python
import keras, numpy as np, keras_fip
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
x = np.random.default_rng(0).uniform(size=(32, 4)).astype("float32")
y = np.argmax(model.predict(x, verbose=0), axis=1)   # 100 % clean accuracy
x_fgsm = keras_fip.attacks.fgsm(model, x, y, epsilon=0.3)
x_pgd = keras_fip.attacks.pgd(model, x, y, epsilon=0.3, steps=10)
assert np.max(np.abs(x_pgd - x)) <= 0.3 + 1e-6
assert 0 <= x_pgd.min() and x_pgd.max() <= 1
assert keras_fip.attacks.accuracy(model, x_pgd, y) <= \\
    keras_fip.attacks.accuracy(model, x, y)
```
"""

import math
import weakref

import numpy as np
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip.checks import check_number
from keras_fip.checks import check_positive_int

#: The norms of the ε-ball an attack stays in.
NORMS = ("inf", 2)

# Compiled attack functions per model (dropped with the model).
_COMPILED = weakref.WeakKeyDictionary()


def check_norm(norm):
    """`"inf"` (also `np.inf`) or `2` (also `"l2"`, `"2"`); returns it."""
    if norm in ("inf", "linf", math.inf):
        return "inf"
    if norm in (2, "2", "l2"):
        return 2
    raise ValueError(f"`norm` must be 'inf' (L∞) or 2 (L2); got {norm!r}.")


def check_clip(clip):
    """`None` or a valid input range `(low, high)`, low < high, as floats."""
    if clip is None:
        return None
    if len(clip) != 2 or not float(clip[0]) < float(clip[1]):
        raise ValueError(f"`clip` must be (low, high) with low < high, or "
                         f"None; got {clip!r}.")
    return (float(clip[0]), float(clip[1]))


def cross_entropy(outputs, labels, from_logits=True):
    """Σᵢ −log p(yᵢ | xᵢ): the summed cross-entropy a batch's attack raises.

    Summed (not averaged) so each input's gradient does not depend on the
    batch size. Probabilities are clipped at 1e-12 before the log.

    Args:
        outputs: (N, C) logits (`from_logits=True`) or probabilities.
        labels: (N,) integer labels.
        from_logits: whether `outputs` are logits.
    """
    outputs = ops.cast(outputs, "float32")
    if from_logits:
        log_p = ops.log_softmax(outputs, axis=-1)
    else:
        log_p = ops.log(ops.clip(outputs, 1e-12, 1.0))
    labels = ops.expand_dims(ops.cast(labels, "int32"), -1)
    return -ops.sum(ops.take_along_axis(log_p, labels, axis=-1))


def input_gradient(predict, x, labels, from_logits=True):
    """`(L, ∂L/∂x)` for L = `cross_entropy(predict(x), labels)`.

    Args:
        predict: a function of the input tensor returning the outputs.
        x: the inputs (a float tensor).
        labels: (N,) integer labels.
        from_logits: whether `predict` returns logits.
    """
    def loss(values):
        return cross_entropy(predict(values[0]), labels, from_logits)

    value, (grad,) = fip_backend.value_and_grad(loss, [x])
    return value, grad


def _per_input_norm(t):
    squares = ops.sum(ops.reshape(t * t, (ops.shape(t)[0], -1)), axis=1)
    return ops.reshape(ops.sqrt(squares), (-1,) + (1,) * (len(t.shape) - 1))


def ascent_direction(grad, norm):
    """u(g): sign(g) for L∞, g/‖g‖₂ per input for L2 (0 where g = 0)."""
    if norm == "inf":
        return ops.sign(grad)
    return grad / ops.maximum(_per_input_norm(grad), 1e-12)


def project(delta, epsilon, norm):
    """Π_B(δ): δ's nearest point in the ε-ball of `norm` (per input)."""
    if norm == "inf":
        return ops.clip(delta, -epsilon, epsilon)
    scale = ops.minimum(1.0, epsilon / ops.maximum(_per_input_norm(delta),
                                                   1e-12))
    return delta * scale


def _clip(x, clip):
    return x if clip is None else ops.clip(x, clip[0], clip[1])


def fgsm_inputs(predict, x, labels, epsilon, norm="inf", clip=(0.0, 1.0),
                from_logits=True):
    """x̃ = clip(x + ε·u(∇ₓL)) for a batch (tensors; usable in a train step).

    Args:
        predict: a function of the input tensor returning the outputs.
        x: (N, ...) float inputs.
        labels: (N,) integer labels.
        epsilon: ε, a float or scalar tensor.
        norm: `"inf"` or `2`.
        clip: `(low, high)` of the valid input range, or `None`.
        from_logits: whether `predict` returns logits.
    """
    _, grad = input_gradient(predict, x, labels, from_logits)
    return _clip(x + epsilon * ascent_direction(grad, norm), clip)


def pgd_inputs(predict, x, labels, epsilon, step_size, steps, start,
               norm="inf", clip=(0.0, 1.0), from_logits=True):
    """PGD from x + Π_B(start) for a batch (tensors; see the module).

    Args:
        predict: a function of the input tensor returning the outputs.
        x: (N, ...) float inputs.
        labels: (N,) integer labels.
        epsilon: ε, a float or scalar tensor.
        step_size: α, a float or scalar tensor.
        steps: the number of steps (a Python int).
        start: the initial perturbation δ₀ (zeros for no random start).
        norm: `"inf"` or `2`.
        clip: `(low, high)` of the valid input range, or `None`.
        from_logits: whether `predict` returns logits.
    """
    def body(_, x_adv):
        _, grad = input_gradient(predict, x_adv, labels, from_logits)
        moved = x_adv + step_size * ascent_direction(grad, norm)
        return _clip(x + project(moved - x, epsilon, norm), clip)

    first = _clip(x + project(start, epsilon, norm), clip)
    return ops.fori_loop(0, steps, body, first)


def _default_from_logits(model, from_logits):
    if from_logits is not None:
        return bool(from_logits)
    return bool(getattr(model, "outputs_logits", True))


def _check_inputs(model, x, y, clip, batch_size):
    if not getattr(model, "built", False):
        raise ValueError("The model is not built: call it once (or give it "
                         "a `keras.Input`) before attacking it.")
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y)
    if x.ndim < 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"An attack takes inputs x of shape (N, ...) and N integer "
            f"labels y; got x {x.shape} and y {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"The labels y must be integers (class indices); "
                         f"got dtype {y.dtype}.")
    clip = check_clip(clip)
    if clip is not None and x.size and (x.min() < clip[0] or
                                        x.max() > clip[1]):
        raise ValueError(
            f"The inputs lie in [{x.min():.4g}, {x.max():.4g}], outside "
            f"the valid range clip={clip}: scale them into it or pass the "
            "range they live in (clip=None for none).")
    check_positive_int("batch_size", batch_size)
    return x, y.astype("int32"), clip


def _random_start(shape, epsilon, norm, seed):
    """A uniform draw from the ε-ball of `norm` (NumPy, seeded)."""
    rng = np.random.default_rng(seed)
    if norm == "inf":
        return rng.uniform(-epsilon, epsilon, shape).astype("float32")
    flat = rng.standard_normal((shape[0], int(np.prod(shape[1:]))))
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    radius = epsilon * rng.uniform(size=(shape[0], 1)) ** (1 / flat.shape[1])
    return (flat * radius).reshape(shape).astype("float32")


def _compiled(model, key, make):
    per_model = _COMPILED.setdefault(model, {})
    if key not in per_model:
        per_model[key] = fip_backend.compile_function(make())
    return per_model[key]


def _run(model, key, attack, x, y, starts, epsilon, step_size, batch_size):
    """`attack(predict, x, y, ε, α, δ₀)` over batches, compiled once."""
    def make():
        def batch(trainable, non_trainable, x, y, start, epsilon, step_size):
            def predict(inputs):
                outputs, _ = model.stateless_call(
                    trainable, non_trainable, inputs, training=False)
                return outputs

            return attack(predict, x, y, epsilon, step_size, start)
        return batch

    function = _compiled(model, key, make)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    epsilon = ops.convert_to_tensor(epsilon, "float32")
    step_size = ops.convert_to_tensor(step_size, "float32")
    out = []
    for i in range(0, len(x), batch_size):
        part = slice(i, i + batch_size)
        out.append(fip_backend.to_numpy(function(
            trainable, non_trainable, ops.convert_to_tensor(x[part]),
            ops.convert_to_tensor(y[part]), ops.convert_to_tensor(
                starts[part]), epsilon, step_size)))
    return np.concatenate(out).astype("float32") if out else x.copy()


def fgsm(model, x, y, epsilon, norm="inf", clip=(0.0, 1.0),
         from_logits=None, batch_size=256):
    """Fast gradient sign method: x̃ = clip(x + ε·u(∇ₓL)).

    Args:
        model: a built Keras model (a `PathEnsemble` for a white-box attack
            on the averaged prediction).
        x: (N, ...) inputs, NumPy or a tensor, inside `clip`.
        y: (N,) integer labels (the true ones).
        epsilon: ε ≥ 0, the budget in the norm's units.
        norm: `"inf"` (default; sign steps) or `2` (normalised gradient).
        clip: `(low, high)` valid input range (default `(0, 1)`) or `None`.
        from_logits: whether the model outputs logits (`None`: a
            `PathEnsemble` says what it outputs, other models logits).
        batch_size: inputs attacked per compiled call (default 256).

    Returns:
        The adversarial inputs x̃ (float32 NumPy, shaped like x).
    """
    epsilon = check_number("epsilon", epsilon)
    norm = check_norm(norm)
    x, y, clip = _check_inputs(model, x, y, clip, batch_size)
    logits = _default_from_logits(model, from_logits)

    def attack(predict, x, y, epsilon, step_size, start):
        return fgsm_inputs(predict, x, y, epsilon, norm, clip, logits)

    return _run(model, ("fgsm", norm, clip, logits), attack, x, y,
                np.zeros_like(x), epsilon, 0.0, batch_size)


def pgd(model, x, y, epsilon, norm="inf", steps=10, step_size=None,
        random_start=True, seed=0, clip=(0.0, 1.0), from_logits=None,
        batch_size=256):
    """Projected gradient descent (ascent on the loss) in the ε-ball.

    Args:
        model: a built Keras model (a `PathEnsemble` for a white-box attack
            on the averaged prediction).
        x: (N, ...) inputs, NumPy or a tensor, inside `clip`.
        y: (N,) integer labels (the true ones).
        epsilon: ε ≥ 0, the budget in the norm's units.
        norm: `"inf"` (default; sign steps) or `2` (normalised gradient).
        steps: gradient steps (default 10).
        step_size: α > 0 (default `None`: 2.5·ε/steps).
        random_start: start from a uniform random point of the ball
            (default `True`) instead of x.
        seed: the random start's NumPy seed (default 0; reproducible).
        clip: `(low, high)` valid input range (default `(0, 1)`) or `None`.
        from_logits: whether the model outputs logits (`None`: a
            `PathEnsemble` says what it outputs, other models logits).
        batch_size: inputs attacked per compiled call (default 256).

    Returns:
        The adversarial inputs x̃ (float32 NumPy, shaped like x), with
        ‖x̃ − x‖ ≤ ε per input and x̃ inside `clip`.
    """
    epsilon = check_number("epsilon", epsilon)
    norm = check_norm(norm)
    steps = check_positive_int("steps", steps)
    step_size = (2.5 * epsilon / steps if step_size is None else
                 check_number("step_size", step_size, positive=True))
    x, y, clip = _check_inputs(model, x, y, clip, batch_size)
    logits = _default_from_logits(model, from_logits)
    starts = (_random_start(x.shape, epsilon, norm, seed) if random_start
              else np.zeros_like(x))

    def attack(predict, x, y, epsilon, step_size, start):
        return pgd_inputs(predict, x, y, epsilon, step_size, steps, start,
                          norm, clip, logits)

    return _run(model, ("pgd", norm, steps, clip, logits), attack, x, y,
                starts, epsilon, step_size, batch_size)


def accuracy(model, x, y, batch_size=256):
    """The fraction of inputs whose argmax prediction is the label."""
    predictions = model.predict(np.asarray(x, "float32"),
                                batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(y)))
