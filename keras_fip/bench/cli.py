"""The `keras-fip` command. `keras-fip bench --help` lists the options.

    keras-fip bench            # every stream and method, 3 seeds
    keras-fip bench --quick    # 1 seed, 1 epoch per task
    KERAS_BACKEND=jax keras-fip bench --streams split-digits --methods fip er

Results go to `--out` (default `results/bench_<backend>`): `results.json`
(every number with its config, seed, backend, versions and wall time),
`results.md` (the table) and PNG plots. The results are written only once
every run has finished, so a failed or interrupted run leaves no
half-written results; they are written before the plots, so a missing or
failing plotting package never loses them.

The digits streams need scikit-learn and the plots need matplotlib (both in
the `bench` extra: `pip install ".[jax,bench]"` from a clone); the WordNet
streams need Debian's `wordnet-base`. What the chosen streams need is checked
before anything runs.
"""

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _ArgumentError(message)


def _parser():
    # Names only: `--help` must not import Keras (and so a backend).
    from keras_fip.bench.names import METHODS
    from keras_fip.bench.names import STREAMS
    from keras_fip.bench.names import VARIANTS

    parser = _Parser(prog="keras-fip", description="keras_fip tools.")
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser(
        "bench", help="compare continual-learning methods on task streams")
    bench.add_argument("--streams", nargs="+", default=list(STREAMS),
                       metavar="STREAM",
                       help=f"streams to run: {', '.join(STREAMS)}")
    bench.add_argument("--methods", nargs="+", default=list(METHODS),
                       metavar="METHOD",
                       help=f"methods to run: {', '.join(METHODS)}; "
                       f"opt-in variants: {', '.join(VARIANTS)}")
    bench.add_argument("--seeds", type=int, default=3,
                       help="number of seeds (0, 1, ...); default 3")
    bench.add_argument("--epochs", type=int, default=None,
                       help="epochs per task (default: the stream's own)")
    bench.add_argument("--quick", action="store_true",
                       help="1 seed and 1 epoch per task (a smoke run)")
    bench.add_argument("--out", default=None,
                       help="output folder (default results/bench_<backend>)")
    bench.add_argument("--no-plots", action="store_true")
    return parser


def _check(args):
    from keras_fip.bench.names import METHODS
    from keras_fip.bench.names import STREAMS
    from keras_fip.bench.names import VARIANTS

    for kind, chosen, known in (("stream", args.streams, STREAMS),
                                ("method", args.methods,
                                 METHODS + VARIANTS)):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise _ArgumentError(
                f"unknown {kind} {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(known)}")
    if args.seeds < 1:
        raise _ArgumentError(f"--seeds must be >= 1; got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        raise _ArgumentError(f"--epochs must be >= 1; got {args.epochs}")
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise _ArgumentError(f"--out {args.out} exists and is not a folder")
    existing = out
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise _ArgumentError(
            f"--out {args.out} is not writable: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _ArgumentError(
            f"--out {args.out} is not writable (no write access to "
            f"{existing})")


class _MissingRequirement(Exception):
    pass


BENCH_EXTRA = 'pip install ".[bench]" (in a clone of keras_fip)'
DIGITS_STREAMS = ("split-digits", "permuted-digits")
WORDNET_STREAMS = ("split-wordnet", "split-wordnet-b")


def _check_requirements(streams):
    """Raises `_MissingRequirement` naming what the chosen streams need and
    how to install it, before any run starts."""
    digits = [s for s in streams if s in DIGITS_STREAMS]
    if digits:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise _MissingRequirement(
                f"the {', '.join(digits)} stream{'s' * (len(digits) > 1)} "
                f"need{'s' * (len(digits) == 1)} scikit-learn (its 8x8 "
                f"digits), which is not installed: {BENCH_EXTRA}, or pip "
                "install scikit-learn") from None
    wordnet = [s for s in streams if s in WORDNET_STREAMS]
    if wordnet:
        from keras_fip.datasets.wordnet import WORDNET_NOUNS

        if not os.path.exists(WORDNET_NOUNS):
            raise _MissingRequirement(
                f"the {', '.join(wordnet)} stream{'s' * (len(wordnet) > 1)} "
                f"need{'s' * (len(wordnet) == 1)} Debian's WordNet data "
                f"({WORDNET_NOUNS} is missing): apt-get install wordnet-base")


def _can_plot():
    """Whether matplotlib is installed (looked up, not imported)."""
    return importlib.util.find_spec("matplotlib") is not None


def _no_plots_note(out):
    return (f"keras-fip: note: no plots: matplotlib is not installed; the "
            f"results are saved in {out} (results.json, results.md). For the "
            f"plots, {BENCH_EXTRA} or pip install matplotlib, and run again.")


def _versions():
    import keras
    import numpy

    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "numpy": numpy.__version__}
    backend = keras.backend.backend()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    try:
        versions[backend] = __import__(module[backend]).__version__
    except (KeyError, ImportError):
        pass
    import keras_fip

    versions["keras_fip"] = keras_fip.__version__
    return versions


def bench(args):
    import keras

    from keras_fip.bench import report
    from keras_fip.bench.registry import STREAMS
    from keras_fip.bench.runner import run

    backend = keras.backend.backend()
    seeds = 1 if args.quick else args.seeds
    plan = [(s, m, seed) for s in args.streams for seed in range(seeds)
            for m in args.methods]
    print(f"keras-fip bench on {backend}: {len(args.streams)} streams × "
          f"{len(args.methods)} methods × {seeds} seeds = {len(plan)} runs")
    plot = not args.no_plots and _can_plot()
    if not args.no_plots and not plot:
        print("keras-fip: note: matplotlib is not installed, so this run "
              "draws no plots (results.json and results.md are written as "
              f"usual); {BENCH_EXTRA} or pip install matplotlib adds them",
              file=sys.stderr)
    start = time.time()
    streams = {name: STREAMS[name].load() for name in args.streams}
    progress = keras.utils.Progbar(len(plan), unit_name="run")
    runs = []
    for i, (name, method, seed) in enumerate(plan):
        spec = STREAMS[name]
        epochs = args.epochs or (spec.quick_epochs if args.quick
                                 else spec.epochs)
        record = run(name, streams[name], method, seed, epochs)
        runs.append(record)
        progress.update(i + 1, [("avg_acc", record["average_accuracy"])])
    summary = report.summarize(runs)
    table = report.markdown(summary, backend, quick=args.quick)
    config = {k: v for k, v in vars(args).items() if k != "command"}
    config.update(seeds=seeds, epochs_per_task={
        name: args.epochs or (STREAMS[name].quick_epochs if args.quick
                              else STREAMS[name].epochs)
        for name in args.streams})
    results = {
        "config": config, "quick": args.quick,
        "note": report.QUICK_MARK if args.quick else None,
        "backend": backend, "versions": _versions(),
        "wall_seconds": time.time() - start,
        "definitions": report.DEFINITIONS,
        "files": ["results.json", "results.md"],
        "summary": summary, "runs": runs,
    }
    # The results first, in one move: the plots come after them and can
    # neither lose them nor leave them half written.
    os.makedirs(args.out, exist_ok=True)
    _remove_previous_run(args.out)
    _write_into(args.out, {"results.md": table + "\n",
                           "results.json": _json(results)})
    print("\n" + table)
    if plot:
        try:
            plots = _plot_into(args.out, runs, summary, args.quick)
        except ImportError as error:
            print(f"keras-fip: note: no plots ({error}); the results are "
                  f"saved in {args.out} (results.json, results.md). For the "
                  f"plots, {BENCH_EXTRA}.", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"keras-fip: interrupted while plotting; the results are "
                  f"saved in {args.out} (results.json, results.md)",
                  file=sys.stderr)
            return 130
        except Exception:
            print(f"keras-fip: plotting failed; the results are saved in "
                  f"{args.out} (results.json, results.md)", file=sys.stderr)
            raise
        else:
            results["files"] += plots
            _write_into(args.out, {"results.json": _json(results)})
    elif not args.no_plots:
        print(_no_plots_note(args.out), file=sys.stderr)
    print(f"wrote {args.out} in {time.time() - start:.0f} s")
    return 0


def _json(results):
    return json.dumps(results, indent=1)


def _write_into(out, texts):
    """Writes `{name: text}` into `out`, each file whole or not at all."""
    staging = tempfile.mkdtemp(prefix=".bench-", dir=out)
    try:
        for name, text in texts.items():
            with open(os.path.join(staging, name), "w") as f:
                f.write(text)
        for name in texts:
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plot_into(out, runs, summary, quick):
    """Draws the plots into `out`; returns their file names."""
    from keras_fip.bench import report

    staging = tempfile.mkdtemp(prefix=".bench-", dir=out)
    try:
        names = [os.path.basename(p) for p in
                 report.plots(runs, summary, staging, quick=quick)]
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


def _remove_previous_run(out):
    """Deletes every file an earlier run wrote into `out` (its manifest,
    or what a run without one writes), so no stale plot stays beside new
    results."""
    previous = os.path.join(out, "results.json")
    names = {"results.json", "results.md"}
    try:
        with open(previous) as f:
            names |= set(json.load(f).get("files") or [])
    except (OSError, ValueError):
        pass
    names |= {n for n in os.listdir(out)
              if n.endswith(("_matrices.png", "_curves.png"))}
    for name in names:
        path = os.path.join(out, os.path.basename(name))
        if os.path.isfile(path):
            os.remove(path)


def main(argv=None):
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command != "bench":
            parser.print_help()
            return 2
        if args.out is None:
            import keras

            args.out = os.path.join("results",
                                    f"bench_{keras.backend.backend()}")
        _check(args)
    except _ArgumentError as error:
        print(f"keras-fip: error: {error}", file=sys.stderr)
        return 2
    try:
        _check_requirements(args.streams)
    except _MissingRequirement as error:
        print(f"keras-fip: error: {error}", file=sys.stderr)
        return 1
    try:
        return bench(args)
    except KeyboardInterrupt:
        print(f"keras-fip: interrupted; nothing was written ({args.out} is "
              "as it was)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
