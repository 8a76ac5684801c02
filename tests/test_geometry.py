"""Metric-tensor products against the explicitly formed metric."""


import numpy as np
import pytest

import keras_fip
from conftest import make_mlp
from keras_fip import backend as fip_backend
from keras_fip.arrays import as_numpy


def _jacobian(model, x):
    """J (outputs × weights), one row per (sample, output) pair."""
    values = [w.value for w in model.trainable_variables]
    outputs = as_numpy(model(x))
    rows = []
    for i in range(outputs.shape[0]):
        for c in range(outputs.shape[1]):
            def component(vals, i=i, c=c):
                out, _ = model.stateless_call(vals, [], x, training=False)
                return out[i, c]

            _, grads = fip_backend.value_and_grad(component, values)
            rows.append(np.concatenate([as_numpy(g).ravel() for g in grads]))
    return np.array(rows, "float64"), outputs.astype("float64")


def _explicit(model, x, metric):
    jac, outputs = _jacobian(model, x)
    n, k = outputs.shape
    h = np.zeros((n * k, n * k))
    for i in range(n):
        p = np.exp(outputs[i] - outputs[i].max())
        p /= p.sum()
        block = np.eye(k) if metric == "logit" else np.diag(p) - np.outer(p, p)
        h[i * k:(i + 1) * k, i * k:(i + 1) * k] = block
    return jac.T @ h @ jac


@pytest.mark.parametrize("metric", ["logit", "fisher"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_metric_vector_product_equals_the_formed_metric(metric, reduction):
    model = make_mlp(hidden=(5,), inputs=3, classes=4, seed=1)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    shapes = [tuple(w.shape) for w in model.trainable_variables]
    rng = np.random.default_rng(1)
    v = [rng.normal(size=s).astype("float32") for s in shapes]
    got = keras_fip.geometry.metric_vector_product(
        model, x, v, metric=metric, reduction=reduction)
    g = _explicit(model, x, metric) / (6 if reduction == "mean" else 1)
    want = g @ np.concatenate([a.ravel() for a in v]).astype("float64")
    flat = np.concatenate([a.ravel() for a in got])
    np.testing.assert_allclose(flat, want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())
    assert [a.shape for a in got] == shapes


def test_bad_arguments_are_explained():
    model = make_mlp(hidden=(5,), inputs=3, classes=4)
    x = np.zeros((2, 3), "float32")
    v = [np.zeros(w.shape, "float32") for w in model.trainable_variables]
    with pytest.raises(ValueError, match="Unknown metric"):
        keras_fip.geometry.metric_vector_product(model, x, v, metric="hess")
    with pytest.raises(ValueError, match="Unknown reduction"):
        keras_fip.geometry.metric_vector_product(model, x, v,
                                                 reduction="max")
    with pytest.raises(ValueError, match="one array per trainable"):
        keras_fip.geometry.metric_vector_product(model, x, v[:1])



def test_the_product_runs_inside_a_compiled_function():
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        pytest.skip("no compiled function to check on torch")
    model = make_mlp(hidden=(5,), inputs=3, classes=4, seed=1)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    values = [w.value for w in model.trainable_variables]
    v = [np.ones(w.shape, "float32") for w in model.trainable_variables]

    def product(vals, vec):
        return keras_fip.geometry.metric_vector_product_values(
            model, vals, [], x, vec, metric="fisher")

    if backend == "jax":
        import jax
        compiled = jax.jit(product)
    else:
        import tensorflow as tf
        compiled = tf.function(product, jit_compile=True)
    got = [as_numpy(g) for g in compiled(values, v)]
    want = keras_fip.geometry.metric_vector_product(model, x, v,
                                                    metric="fisher")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["logit", "fisher"])
def test_lanczos_top_eigenvalues_equal_eigh_of_the_formed_metric(metric):
    model = make_mlp(hidden=(5,), inputs=3, classes=4, seed=1)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    want = np.sort(np.linalg.eigvalsh(_explicit(model, x, metric)))[::-1][:5]
    got = keras_fip.geometry.top_eigenvalues(model, x, k=5, metric=metric,
                                             iterations=60)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * want[0])
    # The paper's claim in miniature: rank ≤ N·k = 24 of 44 weights.
    assert np.sum(np.linalg.eigvalsh(_explicit(model, x, metric))
                  > 1e-6 * want[0]) <= 24


def _tiny():
    model = make_mlp(hidden=(5,), inputs=3, classes=4, seed=1)
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    return model, x


@pytest.mark.parametrize("metric", ["logit", "fisher"])
def test_top_eigenpairs_satisfy_the_eigen_equation_of_the_formed_metric(
        metric):
    model, x = _tiny()
    g = _explicit(model, x, metric)
    want = np.sort(np.linalg.eigvalsh(g))[::-1][:4]
    values, vectors = keras_fip.geometry.top_eigenpairs(
        model, x, k=4, metric=metric, iterations=44)
    assert vectors.shape == (4, 44)
    np.testing.assert_allclose(values, want, rtol=1e-4)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(4), atol=1e-8)
    residual = g @ vectors.T - vectors.T * values
    assert np.abs(residual).max() < 1e-4 * want[0]
    # Same eigenvalues as top_eigenvalues, which shares the Lanczos run.
    np.testing.assert_allclose(
        keras_fip.geometry.top_eigenvalues(model, x, k=4, metric=metric,
                                           iterations=44), values)


def test_lanczos_builds_an_orthonormal_basis_and_stops_on_a_low_rank_matrix():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 3))
    matrix = a @ a.T  # rank 3: the Krylov space of any start is ≤ 4-dim
    tridiagonal, basis = keras_fip.geometry.lanczos(
        lambda v: matrix @ v, rng.normal(size=30), 20)
    assert len(basis) <= 4
    np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)),
                               atol=1e-10)
    np.testing.assert_allclose(basis @ matrix @ basis.T, tridiagonal,
                               atol=1e-8)
    top = np.sort(np.linalg.eigvalsh(tridiagonal))[::-1][:3]
    np.testing.assert_allclose(top, np.sort(np.linalg.eigvalsh(matrix))
                               [::-1][:3], rtol=1e-9)


@pytest.mark.large
@pytest.mark.parametrize("metric", ["logit", "fisher"])
def test_spectral_density_weights_sum_to_one_and_match_the_trace(metric):
    model, x = _tiny()
    g = _explicit(model, x, metric)
    dim, probes = len(g), 20
    nodes, weights = keras_fip.geometry.spectral_density(
        model, x, metric=metric, num_probes=probes, iterations=12, seed=3)
    assert nodes.shape == weights.shape and np.all(weights >= 0)
    assert abs(weights.sum() - 1) < 1e-9
    # Σ w θ = mean over probes of qᵀ g q, Hutchinson's estimate of
    # tr(g)/D. For Rademacher z, Var(zᵀgz) = 2(‖g‖_F² − Σ gᵢᵢ²); with
    # q = z/√D the mean of 20 probes is within 4 of its standard
    # deviations of tr(g)/D (a failure chance below 10⁻⁴).
    sigma = np.sqrt(2 * (np.sum(g ** 2) - np.sum(np.diag(g) ** 2))
                    / probes) / dim
    assert abs(weights @ nodes - np.trace(g) / dim) < 4 * sigma
    # The null space (D − rank eigenvalues at 0) holds its share.
    rank = np.sum(np.linalg.eigvalsh(g) > 1e-6 * np.abs(g).max())
    full = keras_fip.geometry.spectral_density(
        model, x, metric=metric, num_probes=probes, iterations=dim,
        probe="gaussian")
    tiny = full[1][full[0] < 1e-5 * np.linalg.eigvalsh(g).max()].sum()
    assert abs(tiny - (dim - rank) / dim) < 0.15


def test_smoothed_density_integrates_to_the_positive_weight():
    nodes = np.array([-1e-9, 0.0, 1e-2, 1.0, 10.0])
    weights = np.array([0.3, 0.1, 0.2, 0.3, 0.1])
    grid = np.linspace(-6, 4, 2001)
    rho = keras_fip.geometry.smoothed_density(nodes, weights, grid,
                                              width=0.1)
    assert np.trapezoid(rho, grid) == pytest.approx(0.6, rel=1e-6)
    assert grid[np.argmax(rho)] == pytest.approx(0.0, abs=0.01)
    linear = keras_fip.geometry.smoothed_density(
        nodes, weights, np.linspace(-5, 15, 4001), width=0.2,
        log_scale=False)
    assert np.trapezoid(linear, np.linspace(-5, 15, 4001)) == \
        pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("metric,per_input", [("logit", 4), ("fisher", 3)])
def test_numerical_rank_of_a_linear_model_is_known(metric, per_input):
    # Logits W x + b: J_x = [x ⊗ I_k, I_k], so g has rank k·min(N, d + 1)
    # (the Fisher: (k − 1)·min(N, d + 1), as H_x 1 = 0). D = 16.
    model = make_mlp(hidden=(), inputs=3, classes=4, seed=2)
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    geometry = keras_fip.geometry
    for n in (1, 2, 6):
        spectrum = geometry.metric_spectrum(model, x[:n], metric=metric)
        assert spectrum.shape == (min(4 * n, 16),)
        rank = per_input * min(n, 4)
        assert geometry.numerical_rank(spectrum) == rank
        g = _explicit(model, x[:n], metric)
        assert np.linalg.matrix_rank(g, tol=1e-3 * np.abs(g).max()) == rank
        assert geometry.fraction_below(spectrum, dimension=16) == \
            pytest.approx((16 - rank) / 16)


@pytest.mark.parametrize("metric", ["logit", "fisher"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_metric_spectrum_is_the_nonzero_spectrum_of_the_formed_metric(
        metric, reduction):
    model, x = _tiny()
    g = _explicit(model, x, metric) / (6 if reduction == "mean" else 1)
    want = np.sort(np.linalg.eigvalsh(g))[::-1][:24]
    got = keras_fip.geometry.metric_spectrum(model, x, metric, reduction)
    np.testing.assert_allclose(got, want, atol=1e-5 * want[0])
    jac = keras_fip.geometry.output_jacobian(model, x)
    np.testing.assert_allclose(jac, _jacobian(model, x)[0], rtol=1e-5,
                               atol=1e-6)
    # The leading block of the Gram of 6 inputs is the Gram of the first 2.
    outputs = as_numpy(model(x))
    g2 = _explicit(model, x[:2], metric) / (2 if reduction == "mean" else 1)
    first = keras_fip.geometry.gram_eigenvalues(
        (jac @ jac.T)[:8, :8], outputs[:2], metric, reduction)
    np.testing.assert_allclose(
        first, np.sort(np.linalg.eigvalsh(g2))[::-1][:8],
        atol=1e-5 * want[0])


def test_variables_restrict_the_metric_to_their_block():
    model, x = _tiny()
    g = _explicit(model, x, "fisher")
    kernel, bias = model.trainable_variables[2:]  # the output layer
    block = slice(15 + 5, 44)  # after 3·5 + 5 first-layer weights
    rng = np.random.default_rng(2)
    v = [rng.normal(size=kernel.shape), rng.normal(size=bias.shape)]
    got = keras_fip.geometry.metric_vector_product(
        model, x, v, metric="fisher", variables=[kernel, bias])
    assert [a.shape for a in got] == [tuple(kernel.shape), tuple(bias.shape)]
    want = g[block, block] @ np.concatenate([a.ravel() for a in v])
    np.testing.assert_allclose(np.concatenate([a.ravel() for a in got]),
                               want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    values = keras_fip.geometry.top_eigenvalues(
        model, x, k=3, metric="fisher", variables=[kernel, bias],
        iterations=24)
    np.testing.assert_allclose(
        values, np.sort(np.linalg.eigvalsh(g[block, block]))[::-1][:3],
        rtol=1e-4)
    spectrum = keras_fip.geometry.metric_spectrum(
        model, x, "fisher", variables=[kernel, bias])
    np.testing.assert_allclose(
        spectrum[:3], values, rtol=1e-4)


def test_weights_take_the_metric_elsewhere_without_moving_the_model():
    model, x = _tiny()
    before = [as_numpy(w.value).copy() for w in model.trainable_variables]
    elsewhere = [w + 0.3 for w in before]
    v = [np.ones_like(w) for w in before]
    got = keras_fip.geometry.metric_vector_product(model, x, v,
                                                   weights=elsewhere)
    for w, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(as_numpy(w.value), b)
    model.set_weights(elsewhere)
    want = keras_fip.geometry.metric_vector_product(model, x, v)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        np.concatenate([a.ravel() for a in got]),
        np.concatenate([a.ravel() for a in keras_fip.geometry
                        .metric_vector_product(model, x, v,
                                               weights=before)]))


def test_spectrum_arguments_are_checked():
    geometry = keras_fip.geometry
    model, x = _tiny()
    other = make_mlp(hidden=(2,), inputs=3, classes=4)
    with pytest.raises(ValueError, match="trainable variables of the model"):
        geometry.top_eigenvalues(model, x, k=2,
                                 variables=other.trainable_variables[:1])
    with pytest.raises(ValueError, match="empty"):
        geometry.top_eigenpairs(model, x, k=2, variables=[])
    with pytest.raises(ValueError, match="twice"):
        w = model.trainable_variables[0]
        geometry.top_eigenpairs(model, x, k=2, variables=[w, w])
    with pytest.raises(ValueError, match=r"`k` must lie in \[1, 44\]"):
        geometry.top_eigenpairs(model, x, k=50, iterations=60)
    with pytest.raises(ValueError, match="`k` must be an integer"):
        geometry.top_eigenpairs(model, x, k=0)
    with pytest.raises(ValueError, match="Unknown probe"):
        geometry.spectral_density(model, x, probe="uniform")
    with pytest.raises(ValueError, match="`num_probes` must be"):
        geometry.spectral_density(model, x, num_probes=0)
    with pytest.raises(ValueError, match="Unknown metric"):
        geometry.metric_spectrum(model, x, metric="hessian")
    with pytest.raises(ValueError, match="relative_tolerance"):
        geometry.numerical_rank([1.0, 0.5], relative_tolerance=1.0)
    with pytest.raises(ValueError, match="No eigenvalues"):
        geometry.numerical_rank([])
    with pytest.raises(ValueError, match="smaller than"):
        geometry.fraction_below([3.0, 2.0, 1.0], dimension=2)
    with pytest.raises(ValueError, match="`width` must be positive"):
        geometry.smoothed_density([1.0], [1.0], [0.0], width=0)
    with pytest.raises(ValueError, match="does not fill"):
        geometry.unflatten(np.zeros(5), [(2, 3)])
    with pytest.raises(ValueError, match="`weights` needs one array"):
        geometry.metric_vector_product(
            model, x, [np.zeros(w.shape) for w in model.trainable_variables],
            weights=[np.zeros((3, 5))])
    with pytest.raises(ValueError, match="does not match"):
        geometry.gram_eigenvalues(np.eye(6), np.zeros((2, 4)))
    assert geometry.numerical_rank([0.0, 0.0]) == 0


def test_geometry_is_the_product_and_the_spectrum_modules_together():
    from keras_fip import metric_product
    from keras_fip import spectrum

    for name in keras_fip.geometry.__all__:
        home = (metric_product if hasattr(metric_product, name)
                else spectrum)
        assert getattr(keras_fip.geometry, name) is getattr(home, name)
    assert set(keras_fip.geometry.__all__) >= {
        "metric_vector_product_values", "METRICS", "REDUCTIONS",
        "top_eigenpairs", "numerical_rank", "spectral_density",
        "flatten", "unflatten"}
    # The in-step product does not depend on the analysis tools.
    with open(metric_product.__file__, encoding="utf-8") as source:
        assert "spectrum" not in "".join(
            line for line in source if line.startswith(("import", "from")))
