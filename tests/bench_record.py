"""Re-runs `keras-fip bench` runs and compares them with the committed record.

`tests/data/bench_record.json` holds, per backend, the accuracy matrices of
one seed of every bench method on Split-digits and Split-WordNet, recorded
with keras_fip 0.1.0 (before the step-pipeline rewrite of 0.2.0): `quick`
runs (1 epoch per task, checked by the large test tier) and `full` runs (the
streams' own epochs, checked by running this file):

    KERAS_BACKEND=torch python tests/bench_record.py --mode full

A matrix is compared in test samples (an entry R[t, k] is the share of
task k's test samples right after task t): `exact_part` must equal the
record, the rest lie within `TOLERANCE` of it, a share of the task's test
samples (the test's docstring says why). `--nudge` measures that
tolerance: it moves every initial weight by one float32 ulp
(`np.nextafter`, what a reordered float32 sum does to a result) and
reports how far the matrices move:

    KERAS_BACKEND=jax python tests/bench_record.py --mode quick --nudge
"""

import argparse
import dataclasses
import json
import os

import numpy as np

RECORD = os.path.join(os.path.dirname(__file__), "data", "bench_record.json")

# Bench names whose settings moved to another name since the record: since
# 0.3.0 `fip`, `derpp` and `er` are the defaults chosen on validation
# splits, and the 0.1-0.2 settings are `fip-reference`, `derpp-0.2` and
# `er-0.2`.
RENAMED = {"fip": "fip-reference", "derpp": "derpp-0.2", "er": "er-0.2"}

# Methods that train with plain Adam (no keras_fip step): their arithmetic
# is Keras's, so their whole matrix is exact.
PLAIN = ("finetune", "joint")

# The share of a task's test samples an entry outside `exact_part` may
# differ by (tests/test_bench_record.py gives the measurement behind it).
TOLERANCE = 0.025


def recorded(mode, backend):
    """`{(stream, method): (epochs, seed, matrix)}` for one mode/backend."""
    with open(RECORD) as f:
        runs = json.load(f)["runs"]
    out = {}
    for key, run in runs.items():
        run_mode, run_backend, stream, method = key.split("/")
        if (run_mode, run_backend) == (mode, backend):
            out[stream, method] = (run["epochs_per_task"], run["seed"],
                                   np.array(run["matrix"]))
    return out


def load(stream_name, streams):
    """The stream `stream_name`, loaded once into the cache `streams`."""
    from keras_fip.bench.registry import STREAMS

    if stream_name not in streams:
        streams[stream_name] = STREAMS[stream_name].load()
    return streams[stream_name]


def rerun(stream_name, method, epochs, seed, streams, nudge=False):
    """The accuracy matrix of one bench run with the current code.

    Args:
        stream_name: a stream of `keras_fip.bench.registry.STREAMS`.
        method: a method's name as the record spells it.
        epochs: epochs per task.
        seed: the run's seed.
        streams: a dict caching loaded streams by name.
        nudge: move every initial weight by one float32 ulp toward +inf.
    """
    from keras_fip.bench import registry
    from keras_fip.bench.runner import run

    stream = load(stream_name, streams)
    spec = registry.STREAMS[stream_name]
    if nudge:
        registry.STREAMS[stream_name] = dataclasses.replace(
            spec, model=lambda s: _nudged(spec.model(s)))
    try:
        return np.array(run(stream_name, stream, RENAMED.get(method, method),
                            seed, epochs)["matrix"])
    finally:
        registry.STREAMS[stream_name] = spec


def _nudged(model):
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        if value.dtype == np.float32:
            variable.assign(np.nextafter(value, np.float32(np.inf)))
    return model


def column_sizes(stream):
    """Test samples per task: the denominators of a matrix's columns."""
    return np.array([len(y) for _, y in stream.test_sets()])


def exact_part(method, matrix):
    """Where `matrix` must equal the record: a boolean mask.

    The whole matrix for the `PLAIN` methods; otherwise the first row: on
    the first task no memory or penalty is active yet, so every method
    steps exactly as its inner Adam.
    """
    mask = np.zeros(matrix.shape, bool)
    if method in PLAIN:
        mask[:] = True
    else:
        mask[0] = True
    return mask


def gaps(method, got, want, sizes):
    """The largest differences `(exact, elsewhere)`.

    `exact`: test samples that moved where `exact_part` holds; `elsewhere`:
    the largest share of a task's test samples that moved elsewhere.

    Args:
        method: the method's name as the record spells it.
        got: the re-run matrix.
        want: the recorded matrix.
        sizes: test samples per task (`column_sizes`).
    """
    # An accuracy is (right answers) / (test samples): the difference in
    # right answers is an integer, rounded off float error.
    samples = np.rint(np.abs(got - want) * sizes[None, :]).astype(int)
    mask = exact_part(method, want)
    shares = samples / sizes[None, :]
    return (int(samples[mask].max(initial=0)),
            float(shares[~mask].max(initial=0.0)))


def main():
    import keras

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--mode", choices=("quick", "full"), default="full")
    parser.add_argument("--nudge", action="store_true",
                        help="start from weights moved by one float32 ulp")
    args = parser.parse_args()
    backend = keras.backend.backend()
    streams, worst, failed = {}, [0, 0.0, 0.0], []
    for (stream, method), (epochs, seed, want) in sorted(
            recorded(args.mode, backend).items()):
        got = rerun(stream, method, epochs, seed, streams, nudge=args.nudge)
        exact, elsewhere = gaps(method, got, want,
                                column_sizes(load(stream, streams)))
        sizes = column_sizes(load(stream, streams))
        anywhere = float((np.rint(np.abs(got - want) * sizes) / sizes).max())
        worst = [max(worst[0], exact), max(worst[1], elsewhere),
                 max(worst[2], anywhere)]
        if exact or elsewhere > TOLERANCE:
            failed.append(f"{stream}/{method}")
        print(f"{backend:10s} {stream:14s} {method:9s} test samples moved: "
              f"exact part {exact}, elsewhere {elsewhere:.1%} of a task; "
              f"average accuracy {want[-1].mean():.4f} -> {got[-1].mean():.4f}",
              flush=True)
    print(f"{backend}: largest difference {worst[0]} test samples where "
          f"exact, {worst[1]:.1%} of a task elsewhere (tolerance "
          f"{TOLERANCE:.1%}), {worst[2]:.1%} of a task anywhere; outside "
          f"the record: {failed or 'none'}")
    return 1 if failed and not args.nudge else 0


if __name__ == "__main__":
    raise SystemExit(main())
