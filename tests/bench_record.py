"""Re-runs `keras-fip bench` runs and compares them with the committed record.

`tests/data/bench_record.json` holds, per backend, the accuracy matrices of
one seed of every bench method on Split-digits and Split-WordNet, recorded
with keras_fip 0.1.0 (before the step-pipeline rewrite of 0.2.0): `quick`
runs (1 epoch per task, checked by the test suite) and `full` runs (the
streams' own epochs, checked by running this file):

    KERAS_BACKEND=torch python tests/bench_record.py --mode full
"""

import argparse
import json
import os

import numpy as np

RECORD = os.path.join(os.path.dirname(__file__), "data", "bench_record.json")

# Bench names whose settings moved to another name since the record: since
# 0.3.0 `fip`, `derpp` and `er` are the defaults chosen on validation
# splits, and the 0.1-0.2 settings are `fip-reference`, `derpp-0.2` and
# `er-0.2`.
RENAMED = {"fip": "fip-reference", "derpp": "derpp-0.2", "er": "er-0.2"}


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


def rerun(stream_name, method, epochs, seed, streams):
    """The accuracy matrix of one bench run with the current code."""
    from keras_fip.bench.registry import STREAMS
    from keras_fip.bench.runner import run

    if stream_name not in streams:
        streams[stream_name] = STREAMS[stream_name].load()
    return np.array(run(stream_name, streams[stream_name],
                        RENAMED.get(method, method), seed, epochs)["matrix"])


def main():
    import keras

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("quick", "full"), default="full")
    args = parser.parse_args()
    backend = keras.backend.backend()
    streams, worst = {}, 0.0
    for (stream, method), (epochs, seed, want) in sorted(
            recorded(args.mode, backend).items()):
        got = rerun(stream, method, epochs, seed, streams)
        gap = float(np.abs(got - want).max())
        worst = max(worst, gap)
        print(f"{backend:10s} {stream:14s} {method:9s} max |ΔR| = {gap:.4f}"
              f"  average accuracy {want[-1].mean():.4f} -> "
              f"{got[-1].mean():.4f}", flush=True)
    print(f"{backend}: largest accuracy-matrix difference {worst:.4f}")


if __name__ == "__main__":
    main()
