import numpy as np
import pytest

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
    eps = max(1e-10, 1e-3 * q.min())
    expected = -np.log(np.sqrt(p * q + eps).sum(-1))
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
    if name == "bhattacharyya":  # the reference eps shifts it below 0
        q = _softmax(Y.astype("float64"))
        expected = -np.log(np.sqrt(q * q + max(1e-10, 1e-3 * q.min())).sum(-1))
        np.testing.assert_allclose(at_anchor, expected, rtol=1e-3)
    else:
        np.testing.assert_allclose(at_anchor, 0.0, atol=1e-6)


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
