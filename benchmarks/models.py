"""The models the research protocols in `benchmarks/` share.

`mlp()` is the Split-digits protocol's MLP (64-256-256-10, the model of
`keras-fip bench`); `cnn()` the small digits CNN of the sparsity study.
"""

import keras


def mlp(inputs=64, hidden=(256, 256), classes=10):
    """A ReLU MLP with logits: `inputs`-`hidden`-`classes`."""
    return keras.Sequential(
        [keras.Input((inputs,))]
        + [keras.layers.Dense(h, activation="relu") for h in hidden]
        + [keras.layers.Dense(classes)])


def cnn():
    """Flat 8×8 digits → two convolutions → 128 → 10 logits (the suite's
    digits CNN, `keras_fip.bench.suite.digits_cnn`)."""
    from keras_fip.bench.suite import digits_cnn

    return digits_cnn(10)
