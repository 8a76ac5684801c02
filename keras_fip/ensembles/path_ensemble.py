"""`PathEnsemble`: networks sampled along a path, as one Keras model."""

import keras
import numpy as np
from keras import ops

from keras_fip import compat
from keras_fip.arrays import as_numpy

#: How the members' outputs are combined.
AVERAGES = ("probabilities", "logits")


def _architecture(model):
    """What two members must share: layer classes and weight shapes."""
    layers = [type(layer).__name__ for layer in compat.sublayers(model)]
    return layers, [tuple(w.shape) for w in model.weights]


def _check_members(members):
    if isinstance(members, keras.Model):
        members = [members]
    members = list(members or [])
    if not members:
        raise ValueError(
            "A PathEnsemble needs at least one member: pass a list of Keras "
            "models, or use PathEnsemble.from_weights(model, weights) with "
            "weight copies recorded along a path.")
    for i, member in enumerate(members):
        if not isinstance(member, keras.Model):
            raise TypeError(f"Member {i} is a {type(member).__name__}, not a "
                            "keras.Model.")
        if not member.built:
            raise ValueError(f"Member {i} is not built: call it once or "
                             "give it a keras.Input.")
    first = _architecture(members[0])
    for i, member in enumerate(members[1:], 1):
        layers, shapes = _architecture(member)
        if (layers, shapes) != first:
            raise ValueError(
                f"Member {i} has a different architecture from member 0 "
                f"(layers {layers[:6]}..., weight shapes {shapes[:4]}... "
                f"against {first[0][:6]}..., {first[1][:4]}...): a "
                "PathEnsemble averages networks of one architecture, "
                "sampled along one path.")
    return members


def _unflatten(model, flat):
    """A flat vector of trainable weights → `model.get_weights()` order."""
    flat = np.asarray(flat).ravel()
    sizes = [int(np.prod(v.shape)) for v in model.trainable_variables]
    if flat.size != sum(sizes):
        raise ValueError(
            f"A flat weight vector of {flat.size} values does not match "
            f"the model's {sum(sizes)} trainable weights: pass "
            "PathRecorder(keep_weights=True) records of this model, or "
            "lists of arrays as model.get_weights() returns them.")
    trainable = {}
    offset = 0
    for v, size in zip(model.trainable_variables, sizes):
        trainable[id(v)] = flat[offset:offset + size].reshape(v.shape)
        offset += size
    return [trainable.get(id(v), as_numpy(v)) for v in model.weights]


@keras.saving.register_keras_serializable(package="keras_fip")
class PathEnsemble(keras.Model):
    """M networks of one architecture, averaged into one prediction.

    With `average="probabilities"` (default) the ensemble outputs the mean
    of the members' softmax outputs,

        p̄(y | x) = (1/M) Σₘ softmax(fₘ(x))_y,

    a probability vector (compile with a loss that takes probabilities,
    `from_logits=False`); with `average="logits"` it outputs the mean logit
    (1/M) Σₘ fₘ(x) (softmax of it is a geometric-mean ensemble). The
    attribute `outputs_logits` says which, so `keras_fip.attacks` attacks
    the averaged prediction itself (white-box). Members output logits
    (`from_logits=True`, default) or already probabilities
    (`from_logits=False`, only with `average="probabilities"`).

    The members are sub-models: `predict`, `evaluate`, `save("x.keras")`
    and `keras.saving.load_model` treat the ensemble as one model on every
    backend. Build one from models, or from weight copies recorded along a
    path with `from_weights` (`WeightSnapshots.snapshots`, or the flat
    vectors of `PathRecorder(keep_weights=True).weights`).

    Args:
        members: a list of built Keras models of one architecture.
        average: `"probabilities"` (default) or `"logits"`.
        from_logits: whether the members output logits (default `True`).
        **kwargs: `keras.Model` arguments (`name`, ...).

    Example:

    ```python
    import keras, numpy as np, keras_fip
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.random.rand(8, 4).astype("float32")
    copies = [[w + 0.1 * i for w in net.get_weights()] for i in range(3)]
    ensemble = keras_fip.ensembles.PathEnsemble.from_weights(net, copies)
    probabilities = ensemble.predict(x, verbose=0)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    ensemble.compile(loss="sparse_categorical_crossentropy",
                     metrics=["accuracy"])
    loss, accuracy = ensemble.evaluate(x, np.zeros(8), verbose=0)
    ```
    """

    def __init__(self, members, average="probabilities", from_logits=True,
                 **kwargs):
        super().__init__(**kwargs)
        if average not in AVERAGES:
            raise ValueError(f"`average` must be one of {AVERAGES}; got "
                             f"{average!r}.")
        if average == "logits" and not from_logits:
            raise ValueError(
                "average='logits' averages the members' logits, but "
                "from_logits=False says they output probabilities: use "
                "average='probabilities'.")
        self.members = _check_members(members)
        self.average = average
        self.from_logits = bool(from_logits)
        self.build(self.members[0].inputs[0].shape)

    @property
    def outputs_logits(self):
        """Whether the ensemble outputs logits (`average="logits"`)."""
        return self.average == "logits"

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=False):
        outputs = [ops.cast(member(inputs, training=training), "float32")
                   for member in self.members]
        if self.average == "probabilities" and self.from_logits:
            outputs = [ops.softmax(o, axis=-1) for o in outputs]
        return ops.mean(ops.stack(outputs, axis=0), axis=0)

    @classmethod
    def from_weights(cls, model, weights, average="probabilities",
                     from_logits=True, **kwargs):
        """An ensemble of copies of `model` with the given weights.

        Args:
            model: the network the weights belong to (a built Sequential or
                functional model; `keras.models.clone_model` copies it).
            weights: a list with one entry per member, each either a list
                of arrays as `model.get_weights()` returns them, or a flat
                vector of the trainable weights (an entry of
                `PathRecorder(keep_weights=True).weights`; the non-trainable
                ones are then taken from `model`).
            average: `"probabilities"` (default) or `"logits"`, as in the
                constructor.
            from_logits: whether the members output logits (default
                `True`), as in the constructor.
            **kwargs: `keras.Model` arguments, as in the constructor.
        """
        weights = list(weights or [])
        if not weights:
            raise ValueError("`weights` is empty: pass one weight copy per "
                             "member.")
        members = []
        for i, member_weights in enumerate(weights):
            member = keras.models.clone_model(model)
            if isinstance(member_weights, np.ndarray) and \
                    member_weights.ndim == 1 and len(model.weights) != 1:
                member_weights = _unflatten(model, member_weights)
            member.set_weights([np.asarray(w) for w in member_weights])
            members.append(member)
        return cls(members, average=average, from_logits=from_logits,
                   **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update({
            "members": [keras.saving.serialize_keras_object(m)
                        for m in self.members],
            "average": self.average,
            "from_logits": self.from_logits,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m)
                   for m in config.pop("members")]
        return cls(members, **config)
