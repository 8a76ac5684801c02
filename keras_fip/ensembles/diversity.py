"""How different the members of an ensemble are, in NumPy.

On the members' outputs, an array (M, N, C) of M members' probabilities
(or logits) on N inputs over C classes, as `member_outputs` gives it:

- `pairwise_disagreement`: how often two members' predicted classes
  differ, averaged over the M(M − 1)/2 pairs;
- `coherence`: per input, the share of members that vote for the
  ensemble's majority class.

Inside the networks, `layerwise_diversity` scores each layer by
1 − (mean linear CKA between the members' activations), 0 for members that
compute the same features up to rotation and scale.

Example:

```python
import numpy as np
from keras_fip.ensembles import diversity
votes = np.eye(3)[[[0, 1, 2, 2],      # member 0's classes on 4 inputs
                   [0, 1, 1, 2],      # member 1's
                   [0, 2, 1, 2]]]     # member 2's -> shape (3, 4, 3)
diversity.pairwise_disagreement(votes)   # 1/3: pairs differ on 1, 2, 1 of 4
diversity.coherence(votes)               # [1, 2/3, 2/3, 1]
```
"""

import itertools

import keras
import numpy as np

from keras_fip.checks import check_positive_int


def _member_array(member_probabilities):
    try:
        outputs = np.asarray(member_probabilities)
    except ValueError as error:
        raise ValueError(
            "The members' outputs have different shapes; every member needs "
            f"outputs (N, C) on the same N inputs ({error})."
        ) from error
    if outputs.dtype == object or outputs.ndim != 3:
        raise ValueError(
            "`member_probabilities` must be an array (M, N, C): M members' "
            "probabilities or logits on the same N inputs over C classes; "
            f"got shape {getattr(outputs, 'shape', None)}. Stack the "
            "members' predictions, e.g. with member_outputs(members, x)."
        )
    if outputs.shape[0] < 2:
        raise ValueError(
            f"An ensemble needs at least 2 members to compare; got "
            f"{outputs.shape[0]}."
        )
    return outputs


def _class_counts(member_probabilities):
    """Votes per input and class, (N, C), and the number of members M."""
    outputs = _member_array(member_probabilities)
    members, _, classes = outputs.shape
    votes = np.argmax(outputs, axis=-1)                      # (M, N)
    counts = np.stack([np.sum(votes == c, axis=0) for c in range(classes)],
                      axis=-1)
    return counts, members


def member_outputs(members, x, batch_size=256):
    """The members' predictions on `x`, stacked to (M, N, C).

    Args:
        members: a list of Keras models (or callables with `predict`).
        x: their inputs.
        batch_size: prediction batch size (int, default 256).

    Example:

    ```python
    import keras, numpy as np
    from keras_fip.ensembles.diversity import coherence, member_outputs
    members = [keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
               for _ in range(3)]
    outputs = member_outputs(members, np.ones((5, 4), "float32"))
    assert outputs.shape == (3, 5, 3) and coherence(outputs).shape == (5,)
    ```
    """
    check_positive_int("batch_size", batch_size)
    return _member_array([
        np.asarray(m.predict(x, batch_size=batch_size, verbose=0))
        for m in members])


def pairwise_disagreement(member_probabilities):
    """The mean, over member pairs, of the fraction of inputs on which the
    two members' predicted classes (argmax) differ.

    With n_c(x) the members voting for class c on input x, the pairs that
    agree on x are Σ_c n_c(n_c − 1)/2 of the M(M − 1)/2, so

        d = mean_x [1 − Σ_c n_c(x)(n_c(x) − 1) / (M(M − 1))].

    Args:
        member_probabilities: array (M, N, C), M >= 2, of probabilities or
            logits (only the argmax is used).

    Returns:
        A float in [0, 1]: 0 when all members predict alike.

    Example:

    ```python
    import numpy as np
    from keras_fip.ensembles.diversity import pairwise_disagreement
    a = np.array([[0.9, 0.1], [0.2, 0.8]])     # member a: classes 0, 1
    b = np.array([[0.6, 0.4], [0.7, 0.3]])     # member b: classes 0, 0
    assert pairwise_disagreement([a, b]) == 0.5
    ```
    """
    counts, members = _class_counts(member_probabilities)
    agreeing = np.sum(counts * (counts - 1), axis=-1) / (members * (members
                                                                    - 1))
    return float(np.mean(1.0 - agreeing))


def coherence(member_probabilities):
    """Per input, the fraction of members whose predicted class is the
    ensemble's majority vote (ties go to the smallest class index):

        coherence(x) = max_c n_c(x) / M.

    Args:
        member_probabilities: array (M, N, C), M >= 2, of probabilities or
            logits.

    Returns:
        An array (N,) with values in [1/M, 1]; 1 where all members agree.
        Its histogram shows how often the ensemble is split.

    Example:

    ```python
    import numpy as np
    from keras_fip.ensembles.diversity import coherence
    votes = np.eye(2)[[[0, 0], [0, 1], [1, 1]]]    # 3 members, 2 inputs
    np.testing.assert_allclose(coherence(votes), [2 / 3, 2 / 3])
    ```
    """
    counts, members = _class_counts(member_probabilities)
    majority = np.argmax(counts, axis=-1)           # first max: smallest c
    return np.take_along_axis(counts, majority[:, None], axis=-1)[:, 0] \
        / float(members)


def _centred(x):
    x = np.asarray(x, dtype="float64")
    x = x.reshape(len(x), -1)
    return x - x.mean(axis=0, keepdims=True)


def _cka_parts(representations):
    """Per representation, what the pairwise CKA needs: the centred
    features (N, p), or their Gram matrix XXᵀ (N, N) when p > N (the same
    ‖·‖_F values, smaller)."""
    n = len(representations[0])
    use_gram = max(r.shape[1] for r in representations) > n
    parts = [r @ r.T if use_gram else r for r in representations]
    if use_gram:
        norms = [np.linalg.norm(k) for k in parts]
    else:
        norms = [np.linalg.norm(r.T @ r) for r in parts]
    return parts, norms, use_gram


def _cka_pair(parts, norms, use_gram, i, j):
    if use_gram:
        cross = float(np.sum(parts[i] * parts[j]))         # tr(K_i K_j)
    else:
        cross = float(np.linalg.norm(parts[j].T @ parts[i]) ** 2)
    denominator = norms[i] * norms[j]
    return cross / denominator if denominator > 0 else float("nan")


def linear_cka(x, y):
    """Linear centred kernel alignment (Kornblith et al. 2019) of two
    representations of the same N inputs.

    With X (N, p) and Y (N, q) the features, flattened per input and
    centred over the inputs,

        CKA(X, Y) = ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F),

    in [0, 1]; 1 when Y = s·XQ for an orthogonal Q and s ≠ 0 (it is
    invariant to rotations and isotropic scaling, not to any invertible
    map). Computed as tr(K_X K_Y) / (‖K_X‖_F ‖K_Y‖_F) with K = XXᵀ when
    the features outnumber the inputs. NaN when either representation is
    constant over the inputs.

    Args:
        x: an array of N >= 2 representations (any trailing shape;
            flattened per input).
        y: an array with the same leading size N.

    Example:

    ```python
    import numpy as np
    from keras_fip.ensembles.diversity import linear_cka
    x = np.random.default_rng(0).normal(size=(50, 8))
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
    assert abs(linear_cka(x, 3.0 * x @ q) - 1.0) < 1e-9
    ```
    """
    x, y = _centred(x), _centred(y)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(
            "linear_cka needs two representations of the same N >= 2 "
            f"inputs; got leading sizes {len(x)} and {len(y)}."
        )
    parts, norms, use_gram = _cka_parts([x, y])
    return _cka_pair(parts, norms, use_gram, 0, 1)


def _weighted_layers(members, layers):
    """Indices (into `.layers`) of the layers to compare, and their names
    (the first member's)."""
    first = members[0].layers
    for k, member in enumerate(members[1:], start=1):
        same = len(member.layers) == len(first) and all(
            [tuple(w.shape) for w in a.weights]
            == [tuple(w.shape) for w in b.weights]
            for a, b in zip(first, member.layers))
        if not same:
            raise ValueError(
                f"Member {k} does not have the architecture of member 0 "
                "(its layers or their weight shapes differ); "
                "layerwise_diversity compares layers position by position, "
                "so all members must be built from the same definition."
            )
    names = [layer.name for layer in first]
    if layers is None:
        indices = [i for i, layer in enumerate(first) if layer.weights]
        if not indices:
            raise ValueError("The members have no layers with weights to "
                             "compare; name the layers in `layers`.")
        return indices, [names[i] for i in indices]
    if isinstance(layers, str):
        layers = [layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(
            f"Unknown layer name(s) {unknown}: `layers` takes names of the "
            f"first member's layers, which are {names}."
        )
    return [names.index(name) for name in layers], list(layers)


def _activations(member, indices, x, batch_size):
    try:
        inputs = member.inputs
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Member {member.name!r} has no symbolic inputs, so its layers' "
            "outputs cannot be read; build it from keras.Input (a "
            "Sequential starting with keras.Input, or a functional model)."
        ) from error
    reader = keras.Model(inputs, [member.layers[i].output for i in indices])
    outputs = reader.predict(x, batch_size=batch_size, verbose=0)
    if len(indices) == 1 and not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [_centred(o) for o in outputs]


def layerwise_diversity(members, x, layers=None, batch_size=256):
    """Per layer, how differently the members represent the inputs `x`:

        diversity(layer) = 1 − mean_{i<j} CKA(A_i, A_j),

    with A_i the layer's outputs in member i on `x` (flattened per input
    and centred over the inputs) and CKA the linear CKA of Kornblith et al.
    (2019), CKA(X, Y) = ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F) (`linear_cka`). 0
    when every pair of members computes the layer's features up to a
    rotation and a scale; larger for members that learnt different ones.

    Args:
        members: list of >= 2 Keras models of one architecture (Sequential
            from `keras.Input`, or functional), e.g. one model restored to
            each of `WeightSnapshots.snapshots` via `keras.models.clone_model`.
            Layers are matched by position.
        x: inputs (N >= 2 of them); a few hundred are plenty.
        layers: optional list of layer names (the first member's) to
            score; default `None`: every layer with weights.
        batch_size: prediction batch size (int, default 256).

    Returns:
        A dict {layer name: diversity}, in layer order.

    Example:

    ```python
    import keras, numpy as np
    from keras_fip.ensembles.diversity import layerwise_diversity
    def member(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((5,)),
                                 keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(64, 5)).astype("float32")
    same = layerwise_diversity([member(0), member(0)], x)
    assert all(abs(v) < 1e-6 for v in same.values())
    other = layerwise_diversity([member(0), member(1)], x)
    assert all(v > 0 for v in other.values())
    ```
    """
    members = list(members)
    if len(members) < 2:
        raise ValueError(
            f"layerwise_diversity needs at least 2 members to compare; got "
            f"{len(members)}."
        )
    check_positive_int("batch_size", batch_size)
    indices, names = _weighted_layers(members, layers)
    per_member = [_activations(m, indices, x, batch_size) for m in members]
    if len(per_member[0][0]) < 2:
        raise ValueError("layerwise_diversity needs at least 2 inputs in "
                         "`x` (CKA centres over the inputs).")
    scores = {}
    for position, name in enumerate(names):
        parts, norms, use_gram = _cka_parts(
            [acts[position] for acts in per_member])
        similarities = [_cka_pair(parts, norms, use_gram, i, j)
                        for i, j in itertools.combinations(range(len(parts)),
                                                           2)]
        scores[name] = 1.0 - float(np.mean(similarities))
    return scores
