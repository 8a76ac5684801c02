"""The runnable examples in the public docstrings run as written."""

import os
import re
import textwrap

import pytest

import keras_fip
from keras_fip import anchors
from keras_fip import baselines
from keras_fip import continual_metrics
from keras_fip import distances
from keras_fip import language
from keras_fip import memory_selection
from keras_fip import sparsity
from keras_fip.callbacks.weight_snapshots import WeightSnapshots
from keras_fip.datasets import wordnet
from keras_fip.ensembles import diversity as ensemble_diversity
from keras_fip.ensembles import schedules as ensemble_schedules
from keras_fip.sparsity import schedules

EXAMPLES = {
    "FIPOptimizer": keras_fip.FIPOptimizer,
    "ContinualOptimizer": keras_fip.ContinualOptimizer,
    "terms": keras_fip.terms.base,
    **{f"terms.{name}": getattr(keras_fip.terms, name)
       for name in keras_fip.terms.__all__
       if name not in ("MemoryTerm", "DirectionTerm", "PathStartTerm")},
    "Memory": keras_fip.Memory,
    "anchors": anchors,
    "anchors.top_k": anchors.top_k,
    "heads": keras_fip.heads,
    "nested": keras_fip.nested,
    # generate_samples's example makes the calls of test_language's
    # generation test; compiling generation once more costs JAX ~5 s.
    "language": language,
    "train_byte_bpe_tokenizer": language.train_byte_bpe_tokenizer,
    "small_gpt2_causal_lm": language.small_gpt2_causal_lm,
    "token_metrics": language.token_metrics,
    "EvalSets": keras_fip.evaluation.EvalSets,
    "evaluate_stream": keras_fip.evaluate_stream,
    "PathRecorder": keras_fip.callbacks.PathRecorder,
    "WeightSnapshots": WeightSnapshots,
    "attacks": keras_fip.attacks,
    "PathEnsemble": keras_fip.ensembles.PathEnsemble,
    "ensembles.schedules": ensemble_schedules,
    "FGESchedule": ensemble_schedules.FGESchedule,
    "SnapshotSchedule": ensemble_schedules.SnapshotSchedule,
    "ensembles.diversity": ensemble_diversity,
    **{f"ensembles.{name}": getattr(ensemble_diversity, name)
       for name in ("member_outputs", "pairwise_disagreement", "coherence",
                    "linear_cka", "layerwise_diversity")},
    "geometry": keras_fip.geometry,
    "TaskStream.holdout": keras_fip.datasets.TaskStream.holdout,
    "TaskStream.map_inputs": keras_fip.datasets.TaskStream.map_inputs,
    "distances": distances,
    "continual_metrics": continual_metrics,
    "class_balanced_keep": memory_selection.class_balanced_keep,
    "sparsity.schedules": schedules,
    "sparsity.SparseTarget": sparsity.SparseTarget,
    "composition.composer": keras_fip.composition.composer,
    "composition.lineage": keras_fip.composition.lineage,
    "composition.operations": keras_fip.composition.operations,
    **{name: getattr(baselines, name) for name in baselines.__all__},
}

if os.path.exists(wordnet.WORDNET_NOUNS):  # Debian's wordnet-base
    EXAMPLES.update(
        read_part_of_speech_glosses=wordnet.read_part_of_speech_glosses,
        gloss_domains=wordnet.gloss_domains)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_example_runs(name):
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLES[name].__doc__, re.S)
    assert blocks, f"{name} has no example"
    code = "\n".join(textwrap.dedent(block) for block in blocks)
    exec(compile(code, f"<{name} docstring>", "exec"), {})
