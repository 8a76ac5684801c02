"""`Invariance`: FIP's metric term θᵀgθ, measured on the memory."""

import keras
from keras import ops

from keras_fip import anchor_storage
from keras_fip import distances
from keras_fip.checks import check_number
from keras_fip.terms.memory_term import MemoryTerm

REDUCTIONS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="keras_fip")
class Invariance(MemoryTerm):
    """d ← d + λ ∇_w Σ_{x ∈ memory batch} D(f(x; w), f(x; w₀)).

    As in the paper's reference code, the output-space movement θᵀ g θ of
    FIP's step is measured by an output distance D between the network and
    its anchor w₀ (the outputs stored in the memory) on a batch of
    protected inputs; near the anchor D is the quadratic form of g (the
    softmax Fisher for the Bhattacharyya and KL distances, JᵀJ for squared
    L2 on logits).

    Args:
        distance: `"bhattacharyya"` (the reference code, default), `"kl"`
            or `"squared_l2"` (on logits). See `keras_fip.distances`.
        reduction: `"sum"` over the memory batch (the reference code: the
            invariance weight grows with the memory batch) or `"mean"`.
        from_logits: whether the model outputs logits (softmax is applied
            before the distribution distances) or probabilities.
        token_reduction: for sequence outputs `(batch, sequence,
            vocabulary)` (a `keras_hub.models.CausalLM`), how a sequence's
            per-token distances make its D(x): `"mean"` (default) over its
            real tokens, or `"sum"`. Padded positions (0 in the memory
            input `mask_key`) contribute nothing. See
            `keras_fip.distances.per_sample`.
        mask_key: the key of the padding mask among dict memory inputs
            (KerasHub's `"padding_mask"`); `None` counts every position.
        weight: λ ≥ 0, the weight of the term (1 for FIP, whose balance is
            set by β on the task gradient instead).

    With `Memory(anchor_storage="top_k")` the distance is taken between the
    coarse-grained distributions of the anchor's top-k classes and the tail
    (`keras_fip.anchor_storage.coarse_grained`); with `"snapshot"` the
    anchors are recomputed each step from the weights at the task's start.

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.Invariance(distance="kl", reduction="mean")
    ```
    """

    loss_name = "memory_loss"

    def __init__(self, distance="bhattacharyya", reduction="sum",
                 from_logits=True, token_reduction="mean",
                 mask_key="padding_mask", weight=1.0):
        distances.get(distance)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"Unknown reduction {reduction!r}. Expected 'sum' (the "
                "reference code) or 'mean'."
            )
        self.distance = distance
        self.reduction = reduction
        self.from_logits = bool(from_logits)
        self.token_reduction = distances.check_token_reduction(
            token_reduction)
        if mask_key is not None and not isinstance(mask_key, str):
            raise TypeError(
                f"`mask_key` must be a string or None; got {mask_key!r}.")
        self.mask_key = mask_key
        self.weight = check_number("weight", weight)

    needs_inputs = True
    anchor_storages = ("outputs", "top_k", "snapshot")

    def check_outputs(self, shape):
        distances.check_output_shape(self.distance, shape)

    def check_memory(self, memory):
        super().check_memory(memory)
        if memory.anchor_storage == "top_k" and self.distance not in (
                "bhattacharyya", "kl"):
            raise ValueError(
                "Memory(anchor_storage='top_k') keeps the anchor's largest "
                "class probabilities, which only the distribution "
                f"distances use; this term's distance is {self.distance!r}."
                " Use distance='bhattacharyya' or 'kl', or "
                "anchor_storage='outputs' / 'snapshot'.")
        mask_shape = self._mask_shape(memory.spec)
        positions = tuple(memory.spec["outputs"]["shape"][:-1])
        if mask_shape is not None and positions and mask_shape != positions:
            raise ValueError(
                f"The memory input {self.mask_key!r} (per-sample shape "
                f"{mask_shape}) does not match the model's output positions "
                f"{positions}: the padding mask must have one entry per "
                "output token. Pass the preprocessor's padding mask, or "
                "mask_key=None to count every position.")

    def _mask_shape(self, spec):
        structure = spec["input_structure"]
        if self.mask_key is None or not isinstance(structure, dict) or \
                self.mask_key not in structure:
            return None
        # The structure's leaves are not reliable positions on every
        # backend's tree implementation: pack positions as the memory does.
        positions = keras.tree.pack_sequence_as(
            structure, list(range(len(spec["inputs"]))))
        return tuple(spec["inputs"][positions[self.mask_key]]["shape"])

    def _mask(self, inputs, per_position):
        if self.mask_key is None or not isinstance(inputs, dict) or \
                self.mask_key not in inputs or len(per_position.shape) < 2:
            return None
        return inputs[self.mask_key]

    def loss(self, outputs, anchors, labels, inputs=None):
        distance = distances.get(self.distance)
        if isinstance(anchors, (tuple, list)):  # top-k anchors
            p, q = anchor_storage.coarse_grained(
                outputs, *anchors, from_logits=self.from_logits)
            per_position = distance(p, q, from_logits=False)
        else:
            per_position = distance(outputs, anchors,
                                    from_logits=self.from_logits)
        per_sample = distances.per_sample(
            per_position, self._mask(inputs, per_position),
            self.token_reduction)
        if self.reduction == "sum":
            total = ops.sum(per_sample)
        else:
            total = ops.mean(per_sample)
        return total if self.weight == 1.0 else self.weight * total

    def combine(self, direction, memory_grads):
        return [d + m for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"distance": self.distance, "reduction": self.reduction,
                "from_logits": self.from_logits,
                "token_reduction": self.token_reduction,
                "mask_key": self.mask_key, "weight": self.weight}
