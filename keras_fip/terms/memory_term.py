"""`MemoryTerm`: a term built on a loss of the model's outputs on old data.

Each step the optimizer draws one batch from its `Memory` (inputs, anchor
outputs, labels); a memory term differentiates a scalar loss of the model's
outputs on it (with `model.stateless_call`, so the user's model and Keras's
train step stay as they are) and combines that gradient with the direction:

| term | memory loss | combination |
|---|---|---|
| `Invariance` (FIP) | distance to the anchor outputs | d + ∇D |
| ER (`ReplayTerm`) | CE on stored labels | d + α ∇CE_mem |
| DER++ (`DarkReplayTerm`) | α MSE to stored logits + β CE | d + ∇(...) |
| A-GEM (`GradientProjectionTerm`) | CE on stored labels | d off −∇CE_mem |
| LwF (`DistillationTerm`) | distillation to the old model | d + α ∇KD |

While the memory is empty or not anchored the term does nothing (a
conditional inside the compiled step, `keras_fip.backend.memory_cond`, so
the first task and later ones share one trace) and reports itself
inactive.
"""

from keras import ops

from keras_fip import backend as fip_backend
from keras_fip.terms.base import DirectionTerm


class MemoryTerm(DirectionTerm):
    """Base class: subclasses define `loss` and `combine`.

    The last step's memory loss is kept in the optimizer variable `loss`
    (readable with `keras.ops.convert_to_numpy`).
    """

    #: The name of the optimizer variable holding the last memory loss.
    loss_name = "memory_loss"
    #: Whether `loss` also takes the memory batch's inputs (`inputs=`), e.g.
    #: for a padding mask.
    needs_inputs = False
    #: Whether `loss` reads the full anchor outputs (DER++'s logits) and
    #: the outputs each sample had when stored; `False`: it takes one
    #: `keras_fip.anchors.Anchor` per head and measures a distance.
    needs_stored_outputs = True
    #: Whether `loss` handles a model with several output heads.
    multi_head = False

    def loss(self, outputs, anchors, labels):
        """The scalar loss of the model's `outputs` on a memory batch.

        `anchors` are the anchor outputs (a tensor, in the structure of
        `outputs`), or with `needs_stored_outputs = False` a list of
        `keras_fip.anchors.Anchor`, one per output head.
        """
        raise NotImplementedError

    def combine(self, direction, memory_grads):
        """The new direction from the direction so far and the loss's
        gradient (lists of tensors)."""
        raise NotImplementedError

    def check_outputs(self, shape):
        """Raises if `loss` cannot use model outputs of `shape`."""

    def check_memory(self, memory, model=None):
        """Raises if `loss` cannot use the built `memory`'s anchors.

        Args:
            memory: the built memory.
            model: the protected model, when bound (to read its heads).
        """
        shapes = memory.output_shapes
        if len(shapes) > 1 and not self.multi_head:
            raise ValueError(
                f"{type(self).__name__} works on a model with one output; "
                f"this one returns {len(shapes)} output heads. Protect "
                "several heads with FIPOptimizer (its Invariance term "
                "compares every head), or build a model that returns the "
                "one head to protect.")
        for shape in shapes:
            self.check_outputs((None, *shape))
        storage = memory.storage
        if self.needs_stored_outputs and not (storage.full_outputs
                                              and storage.per_sample):
            raise ValueError(
                f"{type(self).__name__} reads the outputs each sample had "
                "when it was stored; the memory keeps its anchors as "
                f"{memory.anchor_storage!r}. Pass "
                "keras_fip.Memory(capacity, anchor_storage='outputs').")

    def build(self, optimizer, variables):
        self.last_loss = optimizer.add_variable(
            shape=(), dtype="float32", name=self.loss_name)
        memory = optimizer.memory
        if memory is None:
            raise ValueError(
                f"{type(self).__name__} needs the optimizer to have a "
                "keras_fip.Memory: pass memory=keras_fip.Memory(capacity)."
            )

    def activity(self, step):
        return step.memory_active

    def begin_task(self, optimizer, model, task):
        if optimizer.memory.built:
            self.check_memory(optimizer.memory, model)

    def __call__(self, direction, step):
        if not step.has_memory:
            return direction  # nothing to replay in this trace
        step.memory_batch()

        def replay():
            loss, memory_grads = step.memory_gradient(
                self.loss, with_inputs=self.needs_inputs,
                anchor_objects=not self.needs_stored_outputs)
            return loss, self.combine(direction, memory_grads)

        def skip():
            return ops.zeros((), "float32"), list(direction)

        loss, direction = fip_backend.memory_cond(step.memory_active,
                                                  replay, skip)
        self.last_loss.assign(loss)
        return direction
