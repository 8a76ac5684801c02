"""`MemoryOptimizer`: a continual optimizer with a term on a memory batch.

Each step draws the next batch (inputs, anchor outputs, labels) from a
`Memory`, differentiates a scalar *memory loss* of the model's outputs on it
(with `model.stateless_call`, so the user's model and Keras's train step stay
as they are), and combines that gradient with the one `fit` computed. What
the loss is and how the two gradients combine is the subclass's choice:

| method | memory loss | combination |
|---|---|---|
| FIP | distance to the anchor outputs | β ∇L + ∇D |
| ER | cross-entropy on stored labels | ∇L + α ∇CE_mem |
| DER++ | α MSE to stored logits + β CE | ∇L + ∇(...) |
| A-GEM | cross-entropy on stored labels | ∇L projected off −∇CE_mem |
| LwF | distillation to the old model | ∇L + α ∇KD |

With an empty or not yet anchored memory, every subclass steps exactly as
its inner optimizer (an `ops.cond` inside the compiled step, so task 0 and
later tasks share one trace).
"""

import keras
from keras import ops

from keras_fip import backend as fip_backend
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.memory import Memory


def _read_int(variable):
    return int(ops.convert_to_numpy(variable))


def global_norm(tensors):
    """The L2 norm of a list of tensors taken as one vector."""
    return ops.sqrt(
        sum(ops.sum(ops.square(ops.cast(t, "float32"))) for t in tensors)
    )


def dot(xs, ys):
    """Σ_i ⟨x_i, y_i⟩ over two lists of tensors."""
    return sum(
        ops.sum(ops.cast(x, "float32") * ops.cast(y, "float32"))
        for x, y in zip(xs, ys)
    )


class MemoryOptimizer(ContinualOptimizer):
    """Base class of the methods that replay a memory inside each step.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` to wrap.
        memory: a `keras_fip.Memory` (default: `Memory(capacity=200)`).
        memory_batch_size: memory samples drawn per step.
        name: the optimizer's name.
    """

    #: Re-anchor every stored sample when a task starts (else only new ones).
    refresh_anchors = True

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=32,
                 name=None, **kwargs):
        super().__init__(inner_optimizer, name=name, **kwargs)
        if memory is None:
            memory = Memory(capacity=200)
        if not isinstance(memory, Memory):
            raise TypeError(
                f"`memory` must be a keras_fip.Memory; got {memory!r}."
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
        self.memory = memory
        self.memory_batch_size = memory_batch_size

    def _build_own(self, var_list):
        self.memory_loss = self.add_variable(
            shape=(), dtype="float32", name="memory_loss"
        )

    def _extra_variables(self):
        return self.memory.variables

    # ------------------------------------------------------------------
    # What subclasses define
    # ------------------------------------------------------------------
    def _memory_loss(self, outputs, anchors, labels):
        """The scalar loss of the model's `outputs` on a memory batch."""
        raise NotImplementedError

    def _combine(self, grads, memory_grads):
        """The direction when the memory is active (lists of tensors)."""
        raise NotImplementedError

    def _check_outputs(self, shape):
        """Raises if the memory loss cannot use outputs of `shape`."""

    def _without_memory(self, grads):
        """The direction while the memory is empty: the gradient itself."""
        return list(grads)

    # ------------------------------------------------------------------
    # The step
    # ------------------------------------------------------------------
    def bind(self, model):
        super().bind(model)
        if self.memory.built:
            self._check_outputs((None, *self.memory.spec["outputs"]["shape"]))

    def _loss_on(self, model_values, state, inputs, anchors, labels):
        outputs, _ = self._model.stateless_call(
            model_values, state, inputs, training=False
        )
        return self._memory_loss(outputs, anchors, labels)

    def _direction(self, grads, values, variables):
        if not self.memory.built:
            self.traced_without_memory = True
            return self._without_memory(grads)  # nothing to replay
        self._require_model()
        order = self._model_order(variables)
        inputs, anchors, labels = self.memory.next_batch(
            self.memory_batch_size
        )
        state = [v.value for v in self.memory.model_state]
        model_values = [values[i] for i in order]
        active = ops.greater(self.memory.num_active.value, 0)

        def replay():
            loss, model_grads = fip_backend.value_and_grad(
                lambda vals: self._loss_on(vals, state, inputs, anchors,
                                           labels),
                model_values,
            )
            memory_grads = [ops.zeros_like(g) for g in grads]
            for i, g in zip(order, model_grads):
                memory_grads[i] = ops.cast(g, grads[i].dtype)
            return ops.cast(loss, "float32"), self._combine(grads,
                                                            memory_grads)

        def skip():
            return ops.zeros((), "float32"), self._without_memory(grads)

        loss, direction = ops.cond(active, replay, skip)
        self.memory_loss.assign(loss)
        return direction

    # ------------------------------------------------------------------
    # Task hooks
    # ------------------------------------------------------------------
    def begin_task(self, model, task_id, x, y=None):
        self.memory.build(model, x)
        self.bind(model)
        if _read_int(self.memory.anchor_task) != task_id:
            self.memory.consolidate(model, refresh=self.refresh_anchors)
            self.memory.anchor_task.assign(task_id)

    def end_epoch(self, epoch):
        self.memory.shuffle(salt=epoch + 1)

    def end_task(self, model, task_id, x, y=None):
        if _read_int(self.memory.committed_task) != task_id:
            self.memory.add(x, y, task_id=task_id)
            self.memory.consolidate(model, refresh=self.refresh_anchors)
            self.memory.committed_task.assign(task_id)

    def get_config(self):
        config = super().get_config()
        config.update(
            memory=self.memory.get_config(),
            memory_batch_size=self.memory_batch_size,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["memory"] = Memory.from_config(config["memory"])
        return super().from_config(config, custom_objects=custom_objects)
