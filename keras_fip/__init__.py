"""keras_fip: adapt trained Keras models along functionally invariant paths.

Raghavan, Tharwat, Hari, Satani, Thomson, "Engineering flexible machine
learning systems by traversing functionally invariant paths", Nature Machine
Intelligence 2024 (arXiv 2205.00334).

Importing the package imports every public module, so that Keras can
deserialize keras_fip's optimizers and terms from a `.keras` file. The one
exception is the `keras-fip` command: there the names load on first use
(PEP 562), so that `keras-fip bench --help` starts without Keras or a
backend.
"""

import importlib
import os
import sys

from keras_fip.version import __version__

_MODULES = ("anchors", "attacks", "baselines", "callbacks", "compat",
            "composition", "heads",
            "metric_product", "nested", "spectrum",
            "continual_metrics", "datasets", "ensembles",
            "distances", "evaluation", "geometry", "hub", "labels", "language",
            "saving",
            "sparsity", "terms", "weight_space")
_NAMES = {
    "ContinualOptimizer": "keras_fip.continual_optimizer",
    "FIPOptimizer": "keras_fip.fip_optimizer",
    "Memory": "keras_fip.memory",
    "StreamResult": "keras_fip.stream_training",
    "evaluate_stream": "keras_fip.evaluation",
    "fit_stream": "keras_fip.stream_training",
}

__all__ = sorted([*_NAMES, *_MODULES, "__version__"])


def __getattr__(name):
    if name in _MODULES:
        value = importlib.import_module(f"keras_fip.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'keras_fip' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__


def _started_as_the_command():
    """Whether this process is `keras-fip ...` (or `python -m` of it)."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return program in ("keras-fip", "-m")


if not _started_as_the_command():
    for _name in __all__:
        if _name != "__version__":
            __getattr__(_name)
