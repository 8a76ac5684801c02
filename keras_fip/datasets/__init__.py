"""Task streams for continual learning."""

from keras_fip.datasets.digits import permuted_digits
from keras_fip.datasets.digits import split_digits
from keras_fip.datasets.task_stream import Task
from keras_fip.datasets.task_stream import TaskStream

__all__ = ["Task", "TaskStream", "permuted_digits", "split_digits"]
