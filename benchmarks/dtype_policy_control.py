"""Plain Adam against FIP under a dtype policy: is a failure ours or Keras's?

Two Split-digits tasks (MLP 64, Adam 1e-3, 10 epochs each, batch 32) under
the policy given, with plain Adam and with `FIPOptimizer` (defaults); prints
each one's test accuracy per task after the second task and FIP's last
invariance loss. Measured on JAX (3 December 2026): float32 Adam [0.00,
0.99], FIP [1.00, 0.66]; "bfloat16" Adam [0.009, 0.056], FIP [0.009,
0.056], invariance 0.0: all-bfloat16 weights do not take Adam's updates,
with or without FIP.

    KERAS_BACKEND=jax python benchmarks/dtype_policy_control.py bfloat16
"""

import argparse

import keras

import keras_fip
from keras_fip.arrays import as_numpy
from keras_fip.callbacks import TaskBoundary


def run(policy, fip):
    """Task accuracies after two tasks (and FIP's last invariance loss)."""
    keras.config.set_dtype_policy(policy)
    stream = keras_fip.datasets.split_digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    inner = keras.optimizers.Adam(1e-3)
    model.compile(
        optimizer=keras_fip.FIPOptimizer(inner) if fip else inner,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for t in range(2):
        task = stream[t]
        callbacks = [TaskBoundary(t, task.x_train, task.y_train)] if fip \
            else []
        model.fit(task.x_train, task.y_train, epochs=10, batch_size=32,
                  verbose=0, callbacks=callbacks)
    accuracies = [keras_fip.evaluation.accuracy(
        model, stream[t].x_test, stream[t].y_test) for t in range(2)]
    loss = float(as_numpy(model.optimizer.invariance_loss)) if fip else None
    return accuracies, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="?", default="bfloat16")
    policy = parser.parse_args().policy
    for fip in (False, True):
        accuracies, loss = run(policy, fip)
        print(policy, "fip" if fip else "adam",
              [round(a, 3) for a in accuracies], loss)


if __name__ == "__main__":
    main()
