"""Ensembles of networks: along a functionally invariant path and baselines.

`PathEnsemble` turns networks sampled along a path (an FIP walked with a
diversity objective from `keras_fip.terms`, or a baseline's cyclical
learning-rate run collected with `keras_fip.callbacks.WeightSnapshots`)
into one Keras model that averages them. `FGESchedule` (fast geometric
ensembling) and `SnapshotSchedule` (snapshot ensembles) are the baselines'
learning rates; `pairwise_disagreement`, `coherence` and
`layerwise_diversity` measure how different the members are.
"""

from keras_fip.ensembles.diversity import coherence
from keras_fip.ensembles.diversity import layerwise_diversity
from keras_fip.ensembles.diversity import linear_cka
from keras_fip.ensembles.diversity import member_outputs
from keras_fip.ensembles.diversity import pairwise_disagreement
from keras_fip.ensembles.path_ensemble import AVERAGES
from keras_fip.ensembles.path_ensemble import PathEnsemble
from keras_fip.ensembles.schedules import FGESchedule
from keras_fip.ensembles.schedules import SnapshotSchedule

__all__ = [
    "AVERAGES",
    "FGESchedule",
    "PathEnsemble",
    "SnapshotSchedule",
    "coherence",
    "layerwise_diversity",
    "linear_cka",
    "member_outputs",
    "pairwise_disagreement",
]
