"""The composition experiment's digits version (the large tier)."""

import os

import pytest

from keras_fip import composition

BENCHMARKS = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


@pytest.mark.large
def test_digits_orders_of_sparsify_and_learn(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(BENCHMARKS)
    import compose_orders

    results = compose_orders.main(
        ["--data", "digits", "--seeds", "0", "--sparsities", "0.5", "0.9",
         "--out", str(tmp_path)])
    rows = {(r["method"], r["order"], r["sparsity_target"]): r
            for r in results["rows"]}
    assert len(rows) == 8
    for (method, order, s), row in rows.items():
        assert row["sparsity"] == pytest.approx(s, abs=0.01), (method, order)
    root = results["root"]["A"]
    assert root > 0.9
    for s in (0.5, 0.9):
        # FIP keeps task A whichever comes first; fine-tuning on B alone
        # forgets it (the baseline's pruning afterwards fine-tunes on A and
        # B, and wins it back).
        for order in compose_orders.ORDERS:
            assert rows[("fip", order, s)]["A"] > root - 0.1, (order, s)
        assert rows[("baseline", "prune-learn", s)]["A"] < root - 0.3
        assert (rows[("fip", "prune-learn", s)]["A"]
                > rows[("baseline", "prune-learn", s)]["A"] + 0.3)
        assert rows[("baseline", "learn-prune", s)]["A"] > root - 0.1
    # Pruning 90 % first leaves FIP too few free weights to learn B.
    assert (rows[("fip", "prune-learn", 0.9)]["B"]
            < rows[("fip", "learn-prune", 0.9)]["B"] - 0.1)
    # The graph comes back from the files alone.
    directory = tmp_path / f"compose_digits_test_{results['backend']}" / "seed0"
    graph = composition.NetworkGraph.read(directory)
    assert len(graph) == 1 + 2 * (1 + 3 * 2)
    assert graph.path_to("A-sparse90-learnB") == ["A", "A-sparse90",
                                                  "A-sparse90-learnB"]
    stem = tmp_path / f"compose_digits_test_{results['backend']}"
    assert os.path.getsize(f"{stem}.png") > 10_000
    assert "| fip | prune-learn | 0.9 |" in capsys.readouterr().out
