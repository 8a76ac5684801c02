"""Dark Experience Replay++ (DER++): replay logits and labels."""

import keras
from keras import ops

from keras_fip.baselines.losses import cross_entropy
from keras_fip.continual_optimizer import _check_number
from keras_fip.memory_optimizer import MemoryOptimizer


@keras.saving.register_keras_serializable(package="keras_fip")
class DERPPOptimizer(MemoryOptimizer):
    """DER++: match the logits a sample had when stored, and its label.

    d = ∇L + ∇[α MSE(f(x_mem), z_mem) + β CE(f(x_mem), y_mem)], z_mem the
    logits saved with the sample (never refreshed). Buzzega et al., "Dark
    Experience for General Continual Learning" (NeurIPS 2020). The paper
    tunes α, β per dataset in [0.1, 1]; α = 0.3, β = 0.5 here are our
    defaults. One memory batch serves both terms (the paper draws two).

    Args:
        inner_optimizer: the optimizer to wrap.
        memory: a `keras_fip.Memory` (default capacity 200).
        memory_batch_size: replayed samples per step (default 32).
        alpha: weight of the logit-matching term (≥ 0).
        beta: weight of the label term (≥ 0).
        from_logits: whether the model outputs logits.
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.DERPPOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    refresh_anchors = False  # logits stay as they were at storage time

    def __init__(self, inner_optimizer, memory=None, memory_batch_size=32,
                 alpha=0.3, beta=0.5, from_logits=True, name=None, **kwargs):
        super().__init__(inner_optimizer, memory=memory,
                         memory_batch_size=memory_batch_size, name=name,
                         **kwargs)
        self.alpha = _check_number("alpha", alpha)
        self.beta = _check_number("beta", beta)
        self.from_logits = bool(from_logits)

    def _memory_loss(self, outputs, anchors, labels):
        outputs = ops.cast(outputs, "float32")
        logit_term = ops.mean(ops.square(outputs - ops.stop_gradient(anchors)))
        label_term = cross_entropy(outputs, labels, self.from_logits)
        return self.alpha * logit_term + self.beta * label_term

    def _combine(self, grads, memory_grads):
        return [g + m for g, m in zip(grads, memory_grads)]

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, beta=self.beta,
                      from_logits=self.from_logits)
        return config
