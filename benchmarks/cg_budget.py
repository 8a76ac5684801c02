"""The exact step's CG budget: validation accuracy and residual against K.

FIP's exact step (`FIPOptimizer(damping=10)` on the logit metric, stored
anchors, β = 10; the bench's `fip-exact-mu10`) on Split-digits' validation
split (`TaskStream.holdout(0.2)`), seed 0, for K CG iterations per step:
the validation average accuracy, the last step's relative CG residual
‖d − (g + μI)s‖/‖d‖ (`MetricSolve.residual()`) and the wall time.

    KERAS_BACKEND=tensorflow OMP_NUM_THREADS=1 python benchmarks/cg_budget.py
"""

import argparse
import json

import keras_fip
from keras_fip.bench import registry
from keras_fip.bench.runner import run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, nargs="+",
                        default=[1, 2, 5, 10])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stream = registry.STREAMS["split-digits"].load().holdout(0.2)
    for k in args.iterations:
        built = []

        def make(inner, s, seed, k=k):
            built.append(keras_fip.FIPOptimizer.reference_code(
                inner, memory=registry._memory(s, seed),
                distance="squared_l2", reduction="mean", beta=10.0,
                anchors="stored", damping=10.0, solver_iterations=k))
            return built[-1]

        record = run("split-digits", stream, "fip", args.seed,
                     registry.STREAMS["split-digits"].epochs,
                     make_optimizer=make)
        solve = built[-1].find_term(keras_fip.terms.MetricSolve)
        print(json.dumps({
            "iterations": k,
            "validation_average_accuracy": record["average_accuracy"],
            "last_relative_residual": solve.residual(),
            "seconds": record["seconds"]}), flush=True)


if __name__ == "__main__":
    main()
