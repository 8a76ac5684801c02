"""`Step`: what a direction term sees of one optimizer step.

Built by `ContinualOptimizer` inside the compiled train step (XLA,
`jax.jit`, eager torch) and handed to every term in turn. It never holds
the training batch (an optimizer does not see it); what a term needs of old
tasks comes from the optimizer's memory, drawn here once per step and shared
by every term that asks.
"""

from keras import ops

from keras_fip import backend as fip_backend
from keras_fip import compat
from keras_fip import nested
from keras_fip.geometry import metric_vector_product_values


class Step:
    """One step's gradient, weights and memory access.

    Attributes:
        optimizer: the `ContinualOptimizer` taking the step.
        grads: the gradient `fit` computed, one dense tensor per variable.
        values: the weights before the step, in the order of `variables`.
        variables: the trainable variables being updated (the optimizer's,
            or the subset `apply` was given).
        indices: each variable's index among the optimizer's variables
            (to look up per-variable state kept by a term).
        iterations: the step count before this step (a tensor).
        active: whether any non-modifier term acts this step (set by the
            optimizer before the terms run).
    """

    def __init__(self, optimizer, grads, values, variables, model=None):
        self.optimizer = optimizer
        self.grads = list(grads)
        self.values = list(values)
        self.variables = list(variables)
        self.indices = [compat.optimizer_variable_index(optimizer, v)
                        for v in variables]
        count = optimizer.iterations  # a tensor under gradient accumulation
        self.iterations = getattr(count, "value", count)
        self.active = True
        self._model = model
        self._batch = None

    # ------------------------------------------------------------------
    # The memory
    # ------------------------------------------------------------------
    @property
    def memory(self):
        """The optimizer's `Memory` (or `None`)."""
        return self.optimizer.memory

    @property
    def has_memory(self):
        """Whether a memory exists for this trace (built, Python bool)."""
        return self.memory is not None and self.memory.built

    @property
    def memory_active(self):
        """Whether the memory holds anchored samples (a traced boolean)."""
        if not self.has_memory:
            return False
        return ops.greater(self.memory.num_active.value, 0)

    def memory_batch(self):
        """`(inputs, anchor_leaves, labels)`: this step's memory batch.

        Drawn (and the memory's cursor advanced) once per step, however
        many terms ask. `anchor_leaves` are the per-sample anchor arrays as
        the memory keeps them; `anchors()` turns them into one
        `keras_fip.anchors.Anchor` per output head.
        """
        if self._batch is None:
            memory = self.memory
            self._batch = memory.gather(
                memory.next_indices(self.optimizer.memory_batch_size))
        return self._batch

    def anchors(self):
        """One `keras_fip.anchors.Anchor` per output head for the batch.

        With a weight snapshot the anchors are the outputs of the weights
        at the task's start, f(x; w₀): one extra forward pass (inference
        mode, no gradient) on the batch; call it where that pass should
        run (inside the memory branch).
        """
        model, _, state = self._model_view()
        inputs, leaves, _ = self.memory_batch()

        def forward(weights, x):
            outputs, _ = model.stateless_call(weights, state, x,
                                              training=False)
            return outputs

        return self.memory.storage.batch(leaves, inputs, self.memory,
                                         forward)

    def memory_gradient(self, loss_fn, with_inputs=False,
                        anchor_objects=False):
        """`(loss, grads)` of a loss of the model's outputs on the batch.

        Args:
            loss_fn: `loss_fn(outputs, anchors, labels)`, a scalar;
                `outputs` are the model's (a tensor, or the structure of
                its heads), in inference mode, at `values`.
            with_inputs: also pass the batch's inputs, as
                `loss_fn(..., inputs=inputs)` (for a padding mask).
            anchor_objects: pass `anchors` as the list of
                `keras_fip.anchors.Anchor` (one per head) instead of the
                anchor outputs in the structure of the model's outputs.

        Returns:
            The loss (float32) and its gradient with respect to every
            variable, in the order of `variables` and in their dtypes
            (zeros for variables the model's outputs do not use).
        """
        inputs, _, labels = self.memory_batch()
        anchors = self.anchors()
        if not anchor_objects:
            anchors = nested.pack(self.memory.output_structure,
                                  [a.outputs for a in anchors])
        extra = {"inputs": inputs} if with_inputs else {}
        return self.outputs_gradient(
            inputs, lambda outputs: loss_fn(outputs, anchors, labels,
                                            **extra))

    def outputs_gradient(self, inputs, loss_fn):
        """`(loss, grads)` of `loss_fn(outputs)`, the model's outputs on
        `inputs` (inference mode) at the step's weights `values`.

        Returns:
            The loss (float32) and its gradient with respect to every
            variable, in the order of `variables` and in their dtypes
            (zeros for variables the model's outputs do not use).
        """
        model, order, state = self._model_view()

        def loss(model_values):
            outputs, _ = model.stateless_call(
                model_values, state, inputs, training=False)
            return loss_fn(outputs)

        value, model_grads = fip_backend.value_and_grad(
            loss, [self.values[i] for i in order])
        return ops.cast(value, "float32"), self._from_model(order,
                                                            model_grads)

    def outputs_at(self, weights, inputs):
        """f(inputs; weights) in inference mode, at other weights.

        Differentiable in `inputs` (an attack on those weights); wrap it in
        `keras.ops.stop_gradient` to use it as a constant anchor.

        Args:
            weights: one tensor per variable, in the order of `variables`
                (e.g. a copy of the weights at the path's start).
            inputs: the model's inputs.
        """
        model, order, state = self._model_view()
        outputs, _ = model.stateless_call(
            [weights[i] for i in order], state, inputs, training=False)
        return outputs

    def metric_product(self, vector, metric="logit", reduction="sum"):
        """g·v for the metric of the outputs on this step's memory inputs.

        g = Σ_x J_xᵀ H J_x at the current weights (`values`), H = I for
        `metric="logit"` or the softmax Fisher for `"fisher"` (see
        `keras_fip.geometry`); one forward-mode and one reverse pass over
        the memory batch, g never formed.

        Args:
            vector: v, a list shaped like `variables`.
            metric: `"logit"` or `"fisher"`.
            reduction: `"sum"` or `"mean"` over the memory batch.

        Returns:
            g·v in the order of `variables` (zeros for variables the model's
            outputs do not use).
        """
        model, order, state = self._model_view()
        inputs, _, _ = self.memory_batch()
        product = metric_vector_product_values(
            model, [self.values[i] for i in order], state, inputs,
            [vector[i] for i in order], metric, reduction)
        return self._from_model(order, product)

    def _model_view(self):
        model = self.optimizer._require_model()
        state = self.optimizer.task_cycle.state_values(model)
        return model, self._model_order(model), state

    def _from_model(self, order, model_tensors):
        """Tensors in the model's order → the order of `variables`."""
        out = [ops.zeros_like(g) for g in self.grads]
        for i, t in zip(order, model_tensors):
            out[i] = ops.cast(t, self.grads[i].dtype)
        return out

    def _model_order(self, model):
        """Index into `variables` of each of the model's trainable ones."""
        position = {id(v): i for i, v in enumerate(self.variables)}
        order = []
        for v in model.trainable_variables:
            if id(v) not in position:
                raise ValueError(
                    f"The model's trainable variable {v.path!r} is not among "
                    "the variables this optimizer updates: the model changed "
                    "(new layers, or `trainable` flags) after the optimizer "
                    "was built. See ContinualOptimizer's 'Changing the "
                    "model' rules."
                )
            order.append(position[id(v)])
        return order
