"""The model's non-trainable state, as the step's memory passes read it.

A memory pass runs the model at other weights (`stateless_call`) and needs
the value of every non-trainable variable. They are of two kinds:

- **state that training assigns** (BatchNorm's moving statistics, a
  dropout layer's seed): a memory pass reads it as it was when the task
  began, so the optimizer keeps a copy, taken at each task's start
  (`keras_fip.task_cycle.TaskCycle.snapshot`);
- **state training never assigns** (the frozen base of a LoRA model,
  frozen layers, constants): the same at every step, so it is read where
  it lives and never copied. Under LoRA that is nearly the whole model.

`assigned_in_training` tells them apart by tracing one training call of
the model inside a `keras.StatelessScope` and reading which variables it
assigned (JAX traces it abstractly, with no computation; TensorFlow and
PyTorch run it on one sample).

On TensorFlow and PyTorch the step reads never-assigned state from the
variables. JAX's `fit` hands the model's values to the compiled step as
arguments and empties the variables, so `StateRecorder` (installed on the
model by `record_step_state`) keeps the values the step's
`compute_loss_and_updates` receives, for the optimizer's step that follows
in the same trace.

Example:

```python
import keras, numpy as np
from keras_fip import model_state
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                          keras.layers.BatchNormalization()])
model.layers[0].trainable = False
model_state.assigned_in_training(model, np.zeros((2, 4), "float32"))
# [False, False, True, True]: the frozen kernel and bias, then the
# moving mean and variance
```
"""

import keras
from keras import ops

from keras_fip import compat
from keras_fip import nested


def assigned_in_training(model, sample_inputs):
    """Whether a training call assigns each non-trainable variable.

    Args:
        model: a built Keras model.
        sample_inputs: inputs as the model's call takes them (leading
            sample axis; the first sample is used).

    Returns:
        One bool per variable of `model.non_trainable_variables`.
    """
    template, leaves = nested.flatten(sample_inputs)
    first = [ops.convert_to_numpy(a)[:1] for a in leaves]
    assigned = set()

    def call(*arrays):
        with keras.StatelessScope() as scope:
            model(nested.pack(template, list(arrays)), training=True)
        assigned.update(compat.assigned_in_scope(scope))
        return 0

    if keras.backend.backend() == "jax":
        import jax

        jax.eval_shape(call, *[jax.ShapeDtypeStruct(a.shape, a.dtype)
                               for a in first])
    else:
        call(*[ops.convert_to_tensor(a) for a in first])
    return [id(v) in assigned for v in model.non_trainable_variables]


class StateRecorder:
    """Wraps a model's `compute_loss_and_updates` (JAX) and keeps the
    non-trainable values each call receives.

    JAX's train step calls `compute_loss_and_updates(trainable,
    non_trainable, ...)` and then `optimizer.stateless_apply(...)` in the
    same trace; the optimizer reads `values` there (and `clear`s them, so
    no traced value outlives its trace).

    Args:
        method: the model's bound `compute_loss_and_updates`.
    """

    def __init__(self, method):
        self.method = method
        self.values = None

    def __call__(self, trainable_variables, non_trainable_variables,
                 *args, **kwargs):
        self.values = list(non_trainable_variables)
        return self.method(trainable_variables, non_trainable_variables,
                           *args, **kwargs)

    def clear(self):
        """Forgets the recorded values."""
        self.values = None


def record_step_state(model):
    """Installs a `StateRecorder` on `model` (JAX; once) and returns it.

    Returns `None` on other backends, where the step reads the variables.
    """
    if keras.backend.backend() != "jax":
        return None
    method = model.compute_loss_and_updates
    if isinstance(method, StateRecorder):
        return method
    recorder = StateRecorder(method)
    object.__setattr__(model, "compute_loss_and_updates", recorder)
    return recorder


def recorded_values(model):
    """The non-trainable values recorded in this trace, or `None`."""
    recorder = getattr(model, "compute_loss_and_updates", None)
    if isinstance(recorder, StateRecorder):
        return recorder.values
    return None


def clear_recorded(model):
    """Forgets what `record_step_state` recorded (after the step)."""
    recorder = getattr(model, "compute_loss_and_updates", None)
    if isinstance(recorder, StateRecorder):
        recorder.clear()


def live_value(model, index):
    """The value of never-assigned non-trainable `index`, in the step.

    Raises:
        ValueError: JAX emptied the variable (inside `fit`) and no value
            was recorded (a custom train step that does not call
            `compute_loss_and_updates`).
    """
    recorded = recorded_values(model)
    if recorded is not None:
        return recorded[index]
    variable = model.non_trainable_variables[index]
    value = variable.value
    if value is None:
        raise ValueError(
            f"The step needs the model's non-trainable {variable.path!r}, "
            "but JAX's fit moved its value into the compiled step and the "
            "model's compute_loss_and_updates was not called before the "
            "optimizer (a custom train_step?). Call "
            "self.compute_loss_and_updates(...) in the train step before "
            "self.optimizer.stateless_apply(...).")
    return value
