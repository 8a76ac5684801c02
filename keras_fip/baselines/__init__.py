"""Continual-learning baselines built from the same parts as FIP.

Each is a `ContinualOptimizer`: use it with `model.compile(optimizer=...)`,
`model.fit(..., callbacks=[keras_fip.callbacks.TaskBoundary(t, x, y)])`.
Fine-tuning is a plain Keras optimizer; joint training is one `fit` on all
tasks (`TaskStream.joint()`).
"""

from keras_fip.baselines.agem import AGEMOptimizer
from keras_fip.baselines.derpp import DERPPOptimizer
from keras_fip.baselines.ewc import EWCOptimizer
from keras_fip.baselines.lwf import LwFOptimizer
from keras_fip.baselines.replay import ReplayOptimizer
from keras_fip.baselines.si import SIOptimizer

__all__ = [
    "AGEMOptimizer",
    "DERPPOptimizer",
    "EWCOptimizer",
    "LwFOptimizer",
    "ReplayOptimizer",
    "SIOptimizer",
]
