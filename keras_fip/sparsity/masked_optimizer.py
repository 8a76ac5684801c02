"""`MaskedOptimizer`: fine-tune a pruned network, its zeros kept at zero."""

import keras
from keras import ops

from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.sparsity.selection import check_patterns
from keras_fip.sparsity.selection import select
from keras_fip.terms.base import DirectionTerm


@keras.saving.register_keras_serializable(package="keras_fip")
class MaskGradient(DirectionTerm):
    """d ← d ⊙ (w ≠ 0) on the chosen variables: zeros stay zeros.

    Args:
        prune: glob patterns on variable paths of the pruned variables
            (default: dense and convolution kernels).
    """

    def __init__(self, prune=None):
        self.prune = check_patterns(prune)

    def build(self, optimizer, variables):
        # Fails early when nothing matches; the list is fixed once built.
        self._chosen = select(variables, self.prune)

    def __call__(self, direction, step):
        direction = list(direction)
        for j, i in enumerate(step.indices):
            if i in self._chosen:
                kept = ops.cast(ops.not_equal(step.values[j], 0),
                                direction[j].dtype)
                direction[j] = direction[j] * kept
        return direction

    def get_config(self):
        return {"prune": list(self.prune) if self.prune else None}


@keras.saving.register_keras_serializable(package="keras_fip")
class MaskedOptimizer(ContinualOptimizer):
    """Masked fine-tuning: the pruned weights get no update.

    On the chosen variables the gradient is multiplied by the mask
    m = (w ≠ 0), so weights that are exactly zero (after
    `keras_fip.sparsity.prune_low_magnitude`) stay exactly zero under any
    inner optimizer whose update of a weight with zero gradient history is
    zero (SGD, momentum, Adam, AdamW with decoupled decay, ...). The mask is
    read from the weights at every step, so there is no state to save.

    Args:
        inner_optimizer: the optimizer that applies the masked gradient.
        prune: glob patterns on variable paths of the pruned variables
            (default: dense and convolution kernels).

    Example:

    ```python
    keras_fip.sparsity.prune_low_magnitude(model, 0.9)
    model.compile(optimizer=keras_fip.sparsity.MaskedOptimizer(
        keras.optimizers.Adam(1e-3)), loss="sparse_categorical_crossentropy")
    ```
    """

    def __init__(self, inner_optimizer, prune=None, name=None, **kwargs):
        mask = MaskGradient(prune)
        super().__init__(inner_optimizer, terms=[mask], name=name,
                         **kwargs)
        self._mask = mask

    @property
    def prune(self):
        return self._mask.prune

    def get_config(self):
        return self._preset_config(self._mask)
