"""What a `Memory` holds for a model: its spec, and checks of what it is given.

The spec (a JSON-able dict, kept in the memory's config so a `.keras` file
rebuilds the same variables) records the structure, per-sample shapes and
dtypes of the model's inputs, the per-sample shape of each output head, and
the anchor storage (`keras_fip.anchors`):

    {"input_structure": template, "inputs": [{"shape", "dtype"}, ...],
     "outputs": {"shape": [...]}                       # one head
             or {"structure": template, "shapes": [[...], ...]},  # several
     "anchors": {"storage": name, "top_k": k, "weights": [...]}}

Specs of keras_fip 0.1 (`input_keys`, no `anchors`) still load.
"""

import math

import numpy as np

from keras_fip import anchors
from keras_fip import nested
from keras_fip.anchors.taking import call_model


def build_spec(model, sample_inputs, requested_storage, capacity, top_k):
    """The spec of a memory of `capacity` samples for `model`.

    Args:
        model: the protected model.
        sample_inputs: a few inputs (any structure, leading sample axis).
        requested_storage: `Memory(anchor_storage=...)`, maybe `"auto"`.
        capacity: N.
        top_k: k, for `"top_k"`.
    """
    template, leaves = nested.flatten(sample_inputs)
    nested.num_samples(leaves)
    outputs = call_model(model, nested.pack(template,
                                            [a[:1] for a in leaves]))
    output_template = nested.template_of(outputs)
    shapes = [list(h.shape[1:]) for h in nested.flatten_tensors(outputs)]
    parameters = sum(math.prod(v.shape) for v in model.trainable_variables)
    storage = anchors.resolve(requested_storage, capacity, shapes,
                              parameters)
    weights = anchors.get(storage, top_k).weight_specs(model)
    return {
        "input_structure": template,
        "inputs": [{"shape": list(a.shape[1:]), "dtype": str(a.dtype)}
                   for a in leaves],
        "outputs": (
            {"shape": shapes[0]} if output_template == 0
            else {"structure": output_template, "shapes": shapes}),
        "anchors": {"storage": storage, "top_k": top_k,
                    "weights": weights},
    }


def complete(spec, top_k):
    """A spec with what older files left out filled in."""
    spec = dict(spec)
    if "input_structure" not in spec:  # keras_fip 0.1
        keys = spec["input_keys"]
        spec["input_structure"] = (
            0 if keys is None else {k: i for i, k in enumerate(keys)})
    spec.setdefault("anchors", {"storage": anchors.STORAGE_BEFORE_0_4,
                                "top_k": top_k, "weights": []})
    return {k: spec[k]
            for k in ("input_structure", "inputs", "outputs", "anchors")}


def output_template(spec):
    """The template of the model's outputs (`0` for one head)."""
    return spec["outputs"].get("structure", 0)


def output_shapes(spec):
    """The per-sample shape of each output head, in leaf order."""
    outputs = spec["outputs"]
    return [tuple(s) for s in outputs.get("shapes", [outputs.get("shape")])]


def check_inputs(spec, x):
    """The leaves of `x`; raises if they do not fit the spec."""
    template, leaves = nested.flatten(x)
    expected = [s["shape"] for s in spec["inputs"]]
    shapes = [list(a.shape[1:]) for a in leaves]
    if template != spec["input_structure"] or shapes != expected:
        raise ValueError(
            "Memory inputs do not fit the memory (and model) they are for: "
            f"expected {nested.describe(spec['input_structure'], expected)}"
            f", got {nested.describe(template, shapes)}. Pass inputs shaped "
            "like the model's inputs (a dict with the same keys for "
            "dict-input models)."
        )
    return leaves


def check_padding_mask(x, key="padding_mask"):
    """Refuses a padding mask that is not 0/1 (KerasHub's convention)."""
    if not isinstance(x, dict) or key not in x:
        return
    mask = np.asarray(x[key])
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise ValueError(
            f"The memory input {key!r} must hold 0/1 (or booleans): 1 for a "
            "real token, 0 for padding; got values such as "
            f"{np.unique(mask)[:5].tolist()}. Pass the preprocessor's "
            "padding mask as it is.")


def class_ids(y, n):
    """The class ids the memory balances on: integer ids or one-hot rows.

    Raises:
        ValueError: the labels do not have `n` samples, are not integer
            class ids (or one-hot rows), or are negative.
    """
    ids = _class_ids_of_array(np.asarray(y), n)
    if ids is None:
        raise ValueError(
            "Memory labels must be integer class ids (or one-hot rows); got "
            f"values such as {np.asarray(y).reshape(n, -1)[:2].tolist()}. "
            "For a model with several outputs, or labels that are not "
            "classes (regression targets, multi-hot rows), give the memory "
            "the labels of memory_labels(y) (TaskBoundary does).")
    return ids


def memory_labels(y):
    """What of `fit`'s labels a memory keeps: class ids, or `None`.

    `y` as `fit` takes it: class ids or one-hot rows are kept as they are;
    for a model with several outputs (a dict or list of per-head labels)
    the memory balances on the first head whose labels are class ids;
    labels that are not class ids (multi-hot rows, regression targets)
    give `None`, and the memory keeps a reservoir sample instead.
    """
    if y is None:
        return None
    if isinstance(y, dict) or (isinstance(y, (list, tuple))
                               and not _is_array_like(y)):
        leaves = nested.flatten(y)[1]
    else:
        leaves = [np.asarray(y)]
    for leaf in leaves:
        if leaf.ndim and _class_ids_of_array(leaf, len(leaf)) is not None:
            return leaf
    return None


def _is_array_like(y):
    return all(np.isscalar(e) for e in y)


def _class_ids_of_array(y, n):
    """Class ids from ids or one-hot rows, `None` for other labels."""
    if y.shape[:1] != (n,):
        raise ValueError(
            f"Memory got {n} inputs but {y.shape[0] if y.ndim else 'no'} "
            "labels; pass one integer class label per input (or y=None "
            "for reservoir sampling).")
    if y.ndim == 2 and y.shape[1] > 1:
        if np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
            return np.argmax(y, axis=1).astype("int64")  # one-hot rows
        return None  # multi-hot or vector targets: no class to balance on
    y = y.reshape(n, -1)
    if y.shape[1] != 1:
        return None
    y = y[:, 0]
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.equal(np.mod(y, 1), 0)):
            return None  # regression targets
    y = y.astype("int64")
    if y.size and y.min() < 0:
        raise ValueError(
            f"Memory labels must be class ids >= 0; got {int(y.min())}.")
    return y
