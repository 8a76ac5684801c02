"""Ensembles of networks: along a functionally invariant path and baselines.

`PathEnsemble` turns networks sampled along a path (an FIP walked with a
diversity objective from `keras_fip.terms`, or a baseline's cyclical
learning-rate run) into one Keras model that averages them.
"""

from keras_fip.ensembles.path_ensemble import AVERAGES
from keras_fip.ensembles.path_ensemble import PathEnsemble

__all__ = ["AVERAGES", "PathEnsemble"]
