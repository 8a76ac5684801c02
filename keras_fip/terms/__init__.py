"""Direction terms: the composable parts of a continual optimizer's step.

`keras_fip.ContinualOptimizer(inner, terms=[...])` applies them in order,
each mapping the direction d (starting from the gradient `fit` computed);
`FIPOptimizer` and the baselines are presets over these terms. Write your
own by subclassing `DirectionTerm` (its docstring gives the argument
names every term uses: a term's own weight is `weight`); weight-shaped
state lives in optimizer variables made by `terms.weight_variables`.
"""

from keras_fip.terms.balance import DriftBound
from keras_fip.terms.balance import ProjectedInvariance
from keras_fip.terms.balance import RelativeInvariance
from keras_fip.terms.base import DirectionTerm
from keras_fip.terms.diversity import AdversarialOutputDiversity
from keras_fip.terms.diversity import AwayFromStart
from keras_fip.terms.diversity import PathStartTerm
from keras_fip.terms.invariance import Invariance
from keras_fip.terms.memory_term import MemoryTerm
from keras_fip.terms.metric_solve import MetricSolve
from keras_fip.terms.scale import ScaleGradient
from keras_fip.terms.step_norm import StepNorm
from keras_fip.terms.toward import TowardWeights

__all__ = [
    "AdversarialOutputDiversity",
    "AwayFromStart",
    "DirectionTerm",
    "DriftBound",
    "Invariance",
    "MemoryTerm",
    "MetricSolve",
    "PathStartTerm",
    "ProjectedInvariance",
    "RelativeInvariance",
    "ScaleGradient",
    "StepNorm",
    "TowardWeights",
]
