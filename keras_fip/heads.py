"""A model's output heads: what each one is, and how to compare it.

A Keras model returns one output or a structure of them (a dict or list of
heads, each with its own loss). To keep the outputs on protected inputs,
each head is compared with its anchor by a distance that fits what the head
is:

| head | its loss | distance (`"auto"`) |
|---|---|---|
| class scores | (sparse) categorical CE | `"bhattacharyya"` |
| sigmoid units | binary (focal) CE | `"bernoulli_bhattacharyya"` |
| real values (regression) | MSE, MAE, Huber, log-cosh | `"squared_l2"` |

Class scores (softmax or logits) are compared as class distributions;
sigmoid units (one binary label, or several independent labels) each as a
Bernoulli distribution, summed over the units.

`resolve` reads the compiled loss of each head (`model.loss`: one loss, a
list, or a dict keyed by output name) and whether a head outputs logits
(the activation of its output layer when the model's graph shows it, else
the loss's `from_logits`, else logits).

Example:

```python
import keras, keras_fip
inputs = keras.Input((4,))
model = keras.Model(inputs, {
    "kind": keras.layers.Dense(3)(inputs),
    "price": keras.layers.Dense(1)(inputs)})
model.compile(loss={
    "kind": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "price": "mse"})
[(h.name, h.distance) for h in keras_fip.heads.resolve(model)]
# [('kind', 'bhattacharyya'), ('price', 'squared_l2')]
```
"""

import dataclasses

import keras
from keras import tree

from keras_fip import nested

#: What a head is, from its loss's (normalised) name.
KIND_OF_LOSS = {
    **dict.fromkeys(("sparsecategoricalcrossentropy",
                     "categoricalcrossentropy",
                     "categoricalfocalcrossentropy"), "classes"),
    **dict.fromkeys(("binarycrossentropy", "binaryfocalcrossentropy"),
                    "bernoulli"),
    **dict.fromkeys(("meansquarederror", "mse", "meanabsoluteerror", "mae",
                     "huber", "logcosh", "meansquaredlogarithmicerror",
                     "msle"), "regression"),
}
#: The distance `"auto"` gives each kind of head; class scores take the
#: `class_distance` of `resolve` (`"logit_l2"` by default since 0.7,
#: `"bhattacharyya"` before).
DISTANCE_OF_KIND = {"classes": "logit_l2",
                    "bernoulli": "bernoulli_bhattacharyya",
                    "regression": "squared_l2"}
#: The class-score distance of `"auto"` in keras_fip 0.6 (and of files it
#: wrote).
CLASS_DISTANCE_0_6 = "bhattacharyya"
#: Output activations that make a head's outputs probabilities.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


@dataclasses.dataclass
class Head:
    """One output of a model, as the invariance term compares it.

    Attributes:
        index: its position among the model's flattened outputs.
        name: the dict key (or output layer name) of the head.
        distance: the distance it is compared by.
        from_logits: whether it outputs logits.
    """

    index: int
    name: str
    distance: str
    from_logits: bool


def _normalised(name):
    return name.lower().replace("_", "")


def loss_name(loss):
    """A loss's normalised name (`"binarycrossentropy"`), or `None`.

    For a string, the string; for a Keras loss class, the class; for a
    wrapped or plain function, the function's name.
    """
    if loss is None:
        return None
    if isinstance(loss, str):
        return _normalised(loss)
    name = type(loss).__name__
    if name == "LossFunctionWrapper":
        name = getattr(getattr(loss, "fn", None), "__name__", name)
    elif not isinstance(loss, keras.losses.Loss):
        name = getattr(loss, "__name__", name)
    return _normalised(name)


def loss_from_logits(loss):
    """The `from_logits` a loss object was given, or `None`."""
    get_config = getattr(loss, "get_config", None)
    if get_config is None:
        return None
    try:
        return get_config().get("from_logits")
    except Exception:  # a custom loss without a usable config
        return None


def head_names(model, template):
    """A name per output head: dict keys, else the output layers' names."""
    names = nested.leaf_names(template)
    output_names = list(getattr(model, "output_names", None) or [])
    if template != 0 and not isinstance(template, dict) and \
            len(output_names) == len(names):
        return output_names
    if template == 0 and len(output_names) == 1:
        return output_names
    return names


def losses_per_head(model, names):
    """The compiled loss of each head (`None` where there is none)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        output_names = list(getattr(model, "output_names", None) or [])
        per_head = []
        for i, name in enumerate(names):
            key = name if name in loss else (
                output_names[i] if i < len(output_names) else None)
            per_head.append(loss.get(key))
        return per_head
    if isinstance(loss, (list, tuple)):
        if len(loss) != len(names):
            raise ValueError(
                f"The model has {len(names)} output heads but was compiled "
                f"with {len(loss)} losses.")
        return list(loss)
    return [loss] * len(names)


def output_activations(model, count):
    """The output activation name of each head, where the graph shows it."""
    outputs = getattr(model, "outputs", None)
    try:
        outputs = tree.flatten(outputs) if outputs is not None else []
    except Exception:
        outputs = []
    if len(outputs) != count:
        return [None] * count
    names = []
    for tensor in outputs:
        history = getattr(tensor, "_keras_history", None)
        layer = getattr(history, "operation", None) if history else None
        activation = getattr(layer, "activation", None)
        names.append(getattr(activation, "__name__", None))
    return names


def output_template(model):
    """The template of a functional model's outputs (`0`: one output, or
    a model whose outputs are only known once it is called)."""
    try:
        return nested.template_of(model.output)
    except (AttributeError, ValueError):
        return 0


def resolve(model, template=None, distance="auto", from_logits=None,
            heads=None, class_distance="logit_l2"):
    """The protected heads of `model` and how each is compared.

    Args:
        model: the compiled model.
        template: the template of its outputs (`keras_fip.nested`);
            default: computed from `model.outputs` (functional models).
        distance: `"auto"` (from each head's loss), a distance name for
            every head, or a dict `{head name: distance}`.
        from_logits: `None` (each head's output activation, else its
            loss's `from_logits`, else `True`), a bool for every head, or a
            dict `{head name: bool}`.
        heads: `None` (every head) or the names of the heads to protect.
        class_distance: the distance `"auto"` gives class-score heads
            (default `"logit_l2"`; keras_fip 0.6's was `"bhattacharyya"`).

    Returns:
        A list of `Head`, in output order.

    Raises:
        ValueError: an unknown head name, or `"auto"` cannot tell a head's
            kind from its loss (the message says what to pass).
    """
    if template is None:
        template = output_template(model)
    names = head_names(model, template)
    if heads is not None:
        unknown = [h for h in heads if h not in names]
        if unknown:
            raise ValueError(
                f"Unknown output heads {unknown}: the model's heads are "
                f"{names}. Pass heads=None to protect every head.")
    losses = losses_per_head(model, names)
    activations = output_activations(model, len(names))
    resolved = []
    for index, name in enumerate(names):
        if heads is not None and name not in heads:
            continue
        loss = losses[index]
        kind = KIND_OF_LOSS.get(loss_name(loss))
        chosen = distance.get(name, "auto") if isinstance(distance, dict) \
            else distance
        if chosen == "auto":
            if kind is None:
                raise ValueError(
                    f"distance='auto' cannot tell what output head {name!r} "
                    f"is from its loss ({loss!r}). Pass the distance: "
                    "'logit_l2' or 'bhattacharyya' (class scores), "
                    "'bernoulli_bhattacharyya' (sigmoid units) or "
                    "'squared_l2' (real values), e.g. distance={"
                    f"{name!r}: 'squared_l2'}}, or heads=[...] to protect "
                    "only the heads you name.")
            chosen = class_distance if kind == "classes" else \
                DISTANCE_OF_KIND[kind]
        logits = from_logits.get(name) if isinstance(from_logits, dict) \
            else from_logits
        if logits is None:
            if activations[index] is not None:
                logits = activations[index] not in PROBABILITY_ACTIVATIONS
            else:
                given = loss_from_logits(loss)
                logits = True if given is None else bool(given)
        resolved.append(Head(index, name, chosen, bool(logits)))
    return resolved
