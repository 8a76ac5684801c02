"""Composing FIP operations: chains of networks, each kept with its lineage.

Learn a task, sparsify, move toward another network (and the baselines:
fine-tune, magnitude-prune) one after another; every result is a `.keras`
file that records its parent, the operation and its measurements, and the
graph of networks is rebuilt from the files. See the guide "Composing
operations".
"""

from keras_fip.composition.composer import Composer
from keras_fip.composition.composer import Network
from keras_fip.composition.graph import NetworkGraph
from keras_fip.composition.lineage import Lineage
from keras_fip.composition.lineage import operation_of
from keras_fip.composition.lineage import read_lineage
from keras_fip.composition.lineage import write_lineage
from keras_fip.composition.operations import FineTune
from keras_fip.composition.operations import LearnTask
from keras_fip.composition.operations import MagnitudePrune
from keras_fip.composition.operations import MoveToward
from keras_fip.composition.operations import Operation
from keras_fip.composition.operations import Sparsify
from keras_fip.composition.operations import training_order

__all__ = [
    "Composer",
    "FineTune",
    "LearnTask",
    "Lineage",
    "MagnitudePrune",
    "MoveToward",
    "Network",
    "NetworkGraph",
    "Operation",
    "Sparsify",
    "operation_of",
    "read_lineage",
    "training_order",
    "write_lineage",
]
