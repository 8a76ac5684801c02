"""The spectrum of the metric tensor g, from products g·v alone.

Built on `keras_fip.metric_product` (g = Σ_x J_xᵀ H_x J_x, see there):

- `top_eigenpairs` / `top_eigenvalues`: the largest eigenvalues (and unit
  eigenvectors) by Lanczos with full reorthogonalisation.
- `spectral_density`: the whole eigenvalue distribution by stochastic
  Lanczos quadrature; `smoothed_density` turns its nodes and weights into
  a Gaussian-broadened density on a (log-λ) grid.
- `metric_spectrum`: when N·k (inputs × outputs) is small enough to form
  the Jacobian, the whole nonzero spectrum exactly, as the eigenvalues of
  the N·k × N·k Gram matrix H^½ J Jᵀ H^½ (`gram_eigenvalues` from a given
  J Jᵀ).
- `numerical_rank` and `fraction_below` summarise any list of
  eigenvalues against a tolerance relative to λ_max.

All of these run host side (NumPy float64 on the Lanczos vectors); they
are analysis tools, not part of a train step. `keras_fip.geometry`
re-exports every name.

Example:

```python
import keras, numpy as np, keras_fip
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
x = np.random.rand(2, 4).astype("float32")
# 15 weights; 2 inputs × 3 logits: g has rank 3 · min(2, 4 + 1) = 6.
values, vectors = keras_fip.spectrum.top_eigenpairs(model, x, k=2)
assert vectors.shape == (2, 15) and values[0] >= values[1]
spectrum = keras_fip.spectrum.metric_spectrum(model, x)   # 2·3 values
assert keras_fip.spectrum.numerical_rank(spectrum) == 6
```
"""

import numpy as np
from keras import ops
from keras import tree

from keras_fip import backend as fip_backend
from keras_fip.arrays import as_numpy
from keras_fip.metric_product import check_metric
from keras_fip.metric_product import metric_vector_product_values
from keras_fip.metric_product import model_values
from keras_fip.metric_product import variable_positions
from keras_fip.metric_product import variable_shapes


def flatten(arrays):
    """One float64 vector from a list of arrays (in their order)."""
    return np.concatenate([np.asarray(a, "float64").ravel() for a in arrays])


def unflatten(flat, shapes, dtype="float32"):
    """The inverse of `flatten`: arrays of `shapes` from one vector."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    if sum(sizes) != np.size(flat):
        raise ValueError(f"A vector of {np.size(flat)} entries does not "
                         f"fill the shapes {shapes} ({sum(sizes)} entries).")
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(np.asarray(flat[start:start + size]).reshape(shape)
                   .astype(dtype))
        start += size
    return out


def _flat_operator(model, x, metric, reduction, variables):
    """(v ↦ g v on flat float64 vectors, dim) at the current weights."""
    check_metric(metric, reduction)
    positions = variable_positions(model, variables)
    shapes = variable_shapes(model, positions)
    values, state = model_values(model)
    dtypes = [values[p].dtype for p in positions]

    def matvec(flat):
        vector = [ops.convert_to_tensor(a, dtype=d)
                  for a, d in zip(unflatten(flat, shapes), dtypes)]
        gv = metric_vector_product_values(model, values, state, x, vector,
                                          metric, reduction, positions)
        return flatten(as_numpy(g) for g in gv)

    return matvec, sum(int(np.prod(s)) for s in shapes)


def _check_count(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise ValueError(f"`{name}` must be an integer ≥ {low}; "
                         f"got {value!r}.")


def lanczos(matvec, start, steps):
    """`steps` Lanczos iterations with full reorthogonalisation.

    From q₁ = start/‖start‖, each step takes w = A qⱼ, αⱼ = qⱼᵀw, removes
    from w its components along all earlier q (classical Gram–Schmidt,
    twice, in float64: no spurious copies of converged eigenvalues), and
    sets βⱼ = ‖w‖, qⱼ₊₁ = w/βⱼ. It stops early when βⱼ ≤ 10⁻¹⁰ times the
    largest α or β so far (the Krylov space of `start` is exhausted).

    Args:
        matvec: v ↦ A v for a symmetric A, on flat float64 vectors.
        start: the start vector (nonzero).
        steps: the most iterations m.

    Returns:
        `(T, Q)`: the m × m tridiagonal T = Qᵀ A Q (diagonal α, off-diagonal
        β) and the m × dim orthonormal basis Q (rows), NumPy float64.
    """
    _check_count("steps", steps)
    start = np.asarray(start, "float64")
    norm = np.linalg.norm(start)
    if not norm > 0:
        raise ValueError("The Lanczos start vector is zero.")
    basis = np.empty((steps, start.size))
    basis[0] = start / norm
    alphas, betas, scale = [], [], 0.0
    for j in range(steps):
        w = np.asarray(matvec(basis[j]), "float64")
        alphas.append(float(basis[j] @ w))
        done = basis[:j + 1]
        for _ in range(2):
            w -= done.T @ (done @ w)
        beta = float(np.linalg.norm(w))
        scale = max(scale, abs(alphas[-1]), beta)
        if j == steps - 1 or beta <= 1e-10 * scale:
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    size = len(alphas)
    off = betas[:size - 1]
    tridiagonal = np.diag(alphas) + np.diag(off, 1) + np.diag(off, -1)
    return tridiagonal, basis[:size]


def top_eigenpairs(model, x, k=10, metric="logit", reduction="sum",
                   iterations=None, seed=0, variables=None):
    """The `k` largest eigenvalues of g and their unit eigenvectors.

    Lanczos (`lanczos`, one `metric_vector_product` per iteration, full
    reorthogonalisation) from a seeded Gaussian start; the Ritz pairs
    (θ, Q s) of the tridiagonal T = Qᵀ g Q approximate g's top eigenpairs
    (g v ≈ θ v), the largest converging first.

    Args:
        model: a built Keras model.
        x: the protected inputs.
        k: how many eigenpairs (default 10).
        metric: `"logit"` (default) or `"fisher"`.
        reduction: `"sum"` (default) or `"mean"` over the inputs.
        iterations: Lanczos steps (default `min(dim, 2k + 20)`).
        seed: seed of the start vector (default 0).
        variables: optional subset of the trainable variables (the block
            g_SS, as in `metric_vector_product`); default all.

    Returns:
        `(eigenvalues, eigenvectors)`: the `k` eigenvalues, descending
        (float64), and a `(k, dim)` float64 array whose rows are the
        orthonormal eigenvectors, flattened in `trainable_variables` order
        (of `variables` when given); `unflatten(row, shapes)` gives one per
        variable.
    """
    matvec, dim = _flat_operator(model, x, metric, reduction, variables)
    _check_count("k", k)
    if iterations is not None:
        _check_count("iterations", iterations)
    steps = min(dim, iterations or 2 * k + 20)
    if not 0 < k <= steps:
        raise ValueError(f"`k` must lie in [1, {steps}]; got {k}.")
    start = np.random.default_rng(seed).normal(size=dim)
    tridiagonal, basis = lanczos(matvec, start, steps)
    if len(tridiagonal) < k:
        raise ValueError(
            f"The Krylov space of the start vector has dimension "
            f"{len(tridiagonal)} < k = {k}: g has rank below k here; ask "
            "for fewer eigenpairs.")
    ritz, vectors = np.linalg.eigh(tridiagonal)
    order = np.argsort(ritz)[::-1][:k]
    return ritz[order], (basis.T @ vectors[:, order]).T


def top_eigenvalues(model, x, k=10, metric="logit", reduction="sum",
                    iterations=None, seed=0, variables=None):
    """The `k` largest eigenvalues of g by Lanczos, reorthogonalised.

    `top_eigenpairs` without the eigenvectors; same arguments.

    Returns:
        The `k` largest eigenvalues, descending (NumPy, float64).
    """
    return top_eigenpairs(model, x, k, metric, reduction, iterations, seed,
                          variables)[0]


PROBES = ("rademacher", "gaussian")


def spectral_density(model, x, metric="logit", reduction="sum",
                     num_probes=10, iterations=40, seed=0,
                     probe="rademacher", variables=None):
    """The eigenvalue distribution of g by stochastic Lanczos quadrature.

    The spectral density of the D × D metric is φ(λ) = (1/D) Σᵢ δ(λ − λᵢ),
    so ∫ f dφ = tr f(g) / D. For a random unit probe q = z/‖z‖ (z with
    Rademacher ±1 or Gaussian entries), E[q qᵀ] = I/D, hence
    tr f(g)/D = E[qᵀ f(g) q] = E[Σᵢ (qᵀuᵢ)² f(λᵢ)]. Lanczos from q gives
    the tridiagonal T = Σⱼ θⱼ sⱼ sⱼᵀ, and qᵀ f(g) q ≈ Σⱼ τⱼ² f(θⱼ) with
    τⱼ = (sⱼ)₁, the first component of T's j-th eigenvector (Gauss
    quadrature, exact for polynomials f of degree < 2m with m steps). The
    estimate averages over the probes:

        φ(λ) ≈ (1/n) Σ_probes Σⱼ τⱼ² δ(λ − θⱼ).

    Each probe's weights τⱼ² sum to 1, so the total weight is 1; its first
    moment Σ τⱼ² θⱼ = qᵀ g q is the Hutchinson estimate of tr(g)/D.
    The nodes are accurate at the top of the spectrum and coarse in the
    bulk; a null space of g (rank < D) shows as nodes at ≈ 0 holding about
    (D − rank)/D of the weight.

    Args:
        model: a built Keras model.
        x: the protected inputs.
        metric: `"logit"` (default) or `"fisher"`.
        reduction: `"sum"` (default) or `"mean"` over the inputs.
        num_probes: n, the random probes (default 10).
        iterations: Lanczos steps m per probe (default 40, at most D).
        seed: seed of the probes (default 0).
        probe: `"rademacher"` (default) or `"gaussian"` entries.
        variables: optional subset of the trainable variables (the block
            g_SS); default all.

    Returns:
        `(nodes, weights)`: 1-D float64 arrays of the Ritz values θ of
        every probe and their weights τ²/n (summing to 1).
    """
    if probe not in PROBES:
        raise ValueError(f"Unknown probe {probe!r}; expected one of "
                         f"{PROBES}.")
    _check_count("num_probes", num_probes)
    _check_count("iterations", iterations)
    matvec, dim = _flat_operator(model, x, metric, reduction, variables)
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for _ in range(num_probes):
        if probe == "rademacher":
            z = rng.choice((-1.0, 1.0), size=dim)
        else:
            z = rng.normal(size=dim)
        tridiagonal, _ = lanczos(matvec, z, min(dim, iterations))
        ritz, vectors = np.linalg.eigh(tridiagonal)
        nodes.append(ritz)
        weights.append(vectors[0] ** 2 / num_probes)
    return np.concatenate(nodes), np.concatenate(weights)


def smoothed_density(nodes, weights, grid, width=0.1, log_scale=True):
    """A Gaussian-broadened density from `spectral_density`'s output.

    ρ(t) = Σⱼ wⱼ 𝒩(t; tⱼ, width²) with tⱼ = log₁₀ θⱼ (`log_scale=True`:
    a density per decade of λ, for a log-λ axis) or tⱼ = θⱼ. On the log
    scale the nodes θ ≤ 0 (g's null space, up to rounding) have no place
    and are left out: ∫ρ dt is then the weight of the positive nodes.

    Args:
        nodes: the Ritz values θ.
        weights: their weights w.
        grid: the points t (log₁₀ λ when `log_scale`).
        width: the Gaussian's standard deviation, in units of t (default
            0.1 decade).
        log_scale: broaden in log₁₀ λ (default) or in λ.

    Returns:
        ρ on `grid` (NumPy float64).

    Raises:
        ValueError: `width` ≤ 0 or nodes and weights of different sizes.
    """
    nodes = np.asarray(nodes, "float64").ravel()
    weights = np.asarray(weights, "float64").ravel()
    if nodes.shape != weights.shape:
        raise ValueError(f"{nodes.size} nodes but {weights.size} weights.")
    if not width > 0:
        raise ValueError(f"`width` must be positive; got {width!r}.")
    if log_scale:
        keep = nodes > 0
        nodes, weights = np.log10(nodes[keep]), weights[keep]
    grid = np.asarray(grid, "float64")
    gauss = np.exp(-0.5 * ((grid[..., None] - nodes) / width) ** 2)
    return gauss @ weights / (width * np.sqrt(2 * np.pi))


def _check_tolerance(relative_tolerance):
    if not 0 < relative_tolerance < 1:
        raise ValueError("`relative_tolerance` must lie in (0, 1); got "
                         f"{relative_tolerance!r}.")


def numerical_rank(eigenvalues, relative_tolerance=1e-3):
    """How many eigenvalues exceed `relative_tolerance` · λ_max.

    Args:
        eigenvalues: eigenvalues of a positive semi-definite matrix (all
            of them, or its largest ones: the rest count as zero).
        relative_tolerance: the cut, relative to the largest eigenvalue
            (default 10⁻³).

    Returns:
        The count (int; 0 when λ_max ≤ 0).
    """
    _check_tolerance(relative_tolerance)
    eigenvalues = np.asarray(eigenvalues, "float64").ravel()
    if eigenvalues.size == 0:
        raise ValueError("No eigenvalues given.")
    top = eigenvalues.max()
    if top <= 0:
        return 0
    return int(np.sum(eigenvalues > relative_tolerance * top))


def fraction_below(eigenvalues, relative_tolerance=1e-3, dimension=None):
    """The share of the D eigenvalues at or below `relative_tolerance`·λ_max.

    Args:
        eigenvalues: the listed eigenvalues (for instance the N·k of
            `metric_spectrum`).
        relative_tolerance: the cut, relative to λ_max (default 10⁻³).
        dimension: D, the matrix size; the D − len(eigenvalues) unlisted
            eigenvalues count as zero (default: len(eigenvalues)).

    Returns:
        (D − numerical_rank) / D, a float in [0, 1].
    """
    eigenvalues = np.asarray(eigenvalues, "float64").ravel()
    rank = numerical_rank(eigenvalues, relative_tolerance)
    dimension = eigenvalues.size if dimension is None else dimension
    if dimension < eigenvalues.size:
        raise ValueError(f"`dimension` {dimension} is smaller than the "
                         f"{eigenvalues.size} eigenvalues given.")
    return (dimension - rank) / dimension


def output_jacobian(model, x, variables=None):
    """J = ∂f/∂w, one row per (input, output) pair, as a NumPy array.

    Row i·k + c is the gradient of output c on input i (a reverse pass on
    that input alone), so forming J costs N·k backward passes and
    N·k × D floats of memory: for small N·k.

    Args:
        model: a built Keras model with outputs of shape (N, k).
        x: the inputs (a batch; any structure the model takes).
        variables: optional subset of the trainable variables (their
            columns only); default all.

    Returns:
        J, float32, shape (N·k, D) with columns in `trainable_variables`
        order (of `variables` when given).
    """
    positions = variable_positions(model, variables)
    values, state = model_values(model)
    chosen = [values[p] for p in positions]
    n = len(tree.flatten(x)[0])
    rows = None
    for i in range(n):
        single = tree.map_structure(lambda a: a[i:i + 1], x)

        def output(vals, c, single=single):
            full = list(values)
            for p, value in zip(positions, vals):
                full[p] = value
            out, _ = model.stateless_call(full, state, single, training=False)
            return ops.cast(ops.reshape(out, (-1,))[c], "float32")

        if rows is None:
            k = int(np.prod(ops.shape(model(single, training=False))[1:]))
            dim = sum(int(np.prod(ops.shape(v))) for v in chosen)
            rows = np.empty((n * k, dim), "float32")
        for c in range(k):
            _, grads = fip_backend.value_and_grad(
                lambda vals, c=c: output(vals, c), chosen)
            rows[i * k + c] = np.concatenate(
                [as_numpy(g).ravel() for g in grads])
    return rows


def metric_spectrum(model, x, metric="logit", reduction="sum",
                    variables=None):
    """The min(N·k, D) largest eigenvalues of g, exactly, by a Gram matrix.

    g = Jᵀ H J and the N·k × N·k Gram matrix M = H^½ J Jᵀ H^½ share their
    nonzero eigenvalues (M = A Aᵀ and g = Aᵀ A for A = H^½ J), and the
    other D − N·k eigenvalues of g (when N·k < D) are exactly zero. J comes from
    `output_jacobian` (N·k backward passes), M from one N·k × D product in
    float32 (kept float64 for the eigenvalues): for N·k up to ~10⁴.

    Args:
        model: a built Keras model with logits of shape (N, k).
        x: the protected inputs.
        metric: `"logit"` (H = I, default) or `"fisher"` (H = diag p − ppᵀ
            per input, whose null vector 1 caps the rank at N·(k − 1)).
        reduction: `"sum"` (default) or `"mean"` (g/N) over the inputs.
        variables: optional subset of the trainable variables (the block
            g_SS); default all.

    Returns:
        The min(N·k, D) largest eigenvalues, descending (NumPy float64;
        those past the rank are zero up to rounding).
    """
    check_metric(metric, reduction)
    jacobian = output_jacobian(model, x, variables)
    outputs = as_numpy(model(x, training=False))
    size = min(jacobian.shape)
    gram = jacobian @ jacobian.T
    del jacobian
    return gram_eigenvalues(gram, outputs, metric, reduction)[:size]


def gram_eigenvalues(gram, outputs, metric="logit", reduction="sum"):
    """The eigenvalues of H^½ (J Jᵀ) H^½ from the Gram matrix J Jᵀ.

    The nonzero eigenvalues of g = Jᵀ H J (see `metric_spectrum`, which
    forms J Jᵀ and calls this). The leading (n·k) × (n·k) block of the
    Gram of N inputs is the Gram of the first n, so one J Jᵀ gives the
    spectra for every n ≤ N.

    Args:
        gram: J Jᵀ, (N·k) × (N·k), rows ordered (input, output) as
            `output_jacobian` makes them.
        outputs: the (N, k) outputs (logits) on the N inputs.
        metric: `"logit"` (default) or `"fisher"`.
        reduction: `"sum"` (default) or `"mean"` over the N inputs.

    Returns:
        The N·k eigenvalues, descending (NumPy float64).
    """
    check_metric(metric, reduction)
    gram = np.asarray(gram, "float64")
    logits = np.asarray(outputs, "float64")
    n, k = logits.reshape(len(logits), -1).shape
    if gram.shape != (n * k, n * k):
        raise ValueError(f"A {gram.shape} Gram matrix does not match "
                         f"outputs of shape {logits.shape}.")
    if metric == "fisher":  # M = R (J Jᵀ) R, R = blockdiag(H_i^½)
        if logits.ndim != 2:
            raise ValueError("The Fisher metric needs (N, k) logits; got "
                             f"outputs of shape {logits.shape}.")
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        lam, u = np.linalg.eigh(
            p[:, :, None] * np.eye(k) - p[:, :, None] * p[:, None, :])
        root = (u * np.sqrt(np.clip(lam, 0, None))[:, None, :]) \
            @ np.swapaxes(u, 1, 2)
        left = root @ gram.reshape(n, k, n * k)      # R_i G_ij
        gram = (np.swapaxes(left.reshape(n * k, n, k), 0, 1) @ root)
        gram = np.swapaxes(gram, 0, 1).reshape(n * k, n * k)
    eigenvalues = np.sort(np.linalg.eigvalsh(gram))[::-1]
    return eigenvalues / n if reduction == "mean" else eigenvalues
