"""Callbacks for the task and path life cycle of FIP training."""

from keras_fip.callbacks.accuracy_matrix import AccuracyMatrix
from keras_fip.callbacks.path_recorder import PathRecorder
from keras_fip.callbacks.pruning_stop import PruningStop
from keras_fip.callbacks.task_boundary import TaskBoundary
from keras_fip.callbacks.task_boundary import remember_task
from keras_fip.callbacks.weight_snapshots import WeightSnapshots

__all__ = [
    "AccuracyMatrix",
    "PathRecorder",
    "PruningStop",
    "TaskBoundary",
    "WeightSnapshots",
    "remember_task",
]
