"""The 0.2.0 rewrite reproduces what 0.1.0 measured (quick bench runs).

Every bench method, one seed, one epoch per task, on Split-digits and
Split-WordNet, on the current backend: the accuracy matrices equal the ones
recorded before the rewrite (`tests/data/bench_record.json`).
"""

import numpy as np
import pytest

from bench_record import recorded
from bench_record import rerun
from conftest import BACKEND

RUNS = recorded("quick", BACKEND)
STREAMS = {}


@pytest.mark.parametrize("stream, method", sorted(RUNS))
def test_quick_bench_run_matches_the_record(stream, method):
    pytest.importorskip("sklearn")
    if stream == "split-wordnet":
        import os
        if not os.path.exists("/usr/share/wordnet/data.noun"):
            pytest.skip("Debian's wordnet-base is not installed")
    epochs, seed, want = RUNS[stream, method]
    got = rerun(stream, method, epochs, seed, STREAMS)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOLERANCE)


# One test sample is 1/539 (digits) or 1/300 (WordNet) of a task's
# accuracy; the rewrite reorders no arithmetic of a step, so the matrices
# are expected to match to the last digit.
TOLERANCE = 1e-9
