"""`DirectionTerm`: one small, composable transformation of a step.

A continual optimizer (`keras_fip.ContinualOptimizer`) is an inner Keras
optimizer plus an ordered list of direction terms, in the manner of optax's
chain of gradient transformations. Each step starts from the gradient `fit`
computed, d₀ = ∇L, and every term maps the direction in turn,

    d_{k+1} = term_k(d_k, step),

before the inner optimizer applies the last one. A term may also project the
weights after the update (a hard sparsity mask), observe each step's
gradient and weight change (SI's path integral), and react to the task life
cycle (EWC's Fisher at the end of a task). All of that is optional: the
smallest term only implements `__call__`.

Everything `__call__`, `project` and `observe` do runs inside Keras's
compiled train step, so it is written with `keras.ops`; state a term keeps
across steps must be optimizer variables (`optimizer.add_variable(...)` in
`build`), so that JAX threads it, `tf.function` sees updates and `.keras`
files save it (weight-shaped state: `keras_fip.terms.weight_variables`).

Argument names, the same in every term and preset: a term's own weight
(the factor on what it adds to the direction, λ in the formulas) is its
argument `weight`; a term that adds two losses names each one's weight
after it (`DarkReplayTerm(logit_weight, label_weight)`, DER++'s α and β).
A preset optimizer takes its term's arguments under the term's names
(`EWCOptimizer(weight=...)`, `DERPPOptimizer(label_weight=...)`), and its
docstring gives the paper's symbol for each. The FIP paper's own symbols
stay: `beta` (`FIPOptimizer`, `ScaleGradient`) is β, the weight of the
task's gradient against the invariance term, and `epsilon`/`step_norm` is
the step length ε. The names of keras_fip 0.5 (`strength`, `alpha`,
`replay_weight`, `ewc_lambda`, `si_lambda`, DER++'s `alpha` and `beta`)
still work for one release, with a `DeprecationWarning`, and configs saved
by 0.5 load as they are.

Example, a term that pulls the weights toward zero (weight decay as a
direction term):

```python
import keras, numpy as np, keras_fip
from keras import ops

class TowardZero(keras_fip.terms.DirectionTerm):
    def __init__(self, weight=1e-3):
        self.weight = weight

    def __call__(self, direction, step):
        return [d + self.weight * ops.cast(w, d.dtype)
                for d, w in zip(direction, step.values)]

    def get_config(self):
        return {"weight": self.weight}

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
model.compile(optimizer=keras_fip.ContinualOptimizer(
    keras.optimizers.SGD(0.1), terms=[TowardZero(0.5)]), loss="mse")
model.fit(np.ones((8, 4)), np.zeros((8, 2)), verbose=0)
```
"""

from keras_fip.deprecation import upgrade_config


def gated(factor, step):
    """`factor` while `step.active`, else 1 (a modifier's scale).

    Returns `None` when the step is inactive for sure (leave d as it is).
    """
    if step.active is False:
        return None
    if step.active is True:
        return factor
    from keras import ops

    return ops.where(step.active, factor, 1.0)


class DirectionTerm:
    """Base class of the terms a `ContinualOptimizer` chains.

    Subclasses override what they need:

    - `build(optimizer, variables)`: create state with
      `optimizer.add_variable(...)` (one per weight:
      `keras_fip.terms.weight_variables.add_weight_variables`); called
      once, when the optimizer is built, before any step is traced.
    - `__call__(direction, step)`: the new direction (a list of tensors
      shaped like `step.variables`). `step` is a `keras_fip.step.Step`:
      the gradient `step.grads`, the weights `step.values`, the step count,
      and the memory batch and its gradients for terms on old data.
    - `activity(step)`: whether the term does anything this step (a Python
      or traced boolean). A term returning `None` is a *modifier* (β, ε):
      it rescales what the others give and follows `step.active`, the
      activity of all other terms together. With no active term at all
      the step is exactly the inner optimizer's.
    - `projects` / `project(old_values, new_values, step)` /
      `projected_indices()`: map the weights after the inner update onto
      a constraint set, given the weights before it (only the variables
      listed by `projected_indices` are copied before the step).
    - `observes` / `observe(grads, old_values, new_values)`: see each
      step's gradient and weight change.
    - `begin_task(optimizer, model, task)` / `end_task(...)`: host-side
      life cycle, `task` a `keras_fip.task_cycle.TaskData`.
    - `get_config()`: the constructor arguments (for `.keras` files;
      register the class with `keras.saving.register_keras_serializable`).
      `from_config` maps arguments renamed with
      `keras_fip.deprecation.renamed_arguments` to their new names.
    """

    #: Whether `project` constrains the weights after each update.
    projects = False
    #: Whether `observe` wants each step's gradient and weight change.
    observes = False

    def build(self, optimizer, variables):
        """Creates the term's state as `optimizer` variables."""

    def activity(self, step):
        """`True` (default), a traced boolean, or `None` for a modifier."""
        return True

    def __call__(self, direction, step):
        return direction

    def project(self, old_values, new_values, step):
        """The projected new weights (only called when `projects`)."""
        return new_values

    def projected_indices(self):
        """Indices (in the optimizer's variables) `project` reads old
        values of; all of them by default."""
        return None

    def observe(self, grads, old_values, new_values):
        """Sees the gradient and the weights before and after the step."""

    def begin_task(self, optimizer, model, task):
        """Called (host side) when a task starts."""

    def end_task(self, optimizer, model, task):
        """Called (host side) when a task ends."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**upgrade_config(cls, config))

    def __repr__(self):
        return f"<{type(self).__name__} {self.get_config()}>"
