import numpy as np
import pytest

from keras_fip import continual_metrics as cm

R = np.array(
    [
        [0.99, 0.10, 0.00],
        [0.90, 0.98, 0.05],
        [0.80, 0.95, 0.97],
    ]
)


def test_definitions_on_a_known_matrix():
    assert cm.average_accuracy(R) == pytest.approx((0.80 + 0.95 + 0.97) / 3)
    # forgetting: best before the last task minus final, over old tasks.
    assert cm.forgetting(R) == pytest.approx(
        ((0.99 - 0.80) + (0.98 - 0.95)) / 2)
    assert cm.backward_transfer(R) == pytest.approx(
        ((0.80 - 0.99) + (0.95 - 0.98)) / 2
    )


def test_partial_matrix_uses_last_row():
    assert cm.average_accuracy(R[:2]) == pytest.approx((0.90 + 0.98) / 2)
    assert cm.forgetting(R[:1]) == 0.0
    assert cm.summary(R[:1])["backward_transfer"] == 0.0


def test_bad_matrix_is_rejected():
    with pytest.raises(ValueError, match="accuracy matrix"):
        cm.average_accuracy(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="accuracy matrix"):
        cm.forgetting(np.zeros(3))


def test_format_matrix_lists_rows():
    text = cm.format_matrix(R)
    assert len(text.splitlines()) == 4 and "0.970" in text
