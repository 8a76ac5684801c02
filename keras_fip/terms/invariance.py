"""`Invariance`: FIP's metric term θᵀgθ, measured on the memory."""

import keras
import numpy as np
from keras import ops

from keras_fip import distances
from keras_fip import heads as output_heads
from keras_fip import nested
from keras_fip.anchors import Anchor
from keras_fip.arrays import as_numpy
from keras_fip.checks import check_number
from keras_fip.memory_losses import cross_entropy
from keras_fip.terms.memory_term import MemoryTerm

REDUCTIONS = ("sum", "mean")


def _check_distance(distance):
    if distance == "auto":
        return
    if isinstance(distance, dict):
        for value in distance.values():
            _check_distance(value)
        return
    distances.get(distance)


@keras.saving.register_keras_serializable(package="keras_fip")
class Invariance(MemoryTerm):
    """d ← d + λ ∇_w Σ_{x ∈ memory batch} Σ_heads D(f(x; w), f(x; w₀)).

    As in the paper's reference code, the output-space movement θᵀ g θ of
    FIP's step is measured by an output distance D between the network and
    its anchor w₀ (`keras_fip.anchors`) on a batch of protected inputs;
    near the anchor D is the quadratic form of g (the softmax Fisher for
    the Bhattacharyya and KL distances, JᵀJ for squared L2 on logits).

    A model with several outputs (a dict or list of heads) has each
    protected head compared by its own distance, and the per-head distances
    of a sample summed.

    Args:
        distance: `"auto"` (default: each head's distance follows its
            compiled loss, `keras_fip.heads`: class scores →
            `class_distance`, sigmoid units → `"bernoulli_bhattacharyya"`,
            regression → `"squared_l2"`), one name of
            `keras_fip.distances.DISTANCES` for every head, or a dict
            `{head name: distance}`.
        reduction: `"sum"` over the memory batch (default; the reference
            code: the invariance weight grows with the memory batch) or
            `"mean"`.
        from_logits: `None` (default: from each head's output activation,
            else its loss), or a bool for every head, or a dict per head.
        token_reduction: for sequence outputs `(batch, sequence,
            vocabulary)` (a `keras_hub.models.CausalLM`), how a sequence's
            per-token distances make its D(x): `"mean"` (default) over its
            real tokens, or `"sum"`. Padded positions (0 in the memory
            input `mask_key`) contribute nothing. See
            `keras_fip.distances.per_sample`.
        mask_key: the key of the padding mask among dict memory inputs
            (default `"padding_mask"`, KerasHub's); `None` counts every
            position.
        weight: λ ≥ 0, the weight of the term (default 1: FIP, whose
            balance is set by β on the task gradient instead).
        heads: `None` (default: every output head) or the names of the
            heads to protect (dict keys, or output layer names).
        class_distance: the distance `"auto"` gives class-score heads:
            `"logit_l2"` (default; since 0.7: the logits' JᵀJ metric),
            `"bhattacharyya"` (0.6's, and the reference code's) or `"kl"`.
            Configs saved before 0.7 load with `"bhattacharyya"`.
        label_weight: γ ≥ 0 (default 0: FIP, label-free). With γ > 0 the
            memory loss is D + γ CE(f(x), y), y the labels the memory
            kept: FIP that also keeps old labels (a model with one class
            head, and a memory given labels).

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.Invariance(distance="kl", reduction="mean")
    ```
    """

    loss_name = "memory_loss"
    needs_inputs = True
    needs_stored_outputs = False
    multi_head = True

    def __init__(self, distance="auto", reduction="sum",
                 from_logits=None, token_reduction="mean",
                 mask_key="padding_mask", weight=1.0, heads=None,
                 label_weight=0.0, class_distance="logit_l2"):
        _check_distance(distance)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"Unknown reduction {reduction!r}. Expected 'sum' (the "
                "reference code) or 'mean'."
            )
        if from_logits is not None and not isinstance(from_logits, dict):
            from_logits = bool(from_logits)
        if heads is not None:
            if isinstance(heads, str) or not all(
                    isinstance(h, str) for h in heads) or not heads:
                raise TypeError(
                    "`heads` must be None (every output head) or a "
                    f"non-empty list of head names; got {heads!r}.")
            heads = list(heads)
        if class_distance not in distances.CLASS_SCORE_DISTANCES:
            raise ValueError(
                f"class_distance must be one of "
                f"{distances.CLASS_SCORE_DISTANCES}; got {class_distance!r}.")
        self.class_distance = class_distance
        self.distance = distance
        self.reduction = reduction
        self.from_logits = from_logits
        self.heads = heads
        self.token_reduction = distances.check_token_reduction(
            token_reduction)
        if mask_key is not None and not isinstance(mask_key, str):
            raise TypeError(
                f"`mask_key` must be a string or None; got {mask_key!r}.")
        self.mask_key = mask_key
        self.weight = check_number("weight", weight)
        self.label_weight = check_number("label_weight", label_weight)
        self.protected = None

    @property
    def needs_labels(self):
        """Whether the memory loss reads the stored labels (γ > 0)."""
        return self.label_weight > 0

    def check_outputs(self, shape):
        if isinstance(self.distance, str) and self.distance != "auto":
            distances.check_output_shape(self.distance, shape)

    def resolve(self, model, memory):
        """Which heads are protected, and how each is compared.

        Called when the optimizer is bound to `model` (before the step is
        traced); sets `protected`, a list of `keras_fip.heads.Head`.
        """
        self.protected = output_heads.resolve(
            model, memory.output_structure, self.distance, self.from_logits,
            self.heads, self.class_distance)
        return self.protected

    def check_memory(self, memory, model=None):
        super().check_memory(memory, model)
        if model is not None:
            self.resolve(model, memory)
        if self.protected is None:
            return
        shapes = memory.output_shapes
        for head in self.protected:
            distances.check_output_shape(head.distance,
                                         (None, *shapes[head.index]))
            memory.storage.check_distance(head.distance)
        if self.needs_labels:
            self._check_label_head(memory)
        mask_shape = self._mask_shape(memory.spec)
        for head in self.protected:
            positions = tuple(shapes[head.index][:-1])
            if mask_shape is not None and positions and \
                    mask_shape != positions:
                raise ValueError(
                    f"The memory input {self.mask_key!r} (per-sample shape "
                    f"{mask_shape}) does not match the output positions "
                    f"{positions} of head {head.name!r}: the padding mask "
                    "must have one entry per output token. Pass the "
                    "preprocessor's padding mask, or mask_key=None to count "
                    "every position.")

    def _check_label_head(self, memory):
        shapes = memory.output_shapes
        head = self.protected[0]
        if len(self.protected) != 1 or len(shapes) != 1 or \
                head.distance.startswith("bernoulli") or \
                len(shapes[0]) != 1 or (shapes[0][0] or 2) < 2:
            raise ValueError(
                f"label_weight={self.label_weight} keeps the memory's class "
                "labels, which needs a model with one class-score output "
                "(batch, classes); this one protects "
                f"{[(h.name, h.distance) for h in self.protected]} with "
                f"per-sample output shapes {shapes}. Use label_weight=0.")
        if memory.size and int(np.min(as_numpy(memory.labels)[
                :memory.size])) < 0:
            raise ValueError(
                f"label_weight={self.label_weight} keeps the memory's "
                "labels, but this memory holds unlabelled samples: give "
                "the labels to the memory (TaskBoundary(task_id, x, y)), "
                "or use label_weight=0.")

    def _mask_shape(self, spec):
        structure = spec["input_structure"]
        if self.mask_key is None or not isinstance(structure, dict) or \
                self.mask_key not in structure:
            return None
        # The structure's leaves are not reliable positions on every
        # backend's tree implementation: pack positions as the memory does.
        positions = nested.pack(structure, range(len(spec["inputs"])))
        return tuple(spec["inputs"][positions[self.mask_key]]["shape"])

    def _mask(self, inputs, per_position):
        if self.mask_key is None or not isinstance(inputs, dict) or \
                self.mask_key not in inputs or len(per_position.shape) < 2:
            return None
        return inputs[self.mask_key]

    def per_sample(self, outputs, anchors, inputs=None):
        """D(x) for each protected input: the sum over protected heads.

        Args:
            outputs: the model's outputs (a tensor or structure of heads).
            anchors: one `keras_fip.anchors.Anchor` per head (or anchor
                output tensors in the structure of `outputs`).
            inputs: the inputs (for the padding mask).

        Returns:
            A float32 tensor of shape `(batch,)`.
        """
        protected = self.protected or self._single_head()
        if not all(isinstance(a, Anchor) for a in anchors):
            anchors = [Anchor(ops.stop_gradient(ops.convert_to_tensor(a)))
                       for a in nested.flatten_tensors(anchors)]
        heads = nested.flatten_tensors(outputs)
        total = None
        for head in protected:
            per_position = anchors[head.index].distance(
                distances.get(head.distance), heads[head.index],
                head.from_logits)
            per_sample = distances.per_sample(
                per_position, self._mask(inputs, per_position),
                self.token_reduction)
            total = per_sample if total is None else total + per_sample
        return total

    def drift(self, memory, model, batch_size=256):
        """The mean D(x) over the stored samples, host side.

        The same distance the step minimises (every protected head, the
        padding mask, the anchors as the memory keeps them), averaged over
        the memory: how far the protected outputs moved from their anchors.

        Args:
            memory: an active memory.
            model: the protected model, as it is now.
            batch_size: samples per forward pass.
        """
        if self.protected is None:
            self.resolve(model, memory)
        total, n = 0.0, memory.size
        for start in range(0, n, batch_size):
            rows = np.arange(start, min(start + batch_size, n))
            inputs = memory.stored_inputs(rows)
            outputs = model(inputs, training=False)
            anchors = memory.storage.anchors_of_rows(memory, model, rows,
                                                     inputs)
            total += float(np.sum(as_numpy(
                self.per_sample(outputs, anchors, inputs))))
        return total / max(n, 1)

    def _single_head(self):
        """The one head of a model not bound yet, when the distance is
        named (a term used on its own, outside an optimizer)."""
        if not isinstance(self.distance, str) or self.distance == "auto":
            raise ValueError(
                "The Invariance term does not know the model's heads yet: "
                "the optimizer must be bound to the model first "
                "(TaskBoundary or remember_task does it, or "
                "optimizer.bind(model, x)), or name the distance.")
        logits = True if self.from_logits is None else self.from_logits
        return [output_heads.Head(0, "output", self.distance, logits)]

    def loss(self, outputs, anchors, labels, inputs=None):
        per_sample = self.per_sample(outputs, anchors, inputs)
        if self.reduction == "sum":
            total = ops.sum(per_sample)
        else:
            total = ops.mean(per_sample)
        total = total if self.weight == 1.0 else self.weight * total
        if self.needs_labels:
            head = (self.protected or self._single_head())[0]
            scores = nested.flatten_tensors(outputs)[head.index]
            total = total + self.label_weight * cross_entropy(
                ops.cast(scores, "float32"), labels, head.from_logits)
        return total

    def combine(self, direction, memory_grads):
        return [d + m for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"distance": self.distance, "reduction": self.reduction,
                "from_logits": self.from_logits,
                "token_reduction": self.token_reduction,
                "mask_key": self.mask_key, "weight": self.weight,
                "heads": self.heads, "label_weight": self.label_weight,
                "class_distance": self.class_distance}

    @classmethod
    def from_config(cls, config):
        # Before 0.7, "auto" compared class scores by Bhattacharyya.
        config = {"class_distance": output_heads.CLASS_DISTANCE_0_6,
                  **config}
        return super().from_config(config)
