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
