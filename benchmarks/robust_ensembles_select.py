"""Choose each robust-ensemble method's knob from validation runs.

Reads `robust_ensembles_validation_<backend>.json` files written by
`benchmarks/robust_ensembles.py --eval validation` (each may hold several
knobs and seeds) and ranks every configuration by one criterion, the same
for every method:

    robust score = mean over seeds, threat models and ε of the accuracy,

among configurations whose mean clean accuracy is within `--clean-drop`
(default 1 point) of N1's. A file's label (its folder name) tells runs
with different global settings (`--diversity-epsilon`, `--step-norm`, ...)
apart.

    python benchmarks/robust_ensembles_select.py results/re_val2/*.json \\
        results/re_val_adv_*/*.json
"""

import argparse
import json
import os

import numpy as np

THREATS = ("transfer_n1", "transfer_independent", "whitebox")


def scores(record):
    """`{name: (clean, robust score, transfer-from-N1 score)}` of one file,
    means over its seeds."""
    per_seed = record["per_seed"]
    out = {}
    for name in per_seed[0]:
        rows = [seed[name] for seed in per_seed]
        clean = np.mean([r["clean"] for r in rows])
        robust = np.mean([np.mean([v for t in THREATS
                                   for v in r[t].values()]) for r in rows])
        n1 = np.mean([np.mean(list(r["transfer_n1"].values()))
                      for r in rows])
        out[name] = (float(clean), float(robust), float(n1))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--clean-drop", type=float, default=0.01)
    args = parser.parse_args(argv)
    rows, n1_clean = [], []
    for path in args.files:
        with open(path) as f:
            record = json.load(f)
        label = os.path.basename(os.path.dirname(os.path.abspath(path)))
        seeds = record["args"]["seeds"]
        for name, (clean, robust, n1) in scores(record).items():
            if name == "n1":
                n1_clean.append(clean)
                continue
            rows.append((name.split("=")[0], robust, clean, n1, name, label,
                         seeds))
    floor = float(np.mean(n1_clean)) - args.clean_drop
    print(f"N1's clean accuracy {100 * (floor + args.clean_drop):.1f} %; "
          f"eligible: clean >= {100 * floor:.1f} %\n")
    print("| method | configuration | run | seeds | clean | robust score | "
          "transfer-from-N1 score | chosen |")
    print("|---|---|---|---|---|---|---|---|")
    best = {}
    for row in rows:
        if row[2] >= floor and row[1] > best.get(row[0], (None, -1))[1]:
            best[row[0]] = row
    for row in sorted(rows, key=lambda r: (r[0], -r[1])):
        method, robust, clean, n1, name, label, seeds = row
        mark = "**yes**" if best.get(method) is row else (
            "" if clean >= floor else "clean too low")
        print(f"| {method} | {name} | {label} | {seeds} | {100 * clean:.1f} "
              f"| {100 * robust:.1f} | {100 * n1:.1f} | {mark} |")


if __name__ == "__main__":
    main()
