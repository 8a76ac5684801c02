"""The examples run, in a fast mode, on the current backend."""

import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_connect_two_optima_walks_from_a_toward_b(capsys):
    pytest.importorskip("sklearn")
    example = _load("connect_two_optima")
    line, fip = example.main(["--epochs", "3", "--steps", "100",
                              "--epsilon", "0.1"])
    assert len(line) == len(fip) == 11
    # Both paths start at A; the line ends at B; FIP moves toward B.
    assert line[0] == pytest.approx(fip[0], rel=1e-5)
    assert line[-1][1] == 0.0
    assert fip[-1][1] < 0.9 * fip[0][1]
    assert "| point | line: test acc" in capsys.readouterr().out
