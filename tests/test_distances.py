import keras
import numpy as np
import pytest

from keras_fip import backend as fip_backend
from keras_fip import distances
from keras_fip.arrays import as_numpy


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


RNG = np.random.default_rng(0)
Y = RNG.normal(size=(5, 4)).astype("float32")
A = RNG.normal(size=(5, 4)).astype("float32")


def test_bhattacharyya_matches_formula():
    p, q = _softmax(Y.astype("float64")), _softmax(A.astype("float64"))
    # eps enters only the gradient (test below).
    expected = -np.log(np.sqrt(p * q).sum(-1))
    got = as_numpy(distances.bhattacharyya(Y, A))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_bhattacharyya_is_quadratic_fisher_near_anchor():
    # D(q + δ, q) ≈ ⅛ Σ δ² / q (the softmax Fisher metric) once eps is at its
    # 1e-10 floor (one near-zero class makes 1e-3·min q tiny).
    q = np.array([[0.4, 0.35, 0.25 - 1e-9, 1e-9]])
    delta = np.array([[5e-3, -3e-3, -2e-3, 0.0]])

    def bh(p):
        return float(as_numpy(distances.bhattacharyya(
            p.astype("float32"), q.astype("float32"), from_logits=False))[0])

    fisher = 0.125 * np.sum(delta[:, :3] ** 2 / q[:, :3])
    assert bh(q + delta) - bh(q) == pytest.approx(fisher, rel=0.1)


def test_squared_l2_and_kl_match_formulas():
    np.testing.assert_allclose(
        as_numpy(distances.squared_l2(Y, A)),
        ((Y - A) ** 2).sum(-1),
        rtol=1e-5,
    )
    p, q = _softmax(Y.astype("float64")), _softmax(A.astype("float64"))
    np.testing.assert_allclose(
        as_numpy(distances.kl(Y, A)),
        (q * (np.log(q) - np.log(p))).sum(-1),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("name", distances.DISTANCES)
def test_anchor_is_the_minimum(name):
    at_anchor = as_numpy(distances.get(name)(Y, Y))
    moved = as_numpy(distances.get(name)(Y + 0.3 * A, Y))
    assert np.all(at_anchor < moved)
    # Bhattacharyya's value is the exact distance (the reference eps would
    # put it below 0 there): every distance is 0 at the anchor.
    np.testing.assert_allclose(at_anchor, 0.0, atol=1e-6)


@pytest.mark.parametrize("name", distances.DISTANCES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_distances_are_never_negative_in_any_dtype(name, dtype):
    # Near-uniform outputs are where the reference eps made the
    # Bhattacharyya value negative (-0.005 a sample for 10 classes); low
    # precision outputs are cast to float32 first.
    rng = np.random.default_rng(1)
    anchor = keras.ops.cast(0.01 * rng.normal(size=(64, 10)), dtype)
    for scale in (0.0, 1e-3, 1e-2, 1.0):
        moved = keras.ops.cast(
            keras.ops.cast(anchor, "float32")
            + scale * rng.normal(size=(64, 10)), dtype)
        value = as_numpy(distances.get(name)(moved, anchor))
        assert value.dtype == np.float32
        assert np.all(value >= 0.0), (name, dtype, scale, value.min())


def test_bhattacharyya_gradient_is_the_reference_codes():
    # The value is the exact distance; the gradient is the reference
    # rule's, −∇ log Σ sqrt(p q + eps).
    q_logits = keras.ops.convert_to_tensor(A)
    y = keras.ops.convert_to_tensor(Y)
    p, q = _softmax(Y.astype("float64")), _softmax(A.astype("float64"))
    eps = max(1e-10, 1e-3 * q.min())
    root = np.sqrt(p * q + eps)
    d_p = -(q / (2.0 * root)) / root.sum(-1, keepdims=True)
    expected = p * (d_p - np.sum(d_p * p, -1, keepdims=True))
    _, (grad,) = fip_backend.value_and_grad(
        lambda ys: keras.ops.sum(distances.bhattacharyya(ys[0], q_logits)),
        [y])
    np.testing.assert_allclose(as_numpy(grad), expected, rtol=1e-3,
                               atol=1e-6)


def test_unknown_distance_is_rejected():
    with pytest.raises(ValueError, match="Unknown distance 'cosine'"):
        distances.get("cosine")


@pytest.mark.parametrize("shape", [(None,), (None, 3, 1), (None, 1)])
def test_distribution_distances_need_class_axis(shape):
    with pytest.raises(ValueError, match="num_classes"):
        distances.check_output_shape("bhattacharyya", shape)


def test_squared_l2_accepts_any_rank_but_scalar():
    distances.check_output_shape("squared_l2", (None, 3, 4))
    with pytest.raises(ValueError, match="batch axis"):
        distances.check_output_shape("squared_l2", (None,))


def test_logit_l2_compares_logits_and_probabilities_by_their_logits():
    np.testing.assert_allclose(as_numpy(distances.logit_l2(Y, A)),
                               ((Y - A) ** 2).sum(-1), rtol=1e-5)
    # Probabilities are compared as log p: the logits less their log-sum-exp.
    p, q = _softmax(Y.astype("float64")), _softmax(A.astype("float64"))
    want = ((np.log(p) - np.log(q)) ** 2).sum(-1)
    got = as_numpy(distances.logit_l2(p.astype("float32"),
                                      q.astype("float32"), from_logits=False))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # A probability of 0 is floored, not −inf.
    zero = np.array([[1.0, 0.0]], "float32")
    assert np.isfinite(as_numpy(distances.logit_l2(
        zero, np.array([[0.5, 0.5]], "float32"), from_logits=False))).all()
    with pytest.raises(ValueError, match="class scores"):
        distances.check_output_shape("logit_l2", (None, 1))
