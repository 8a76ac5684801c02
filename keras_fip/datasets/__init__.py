"""Task streams for continual learning."""

from keras_fip.datasets.digits import permuted_digits
from keras_fip.datasets.digits import rotated_digits
from keras_fip.datasets.digits import split_digits
from keras_fip.datasets.keras_datasets import load_cifar10
from keras_fip.datasets.keras_datasets import split_cifar100
from keras_fip.datasets.keras_datasets import split_fashion_mnist
from keras_fip.datasets.keras_datasets import split_mnist
from keras_fip.datasets.task_stream import Task
from keras_fip.datasets.task_stream import TaskStream
from keras_fip.datasets.wordnet import gloss_domains
from keras_fip.datasets.wordnet import read_part_of_speech_glosses
from keras_fip.datasets.wordnet import split_wordnet
from keras_fip.datasets.wordnet import split_wordnet_text

__all__ = [
    "Task",
    "TaskStream",
    "gloss_domains",
    "load_cifar10",
    "permuted_digits",
    "read_part_of_speech_glosses",
    "rotated_digits",
    "split_cifar100",
    "split_digits",
    "split_fashion_mnist",
    "split_mnist",
    "split_wordnet",
    "split_wordnet_text",
]
