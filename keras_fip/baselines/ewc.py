"""Online Elastic Weight Consolidation (EWC)."""

import keras
import numpy as np

from keras_fip import backend as fip_backend
from keras_fip import compat
from keras_fip.arrays import as_numpy
from keras_fip.baselines.quadratic_penalty import QuadraticPenaltyOptimizer
from keras_fip.baselines.quadratic_penalty import QuadraticPenaltyTerm
from keras_fip.checks import check_number
from keras_fip.deprecation import renamed_arguments
from keras_fip.memory_losses import cross_entropy
from keras_fip.terms.weight_variables import read_all
from keras_fip.terms.weight_variables import write_all


@keras.saving.register_keras_serializable(package="keras_fip")
class FisherPenaltyTerm(QuadraticPenaltyTerm):
    """Online EWC's penalty: Ω ← γ Ω + F_t, w* ← w at each task's end.

    F_t is the diagonal empirical Fisher of the task, from squared
    mini-batch gradients of its cross-entropy (as Avalanche's EWCPlugin).

    Args:
        weight: λ ≥ 0, the term's weight (default 100.0; `ewc_lambda` is
            its deprecated 0.5 name).
        decay: γ in [0, 1] (default 1.0).
        fisher_batches: at most this many batches estimate F_t (default
            16).
        batch_size: their batch size (default 32).
        from_logits: whether the model outputs logits (default True).

    Example:

    ```python
    import keras, keras_fip
    optimizer = keras_fip.ContinualOptimizer(
        keras.optimizers.Adam(1e-3),
        terms=[keras_fip.baselines.FisherPenaltyTerm(weight=10.0)])
    ```
    """

    @renamed_arguments(since="0.6", ewc_lambda="weight")
    def __init__(self, weight=100.0, decay=1.0, fisher_batches=16,
                 batch_size=32, from_logits=True):
        super().__init__(weight)
        self.decay = check_number("decay", decay)
        if self.decay > 1:
            raise ValueError(f"`decay` must lie in [0, 1]; got {decay}.")
        self.fisher_batches = int(fisher_batches)
        self.batch_size = int(batch_size)
        self.from_logits = bool(from_logits)

    def fisher(self, optimizer, model, x, y):
        """Diagonal empirical Fisher of the task, one array per variable."""
        order = [compat.optimizer_variable_index(optimizer, v)
                 for v in model.trainable_variables]
        values = [v.value for v in model.trainable_variables]
        state = [v.value for v in model.non_trainable_variables]
        totals = [np.zeros(v.shape, "float64")
                  for v in self._optimizer_variables]
        n = len(np.asarray(y))
        batches = 0
        for start in range(0, n, self.batch_size):
            if batches == self.fisher_batches:
                break
            xb = (
                {k: v[start : start + self.batch_size] for k, v in x.items()}
                if isinstance(x, dict) else x[start : start + self.batch_size]
            )
            yb = np.asarray(y)[start : start + self.batch_size]

            def loss(vals, xb=xb, yb=yb):
                outputs, _ = model.stateless_call(vals, state, xb,
                                                  training=False)
                return cross_entropy(outputs, yb, self.from_logits)

            _, grads = fip_backend.value_and_grad(loss, values)
            for i, g in zip(order, grads):
                totals[i] += np.square(as_numpy(g))
            batches += 1
        return [t / max(batches, 1) for t in totals]

    def end_task(self, optimizer, model, task):
        if task.y is None:
            raise ValueError("EWC needs the task's labels to estimate Fisher.")
        new = self.fisher(optimizer, model, task.x, task.y)
        old = read_all(self.importance)
        write_all(self.importance,
                  [self.decay * o + f for o, f in zip(old, new)])
        write_all(self.anchor, self.weights())

    def get_config(self):
        return {"weight": self.weight, "decay": self.decay,
                "fisher_batches": self.fisher_batches,
                "batch_size": self.batch_size,
                "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_fip")
class EWCOptimizer(QuadraticPenaltyOptimizer):
    """Online EWC: a quadratic pull toward old weights, by Fisher importance.

    d = ∇L + λ F ⊙ (w − w*). At the end of each task the diagonal empirical
    Fisher F_t is estimated from squared mini-batch gradients of the task's
    cross-entropy (as Avalanche's EWCPlugin does), then F ← γ F + F_t and
    w* ← w. Kirkpatrick et al., "Overcoming catastrophic forgetting in
    neural networks" (PNAS 2017); the online form with decay γ is Schwarz et
    al., "Progress & Compress" (ICML 2018). λ = 100, γ = 1 are our defaults.
    A preset over `FisherPenaltyTerm`.

    Args:
        inner_optimizer: the optimizer to wrap.
        weight: λ ≥ 0, the penalty's weight (default 100.0; `ewc_lambda`
            is its deprecated 0.5 name).
        decay: γ in [0, 1], how much of the old Fisher is kept (default
            1.0).
        fisher_batches: at most this many batches of the task estimate F_t
            (default 16).
        batch_size: their batch size (default 32).
        from_logits: whether the model outputs logits (default True).
        name: the optimizer's name.

    Example:

    ```python
    import keras, keras_fip
    opt = keras_fip.baselines.EWCOptimizer(keras.optimizers.Adam(1e-3))
    ```
    """

    @renamed_arguments(since="0.6", ewc_lambda="weight")
    def __init__(self, inner_optimizer, weight=100.0, decay=1.0,
                 fisher_batches=16, batch_size=32, from_logits=True,
                 name=None, **kwargs):
        penalty = FisherPenaltyTerm(weight, decay, fisher_batches,
                                    batch_size, from_logits)
        super().__init__(inner_optimizer, terms=[penalty], name=name,
                         **kwargs)
