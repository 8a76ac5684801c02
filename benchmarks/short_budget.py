"""Does FIP learn a new task with the epochs fine-tuning gets? (test splits)

The runs behind the plasticity complaint of 0.6: Split-digits with the bench
MLP, Adam 1e-3, batch 32, memory 200, seed 0:

- `two-tasks`: tasks (0, 1) then (2, 3), 10 epochs each; the accuracy on
  task 1 when its training ends;
- `cosine`: the same with `CosineDecay(1e-3, decay_steps=all steps)`;
- `stream`: `fit_stream` over the 5 tasks, 10 epochs each; the last task's
  accuracy at the end.

For fine-tuning, 0.6's default FIP (`FIPOptimizer.default_of_0_5`) and
the current default, on the current backend.

    KERAS_BACKEND=jax python benchmarks/short_budget.py
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402
from keras_fip.bench.registry import mlp  # noqa: E402

EPOCHS = 10


def _optimizer(method, learning_rate):
    inner = keras.optimizers.Adam(learning_rate)
    memory = keras_fip.Memory(200, seed=0)
    if method == "fip":
        return keras_fip.FIPOptimizer(inner, memory=memory)
    if method == "fip-0.5":
        return keras_fip.FIPOptimizer.default_of_0_5(inner, memory=memory)
    return inner


def _model(stream, method, learning_rate):
    keras.utils.set_random_seed(0)
    model = mlp(stream)
    model.compile(optimizer=_optimizer(method, learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"])
    return model


def newest_task(method, tasks, schedule=False):
    stream = keras_fip.datasets.split_digits()
    stream = keras_fip.datasets.TaskStream(list(stream)[:tasks])
    steps = sum(int(np.ceil(len(t.y_train) / 32)) * EPOCHS for t in stream)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        1e-3, decay_steps=steps) if schedule else 1e-3
    model = _model(stream, method, learning_rate)
    result = keras_fip.fit_stream(model, stream, epochs=EPOCHS, verbose=0)
    return float(result.matrix[-1, -1])


def main():
    rows = []
    for method in ("finetune", "fip-0.5", "fip"):
        rows.append((method, newest_task(method, 2),
                     newest_task(method, 2, schedule=True),
                     newest_task(method, 5)))
    print(f"### {keras.backend.backend()}\n")
    print("| method | two-tasks: task 1 | cosine: task 1 | stream: task 4 |")
    print("|---|---|---|---|")
    for method, *values in rows:
        print(f"| {method} | " + " | ".join(f"{v:.3f}" for v in values)
              + " |")


if __name__ == "__main__":
    main()
