"""`Invariance`: FIP's metric term θᵀgθ, measured on the memory."""

import keras
from keras import ops

from keras_fip import distances
from keras_fip.terms.memory_term import MemoryTerm

REDUCTIONS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="keras_fip")
class Invariance(MemoryTerm):
    """d ← d + ∇_w Σ_{x ∈ memory batch} D(f(x; w), f(x; w₀)).

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

    Example:

    ```python
    import keras_fip
    term = keras_fip.terms.Invariance(distance="kl", reduction="mean")
    ```
    """

    loss_name = "memory_loss"

    def __init__(self, distance="bhattacharyya", reduction="sum",
                 from_logits=True):
        distances.get(distance)
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"Unknown reduction {reduction!r}. Expected 'sum' (the "
                "reference code) or 'mean'."
            )
        self.distance = distance
        self.reduction = reduction
        self.from_logits = bool(from_logits)

    def check_outputs(self, shape):
        distances.check_output_shape(self.distance, shape)

    def loss(self, outputs, anchors, labels):
        per_sample = distances.get(self.distance)(
            outputs, anchors, from_logits=self.from_logits)
        if self.reduction == "sum":
            return ops.sum(per_sample)
        return ops.mean(per_sample)

    def combine(self, direction, memory_grads):
        return [d + m for d, m in zip(direction, memory_grads)]

    def get_config(self):
        return {"distance": self.distance, "reduction": self.reduction,
                "from_logits": self.from_logits}
