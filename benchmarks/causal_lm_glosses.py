"""A small GPT-2 learns verb definitions after noun definitions (issue 19).

Domain A is WordNet's noun glosses, domain B its verb glosses
(`keras_fip.datasets.gloss_domains`, definitions only: the quoted usage
examples are cut). A small KerasHub `GPT2CausalLM` (`keras_fip.language`)
is pretrained on A, then each method adapts it to B. We measure per-token
perplexity and next-token accuracy on held-out A (forgetting) and held-out
B (learning), and greedy samples from A-style and B-style prompts.

Protocol.

- Data: A and B glosses split into train / holdout / test with
  `--data-seed` (fixed across `--seeds`: the spread over seeds is that of
  the training, not of the data). A byte-level BPE (`--merges` merges) is
  learned on A's training glosses only.
- Start: a GPT-2 from a small config trained from random weights (seed
  `s`) on A's training glosses (`--pretrain-epochs`, Adam at
  `--pretrain-learning-rate`). Its weights and the tokenizer are cached
  under `--cache` (default `results/causal_lm/`), keyed by backend, size,
  data, settings and seed, and rebuilt when absent.
- Adaptation: every method starts from the seed's starting model and sees
  B's training glosses for `--epochs` epochs of batch `--batch-size`. The
  memory is a fixed reservoir of `--memory` (200) A training glosses drawn
  with the seed: the texts replay mixes in and FIP-style methods protect.
- Evaluation: `token_metrics` on A and B holdout (`--eval holdout`, the
  default, for choosing knobs and learning rates) or test (`--eval test`,
  once the choices are made).

Methods. A method is a function in `METHODS`,

    adapt(load_start, data, knob, seed, args) -> causal_lm

`load_start()` returns a fresh copy of the starting model (compiled with
KerasHub's defaults; compile it with your optimizer), `data` is a dict of
NumPy string arrays (`a_train`, `b_train`, `memory`, and the evaluation
texts `a_eval`, `b_eval`, which a method must not train on), `knob` is one
value of its sweep `KNOBS[name]` (None for a method without one), `seed`
the run's seed and `args` the parsed flags. It returns the adapted model.
The shared `train(model, optimizer, texts, args, seed, callbacks=(),
remember=None)` compiles `optimizer` (next-token cross-entropy), calls
`remember(model)` (a hook after compile and before the first step, e.g.
to put `data["memory"]` into an optimizer's memory), and fits the texts
with the common epochs, batch and order; every method trains through it,
so that all see the same schedule. Adding a method takes a function and
two dict entries; FIP, for instance, would read

    def adapt_fip(load_start, data, knob, seed, args):
        model = load_start()
        optimizer = keras_fip.FIPOptimizer.default_of_0_5(
            keras.optimizers.Adam(args.learning_rate), beta=knob,
            memory=keras_fip.Memory(len(data["memory"]), seed=seed))
        train(model, optimizer, data["b_train"], args, seed,
              remember=lambda m: keras_fip.callbacks.remember_task(
                  m, 0, data["memory"]))
        return model

    METHODS["fip"] = adapt_fip
    KNOBS["fip"] = [0.1, 0.3, 1.0]

(`--methods` accepts every key of `METHODS`; `--knob mine=0.5,5` overrides
a sweep from the command line.) Implemented here:

- finetune: Adam at `--learning-rate` on all weights (no knob).
- lora: `backbone.enable_lora(rank)` (query and value projections; the
  rest frozen, the head included: GPT-2 ties it to the embedding), Adam at
  `--lora-learning-rate`; knob = rank (4, 16).
- replay: B's training glosses plus draws from the A memory making a share
  r of the training array (r / (1 − r) · |B train| draws, cycling through
  the reservoir), shuffled together; Adam at `--learning-rate`; knob = r
  (0.1, 0.25, 0.5). It takes 1 / (1 − r) times fine-tuning's steps.
- joint: Adam at `--learning-rate` from the starting model on A's and B's
  training glosses together (the upper bound; (|A| + |B|) / |B| times
  fine-tuning's steps).
- kl: `ReferenceKLOptimizer`, fine-tuning plus λ KL(start ‖ model) on B's
  own inputs (a snapshot of the starting weights; 16 B sequences per step);
  knob = λ (0.1, 0.3, 1, 3).
- fip: `FIPOptimizer` (the library's defaults: Bhattacharyya per token,
  mean over a sequence's real tokens, summed over 16 memory sequences per
  step) with the A memory entered by `remember_task`, Adam at
  `--learning-rate`; knob = β (1, 3, 10, 30).
- fip-lora: `enable_lora(16)`, then FIP at `--lora-learning-rate`; knob =
  β (3, 30, 300).
- fip-top-k (on request): fip at β = `--top-k-beta` (10) with top-k anchors
  (`Memory(anchor_storage="top_k")`); knob = k (32).

The sweeps of kl, fip and fip-lora were set on seed 0's holdout (FIP at
β = 0.3, the classification default, learned little of B: perplexity 64.8;
β = 10 reached 38.2 with A +3.2).

Order. `train` tokenizes the texts once with the model's own preprocessor
and fits on the arrays (`keras.Model.fit`, skipping KerasHub's per-epoch
re-tokenization in `tf.data`, which doubled the step time; the
preprocessor stays attached, so code that preprocesses memory texts itself
still works). The order is built here, not by `fit(shuffle=True)`: one
permutation of the texts per epoch from `numpy.random.default_rng([seed,
2])`, concatenated and cut to whole batches (so the step shape never
changes and JAX compiles the step once), fitted as one Keras epoch.

Choices, made on holdout with seed 0 (JAX). Pretraining: Adam at 1e-3
for 12 epochs (A holdout perplexity 44.7, still falling slowly; constant
3e-3 reached 54.2, cosine decay from 2e-3 or 1e-3 63.5 or 57.2).
Fine-tuning: 1e-3, the best B perplexity (36.6 against 40.8 at 3e-4 and
38.4 at 3e-3, which also took A from 44.7 to 129). LoRA (rank 16): 1e-2
(B 53.7 against 56.3 at 3e-3 and 57.9 at 3e-2), ten times fine-tuning's.

Measured (JAX, 2 shared CPU cores, default size, holdout, 3 seeds; vocabulary
757, so a uniform model has perplexity 757): pretraining takes 65-75 s
(1,500 steps); the starting model has A perplexity 44.6 ± 0.2 and B 82.7 ±
1.5. Fine-tuning (93 steps, 5-8 s with model building and compilation)
takes B to 36.8 ± 0.1 and A to 74.5 ± 0.3: +30 perplexity of forgetting.
LoRA forgets less and learns less (rank 4: A +15.0, B 56.4; rank 16: A
+19.8, B 53.4); replay at a share of 0.1 / 0.25 keeps A at +12.0 / +11.4
with B 36.9 / 39.4, while at 0.5 the 200 memory glosses, each seen 15
times, are overfitted (A +30.3, B 50.1); joint training reaches A −2.8 and
B 44.2 in 343 steps. All seven configurations of the three seeds,
pretraining included, take 6 minutes, which leaves room in a 30-minute
budget for about nine more configurations at 2-3 times fine-tuning's step
cost.

Output: `--out` (JSON: every (method, knob, seed) with A/B nll,
perplexity, accuracy, tokens, seconds and steps; the starting models'
metrics; the samples of each method at the middle value of its sweep,
first seed), a printed table of means ± std over the seeds, and `--plot`
(the frontier: B perplexity against the rise of A perplexity over the
starting model, one line per method across its knob).

Run (`--full`: a 4-layer GPT-2 of width 128 on 3x the data):

    KERAS_BACKEND=jax python benchmarks/causal_lm_glosses.py
    python benchmarks/causal_lm_glosses.py --seeds 0 --methods finetune lora
    python benchmarks/causal_lm_glosses.py --eval test --out \\
        results/causal_lm/test.json
"""

import argparse
import hashlib
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip import language  # noqa: E402

# The model and data of the default run and of --full.
SIZES = {
    "default": {"num_layers": 2, "num_heads": 2, "hidden_dim": 64,
                "intermediate_dim": 256, "sequence_length": 48,
                "merges": 500, "a_train": 4000, "b_train": 1500,
                "holdout": 300, "test": 500},
    "full": {"num_layers": 4, "num_heads": 4, "hidden_dim": 128,
             "intermediate_dim": 512, "sequence_length": 64,
             "merges": 1000, "a_train": 12000, "b_train": 4500,
             "holdout": 500, "test": 1000},
}
MODEL_KEYS = ("num_layers", "num_heads", "hidden_dim", "intermediate_dim",
              "sequence_length")

A_PROMPTS = ("a person who", "any of various", "the act of")
B_PROMPTS = ("cause to", "make", "move")


# ---------------------------------------------------------------------------
# Data, tokenizer and the starting model.


def load_data(args, seed):
    """The texts of one run: training, memory and evaluation glosses.

    Returns a dict of NumPy string arrays: `a_train`, `b_train`, `memory`
    (`args.memory` A training glosses drawn with `seed`), `a_eval` and
    `b_eval` (holdout or test, by `args.eval`).
    """
    domains = keras_fip.datasets.gloss_domains(
        ("noun", "verb"), train=max(args.a_train, args.b_train),
        holdout=args.holdout, test=args.test, seed=args.data_seed)
    a, b = domains["noun"], domains["verb"]
    memory = np.random.default_rng([seed, 1]).choice(
        args.a_train, size=min(args.memory, args.a_train), replace=False)
    return {"a_train": a["train"][: args.a_train],
            "b_train": b["train"][: args.b_train],
            "memory": a["train"][: args.a_train][np.sort(memory)],
            "a_eval": a[args.eval], "b_eval": b[args.eval]}


def _key(settings):
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def load_tokenizer(args, data):
    """The BPE of A's training glosses, cached as JSON under `args.cache`."""
    settings = {"merges": args.merges, "a_train": args.a_train,
                "holdout": args.holdout, "test": args.test,
                "data_seed": args.data_seed}
    path = os.path.join(args.cache, f"tokenizer_{_key(settings)}.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return keras_fip.language._keras_hub().models.GPT2Tokenizer(
            vocabulary=saved["vocabulary"], merges=saved["merges"])
    begin = time.time()
    tokenizer = language.train_byte_bpe_tokenizer(data["a_train"],
                                                  num_merges=args.merges)
    os.makedirs(args.cache, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"settings": settings,
                   "vocabulary": dict(tokenizer.vocabulary),
                   "merges": list(tokenizer.merges)}, f)
    print(f"tokenizer: {tokenizer.vocabulary_size()} tokens learned in "
          f"{time.time() - begin:.1f} s", flush=True)
    return tokenizer


def build_model(tokenizer, args, seed):
    return language.small_gpt2_causal_lm(
        tokenizer, seed=seed, **{k: getattr(args, k) for k in MODEL_KEYS})


def pretrain(tokenizer, data, args, seed):
    """The starting model of `seed`: cached weights, or pretrained on A.

    Returns `(load_start, info)`: a function that builds a fresh copy of the
    starting model, and the pretraining's settings, seconds and steps.
    """
    settings = {"backend": keras.backend.backend(), "seed": seed,
                "epochs": args.pretrain_epochs,
                "learning_rate": args.pretrain_learning_rate,
                "batch_size": args.batch_size, "merges": args.merges,
                "a_train": args.a_train, "holdout": args.holdout,
                "test": args.test, "data_seed": args.data_seed,
                **{k: getattr(args, k) for k in MODEL_KEYS}}
    stem = os.path.join(args.cache, f"start_{_key(settings)}")
    path = stem + ".npz"
    if os.path.exists(path) and os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            info = json.load(f)
        info["cached"] = True
    else:
        begin = time.time()
        model = build_model(tokenizer, args, seed)
        steps = train(model, keras.optimizers.Adam(args.pretrain_learning_rate),
                      data["a_train"], args, seed, epochs=args.pretrain_epochs)
        info = {"settings": settings, "seconds": time.time() - begin,
                "steps": steps, "cached": False}
        os.makedirs(args.cache, exist_ok=True)
        # The weights alone (`save_weights` would add Adam's state, which a
        # fresh model's optimizer skips with a warning).
        np.savez(path, *model.get_weights())
        with open(stem + ".json", "w") as f:
            json.dump(info, f, indent=1)
        print(f"pretrained seed {seed} on A in {info['seconds']:.0f} s "
              f"({steps} steps)", flush=True)

    def load_start():
        model = build_model(tokenizer, args, seed)
        with np.load(path) as saved:
            model.set_weights([saved[f"arr_{i}"]
                               for i in range(len(saved.files))])
        return model

    return load_start, info


# ---------------------------------------------------------------------------
# Training, shared by every method.


def token_arrays(model, texts):
    """`(x, y, sample_weight)` of `texts` from the model's preprocessor."""
    parts = list(language.token_batches(model, texts, batch_size=256))
    x = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    return (x, np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def epoch_order(n, epochs, batch_size, seed):
    """Indices of `epochs` permutations of range(n), cut to whole batches."""
    rng = np.random.default_rng([seed, 2])
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    steps = max(1, len(order) // batch_size)
    if len(order) < batch_size:  # fewer texts than one batch: repeat them
        order = np.resize(order, batch_size)
    return order[: steps * batch_size]


def train(model, optimizer, texts, args, seed, callbacks=(), remember=None,
          epochs=None):
    """Compiles `optimizer` and fits `texts`; returns the number of steps.

    Args:
        model: a causal LM with its preprocessor.
        optimizer: a Keras optimizer (a keras_fip one included).
        texts: the training texts (NumPy string array).
        args: the flags (`batch_size`, `epochs`, `verbose`).
        seed: seeds the order of the texts.
        callbacks: Keras callbacks for `fit`.
        remember: `remember(model)` runs after compile, before training.
        epochs: passes over `texts` (default `args.epochs`).

    The loss is next-token cross-entropy over real (unpadded) positions,
    the preprocessor's `sample_weight`. `model.bench_steps` adds up the
    steps of every call.
    """
    epochs = args.epochs if epochs is None else epochs
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True),
                  weighted_metrics=[])
    if remember is not None:
        remember(model)
    x, y, weight = token_arrays(model, texts)
    order = epoch_order(len(y), epochs, args.batch_size, seed)
    keras.utils.set_random_seed(seed)
    keras.Model.fit(model, {k: v[order] for k, v in x.items()}, y[order],
                    sample_weight=weight[order], batch_size=args.batch_size,
                    epochs=1, shuffle=False, callbacks=list(callbacks),
                    verbose=args.verbose)
    steps = len(order) // args.batch_size
    model.bench_steps = getattr(model, "bench_steps", 0) + steps
    return steps


# ---------------------------------------------------------------------------
# Methods.


def adapt_finetune(load_start, data, knob, seed, args):
    """Adam on every weight, on B's training glosses."""
    model = load_start()
    train(model, keras.optimizers.Adam(args.learning_rate), data["b_train"],
          args, seed)
    return model


def adapt_lora(load_start, data, knob, seed, args):
    """LoRA of rank `knob` on the attention query and value projections."""
    model = load_start()
    model.backbone.enable_lora(int(knob))
    train(model, keras.optimizers.Adam(args.lora_learning_rate),
          data["b_train"], args, seed)
    return model


def replay_mix(b_texts, memory, share, seed):
    """B's texts and memory draws that make a share `share` of the result.

    `round(share / (1 − share) · |B|)` draws cycle through shuffled copies
    of the memory; the result is in that order (`train` shuffles it).
    """
    if not 0 <= share < 1:
        raise ValueError(f"replay share must lie in [0, 1); got {share!r}")
    draws = int(round(share / (1 - share) * len(b_texts)))
    rng = np.random.default_rng([seed, 3])
    cycles = -(-draws // len(memory)) if draws else 0
    picked = np.concatenate([memory[rng.permutation(len(memory))]
                             for _ in range(cycles)] or [memory[:0]])
    return np.concatenate([b_texts, picked[:draws]])


def adapt_replay(load_start, data, knob, seed, args):
    """Fine-tuning on B mixed with replayed A memory (share `knob`)."""
    model = load_start()
    texts = replay_mix(data["b_train"], data["memory"], float(knob), seed)
    train(model, keras.optimizers.Adam(args.learning_rate), texts, args,
          seed)
    return model


def adapt_joint(load_start, data, knob, seed, args):
    """Fine-tuning from the starting model on A and B training together."""
    model = load_start()
    texts = np.concatenate([data["a_train"], data["b_train"]])
    train(model, keras.optimizers.Adam(args.learning_rate), texts, args,
          seed)
    return model


def _remember_memory(data):
    """The hook that puts the A memory into an optimizer's memory."""
    return lambda model: keras_fip.callbacks.remember_task(
        model, 0, data["memory"])


def _fip(model, data, beta, seed, args, learning_rate, storage="auto",
         top_k=32):
    optimizer = keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.Adam(learning_rate), beta=beta,
        memory_batch_size=args.memory_batch_size,
        memory=keras_fip.Memory(len(data["memory"]), seed=seed,
                                anchor_storage=storage, top_k=top_k))
    train(model, optimizer, data["b_train"], args, seed,
          callbacks=[keras_fip.callbacks.TaskBoundary(1, data["b_train"])],
          remember=_remember_memory(data))
    model.bench_memory = {"storage": optimizer.memory.anchor_storage,
                          "bytes": optimizer.memory.nbytes}
    return model


def adapt_fip(load_start, data, knob, seed, args):
    """FIP (library defaults but β) with the A memory, Adam at fine-tuning's
    learning rate; knob = β."""
    return _fip(load_start(), data, float(knob), seed, args,
                args.learning_rate)


def adapt_fip_lora(load_start, data, knob, seed, args):
    """FIP in the adapters' subspace: `enable_lora(--fip-lora-rank)`, then
    FIP (the `"auto"` memory: outputs at the default size) at LoRA's
    learning rate; knob = β."""
    model = load_start()
    model.backbone.enable_lora(args.fip_lora_rank)
    return _fip(model, data, float(knob), seed, args,
                args.lora_learning_rate)


def adapt_fip_top_k(load_start, data, knob, seed, args):
    """FIP at β = `--top-k-beta` with top-k anchors; knob = k."""
    return _fip(load_start(), data, args.top_k_beta, seed, args,
                args.learning_rate, storage="top_k", top_k=int(knob))


def adapt_kl(load_start, data, knob, seed, args):
    """Fine-tuning plus λ KL(start ‖ model) on B's own inputs
    (`ReferenceKLOptimizer`, a snapshot of the starting weights); knob = λ.
    """
    model = load_start()
    optimizer = keras_fip.baselines.ReferenceKLOptimizer(
        keras.optimizers.Adam(args.learning_rate), weight=float(knob),
        memory_batch_size=args.memory_batch_size,
        memory=keras_fip.Memory(len(data["b_train"]), seed=seed,
                                anchor_storage="snapshot"))
    train(model, optimizer, data["b_train"], args, seed,
          callbacks=[keras_fip.callbacks.TaskBoundary(1, data["b_train"])],
          remember=_remember_memory(data))
    return model


METHODS = {"finetune": adapt_finetune, "lora": adapt_lora,
           "replay": adapt_replay, "kl": adapt_kl, "fip": adapt_fip,
           "fip-lora": adapt_fip_lora, "fip-top-k": adapt_fip_top_k,
           "joint": adapt_joint}
KNOBS = {"finetune": [None], "lora": [4, 16], "replay": [0.1, 0.25, 0.5],
         "kl": [0.1, 0.3, 1.0, 3.0], "fip": [1.0, 3.0, 10.0, 30.0],
         "fip-lora": [3.0, 30.0, 300.0], "fip-top-k": [32],
         "joint": [None]}
# Run on request (`--methods ... fip-top-k`): the anchor-storage variant.
DEFAULT_METHODS = [m for m in METHODS if m != "fip-top-k"]


# ---------------------------------------------------------------------------
# Evaluation, table and plot.


def evaluate(model, data):
    return {"a": language.token_metrics(model, data["a_eval"]),
            "b": language.token_metrics(model, data["b_eval"])}


def samples(model, args):
    prompts = list(A_PROMPTS + B_PROMPTS)
    texts = language.generate_samples(model, prompts,
                                      max_length=args.sample_length)
    return dict(zip(prompts, texts))


def label(method, knob):
    return method if knob is None else f"{method}-{knob}"


def summarize(results):
    """Means and standard deviations over seeds, per (method, knob)."""
    groups = {}
    for run in results["runs"]:
        groups.setdefault((run["method"], json.dumps(run["knob"])), []
                          ).append(run)
    starts = results["start"]
    rows = []
    for (method, knob), runs in groups.items():
        def stat(values):
            values = np.asarray(values, "float64")
            return [float(values.mean()), float(values.std())]
        rise = [r["a"]["perplexity"] - starts[str(r["seed"])]["a"][
            "perplexity"] for r in runs]
        rows.append({
            "method": method, "knob": json.loads(knob), "seeds": len(runs),
            "a_perplexity": stat([r["a"]["perplexity"] for r in runs]),
            "a_perplexity_rise": stat(rise),
            "a_accuracy": stat([r["a"]["accuracy"] for r in runs]),
            "b_perplexity": stat([r["b"]["perplexity"] for r in runs]),
            "b_accuracy": stat([r["b"]["accuracy"] for r in runs]),
            "seconds": stat([r["seconds"] for r in runs]),
            "steps": stat([r["steps"] for r in runs])})
    return rows


def table(results):
    def cell(pair, digits):
        return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    start = [s for s in results["start"].values()]
    a0 = np.mean([s["a"]["perplexity"] for s in start])
    b0 = np.mean([s["b"]["perplexity"] for s in start])
    lines = [
        f"GPT-2 nouns → verbs ({results['backend']}, {results['eval']}; "
        f"{len(start)} seeds; uniform perplexity "
        f"{results['vocabulary_size']})",
        f"starting model: A perplexity {a0:.2f}, B perplexity {b0:.2f}, "
        f"A accuracy {np.mean([s['a']['accuracy'] for s in start]):.3f}, "
        f"B accuracy {np.mean([s['b']['accuracy'] for s in start]):.3f}",
        "pretraining: " + ", ".join(
            f"seed {seed} {info['seconds']:.0f} s ({info['steps']} steps"
            + (", cached)" if info.get("cached") else ")")
            for seed, info in results["pretraining"].items()),
        "",
        "| method | A ppl | A ppl rise | A acc | B ppl | B acc | s | steps |",
        "|---|---|---|---|---|---|---|---|"]
    for row in results["summary"]:
        lines.append(
            f"| {label(row['method'], row['knob'])} | "
            f"{cell(row['a_perplexity'], 2)} | "
            f"{cell(row['a_perplexity_rise'], 2)} | "
            f"{cell(row['a_accuracy'], 3)} | {cell(row['b_perplexity'], 2)} "
            f"| {cell(row['b_accuracy'], 3)} | {row['seconds'][0]:.1f} | "
            f"{row['steps'][0]:.0f} |")
    return "\n".join(lines)


def plot(results, path):
    """B perplexity (x) against the rise of A perplexity (y), per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    by_method = {}
    for row in results["summary"]:
        by_method.setdefault(row["method"], []).append(row)
    for method, rows in by_method.items():
        x = [r["b_perplexity"][0] for r in rows]
        y = [r["a_perplexity_rise"][0] for r in rows]
        axis.errorbar(x, y, xerr=[r["b_perplexity"][1] for r in rows],
                      yerr=[r["a_perplexity_rise"][1] for r in rows],
                      marker="o", capsize=2, label=method)
        for r, xi, yi in zip(rows, x, y):
            if r["knob"] is not None:
                axis.annotate(str(r["knob"]), (xi, yi), fontsize=7,
                              xytext=(3, 3), textcoords="offset points")
    start = list(results["start"].values())
    axis.plot([np.mean([s["b"]["perplexity"] for s in start])], [0.0], "k*",
              markersize=10, label="start (pretrained on A)")
    axis.axhline(0.0, color="grey", lw=0.5)
    axis.set_xlabel(f"B (verb glosses) perplexity, {results['eval']}")
    axis.set_ylabel("A (noun glosses) perplexity − start's")
    axis.set_title("Learning B against forgetting A (lower-left is better)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------------
# Command line.


def _knob_value(text):
    if text.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                        help=f"any of {list(METHODS)}")
    parser.add_argument("--knob", action="append", default=[],
                        metavar="METHOD=V1,V2",
                        help="override a method's sweep, e.g. lora=4,8")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--full", action="store_true",
                        help="a 4-layer GPT-2 of width 128 on 3x the data")
    parser.add_argument("--eval", choices=["holdout", "test"],
                        default="holdout")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2,
                        help="passes over B's training glosses")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="Adam of finetune, replay and joint")
    parser.add_argument("--lora-learning-rate", type=float, default=1e-2)
    parser.add_argument("--pretrain-epochs", type=int, default=12)
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3)
    parser.add_argument("--memory", type=int, default=200,
                        help="A training glosses in the memory")
    parser.add_argument("--memory-batch-size", type=int, default=16,
                        help="memory sequences per step (fip, fip-lora, kl)")
    parser.add_argument("--fip-lora-rank", type=int, default=16,
                        help="the LoRA rank of fip-lora")
    parser.add_argument("--top-k-beta", type=float, default=10.0,
                        help="β of fip-top-k")
    parser.add_argument("--sample-length", type=int, default=24,
                        help="tokens of each greedy sample, prompt included")
    for name in SIZES["default"]:
        parser.add_argument("--" + name.replace("_", "-"), type=int,
                            default=None, help="(overrides the size)")
    parser.add_argument("--cache", default="results/causal_lm")
    parser.add_argument("--out", default=None,
                        help="JSON (default results/causal_lm/"
                             "<eval>_<backend>.json)")
    parser.add_argument("--plot", default=None,
                        help="frontier PNG (default: --out with .png)")
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    size = SIZES["full" if args.full else "default"]
    for name, value in size.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    args.knobs = {m: list(KNOBS.get(m, [None])) for m in args.methods}
    for item in args.knob:
        method, _, values = item.partition("=")
        if method not in METHODS or not values:
            parser.error(f"--knob {item!r}: expected METHOD=V1,V2 with "
                         f"METHOD in {list(METHODS)}")
        args.knobs[method] = [_knob_value(v) for v in values.split(",")]
    for name in ("epochs", "batch_size", "pretrain_epochs", "memory",
                 "memory_batch_size", "fip_lora_rank",
                 "merges", "a_train", "b_train", "holdout", "sample_length",
                 *MODEL_KEYS):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.eval == "test" and args.test < 1:
        parser.error("--eval test needs --test >= 1")
    backend = keras.backend.backend()
    args.out = args.out or os.path.join("results", "causal_lm",
                                        f"{args.eval}_{backend}.json")
    args.plot = args.plot or os.path.splitext(args.out)[0] + ".png"
    return args


def main(argv=None):
    args = parse_args(argv)
    results = {"backend": keras.backend.backend(), "keras": keras.__version__,
               "eval": args.eval,
               "settings": {k: v for k, v in vars(args).items()
                            if k != "knob"},
               "start": {}, "pretraining": {}, "runs": [], "samples": {}}
    began = time.time()
    tokenizer = None
    for seed in args.seeds:
        data = load_data(args, seed)
        tokenizer = tokenizer or load_tokenizer(args, data)
        results["vocabulary_size"] = tokenizer.vocabulary_size()
        load_start, info = pretrain(tokenizer, data, args, seed)
        results["pretraining"][str(seed)] = info
        start = load_start()
        results["start"][str(seed)] = evaluate(start, data)
        print(f"seed {seed} start: A ppl "
              f"{results['start'][str(seed)]['a']['perplexity']:.2f}, B ppl "
              f"{results['start'][str(seed)]['b']['perplexity']:.2f}",
              flush=True)
        if seed == args.seeds[0]:
            results["samples"]["start"] = samples(start, args)
        for method in args.methods:
            knobs = args.knobs[method]
            for knob in knobs:
                begin = time.time()
                model = METHODS[method](load_start, data, knob, seed, args)
                seconds = time.time() - begin
                run = {"method": method, "knob": knob, "seed": seed,
                       "seconds": seconds,
                       "steps": int(getattr(model, "bench_steps", 0)),
                       "memory": getattr(model, "bench_memory", None),
                       **evaluate(model, data)}
                results["runs"].append(run)
                print(f"  {label(method, knob)}: {seconds:.1f} s, "
                      f"{run['steps']} steps; A ppl "
                      f"{run['a']['perplexity']:.2f} acc "
                      f"{run['a']['accuracy']:.3f}; B ppl "
                      f"{run['b']['perplexity']:.2f} acc "
                      f"{run['b']['accuracy']:.3f}", flush=True)
                if seed == args.seeds[0] and knob == knobs[len(knobs) // 2]:
                    results["samples"][label(method, knob)] = samples(
                        model, args)
    results["seconds"] = time.time() - began
    results["summary"] = summarize(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print()
    print(table(results))
    print()
    for name, texts in results["samples"].items():
        print(f"{name}:")
        for text in texts.values():
            print(f"    {text}")
    plot(results, args.plot)
    print(f"\ntotal {results['seconds'] / 60:.1f} min; wrote {args.out} "
          f"and {args.plot}")


if __name__ == "__main__":
    main()
