"""One conversion to NumPy for tensors and Keras variables alike."""

import keras

from keras_fip import backend as fip_backend


def as_numpy(x):
    """`x` (a tensor, a `keras.Variable` or an array) as a NumPy array.

    A variable is converted through its value, and a torch tensor by its
    own `.numpy()`: NumPy 2 warns when it has to call an `__array__` that
    takes no `copy` argument (Keras variables', torch tensors').
    """
    if isinstance(x, keras.Variable):
        x = x.value
    return fip_backend.to_numpy(x)
