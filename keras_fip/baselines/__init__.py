"""Continual-learning baselines built from the same parts as FIP.

Each is a preset `ContinualOptimizer` over one direction term (exported
too, to combine with others): use it with `model.compile(optimizer=...)`,
`model.fit(..., callbacks=[keras_fip.callbacks.TaskBoundary(t, x, y)])`.
Fine-tuning is a plain Keras optimizer; joint training is one `fit` on all
tasks (`TaskStream.joint()`).
"""

from keras_fip.baselines.agem import AGEMOptimizer
from keras_fip.baselines.agem import GradientProjectionTerm
from keras_fip.baselines.derpp import DarkReplayTerm
from keras_fip.baselines.derpp import DERPPOptimizer
from keras_fip.baselines.ewc import EWCOptimizer
from keras_fip.baselines.ewc import FisherPenaltyTerm
from keras_fip.baselines.lwf import DistillationTerm
from keras_fip.baselines.lwf import LwFOptimizer
from keras_fip.baselines.reference_kl import ReferenceKLOptimizer
from keras_fip.baselines.replay import ReplayOptimizer
from keras_fip.baselines.replay import ReplayTerm
from keras_fip.baselines.si import PathIntegralPenaltyTerm
from keras_fip.baselines.si import SIOptimizer

__all__ = [
    "AGEMOptimizer",
    "DERPPOptimizer",
    "DarkReplayTerm",
    "DistillationTerm",
    "EWCOptimizer",
    "FisherPenaltyTerm",
    "GradientProjectionTerm",
    "LwFOptimizer",
    "PathIntegralPenaltyTerm",
    "ReferenceKLOptimizer",
    "ReplayOptimizer",
    "ReplayTerm",
    "SIOptimizer",
]
