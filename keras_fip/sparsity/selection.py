"""Which variables are pruned: glob patterns on variable paths.

By default every trainable variable named `kernel` with two or more axes:
the kernels of `Dense`, `EinsumDense` and convolution layers (not biases,
norms, embeddings or LoRA factors). Patterns are `fnmatch` globs on
`variable.path`, for example `"*transformer_layer_*/*kernel"` for the
encoder of a KerasHub BERT.
"""

import fnmatch


def _is_default_kernel(variable):
    return (variable.path.rsplit("/", 1)[-1] == "kernel"
            and len(variable.shape) >= 2)


def check_patterns(patterns):
    """`None` or a tuple of glob strings (one string is accepted)."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = (patterns,)
    patterns = tuple(patterns)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(
            "`prune` must be None (dense and convolution kernels) or "
            f"non-empty glob strings on variable paths; got {patterns!r}."
        )
    return patterns


def select(variables, patterns=None):
    """Indices of the variables to prune.

    Args:
        variables: a list of Keras variables (e.g.
            `model.trainable_variables`).
        patterns: `None` for the default kernels, or glob patterns matched
            against each `variable.path`.

    Raises:
        ValueError: nothing matches (the message lists some paths).
    """
    patterns = check_patterns(patterns)
    if patterns is None:
        chosen = [i for i, v in enumerate(variables) if _is_default_kernel(v)]
    else:
        chosen = [
            i for i, v in enumerate(variables)
            if any(fnmatch.fnmatchcase(v.path, p) for p in patterns)
        ]
    if not chosen:
        paths = [v.path for v in variables][:6]
        what = ("no trainable kernel (a variable named 'kernel' with 2+ "
                "axes)" if patterns is None
                else f"no variable path matching {list(patterns)}")
        raise ValueError(
            f"Nothing to prune: {what}. Variable paths look like {paths}; "
            "pass `prune=` glob patterns such as '*dense*/kernel'."
        )
    return chosen
