"""Split-WordNet: classify real English definitions by WordNet category.

Each noun synset in Debian's `wordnet-base` (`/usr/share/wordnet/data.noun`)
has a gloss (its definition) and a lexicographer file such as
`noun.animal`, `noun.food`, `noun.artifact`. Split-WordNet takes ten such
categories, samples glosses of each, turns them into token ids with a
vocabulary built on the training glosses, and makes five class-incremental
tasks of two categories with one 10-way head.
"""

import collections
import os
import re

import numpy as np

from keras_fip.datasets.task_stream import TaskStream

WORDNET_NOUNS = "/usr/share/wordnet/data.noun"

# Lexicographer file numbers of WordNet 3.0 (lexnames(5WN)).
LEXICOGRAPHER_FILES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact",
    7: "noun.attribute", 8: "noun.body", 9: "noun.cognition",
    10: "noun.communication", 11: "noun.event", 12: "noun.feeling",
    13: "noun.food", 14: "noun.group", 15: "noun.location", 16: "noun.motive",
    17: "noun.object", 18: "noun.person", 19: "noun.phenomenon",
    20: "noun.plant", 21: "noun.possession", 22: "noun.process",
    23: "noun.quantity", 24: "noun.relation", 25: "noun.shape",
    26: "noun.state", 27: "noun.substance", 28: "noun.time",
}

DEFAULT_CATEGORIES = (
    ("noun.animal", "noun.plant"),
    ("noun.food", "noun.artifact"),
    ("noun.person", "noun.location"),
    ("noun.body", "noun.substance"),
    ("noun.communication", "noun.act"),
)

# A second stream over ten other categories (none shared with the first),
# for choosing settings on more than one text stream:
# `split_wordnet(categories=SECOND_CATEGORIES)`.
SECOND_CATEGORIES = (
    ("noun.state", "noun.attribute"),
    ("noun.cognition", "noun.group"),
    ("noun.object", "noun.quantity"),
    ("noun.event", "noun.possession"),
    ("noun.time", "noun.process"),
)


def read_glosses(path=WORDNET_NOUNS):
    """`{category: [gloss, ...]}` from a WordNet `data.noun` file."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found. Install Debian's WordNet data: "
            "apt-get install wordnet-base"
        )
    glosses = collections.defaultdict(list)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" ") or "|" not in line:
                continue  # the licence header
            fields = line.split(" ", 2)
            category = LEXICOGRAPHER_FILES.get(int(fields[1]))
            if category:
                glosses[category].append(line.split("|", 1)[1].strip())
    return dict(glosses)


def tokenize(text):
    """Lower-case words of letters."""
    return re.findall(r"[a-z]+", text.lower())


class Vocabulary:
    """Word → id (0 = padding, 1 = out of vocabulary), from training text."""

    def __init__(self, texts, max_words=5000, min_count=2):
        counts = collections.Counter(w for t in texts for w in tokenize(t))
        words = [w for w, c in counts.most_common() if c >= min_count]
        self.index = {w: i + 2 for i, w in enumerate(words[: max_words - 2])}

    def __len__(self):
        return len(self.index) + 2

    def encode(self, texts, length=32):
        """int32 array `(len(texts), length)`, padded / truncated."""
        out = np.zeros((len(texts), length), "int32")
        for row, text in enumerate(texts):
            ids = [self.index.get(w, 1) for w in tokenize(text)][:length]
            out[row, : len(ids)] = ids
        return out


def sample_glosses(categories=DEFAULT_CATEGORIES, train_per_class=400,
                   test_per_class=100, seed=0, path=WORDNET_NOUNS):
    """Draws the glosses of each category, labelled in task order.

    Returns:
        `(train, test)`: lists of `(gloss, label)`; label k is the k-th
        category of `categories` flattened.
    """
    for name, value in (("train_per_class", train_per_class),
                        ("test_per_class", test_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
    glosses = read_glosses(path)
    order = [c for task in categories for c in task]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label, category in enumerate(order):
        texts = glosses.get(category, [])
        need = train_per_class + test_per_class
        if len(texts) < need:
            raise ValueError(
                f"WordNet has {len(texts)} glosses of {category}; "
                f"{need} are needed. Lower train_per_class/test_per_class."
            )
        picked = [texts[i] for i in rng.permutation(len(texts))[:need]]
        train += [(t, label) for t in picked[:train_per_class]]
        test += [(t, label) for t in picked[train_per_class:]]
    return train, test


def _stream(categories, x, y, xt, yt, name):
    groups = [tuple(range(2 * i, 2 * i + len(task)))
              for i, task in enumerate(categories)]
    stream = TaskStream.split_by_class(x, y, xt, yt, classes_per_task=groups,
                                       name=name)
    for task, names in zip(stream, categories):
        task.name = name + "/" + "-".join(n.split(".")[1] for n in names)
    stream.categories = [c for task in categories for c in task]
    return stream


def _labels(pairs):
    return np.array([label for _, label in pairs], "int32")


def split_wordnet(categories=DEFAULT_CATEGORIES, train_per_class=400,
                  test_per_class=100, sequence_length=32, max_words=5000,
                  seed=0, path=WORDNET_NOUNS):
    """Class-incremental Split-WordNet (real glosses, 5 tasks × 2 categories).

    Args:
        categories: tasks as tuples of lexicographer categories.
        train_per_class, test_per_class: glosses sampled per category.
        sequence_length: tokens kept per gloss.
        max_words: vocabulary size (ids 0 and 1 are padding and unknown).
        seed: seed of the sampling.
        path: the WordNet `data.noun` file.

    Returns:
        A `TaskStream` of int32 token ids; label k is the k-th category in
        task order. `stream.vocabulary_size` and `stream.categories` are set.
    """
    train, test = sample_glosses(categories, train_per_class, test_per_class,
                                 seed, path)
    vocabulary = Vocabulary([t for t, _ in train], max_words=max_words)
    x = vocabulary.encode([t for t, _ in train], sequence_length)
    xt = vocabulary.encode([t for t, _ in test], sequence_length)
    stream = _stream(categories, x, _labels(train), xt, _labels(test),
                     "split_wordnet")
    stream.vocabulary_size = len(vocabulary)
    return stream


def split_wordnet_text(categories=DEFAULT_CATEGORIES, train_per_class=400,
                       test_per_class=100, seed=0, path=WORDNET_NOUNS):
    """Split-WordNet as raw glosses, for models with their own tokenizer.

    The same glosses and labels as `split_wordnet` with the same arguments,
    as NumPy string arrays: what a KerasHub text classifier with its
    preprocessor attached takes in `fit`. The training glosses are shuffled
    (with `seed`): such a model's `fit` turns the arrays into a
    `tf.data.Dataset` and ignores `shuffle=True`, so class-sorted data would
    be learned one class after the other.

    Example:

    ```python
    stream = keras_fip.datasets.split_wordnet_text(train_per_class=50)
    stream[0].x_train[:2]  # two definitions of animals or plants
    ```
    """
    train, test = sample_glosses(categories, train_per_class, test_per_class,
                                 seed, path)
    order = np.random.default_rng([seed, 1]).permutation(len(train))
    train = [train[i] for i in order]
    x = np.array([t for t, _ in train])
    xt = np.array([t for t, _ in test])
    return _stream(categories, x, _labels(train), xt, _labels(test),
                   "split_wordnet_text")
