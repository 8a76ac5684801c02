"""The methods and streams `keras-fip bench` knows, with their settings.

Every memory method gets the same budget: a class-balanced `Memory` of 20
samples per class (200 for the 10-class streams). LwF's memory holds the new
task's inputs instead (it keeps nothing of old tasks).
"""

import dataclasses

import keras

import keras_fip
from keras_fip import baselines
from keras_fip.bench import names

MEMORY_PER_CLASS = 20


def _memory(stream, seed):
    return keras_fip.Memory(MEMORY_PER_CLASS * stream.num_classes, seed=seed)


METHODS = {
    # name: factory(inner optimizer, stream, seed) -> optimizer
    "finetune": lambda inner, stream, seed: inner,
    "joint": lambda inner, stream, seed: inner,
    "er": lambda inner, stream, seed: baselines.ReplayOptimizer(
        inner, memory=_memory(stream, seed)),
    "derpp": lambda inner, stream, seed: baselines.DERPPOptimizer(
        inner, memory=_memory(stream, seed)),
    "agem": lambda inner, stream, seed: baselines.AGEMOptimizer(
        inner, memory=_memory(stream, seed)),
    "ewc": lambda inner, stream, seed: baselines.EWCOptimizer(inner),
    "lwf": lambda inner, stream, seed: baselines.LwFOptimizer(
        inner, memory=_memory(stream, seed)),
    "si": lambda inner, stream, seed: baselines.SIOptimizer(inner),
    # The library's default FIP, chosen on the validation splits of the
    # eleven-stream suite (benchmarks/scale_free_default.py,
    # docs/results/scale_free.md).
    "fip": lambda inner, stream, seed: keras_fip.FIPOptimizer(
        inner, memory=_memory(stream, seed)),
}


def _fip(**settings):
    """FIP with the reference code's settings, `settings` replaced."""
    return lambda inner, stream, seed: keras_fip.FIPOptimizer.reference_code(
        inner, memory=_memory(stream, seed), **settings)


def _exact(damping):
    """The exact step on the logit metric (stored anchors, β = 10)."""
    return _fip(distance="squared_l2", reduction="mean", beta=10.0,
                anchors="stored", damping=damping, solver_iterations=5)


METHODS.update({
    # The paper's reference code (the default `fip` of keras_fip 0.1-0.2).
    "fip-reference": _fip(),
    # The paper's own metric g = JᵀJ (squared L2 on logits), mean over the
    # memory batch, β = 10: chosen among four FIP settings on Split-digits
    # (10 seeds, torch) for 0.1.
    "fip-l2": _fip(distance="squared_l2", reduction="mean", beta=10.0),
})

# Opt-in variants (`--methods fip-stored ...`), the ablation of FIP's
# settings against DER's: not in the default run. Each is the reference
# code's FIP with one setting changed.
VARIANTS = {
    # The default of keras_fip 0.3-0.6 (Bhattacharyya summed over the
    # memory batch, β = 0.3, λ = 1).
    "fip-0.5": lambda inner, stream, seed:
        keras_fip.FIPOptimizer.default_of_0_5(
            inner, memory=_memory(stream, seed)),
    # The label-keeping FIP: the default plus the memory's labels at
    # DER++'s weight (docs/results/scale_free.md).
    "fip-labels": lambda inner, stream, seed: keras_fip.FIPOptimizer(
        inner, memory=_memory(stream, seed), label_weight=2.0),
    "fip-beta0.5": _fip(beta=0.5),
    "fip-mb64": _fip(memory_batch_size=64),
    "fip-mb200": _fip(memory_batch_size=200),
    "fip-stored": _fip(anchors="stored"),
    "fip-l2-beta1": _fip(distance="squared_l2", reduction="mean"),
    "der": lambda inner, stream, seed: baselines.DERPPOptimizer(
        inner, memory=_memory(stream, seed), logit_weight=0.3,
        label_weight=0.0),
    # DER++ and ER with keras_fip 0.2's defaults (before they were chosen
    # on validation splits with the same budget as FIP's).
    "derpp-0.2": lambda inner, stream, seed: baselines.DERPPOptimizer(
        inner, memory=_memory(stream, seed), logit_weight=0.3,
        label_weight=0.5),
    "er-0.2": lambda inner, stream, seed: baselines.ReplayOptimizer(
        inner, memory=_memory(stream, seed), memory_batch_size=32,
        weight=1.0),
    # The exact step (g + μI)⁻¹d at three dampings.
    "fip-exact-mu1": _exact(1.0),
    "fip-exact-mu10": _exact(10.0),
    "fip-exact-mu100": _exact(100.0),
}


def make_optimizer(method, inner, stream, seed):
    """The optimizer of a method or variant by name."""
    return {**METHODS, **VARIANTS}[method](inner, stream, seed)


def mlp(stream):
    features = stream[0].x_train.shape[1]
    return keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(stream.num_classes),
    ])


def text_model(stream):
    length = stream[0].x_train.shape[1]
    return keras.Sequential([
        keras.Input((length,), dtype="int32"),
        keras.layers.Embedding(stream.vocabulary_size, 64),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(stream.num_classes),
    ])


@dataclasses.dataclass
class StreamSpec:
    """How to load a stream and what trains on it."""

    load: object
    model: object
    epochs: int
    quick_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-3


STREAMS = {
    "split-digits": StreamSpec(
        load=keras_fip.datasets.split_digits, model=mlp, epochs=30),
    "permuted-digits": StreamSpec(
        load=lambda: keras_fip.datasets.permuted_digits(num_tasks=10),
        model=mlp, epochs=5),
    "split-wordnet": StreamSpec(
        load=keras_fip.datasets.split_wordnet, model=text_model, epochs=10),
    "split-wordnet-b": StreamSpec(
        load=lambda: keras_fip.datasets.split_wordnet(
            categories=keras_fip.datasets.wordnet.SECOND_CATEGORIES),
        model=text_model, epochs=10),
}

if (tuple(METHODS), tuple(VARIANTS), tuple(STREAMS)) != (
        names.METHODS, names.VARIANTS, names.STREAMS):
    raise ImportError(
        "keras_fip.bench.names must list the registry's methods and streams")
