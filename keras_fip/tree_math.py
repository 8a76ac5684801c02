"""Vector arithmetic on lists of tensors (one tensor per variable)."""

from keras import ops


def global_norm(tensors):
    """The L2 norm of a list of tensors taken as one vector (float32)."""
    return ops.sqrt(
        sum(ops.sum(ops.square(ops.cast(t, "float32"))) for t in tensors)
    )


def dot(xs, ys):
    """Σ_i ⟨x_i, y_i⟩ over two lists of tensors (float32)."""
    return sum(
        ops.sum(ops.cast(x, "float32") * ops.cast(y, "float32"))
        for x, y in zip(xs, ys)
    )


def scaled(factor, tensors):
    """`factor · t` for each tensor, the scalar cast to each one's dtype."""
    return [ops.cast(factor, t.dtype) * t for t in tensors]
