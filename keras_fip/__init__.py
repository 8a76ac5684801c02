"""keras_fip: adapt trained Keras models along functionally invariant paths.

Raghavan, Tharwat, Hari, Satani, Thomson, "Engineering flexible machine
learning systems by traversing functionally invariant paths", Nature Machine
Intelligence 2024 (arXiv 2205.00334).
"""

from keras_fip import baselines
from keras_fip import callbacks
from keras_fip import continual_metrics
from keras_fip import datasets
from keras_fip import distances
from keras_fip import hub
from keras_fip import saving
from keras_fip import sparsity
from keras_fip import terms
from keras_fip import weight_space
from keras_fip.continual_optimizer import ContinualOptimizer
from keras_fip.fip_optimizer import FIPOptimizer
from keras_fip.memory import Memory
from keras_fip.stream_training import StreamResult
from keras_fip.stream_training import fit_stream
from keras_fip.version import __version__

__all__ = [
    "ContinualOptimizer",
    "FIPOptimizer",
    "Memory",
    "StreamResult",
    "__version__",
    "baselines",
    "callbacks",
    "continual_metrics",
    "datasets",
    "distances",
    "fit_stream",
    "hub",
    "saving",
    "sparsity",
    "terms",
    "weight_space",
]
