"""Keras-cache loaders (on small files in the cache format) and WordNet."""

import gzip
import os
import pickle

import numpy as np
import pytest

from keras_fip.datasets import keras_datasets
from keras_fip.datasets import wordnet


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "datasets")
    return tmp_path / "datasets"


def _images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), np.uint8)


def test_split_mnist_reads_the_npz_cache(keras_home):
    y = np.arange(40) % 10
    np.savez(keras_home / "mnist.npz", x_train=_images(40, (28, 28), 0),
             y_train=y, x_test=_images(20, (28, 28), 1), y_test=y[:20])
    stream = keras_datasets.split_mnist()
    assert len(stream) == 5 and stream[0].classes == (0, 1)
    assert stream[0].x_train.shape[1:] == (784,)
    assert stream[0].x_train.max() <= 1.0
    assert stream[0].x_train.dtype == "float32"


def _write_idx(path, array, header):
    with gzip.open(path, "wb") as f:
        f.write(b"\0" * header + array.tobytes())


def test_split_fashion_mnist_reads_the_idx_cache(keras_home):
    folder = keras_home / "fashion-mnist"
    os.makedirs(folder)
    y = (np.arange(30) % 10).astype(np.uint8)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y, 8)
    _write_idx(folder / "train-images-idx3-ubyte.gz",
               _images(30, (28, 28), 0), 16)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y[:20], 8)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz",
               _images(20, (28, 28), 1), 16)
    x, ytr, xt, yte = keras_datasets.load_fashion_mnist()
    assert x.shape == (30, 28, 28) and np.array_equal(ytr, y)
    stream = keras_datasets.split_fashion_mnist()
    assert [t.classes for t in stream][-1] == (8, 9)


def test_split_cifar100_reads_the_pickled_cache(keras_home):
    folder = keras_home / "cifar-100-python-target" / "cifar-100-python"
    os.makedirs(folder)
    for name, n in (("train", 200), ("test", 100)):
        batch = {b"data": _images(n, (3072,), n),
                 b"fine_labels": list(np.arange(n) % 100)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    stream = keras_datasets.split_cifar100()
    assert len(stream) == 10 and stream[0].x_train.shape[1:] == (32, 32, 3)
    assert stream[9].classes == tuple(range(90, 100))


def test_missing_cache_offline_is_explained(keras_home, monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(RuntimeError, match="not in the Keras cache"):
        keras_datasets.load_mnist()


FAKE_NOUNS = """  1 This software and database is being provided to you, the
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived
{lines}"""


def test_wordnet_parser_and_stream_on_a_small_file(tmp_path):
    lines = []
    offset = 2000000
    for number, word in ((5, "dog"), (20, "oak"), (13, "bread"), (6, "hammer")):
        for i in range(6):
            offset += 1
            lines.append(f"{offset:08d} {number:02d} n 01 {word}{i} 0 000 | "
                         f"a {word} kind number {i} of {word}s")
    path = tmp_path / "data.noun"
    path.write_text(FAKE_NOUNS.format(lines="\n".join(lines)) + "\n")
    glosses = wordnet.read_glosses(str(path))
    assert len(glosses["noun.animal"]) == 6 and "noun.Tops" in glosses
    stream = wordnet.split_wordnet(
        categories=(("noun.animal", "noun.plant"),
                    ("noun.food", "noun.artifact")),
        train_per_class=4, test_per_class=2, sequence_length=8, path=str(path))
    assert len(stream) == 2 and stream[1].classes == (2, 3)
    assert stream[0].x_train.dtype == np.int32
    assert stream[0].x_train.shape == (8, 8)
    assert stream.categories[2] == "noun.food"
    with pytest.raises(ValueError, match="glosses of noun.animal"):
        wordnet.split_wordnet(categories=(("noun.animal", "noun.plant"),),
                              train_per_class=10, path=str(path))
    with pytest.raises(ValueError, match="train_per_class"):
        wordnet.split_wordnet_text(train_per_class=0, path=str(path))
    text = wordnet.split_wordnet_text(
        categories=(("noun.animal", "noun.plant"),
                    ("noun.food", "noun.artifact")),
        train_per_class=4, test_per_class=2, path=str(path))
    # The same glosses and labels, as strings for a model's own tokenizer.
    assert text[0].x_train.dtype.kind == "U"
    assert text[1].x_train[0].startswith("a ") and text[1].classes == (2, 3)
    vocabulary = wordnet.Vocabulary([t for task in text for t in task.x_train])
    for raw, ids in zip(text, stream):
        np.testing.assert_array_equal(np.sort(raw.y_train), ids.y_train)
        np.testing.assert_array_equal(raw.y_test, ids.y_test)
        encoded = vocabulary.encode(raw.x_train, length=8)
        assert sorted(map(tuple, encoded)) == sorted(map(tuple, ids.x_train))
        # Shuffled: a KerasHub fit does not shuffle for the user.
        assert not (np.diff(raw.y_train) >= 0).all()


def test_wordnet_missing_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        wordnet.read_glosses(str(tmp_path / "absent"))


@pytest.mark.skipif(not os.path.exists(wordnet.WORDNET_NOUNS),
                    reason="Debian's wordnet-base is not installed")
def test_real_split_wordnet():
    stream = wordnet.split_wordnet()
    assert len(stream) == 5 and stream.vocabulary_size > 1000
    assert all(len(t.y_train) == 800 and len(t.y_test) == 200 for t in stream)
    assert (stream[0].x_train > 1).mean() > 0.3  # mostly known words


@pytest.mark.skipif(not os.path.exists(wordnet.WORDNET_NOUNS),
                    reason="Debian's wordnet-base is not installed")
def test_the_second_wordnet_stream_shares_no_category_with_the_first():
    first = {c for pair in wordnet.DEFAULT_CATEGORIES for c in pair}
    second = {c for pair in wordnet.SECOND_CATEGORIES for c in pair}
    assert len(second) == 10 and not first & second
    stream = wordnet.split_wordnet(categories=wordnet.SECOND_CATEGORIES)
    assert len(stream) == 5
    assert all(len(t.y_train) == 800 and len(t.y_test) == 200 for t in stream)


def test_vocabulary_pads_and_marks_unknown_words():
    vocab = wordnet.Vocabulary(["a cat a dog", "a cat"], min_count=2)
    ids = vocab.encode(["cat zebra"], length=4)
    assert ids[0, 1] == 1 and ids[0, 2:].tolist() == [0, 0] and ids[0, 0] > 1


@pytest.mark.skipif(not os.path.exists("/usr/share/wordnet/data.verb"),
                    reason="Debian's wordnet-base is not installed")
def test_verb_and_mixed_wordnet_streams_read_their_parts_of_speech():
    verbs = wordnet.split_wordnet(categories=wordnet.VERB_CATEGORIES,
                                  train_per_class=50, test_per_class=10)
    assert len(verbs) == 5 and verbs.categories[0] == "verb.motion"
    mixed = wordnet.split_wordnet(categories=wordnet.MIXED_CATEGORIES,
                                  train_per_class=50, test_per_class=10)
    assert [t.classes for t in mixed] == [(0, 1), (2, 3), (4, 5, 6)]
    assert len(mixed[2].y_train) == 150
    with pytest.raises(ValueError, match="part of speech"):
        wordnet.split_wordnet(categories=(("pron.all", "noun.animal"),))
