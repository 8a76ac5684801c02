"""keras_fip.language (byte-level BPE, small GPT-2, token metrics) and the
WordNet gloss domains it is trained on."""

import collections
import os

import numpy as np
import pytest

import keras_fip
from keras_fip import language
from keras_fip.datasets import wordnet

keras_hub = pytest.importorskip("keras_hub")

HAS_WORDNET = all(
    os.path.exists(os.path.join(wordnet.WORDNET_DIRECTORY, f))
    for f in ("data.noun", "data.verb"))
needs_wordnet = pytest.mark.skipif(
    not HAS_WORDNET,
    reason="Debian's WordNet is missing (apt-get install wordnet-base)")

# Glosses-like texts for the tests that must run without WordNet.
TOY = ["a small dog that barks", "a large dog", "the cat sat on the mat",
       "cause to move; or make 2 turns", "an (old) café in São Paulo",
       "a person who writes", "the act of writing", "a small cat"] * 3


@pytest.fixture(scope="module")
def glosses():
    if not HAS_WORDNET:
        pytest.skip("Debian's WordNet is missing "
                    "(apt-get install wordnet-base)")
    data = keras_fip.datasets.gloss_domains(train=300, holdout=20, test=20)
    return data


@pytest.fixture(scope="module")
def tokenizer(glosses):
    return language.train_byte_bpe_tokenizer(glosses["noun"]["train"],
                                             num_merges=60)


@pytest.fixture(scope="module")
def tiny_lm(tokenizer):
    return language.small_gpt2_causal_lm(
        tokenizer, sequence_length=16, num_layers=1, num_heads=2,
        hidden_dim=16, intermediate_dim=32, seed=3)


# --- the tokenizer -----------------------------------------------------------


def naive_merges(texts, num_merges):
    """Textbook BPE (recount every pair each step) on the same word pieces."""
    import regex
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    byte_list, chars = bytes_to_unicode()
    symbol = {b[0]: c for b, c in zip(byte_list, chars)}
    split = regex.compile(language._SPLIT_PATTERN)
    word = regex.compile(language._WORD_PATTERN)
    words = collections.Counter(
        tuple(symbol[b] for b in piece.encode("utf-8"))
        for text in texts for piece in split.findall(text)
        if word.fullmatch(piece))
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for w, count in words.items():
            for pair in zip(w, w[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < 2:
            break
        merges.append(best)
        merged = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return merges


def test_merges_match_textbook_bpe_and_ignore_text_order():
    texts = TOY + ["dogs and cats and dogs", "the dogged cat"]
    _, merges = language.learn_byte_bpe_merges(texts, 30)
    assert merges == naive_merges(texts, 30)
    _, shuffled = language.learn_byte_bpe_merges(texts[::-1], 30)
    assert shuffled == merges
    assert ("Ġ", "c") in merges  # words carry their leading space


def test_tokenizer_is_deterministic(glosses):
    texts = glosses["noun"]["train"]
    first = language.train_byte_bpe_tokenizer(texts, num_merges=60)
    again = language.train_byte_bpe_tokenizer(list(texts[::-1]),
                                              num_merges=60)
    assert first.merges == again.merges
    assert dict(first.vocabulary) == dict(again.vocabulary)


def test_vocabulary_layout(tokenizer):
    vocabulary = dict(tokenizer.vocabulary)
    assert tokenizer.vocabulary_size() == 256 + 60 + 1
    assert vocabulary[language.END_TOKEN] == 256 + 60
    assert tokenizer.end_token_id == tokenizer.start_token_id == 256 + 60
    _, chars = keras_hub.src.tokenizers.byte_pair_tokenizer.bytes_to_unicode()
    assert [vocabulary[c] for c in chars] == list(range(256))


def test_round_trip_of_real_glosses_and_any_bytes(tokenizer, glosses):
    texts = list(glosses["verb"]["test"]) + list(glosses["noun"]["test"])
    texts += ["naïve café – 1990s; “quoted” ☃", "  two  spaces  "]
    ids = tokenizer(texts)
    assert [tokenizer.detokenize(list(row)) for row in ids] == texts


def test_merges_shorten_the_text(tokenizer, glosses):
    texts = list(glosses["noun"]["holdout"])
    tokens = sum(len(row) for row in tokenizer(texts))
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert tokens < 0.75 * num_bytes


def test_python_and_tf_data_paths_give_the_same_tokens(tokenizer, glosses):
    # fit() tokenizes in tf.data (TensorFlow's pre-tokenizer), eager calls
    # in Python (Hugging Face's): the merges make them agree.
    tf = pytest.importorskip("tensorflow")
    texts = list(glosses["noun"]["train"][:100]) + TOY
    eager = [list(row) for row in tokenizer(texts)]
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(64).map(
        tokenizer)
    graph = [row for batch in dataset for row in batch.to_list()]
    assert eager == graph


# --- the model and its metrics --------------------------------------------


def test_same_seed_same_weights(tokenizer, tiny_lm):
    kwargs = dict(sequence_length=16, num_layers=1, num_heads=2,
                  hidden_dim=16, intermediate_dim=32)
    same = language.small_gpt2_causal_lm(tokenizer, seed=3, **kwargs)
    other = language.small_gpt2_causal_lm(tokenizer, seed=4, **kwargs)
    for u, v in zip(tiny_lm.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v)
               for u, v in zip(tiny_lm.get_weights(), other.get_weights()))
    assert isinstance(tiny_lm.preprocessor,
                      keras_hub.models.GPT2CausalLMPreprocessor)
    assert tiny_lm.backbone.vocabulary_size == tokenizer.vocabulary_size()


def hand_metrics(model, texts):
    """nll and accuracy from the logits, in NumPy, over sample_weight."""
    from keras import ops

    x, y, weight = model.preprocessor(list(texts))
    logits = ops.convert_to_numpy(model(x, training=False)).astype("float64")
    y, weight = ops.convert_to_numpy(y), ops.convert_to_numpy(weight)
    log_p = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    rows, cols = np.indices(y.shape)
    nll_all = -log_p[rows, cols, y]
    hits = np.argmax(logits, axis=-1) == y
    w = weight.astype("float64")
    return (float(np.sum(nll_all * w) / w.sum()),
            float(np.sum(hits * w) / w.sum()), int(w.sum()),
            float(nll_all.mean()))


def test_token_metrics_match_a_hand_computation(tiny_lm, glosses):
    # Short texts (padding) and one longer than the sequence (cut); batches
    # of 4 throughout (JAX compiles each new shape eagerly).
    texts = ["make", "a dog"] + list(glosses["noun"]["holdout"][:5])
    texts.append(" ".join(glosses["noun"]["holdout"][6:12]))
    parts = [hand_metrics(tiny_lm, texts[:4]), hand_metrics(tiny_lm, texts[4:])]
    tokens = sum(p[2] for p in parts)
    nll = sum(p[0] * p[2] for p in parts) / tokens
    accuracy = sum(p[1] * p[2] for p in parts) / tokens
    metrics = language.token_metrics(tiny_lm, texts, batch_size=4)
    assert metrics["tokens"] == tokens
    assert tokens < len(texts) * 16  # padded positions are left out
    np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(metrics["perplexity"], np.exp(nll), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], accuracy, atol=1e-9)
    assert abs(parts[0][3] - parts[0][0]) > 1e-3  # so the weighting matters
    # A text predicts each of its tokens and the end token, not the start,
    # up to the sequence length.
    tokenizer = tiny_lm.preprocessor.tokenizer
    lengths = [len(tokenizer(t)) + 1 for t in texts[:4]]
    assert min(lengths) < 16 < max(lengths)
    assert language.token_metrics(tiny_lm, texts[:4])["tokens"] == sum(
        min(n, 16) for n in lengths)


def test_token_metrics_of_an_untrained_model_are_near_uniform(tiny_lm,
                                                              glosses):
    metrics = language.token_metrics(tiny_lm, glosses["verb"]["holdout"][:8],
                                     batch_size=4)
    size = tiny_lm.backbone.vocabulary_size
    assert 0.5 * size < metrics["perplexity"] < 1.5 * size
    assert 0 <= metrics["accuracy"] < 0.1


@pytest.mark.filterwarnings(r"ignore:`compile\(\)` was not called")
def test_keras_file_round_trip_gives_identical_logits(tiny_lm, tmp_path,
                                                      glosses):
    import keras
    from keras import ops

    path = str(tmp_path / "tiny_gpt2.keras")
    tiny_lm.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_hub.models.GPT2CausalLM)
    tokenizer = loaded.preprocessor.tokenizer
    assert tokenizer.merges == tiny_lm.preprocessor.tokenizer.merges
    texts = list(glosses["verb"]["holdout"][:4])
    x, _, _ = tiny_lm.preprocessor(texts)
    x_loaded, _, _ = loaded.preprocessor(texts)
    for key in x:
        np.testing.assert_array_equal(ops.convert_to_numpy(x[key]),
                                      ops.convert_to_numpy(x_loaded[key]))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(tiny_lm(x, training=False)),
        ops.convert_to_numpy(loaded(x_loaded, training=False)))


def test_generate_samples_are_greedy_and_start_with_the_prompt(tiny_lm):
    sampler = tiny_lm.sampler
    prompts = ["a person who", "cause to"]
    samples = language.generate_samples(tiny_lm, prompts, max_length=10)
    assert [type(s) for s in samples] == [str, str]
    assert all(s.startswith(p) for s, p in zip(samples, prompts))
    assert language.generate_samples(tiny_lm, prompts, max_length=10) \
        == samples
    assert tiny_lm.sampler is sampler  # the compiled sampler is restored


def test_log_softmax_is_stable():
    out = language.log_softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(out, [[0.0, -1000.0],
                                     [np.log(0.5), np.log(0.5)]])


# --- the WordNet domains ----------------------------------------------------


@needs_wordnet
def test_part_of_speech_glosses():
    verbs = wordnet.read_part_of_speech_glosses("verb")
    assert verbs[0] == "draw air into, and expel out of, the lungs"
    assert not any('; "' in gloss for gloss in verbs)
    with_examples = wordnet.read_part_of_speech_glosses("verb",
                                                        examples=True)
    assert len(with_examples) == len(verbs)
    assert with_examples[0].startswith(verbs[0] + '; "I can breathe')
    assert len(wordnet.read_part_of_speech_glosses("adv")) > 3000


@needs_wordnet
def test_gloss_domains_are_disjoint_and_deterministic():
    data = keras_fip.datasets.gloss_domains(("noun", "verb"), train=50,
                                            holdout=10, test=20, seed=4)
    for domain in ("noun", "verb"):
        splits = data[domain]
        assert [len(splits[k]) for k in ("train", "holdout", "test")] \
            == [50, 10, 20]
        every = np.concatenate(list(splits.values()))
        assert len(set(every.tolist())) == len(every)
        assert splits["train"].dtype.kind == "U"
    again = keras_fip.datasets.gloss_domains(("verb", "noun"), train=80,
                                             holdout=10, test=20, seed=4)
    for domain in ("noun", "verb"):
        np.testing.assert_array_equal(data[domain]["test"],
                                      again[domain]["test"])
        np.testing.assert_array_equal(data[domain]["holdout"],
                                      again[domain]["holdout"])
        np.testing.assert_array_equal(data[domain]["train"],
                                      again[domain]["train"][:50])
    other = keras_fip.datasets.gloss_domains("verb", train=50, holdout=10,
                                             test=20, seed=5)
    assert set(other["verb"]["test"]) != set(data["verb"]["test"])


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("num_merges", [0, -3, 2.5, True])
def test_num_merges_must_be_a_positive_integer(num_merges):
    with pytest.raises(ValueError, match="num_merges"):
        language.train_byte_bpe_tokenizer(TOY, num_merges=num_merges)


def test_other_bad_tokenizer_input():
    with pytest.raises(ValueError, match="endoftext"):
        language.train_byte_bpe_tokenizer(TOY, 10, sequence_end="</s>")
    with pytest.raises(ValueError, match="empty"):
        language.train_byte_bpe_tokenizer([], 10)
    with pytest.raises(TypeError, match="one string"):
        language.train_byte_bpe_tokenizer("a dog", 10)
    with pytest.raises(ValueError, match="nothing to merge"):
        language.train_byte_bpe_tokenizer(["ab", "cd"], 10)


def test_bad_model_and_metric_input(tokenizer, tiny_lm):
    with pytest.raises(TypeError, match="GPT2Tokenizer"):
        language.small_gpt2_causal_lm(object())
    with pytest.raises(ValueError, match="multiple"):
        language.small_gpt2_causal_lm(tokenizer, num_heads=3, hidden_dim=16)
    with pytest.raises(ValueError, match="batch_size"):
        language.token_metrics(tiny_lm, ["a dog"], batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        language.token_metrics(tiny_lm, [])
    with pytest.raises(ValueError, match="max_length"):
        language.generate_samples(tiny_lm, ["a"], max_length=1)


def test_bad_wordnet_input(tmp_path):
    with pytest.raises(ValueError, match="Unknown part of speech"):
        wordnet.read_part_of_speech_glosses("pronoun")
    with pytest.raises(FileNotFoundError, match="apt-get install"):
        wordnet.read_part_of_speech_glosses("noun", directory=str(tmp_path))
    with pytest.raises(ValueError, match="repeats"):
        keras_fip.datasets.gloss_domains(("verb", "verb"))
    with pytest.raises(ValueError, match="train"):
        keras_fip.datasets.gloss_domains(train=0)


@needs_wordnet
def test_too_few_glosses():
    with pytest.raises(ValueError, match="distinct adv glosses"):
        keras_fip.datasets.gloss_domains(("adv",), train=4000)
