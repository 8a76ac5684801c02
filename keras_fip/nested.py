"""Nested structures of arrays (a model's inputs or outputs) as leaves.

A Keras model takes and returns an array, or any nesting of dicts, lists
and tuples of arrays (`keras.tree`). keras_fip keeps such a structure as a
JSON-able *template* whose leaves are their positions in a flat list
(`0` for a single array), so the memory can hold one variable per leaf and
a `.keras` config can describe the structure.

Example:

```python
import numpy as np
from keras_fip import nested
template, leaves = nested.flatten({"ids": np.zeros((2, 3)),
                                   "mask": np.ones((2, 3))})
template                             # {'ids': 0, 'mask': 1}
nested.pack(template, leaves)["mask"].shape      # (2, 3)
```
"""

import numpy as np
from keras import tree


def flatten(x):
    """`(template, leaves)` of a structure; leaves as NumPy arrays.

    Tuples come back as lists in the template (what JSON keeps).
    """
    leaves = [np.asarray(leaf) for leaf in tree.flatten(x)]
    return template_of(x), leaves


def template_of(x):
    """The JSON-able template of `x`: each leaf replaced by its position."""
    positions = iter(range(len(tree.flatten(x))))
    return plain(tree.map_structure(lambda _: next(positions), x))


def plain(structure):
    """The template with tuples as lists (what JSON keeps)."""
    if isinstance(structure, dict):
        return {k: plain(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [plain(v) for v in structure]
    return structure


def pack(template, leaves):
    """The structure of `template` with `leaves` in its positions."""
    return tree.pack_sequence_as(template, list(leaves))


def leaf_names(template):
    """A readable name per leaf: `"output"` for a single array, else the
    dict keys / list indices joined by `/` (`"heads/0"`), in leaf order."""
    if template == 0:
        return ["output"]
    return ["/".join(str(key) for key in path)
            for path, _ in tree.flatten_with_path(template)]


def describe(template, shapes):
    """Words for a structure of per-sample shapes (for error messages)."""
    if template == 0:
        return f"an array of per-sample shape {tuple(shapes[0])}"
    return f"the structure {pack(template, [tuple(s) for s in shapes])}"


def num_samples(leaves):
    """The common leading (sample) size of `leaves`; raises if they differ."""
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "Every array needs the same leading (sample) axis; got leading "
            f"sizes {sorted(str(s) for s in sizes)}."
        )
    return sizes.pop()


def flatten_tensors(x):
    """The leaves of a structure of tensors, in `keras.tree` order."""
    return tree.flatten(x)
