"""How far top-k anchors are from full anchors on a real adaptation.

The top-k anchor storage (`keras_fip.anchor_storage`) keeps, per token, the
anchor's k most likely next tokens and their log-probabilities, and takes
the distance between coarse-grained (k + 1)-bin distributions; merging bins
never increases a divergence, so D_top-k ≤ D_full. This script measures the
gap where it matters: the starting GPT-2 of `causal_lm_glosses.py`
(pretrained on noun glosses) is the anchor, and the network after
fine-tuning on verb glosses (the largest move of any method there) is the
current network; both are run on the 200 memory glosses of A. For each k it
reports, over the memory's real tokens, the mean anchor tail mass q_tail,
the per-sequence distances (token means) D_full and D_top-k for KL and
Bhattacharyya, their relative gap 1 − D_top-k / D_full, the stated bound,
the cosine between the two distances' gradients in the logits, and the
bytes of the anchors against the full outputs'.

    KERAS_BACKEND=jax python benchmarks/top_k_error.py
    python benchmarks/top_k_error.py --ks 4 16 64 --seed 1

It reuses the driver's cached tokenizer and starting model (or builds them).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import causal_lm_glosses as driver  # noqa: E402
from keras_fip import anchor_storage  # noqa: E402
from keras_fip import backend as fip_backend  # noqa: E402
from keras_fip import distances  # noqa: E402
from keras_fip.arrays import as_numpy  # noqa: E402
from keras_fip.evaluation import model_inputs  # noqa: E402


def logits(model, x, batch_size=50):
    n = len(x["token_ids"])
    return np.concatenate([
        as_numpy(model({k: v[i: i + batch_size] for k, v in x.items()},
                       training=False))
        for i in range(0, n, batch_size)])


def sequence_distance(per_token, mask):
    return as_numpy(distances.per_sample(ops.convert_to_tensor(per_token),
                                         mask, "mean"))


def distance_and_grad(name, current, anchor, mask, k):
    """Per-sequence D (full or top-k) and its gradient in the logits."""
    if k is None:
        def fn(values):
            return distances.get(name)(values[0], anchor)
    else:
        indices, log_q = anchor_storage.encode_top_k(anchor, k)

        def fn(values):
            p, q = anchor_storage.coarse_grained(values[0], indices, log_q)
            return distances.get(name)(p, q, from_logits=False)

    def total(values):
        return ops.sum(distances.per_sample(fn(values), mask, "mean"))

    per_sequence = sequence_distance(as_numpy(fn([current])), mask)
    _, grads = fip_backend.value_and_grad(
        total, [ops.convert_to_tensor(current)])
    return per_sequence, as_numpy(grads[0])


def tail_mass(anchor, k, mask):
    indices, log_q = anchor_storage.encode_top_k(anchor, k)
    tail = 1.0 - np.exp(log_q.astype("float64")).sum(-1)
    return float(tail[mask].mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", type=int, nargs="+",
                        default=[4, 16, 32, 64, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="results/causal_lm")
    parser.add_argument("--out", default="results/causal_lm/top_k_error.json")
    args = parser.parse_args(argv)
    run = driver.parse_args(["--cache", args.cache, "--seeds", str(args.seed)])
    data = driver.load_data(run, args.seed)
    tokenizer = driver.load_tokenizer(run, data)
    load_start, _ = driver.pretrain(tokenizer, data, run, args.seed)
    start = load_start()
    moved = driver.adapt_finetune(load_start, data, None, args.seed, run)
    x = model_inputs(start, data["memory"])
    mask = np.asarray(x["padding_mask"]).astype(bool)
    anchor = logits(start, x)
    current = logits(moved, x)
    vocabulary = anchor.shape[-1]
    rows = []
    full = {name: distance_and_grad(name, current, anchor, mask, None)
            for name in ("kl", "bhattacharyya")}
    for k in args.ks:
        row = {"k": k, "q_tail": tail_mass(anchor, k, mask),
               "anchor_bytes_ratio": 8 * k / (4 * vocabulary)}
        for name, (d_full, g_full) in full.items():
            d_top, g_top = distance_and_grad(name, current, anchor, mask, k)
            g_full_flat, g_top_flat = g_full.reshape(-1), g_top.reshape(-1)
            cosine = float(g_full_flat @ g_top_flat / (
                np.linalg.norm(g_full_flat) * np.linalg.norm(g_top_flat)))
            row[name] = {"full": float(d_full.mean()),
                         "top_k": float(d_top.mean()),
                         "relative_gap": float(1 - d_top.mean()
                                               / d_full.mean()),
                         "min_gap": float((d_full - d_top).min()),
                         "gradient_cosine": cosine}
        rows.append(row)
        print(f"k={k:4d}: q_tail {row['q_tail']:.3f}, anchors "
              f"{row['anchor_bytes_ratio']:.3f}x the outputs'; KL "
              f"{row['kl']['top_k']:.4f} of {row['kl']['full']:.4f} "
              f"(gap {row['kl']['relative_gap']:.1%}, grad cos "
              f"{row['kl']['gradient_cosine']:.3f}); Bhattacharyya "
              f"{row['bhattacharyya']['top_k']:.4f} of "
              f"{row['bhattacharyya']['full']:.4f} (gap "
              f"{row['bhattacharyya']['relative_gap']:.1%}, grad cos "
              f"{row['bhattacharyya']['gradient_cosine']:.3f})", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"backend": keras.backend.backend(), "seed": args.seed,
                   "vocabulary": vocabulary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
