"""Making a trained network 90 % sparse along a functionally invariant path.

Magnitude pruning cuts the smallest weights at once and costs accuracy;
fine-tuning inside the mask wins some back. FIP walks instead: each step
keeps the network's outputs on its training digits (the memory) while a
pull λ (w − P_s(w)) draws the weights below the magnitude threshold toward
zero (`keras_fip.sparsity.SparseTarget`), with sparsity ramping from 0 to
90 %. At `hard_mask_step` the mask becomes hard: the small weights are set
to zero and the rest of the path runs inside the sparse subspace, so the
result is exactly 90 % sparse.

    KERAS_BACKEND=torch python examples/sparsify.py
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip import sparsity  # noqa: E402
from keras_fip.datasets.digits import load_digits_split  # noqa: E402


def make_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10),
    ])


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def copy_of(model):
    clone = make_model()
    clone.set_weights(model.get_weights())
    return clone


"""
## The dense network and the one-shot baseline
"""


def one_shot(dense, target, xt, yt):
    model = copy_of(dense)
    sparsity.prune_low_magnitude(model, target)
    return keras_fip.evaluation.accuracy(model, xt, yt)


"""
## The FIP path to a sparse network

SGD(1.0) with `step_norm=ε` moves exactly ε per step. `remember_task`
puts the training digits in the memory, anchored on the dense network.
"""


def fip_path(dense, target, x, y, steps, epsilon, strength):
    model = copy_of(dense)
    ramp = steps // 4
    pull = sparsity.SparseTarget(
        sparsity.PolynomialDecay(0.0, target, begin_step=0, end_step=ramp),
        weight=strength, hard_mask_step=max(ramp, int(0.3 * steps)))
    model.compile(optimizer=keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.SGD(learning_rate=1.0), step_norm=epsilon,
        memory=keras_fip.Memory(len(y)), memory_batch_size=64,
        objectives=[pull]), loss=loss())
    keras_fip.callbacks.remember_task(model, 0, x, y)
    batches = -(-len(y) // 32)
    model.fit(x, y, batch_size=32, epochs=-(-steps // batches), verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=30,
                        help="training epochs of the dense network")
    parser.add_argument("--steps", type=int, default=2000,
                        help="FIP steps (of the digits' 40 per epoch)")
    parser.add_argument("--epsilon", type=float, default=0.01)
    parser.add_argument("--strength", type=float, default=10.0, help="λ")
    args = parser.parse_args(argv)
    x, y, xt, yt = load_digits_split()
    dense = make_model()
    dense.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
    dense.fit(x, y, batch_size=32, epochs=args.epochs, verbose=0)
    results = {
        "dense": keras_fip.evaluation.accuracy(dense, xt, yt),
        "one-shot magnitude": one_shot(dense, args.sparsity, xt, yt),
    }
    sparse = fip_path(dense, args.sparsity, x, y, args.steps, args.epsilon,
                      args.strength)
    report = sparsity.make_pruning_permanent(sparse)
    results["FIP"] = keras_fip.evaluation.accuracy(sparse, xt, yt)
    print(f"digits MLP on {keras.backend.backend()}, target sparsity "
          f"{args.sparsity:.0%}; FIP reached {report['overall']:.1%} of the "
          "pruned kernels' weights at zero\n")
    print("| network | test accuracy |\n|---|---|")
    for name, accuracy in results.items():
        print(f"| {name} | {accuracy:.3f} |")
    return results, report


if __name__ == "__main__":
    main()
