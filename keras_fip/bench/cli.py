"""The `keras-fip` command. `keras-fip bench --help` lists the options.

    keras-fip bench                                   # every stream and method, 3 seeds
    keras-fip bench --quick                           # 1 seed, 1 epoch per task
    KERAS_BACKEND=jax keras-fip bench --streams split-digits --methods fip er

Results go to `--out` (default `results/bench_<backend>`): `results.json`
(every number with its config, seed, backend, versions and wall time),
`results.md` (the table) and PNG plots. They are written only once every run
has finished, so a failed or interrupted run leaves no half-written results.
"""

import argparse
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
    os.makedirs(args.out, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".bench-", dir=args.out)
    try:
        written = ["results.json", "results.md"]
        with open(os.path.join(staging, "results.md"), "w") as f:
            f.write(table + "\n")
        if not args.no_plots:
            written += [os.path.basename(p) for p in
                        report.plots(runs, summary, staging,
                                     quick=args.quick)]
        with open(os.path.join(staging, "results.json"), "w") as f:
            json.dump({
                "config": config, "quick": args.quick,
                "note": report.QUICK_MARK if args.quick else None,
                "backend": backend, "versions": _versions(),
                "wall_seconds": time.time() - start,
                "definitions": report.DEFINITIONS,
                "files": written,
                "summary": summary, "runs": runs,
            }, f, indent=1)
        _remove_previous_run(args.out)
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name),
                       os.path.join(args.out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print("\n" + table)
    print(f"wrote {args.out} in {time.time() - start:.0f} s")
    return 0


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
        return bench(args)
    except KeyboardInterrupt:
        print(f"keras-fip: interrupted; nothing was written ({args.out} is "
              "as it was)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
