"""Small generative language models: a byte-level BPE, a GPT-2, its metrics.

The testbed for continual learning of a causal LM (a network pretrained on
one text domain, then adapted to another): a byte-level BPE tokenizer
learned on the training text, a small randomly initialized KerasHub GPT-2
with that tokenizer attached, and per-token metrics on held-out text.
Nothing is downloaded.

Every name here needs `keras_hub` (`pip install keras-fip[hub]`); it is
imported on first use.

Example:

```python
import keras_fip
from keras_fip import language
texts = ["a small dog", "a large dog", "a small cat", "the cat sat"] * 4
tokenizer = language.train_byte_bpe_tokenizer(texts, num_merges=8)
model = language.small_gpt2_causal_lm(tokenizer, sequence_length=8,
                                      hidden_dim=8, intermediate_dim=16)
metrics = language.token_metrics(model, texts[:4])
assert metrics["perplexity"] > 1 and metrics["tokens"] > 0
```
"""

import collections
import heapq

import numpy as np

END_TOKEN = "<|endoftext|>"

# GPT-2's pre-tokenizer (OpenAI's encoder.py): contractions, words with
# their leading space, numbers, runs of other symbols, spaces.
_SPLIT_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+"
                  r"| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
# Merges are learned inside these pieces only (a word and its leading
# space).
_WORD_PATTERN = r" ?\p{L}+"


def _texts(texts, name="texts"):
    """`texts` as a list of Python strings (NumPy string arrays, bytes)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"`{name}` must be a list of strings, not one string.")
    out = []
    for text in np.asarray(texts, dtype=object).reshape(-1).tolist():
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(
                f"`{name}` must hold strings; got {type(text).__name__}."
            )
        out.append(text)
    if not out:
        raise ValueError(f"`{name}` is empty.")
    return out


def _keras_hub():
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            "keras_fip.language needs KerasHub: pip install keras-hub"
        ) from error
    return keras_hub


def learn_byte_bpe_merges(texts, num_merges):
    """Byte-level BPE merges learned on `texts`, deterministically.

    Each text is cut into pieces by GPT-2's pre-tokenizer and each piece's
    UTF-8 bytes are written with GPT-2's byte-to-unicode alphabet (a space is
    `Ġ`, so `" word"` is `Ġword`). Starting from single bytes, each step
    merges the adjacent pair (a, b) with the largest count

        c(a, b) = Σ_w f(w) · #{i : w_i = a, w_{i+1} = b}

    over the distinct word pieces w (letters with an optional leading space)
    with their frequencies f(w), ties broken by the smallest (a, b) in
    string order; a pair must occur at least twice. The merges depend on the
    multiset of texts only, not on their order.

    Merges never cross a letter / non-letter boundary. KerasHub's
    tokenizer cuts text slightly differently on its Python path (eager
    calls) and its TensorFlow path (`tf.data`, as in `fit`) around digits
    and punctuation; since no merge involves a digit or a symbol, both
    paths give the same tokens.

    Args:
        texts: a list (or NumPy array) of strings.
        num_merges: the most merges to learn (>= 1); fewer are learned when
            no pair occurs twice.

    Returns:
        `(alphabet, merges)`: the 256 byte symbols in GPT-2's id order and a
        list of `(a, b)` pairs in the order learned.
    """
    import regex
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    byte_list, alphabet = bytes_to_unicode()
    to_symbol = {b[0]: c for b, c in zip(byte_list, alphabet)}
    split, word = regex.compile(_SPLIT_PATTERN), regex.compile(_WORD_PATTERN)
    counts = collections.Counter()
    for text in texts:
        for piece in split.findall(text):
            if word.fullmatch(piece):
                symbols = "".join(to_symbol[b] for b in piece.encode("utf-8"))
                counts[symbols] += 1
    words = [list(w) for w in sorted(counts)]
    frequency = [counts[w] for w in sorted(counts)]
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += frequency[i]
            where[pair].add(i)
    # A max-heap of (-count, a, b) with lazy deletion: an entry is stale
    # when its count is no longer the pair's; the smallest entry is the
    # largest count, ties to the smallest (a, b).
    heap = [(-c, a, b) for (a, b), c in pairs.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < num_merges and heap:
        negative, a, b = heapq.heappop(heap)
        if pairs.get((a, b), 0) != -negative:
            continue
        if -negative < 2:
            break
        merges.append((a, b))
        changed = set()
        for i in sorted(where.pop((a, b))):
            symbols, f = words[i], frequency[i]
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] -= f
                changed.add(pair)
            merged, j = [], 0
            while j < len(symbols):
                if j + 1 < len(symbols) and symbols[j] == a \
                        and symbols[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(symbols[j])
                    j += 1
            words[i] = merged
            for pair in zip(merged, merged[1:]):
                pairs[pair] += f
                where[pair].add(i)
                changed.add(pair)
        for pair in changed:
            if pairs[pair] > 0:
                heapq.heappush(heap, (-pairs[pair], *pair))
            else:
                del pairs[pair]
    return list(alphabet), merges


def train_byte_bpe_tokenizer(texts, num_merges=500, sequence_end=END_TOKEN):
    """A `keras_hub.models.GPT2Tokenizer` with a BPE learned on `texts`.

    The vocabulary is GPT-2's layout at a small size: ids 0-255 are the 256
    bytes (GPT-2's byte-to-unicode order, so any text encodes), then one id
    per merge in the order learned (`learn_byte_bpe_merges`), then the
    end-of-text token, which GPT-2 uses as start and end token:

        |V| = 256 + (merges learned) + 1.

    Padding is id 0 (GPT-2's convention); a model's preprocessor masks it.

    Args:
        texts: the training text, a list or NumPy array of strings.
        num_merges: the most merges to learn, >= 1 (a `GPT2Tokenizer`
            without merges fails in TensorFlow's lookup tables). A few
            hundred suit a few thousand short texts.
        sequence_end: the end-of-text token; `GPT2Tokenizer` fixes it to
            `"<|endoftext|>"`, so that is the only value accepted.

    Returns:
        The tokenizer (unbatched in, ragged token ids out; `detokenize`
        inverts it exactly).

    Raises:
        ValueError: `num_merges` < 1, another `sequence_end`, empty texts, or
            texts in which no pair of bytes repeats.

    Example:

    ```python
    from keras_fip import language
    texts = ["the cat sat", "the cat ran", "a cat sat"]
    tokenizer = language.train_byte_bpe_tokenizer(texts, num_merges=4)
    ids = tokenizer("the cat")
    assert tokenizer.detokenize(ids) == "the cat"
    assert tokenizer.vocabulary_size() == 256 + 4 + 1
    ```
    """
    if isinstance(num_merges, bool) or not isinstance(
            num_merges, (int, np.integer)) or num_merges < 1:
        raise ValueError(
            f"`num_merges` must be an integer >= 1; got {num_merges!r} (a "
            "GPT2Tokenizer without merges fails in TensorFlow)."
        )
    if sequence_end != END_TOKEN:
        raise ValueError(
            f"GPT2Tokenizer's start and end token is {END_TOKEN!r}; got "
            f"sequence_end={sequence_end!r}."
        )
    texts = _texts(texts)
    alphabet, merges = learn_byte_bpe_merges(texts, int(num_merges))
    if not merges:
        raise ValueError(
            "No pair of symbols occurs twice in `texts`: nothing to merge. "
            "Pass more text."
        )
    vocabulary = {symbol: i for i, symbol in enumerate(alphabet)}
    for a, b in merges:
        vocabulary.setdefault(a + b, len(vocabulary))
    vocabulary[END_TOKEN] = len(vocabulary)
    return _keras_hub().models.GPT2Tokenizer(
        vocabulary=vocabulary, merges=[f"{a} {b}" for a, b in merges])


def small_gpt2_causal_lm(tokenizer, sequence_length=64, num_layers=2,
                         num_heads=2, hidden_dim=64, intermediate_dim=256,
                         dropout=0.0, seed=0):
    """A randomly initialized `keras_hub.models.GPT2CausalLM` with `tokenizer`.

    A `GPT2Backbone` built from its config (nothing downloaded; vocabulary
    size from the tokenizer, position embeddings for `sequence_length`
    tokens) with a `GPT2CausalLMPreprocessor(tokenizer, sequence_length)`
    attached, so `fit`, `generate` and `token_metrics` take raw strings. The
    preprocessor wraps each text as `<|endoftext|> text <|endoftext|>` and
    the model learns p(t_{i+1} | t_1..t_i) at every real position. The
    output head is the transposed token embedding (GPT-2 ties them).

    The weights are drawn after `keras.utils.set_random_seed(seed)`, which
    also seeds Python's, NumPy's and the backend's global generators: the
    same arguments give the same weights on a backend.

    Args:
        tokenizer: a `GPT2Tokenizer` (`train_byte_bpe_tokenizer`).
        sequence_length: tokens per packed sequence (longer texts are cut).
        num_layers: transformer blocks.
        num_heads: attention heads per block.
        hidden_dim: width of the residual stream.
        intermediate_dim: width of each block's feed-forward layer.
        dropout: dropout rate of the backbone (0: training is deterministic
            given the data order).
        seed: seed of the initial weights.

    Returns:
        The compiled (KerasHub's defaults) causal LM; compile it again with
        your optimizer.

    Example:

    ```python
    from keras_fip import language
    texts = ["the cat sat", "the cat ran", "a cat sat"]
    tokenizer = language.train_byte_bpe_tokenizer(texts, num_merges=4)
    model = language.small_gpt2_causal_lm(
        tokenizer, sequence_length=8, num_layers=1, hidden_dim=8,
        intermediate_dim=16)
    x, y, sample_weight = model.preprocessor(["the cat"])
    assert model(x).shape == (1, 8, tokenizer.vocabulary_size())
    ```
    """
    import keras

    keras_hub = _keras_hub()
    for name, value in (("sequence_length", sequence_length),
                        ("num_layers", num_layers), ("num_heads", num_heads),
                        ("hidden_dim", hidden_dim),
                        ("intermediate_dim", intermediate_dim)):
        if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"`{name}` must be an integer >= 1; got {value!r}.")
    if hidden_dim % num_heads:
        raise ValueError(
            f"`hidden_dim` ({hidden_dim}) must be a multiple of `num_heads` "
            f"({num_heads})."
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must lie in [0, 1); got {dropout!r}.")
    if not isinstance(tokenizer, keras_hub.models.GPT2Tokenizer):
        raise TypeError(
            "`tokenizer` must be a keras_hub.models.GPT2Tokenizer "
            f"(train_byte_bpe_tokenizer); got {type(tokenizer).__name__}."
        )
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=num_layers,
        num_heads=num_heads, hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim, dropout=dropout,
        max_sequence_length=sequence_length)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=sequence_length)
    return keras_hub.models.GPT2CausalLM(backbone=backbone,
                                         preprocessor=preprocessor)


def _preprocessor(causal_lm):
    preprocessor = getattr(causal_lm, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(
            "`causal_lm` has no preprocessor; attach a "
            "CausalLMPreprocessor (small_gpt2_causal_lm does)."
        )
    return preprocessor


def token_batches(causal_lm, texts, batch_size=64):
    """Yields `(x, y, sample_weight)` of `texts` as NumPy, batch by batch.

    What the model's preprocessor gives `fit`: `x` the dict of `token_ids`
    and `padding_mask`, `y` the next token at every position and
    `sample_weight` 1 where that next token is real (not padding).
    """
    from keras import ops
    from keras import tree

    preprocessor = _preprocessor(causal_lm)
    texts = _texts(texts)
    if isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1; got "
                         f"{batch_size!r}.")
    for start in range(0, len(texts), batch_size):
        out = preprocessor(texts[start:start + batch_size])
        yield tree.map_structure(ops.convert_to_numpy, out)


def log_softmax(logits):
    """log p = z − max z − log Σ exp(z − max z), along the last axis."""
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def token_metrics(causal_lm, texts, batch_size=64):
    """Per-token negative log-likelihood, perplexity and next-token accuracy.

    Over the predicted positions P (those the preprocessor's `sample_weight`
    marks, i.e. every real next token including the end token, no padding)
    of all texts, with the model's logits z and targets y:

        nll = (1/|P|) Σ_{i∈P} −log softmax(z_i)[y_i]   (nats per token)
        perplexity = exp(nll)
        accuracy = (1/|P|) Σ_{i∈P} [argmax z_i = y_i]

    The log-softmax is computed stably in float64. Texts longer than the
    preprocessor's sequence length are cut as in training. A uniform model
    has perplexity |V|.

    Args:
        causal_lm: a KerasHub `CausalLM` with its preprocessor attached.
        texts: a list or NumPy array of strings.
        batch_size: texts per forward pass.

    Returns:
        `{"nll", "perplexity", "accuracy", "tokens"}` (floats; `tokens` is
        |P|, an int).

    Example:

    ```python
    from keras_fip import language
    texts = ["the cat sat", "the cat ran", "a cat sat"]
    tokenizer = language.train_byte_bpe_tokenizer(texts, num_merges=4)
    model = language.small_gpt2_causal_lm(
        tokenizer, sequence_length=8, num_layers=1, hidden_dim=8,
        intermediate_dim=16)
    metrics = language.token_metrics(model, texts)
    # an untrained model is close to uniform over the 261 tokens
    assert 200 < metrics["perplexity"] < 330
    ```
    """
    total_nll, correct, tokens = 0.0, 0.0, 0.0
    for x, y, weight in token_batches(causal_lm, texts, batch_size):
        logits = np.asarray(_as_numpy(causal_lm(x, training=False)))
        log_p = log_softmax(logits)
        picked = np.take_along_axis(log_p, y[..., None].astype("int64"),
                                    axis=-1)[..., 0]
        weight = weight.astype("float64")
        total_nll -= float(np.sum(picked * weight))
        correct += float(np.sum((np.argmax(logits, -1) == y) * weight))
        tokens += float(np.sum(weight))
    if tokens == 0:
        raise ValueError("`texts` give no token to predict.")
    nll = total_nll / tokens
    return {"nll": nll, "perplexity": float(np.exp(nll)),
            "accuracy": correct / tokens, "tokens": int(tokens)}


def _as_numpy(value):
    from keras import ops

    return ops.convert_to_numpy(value)


def generate_samples(causal_lm, prompts, max_length=None):
    """Greedy continuations of `prompts`, as strings.

    Each step appends argmax_t p(t | text so far) until the end token or
    `max_length` tokens (prompt included); the same weights give the same
    strings. The model's sampler is swapped for KerasHub's greedy sampler
    for the call and restored afterwards (its compiled state is kept).

    Args:
        causal_lm: a KerasHub `CausalLM` with its preprocessor attached.
        prompts: a list of strings.
        max_length: tokens per sequence, prompt included (default: the
            preprocessor's sequence length).

    Returns:
        A list of strings, each its prompt followed by the continuation.

    Example:

    ```python
    from keras_fip import language
    texts = ["the cat sat", "the cat ran", "a cat sat"]
    tokenizer = language.train_byte_bpe_tokenizer(texts, num_merges=4)
    model = language.small_gpt2_causal_lm(
        tokenizer, sequence_length=8, num_layers=1, hidden_dim=8,
        intermediate_dim=16)
    samples = language.generate_samples(model, ["the cat"], max_length=6)
    assert samples[0].startswith("the cat")
    ```
    """
    keras_hub = _keras_hub()
    preprocessor = _preprocessor(causal_lm)
    prompts = _texts(prompts, "prompts")
    if max_length is None:
        max_length = preprocessor.sequence_length
    if isinstance(max_length, bool) or not isinstance(
            max_length, (int, np.integer)) or max_length < 2:
        raise ValueError(f"`max_length` must be an integer >= 2; got "
                         f"{max_length!r}.")
    sampler = getattr(causal_lm, "sampler", None)
    generate_function = getattr(causal_lm, "generate_function", None)
    causal_lm.sampler = keras_hub.samplers.GreedySampler()
    causal_lm.generate_function = None
    try:
        out = causal_lm.generate(prompts, max_length=int(max_length))
    finally:
        causal_lm.sampler = sampler
        causal_lm.generate_function = generate_function
    return [o.decode("utf-8") if isinstance(o, bytes) else str(o)
            for o in (out.tolist() if hasattr(out, "tolist") else list(out))]
