"""Sparsification along functionally invariant paths, on every backend.

`SparseTarget` makes the magnitude-pruned network the secondary objective of
`FIPOptimizer`; the schedules follow tfmot's vocabulary; the magnitude
baselines (one-shot, and masked fine-tuning with `MaskedOptimizer`), the
final hard mask and the sparsity report live here too.
"""

from keras_fip.sparsity.magnitude import make_pruning_permanent
from keras_fip.sparsity.magnitude import prune_low_magnitude
from keras_fip.sparsity.magnitude import sparsity_report
from keras_fip.sparsity.magnitude import thresholds
from keras_fip.sparsity.masked_optimizer import MaskedOptimizer
from keras_fip.sparsity.masked_optimizer import MaskGradient
from keras_fip.sparsity.schedules import ConstantSparsity
from keras_fip.sparsity.schedules import PolynomialDecay
from keras_fip.sparsity.schedules import PruningSchedule
from keras_fip.sparsity.selection import select
from keras_fip.sparsity.sparse_target import SparseTarget

__all__ = [
    "ConstantSparsity",
    "MaskGradient",
    "MaskedOptimizer",
    "PolynomialDecay",
    "PruningSchedule",
    "SparseTarget",
    "make_pruning_permanent",
    "prune_low_magnitude",
    "select",
    "sparsity_report",
    "thresholds",
]
