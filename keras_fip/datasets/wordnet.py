"""Split-WordNet: classify real English definitions by WordNet category.

Each noun synset in Debian's `wordnet-base` (`/usr/share/wordnet/data.noun`)
has a gloss (its definition) and a lexicographer file such as
`noun.animal`, `noun.food`, `noun.artifact`. Split-WordNet takes ten such
categories, samples glosses of each, turns them into token ids with a
vocabulary built on the training glosses, and makes five class-incremental
tasks of two categories with one 10-way head.

`gloss_domains` gives the glosses of whole parts of speech (nouns, verbs,
adjectives, adverbs) as raw text domains, for a language model that learns
one after the other (`keras_fip.language`).
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
    # Verbs, adjectives and adverbs (in data.verb, data.adj, data.adv).
    0: "adj.all", 1: "adj.pert", 2: "adv.all", 29: "verb.body",
    30: "verb.change", 31: "verb.cognition", 32: "verb.communication",
    33: "verb.competition", 34: "verb.consumption", 35: "verb.contact",
    36: "verb.creation", 37: "verb.emotion", 38: "verb.motion",
    39: "verb.perception", 40: "verb.possession", 41: "verb.social",
    42: "verb.stative", 43: "verb.weather", 44: "adj.ppl",
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

# Ten verb categories with at least 500 glosses each, as five tasks:
# `split_wordnet(categories=VERB_CATEGORIES)`.
VERB_CATEGORIES = (
    ("verb.motion", "verb.communication"),
    ("verb.change", "verb.contact"),
    ("verb.social", "verb.possession"),
    ("verb.stative", "verb.cognition"),
    ("verb.creation", "verb.body"),
)

# Three parts of speech, one task each (2, 2 and 3 classes).
MIXED_CATEGORIES = (
    ("noun.animal", "noun.artifact"),
    ("verb.motion", "verb.communication"),
    ("adj.all", "adj.pert", "adv.all"),
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


def _glosses_of(categories, path):
    """`{category: glosses}` from `path`, or, for the default noun file
    and categories of other parts of speech, from each one's data file."""
    parts = {c.split(".")[0] for task in categories for c in task}
    if path != WORDNET_NOUNS or parts <= {"noun"}:
        return read_glosses(path)
    glosses = {}
    for part in sorted(parts):
        if part not in PARTS_OF_SPEECH:
            raise ValueError(
                f"Unknown part of speech {part!r} in the categories "
                f"{categories!r}; categories are lexicographer files such "
                "as 'noun.animal', 'verb.motion' or 'adj.all'.")
        glosses.update(read_glosses(os.path.join(
            os.path.dirname(WORDNET_NOUNS), PARTS_OF_SPEECH[part][0])))
    return glosses


def sample_glosses(categories=DEFAULT_CATEGORIES, train_per_class=400,
                   test_per_class=100, seed=0, path=WORDNET_NOUNS):
    """Draws the glosses of each category, labelled in task order.

    Categories are WordNet lexicographer files of any part of speech
    (`LEXICOGRAPHER_FILES`): with the default `path`, verb, adjective and
    adverb categories are read from their own data files.

    Returns:
        `(train, test)`: lists of `(gloss, label)`; label k is the k-th
        category of `categories` flattened.
    """
    for name, value in (("train_per_class", train_per_class),
                        ("test_per_class", test_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < 1:
            raise ValueError(
                f"`{name}` must be an integer >= 1; got {value!r}.")
    glosses = _glosses_of(categories, path)
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
    starts = np.cumsum([0] + [len(task) for task in categories])
    groups = [tuple(range(starts[i], starts[i] + len(task)))
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
        train_per_class: training glosses sampled per category.
        test_per_class: test glosses sampled per category.
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


WORDNET_DIRECTORY = "/usr/share/wordnet"

# The data file of each part of speech, and a fixed number that seeds its
# split in `gloss_domains` (so a domain's split does not depend on which
# other domains are asked for, nor on their order).
PARTS_OF_SPEECH = {"noun": ("data.noun", 0), "verb": ("data.verb", 1),
                   "adj": ("data.adj", 2), "adv": ("data.adv", 3)}


def _definition(gloss):
    """The definition part of a gloss: the text before its first example.

    WordNet appends usage examples in double quotes after a semicolon,
    `'draw air into the lungs; "I can breathe better"'`; they are cut at the
    first `; "`. A gloss that is only an example is returned whole.
    """
    cut = gloss.find('; "')
    return (gloss[:cut] if cut > 0 else gloss).strip()


def read_part_of_speech_glosses(part_of_speech, directory=WORDNET_DIRECTORY,
                                examples=False):
    """Every gloss of one part of speech, in the order of its data file.

    Parses `data.noun`, `data.verb`, `data.adj` or `data.adv` as
    `read_glosses` does (licence lines start with a space; the gloss is the
    text after `|`). By default only the definition is kept: the usage
    examples WordNet appends after the first `; "` are cut, so that a
    language model reads one register (definitions) per domain rather than
    definitions mixed with quoted sentences.

    Args:
        part_of_speech: `"noun"`, `"verb"`, `"adj"` or `"adv"`.
        directory: the folder of the WordNet data files.
        examples: keep the usage examples (`True`) or cut them (`False`).

    Returns:
        A list of strings, one per synset (duplicates kept).

    Raises:
        ValueError: an unknown part of speech.
        FileNotFoundError: the data file is missing (with the command that
            installs Debian's WordNet).

    Example:

    ```python
    import os, keras_fip
    if os.path.exists("/usr/share/wordnet/data.verb"):
        verbs = keras_fip.datasets.read_part_of_speech_glosses("verb")
        assert verbs[0].startswith("draw air into")  # "breathe"
    ```
    """
    if part_of_speech not in PARTS_OF_SPEECH:
        raise ValueError(
            f"Unknown part of speech {part_of_speech!r}; expected one of "
            f"{sorted(PARTS_OF_SPEECH)}."
        )
    path = os.path.join(directory, PARTS_OF_SPEECH[part_of_speech][0])
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found. Install Debian's WordNet data: "
            "apt-get install wordnet-base"
        )
    glosses = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" ") or "|" not in line:
                continue  # the licence header
            gloss = line.split("|", 1)[1].strip()
            gloss = gloss if examples else _definition(gloss)
            if gloss:
                glosses.append(gloss)
    return glosses


def _split_size(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}; got {value!r}."
        )
    return int(value)


def gloss_domains(domains=("noun", "verb"), train=2000, holdout=300,
                  test=500, seed=0, directory=WORDNET_DIRECTORY,
                  examples=False):
    """Disjoint train / holdout / test glosses of parts of speech (domains).

    For a language model that learns one domain after the other (nouns'
    definitions, then verbs'). Each domain's distinct glosses
    (`read_part_of_speech_glosses`, duplicates dropped) are permuted with a
    generator seeded by `(seed, domain)`; the first `test` form the test
    split, the next `holdout` the holdout (validation) split and the next
    `train` the training split. So the three splits are disjoint, the test
    split does not depend on `train` or `holdout`, the holdout split not on
    `train` (a larger training set only adds glosses), and no domain's split
    depends on the other domains asked for.

    Args:
        domains: parts of speech (`"noun"`, `"verb"`, `"adj"`, `"adv"`),
            distinct.
        train: training glosses per domain (>= 1).
        holdout: held-out glosses per domain (>= 0).
        test: test glosses per domain (>= 0).
        seed: seed of the permutations.
        directory: the folder of the WordNet data files.
        examples: keep WordNet's usage examples in the glosses.

    Returns:
        `{domain: {"train": ..., "holdout": ..., "test": ...}}`, NumPy
        string arrays (a KerasHub task with its preprocessor takes them in
        `fit`), in random order.

    Raises:
        ValueError: an unknown or repeated domain, a bad size, or a domain
            with fewer distinct glosses than `train + holdout + test`.

    Example:

    ```python
    import os, keras_fip
    if os.path.exists("/usr/share/wordnet/data.verb"):
        data = keras_fip.datasets.gloss_domains(train=100, holdout=20,
                                                test=20)
        a_train, b_train = data["noun"]["train"], data["verb"]["train"]
        assert len(a_train) == 100 and len(data["verb"]["test"]) == 20
    ```
    """
    if isinstance(domains, str):
        domains = (domains,)
    domains = tuple(domains)
    if not domains:
        raise ValueError("`domains` is empty.")
    if len(set(domains)) != len(domains):
        raise ValueError(f"`domains` repeats a part of speech: {domains}.")
    sizes = {"train": _split_size("train", train, 1),
             "holdout": _split_size("holdout", holdout, 0),
             "test": _split_size("test", test, 0)}
    need = sum(sizes.values())
    out = {}
    for domain in domains:
        glosses = list(dict.fromkeys(read_part_of_speech_glosses(
            domain, directory, examples)))
        if len(glosses) < need:
            raise ValueError(
                f"WordNet has {len(glosses)} distinct {domain} glosses; "
                f"train + holdout + test = {need} are needed."
            )
        order = np.random.default_rng(
            [seed, PARTS_OF_SPEECH[domain][1]]).permutation(len(glosses))
        picked = np.array([glosses[i] for i in order[:need]])
        test_end = sizes["test"]
        holdout_end = test_end + sizes["holdout"]
        out[domain] = {"train": picked[holdout_end:],
                       "holdout": picked[test_end:holdout_end],
                       "test": picked[:test_end]}
    return out
