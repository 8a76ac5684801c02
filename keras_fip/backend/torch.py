"""Gradients for the PyTorch backend.

Keras applies gradients under `torch.no_grad()`, so the graph for the
invariance term is built under `torch.enable_grad()`.
"""

import numpy as np
import torch


def value_and_grad(fn, values):
    """`(fn(values), d fn / d values)`; see `keras_fip.backend`."""
    with torch.enable_grad():
        leaves = [v.detach().requires_grad_(True) for v in values]
        value = fn(leaves)
        grads = torch.autograd.grad(value, leaves, allow_unused=True)
    grads = [
        torch.zeros_like(leaf) if g is None else g
        for g, leaf in zip(grads, leaves)
    ]
    return value.detach(), grads


def to_dense(x):
    """Gradients are already dense on this backend."""
    return x



def to_numpy(x):
    """A tensor as NumPy without NumPy's `__array__(copy=...)` warning."""
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    x = x.detach().cpu()
    if x.dtype == torch.bfloat16:
        x = x.to(torch.float32)
    return x.numpy().copy()  # a copy, as np.array would give


def jvp(fn, values, tangents):
    """`(fn(values), J tangents)` by the double-VJP trick: J t = ∂/∂r
    ⟨Jᵀ r, t⟩ (two reverse passes; `torch.func.jvp` does not trace
    through Keras's stateless call)."""
    with torch.enable_grad():
        leaves = [v.detach().requires_grad_(True) for v in values]
        out = fn(leaves)
        probe = torch.zeros_like(out, requires_grad=True)
        pulled = torch.autograd.grad(out, leaves, probe, create_graph=True,
                                     allow_unused=True)
        inner = sum((p * t).sum() for p, t in zip(pulled, tangents)
                    if p is not None)
        tangent, = torch.autograd.grad(inner, probe)
    return out.detach(), tangent


def compile_function(fn):
    """`fn` as it is: Keras runs the torch backend eagerly."""
    return fn
