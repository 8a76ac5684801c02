"""The runnable examples in the public docstrings run as written."""

import re
import textwrap

import pytest

import keras_fip
from keras_fip import baselines
from keras_fip import continual_metrics
from keras_fip import distances
from keras_fip import memory_selection
from keras_fip import sparsity
from keras_fip.sparsity import schedules

EXAMPLES = {
    "FIPOptimizer": keras_fip.FIPOptimizer,
    "ContinualOptimizer": keras_fip.ContinualOptimizer,
    "terms": keras_fip.terms.base,
    **{f"terms.{name}": getattr(keras_fip.terms, name)
       for name in keras_fip.terms.__all__ if name != "MemoryTerm"
       and name != "DirectionTerm"},
    "Memory": keras_fip.Memory,
    "EvalSets": keras_fip.evaluation.EvalSets,
    "evaluate_stream": keras_fip.evaluate_stream,
    "PathRecorder": keras_fip.callbacks.PathRecorder,
    "geometry": keras_fip.geometry,
    "TaskStream.holdout": keras_fip.datasets.TaskStream.holdout,
    "TaskStream.map_inputs": keras_fip.datasets.TaskStream.map_inputs,
    "distances": distances,
    "continual_metrics": continual_metrics,
    "class_balanced_keep": memory_selection.class_balanced_keep,
    "sparsity.schedules": schedules,
    "sparsity.SparseTarget": sparsity.SparseTarget,
    **{name: getattr(baselines, name) for name in baselines.__all__},
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_example_runs(name):
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLES[name].__doc__, re.S)
    assert blocks, f"{name} has no example"
    code = "\n".join(textwrap.dedent(block) for block in blocks)
    exec(compile(code, f"<{name} docstring>", "exec"), {})
