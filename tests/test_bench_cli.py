"""`keras-fip bench`: a quick run on this backend, and bad arguments."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BACKEND
from keras_fip.bench import cli
from keras_fip.bench import runner
from keras_fip.bench.registry import METHODS


def test_quick_run_writes_json_table_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    code = cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--out", str(out)])
    assert code == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["backend"] == BACKEND
    assert set(results["versions"]) >= {"keras", "numpy", "python", "keras_fip"}
    runs = results["runs"]
    assert sorted(r["method"] for r in runs) == sorted(METHODS)
    assert len(runs) == len(METHODS)
    for run in runs:
        assert run["seed"] == 0 and run["seconds"] > 0
        assert len(run["matrix"]) == (1 if run["method"] == "joint" else 5)
    table = (out / "results.md").read_text()
    assert "Chaudhry" in table and "| fip | 1 |" in table
    assert (out / "split-digits_matrices.png").stat().st_size > 1000
    assert (out / "split-digits_curves.png").stat().st_size > 1000
    assert not [n for n in os.listdir(out) if n.startswith(".bench-")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "fip", "magic"], "unknown method 'magic'"),
        (["--streams", "imagenet"], "unknown stream 'imagenet'"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message(argv, message, tmp_path,
                                                    capsys):
    out = tmp_path / "out"
    assert cli.main(["bench", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_output_folder_is_rejected(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli.main(["bench", "--quick", "--out", str(blocker)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["bench", "--quick", "--out", str(blocker / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_a_failing_run_leaves_no_results(tmp_path, monkeypatch):
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    real = runner.run
    monkeypatch.setattr(runner, "run", flaky)
    out = tmp_path / "bench"
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main(["bench", "--quick", "--streams", "split-digits", "--methods",
                  "finetune", "fip", "--out", str(out), "--no-plots"])
    assert not out.exists() or not os.listdir(out)


def test_console_entry_point_exit_code():
    result = subprocess.run(
        [sys.executable, "-m", "keras_fip.bench.cli", "bench", "--methods",
         "nope"], capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert result.returncode == 2
    assert "unknown method 'nope'" in result.stderr


def test_a_quick_run_says_so_in_every_output(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "finetune", "fip", "--seeds", "3",
                     "--out", str(out)]) == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["quick"] is True and "QUICK" in results["note"]
    # What ran, not what was asked for: one seed, one epoch per task.
    assert results["config"]["seeds"] == 1
    assert results["config"]["epochs_per_task"] == {"split-digits": 1}
    assert {r["epochs_per_task"] for r in results["runs"]} == {1}
    assert (out / "results.md").read_text().startswith("**QUICK SMOKE RUN")
    assert sorted(results["files"]) == sorted(
        n for n in os.listdir(out))


def test_a_later_run_replaces_the_earlier_runs_files(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "finetune", "--out", str(out)]) == 0
    assert (out / "split-digits_curves.png").exists()
    assert cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "finetune", "--out", str(out),
                     "--no-plots"]) == 0
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]


def test_help_starts_without_keras_or_a_backend():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_fip.bench.cli",
         "bench", "--help"], capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": BACKEND})
    assert result.returncode == 0 and "--quick" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in result.stderr.splitlines() if "|" in line}
    assert not imported & {"keras", "tensorflow", "jax", "torch"}


def test_ctrl_c_ends_with_one_line_and_leaves_earlier_results(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    code = cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "fip", "--out", str(out)])
    assert code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0]
    assert os.listdir(out) == ["results.json"]
    assert (out / "results.json").read_text() == '{"earlier": true}'


def test_opt_in_variants_run_by_name(tmp_path):
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "der", "fip-stored", "--out", str(out),
                     "--no-plots"]) == 0
    with open(out / "results.json") as f:
        runs = json.load(f)["runs"]
    assert sorted(r["method"] for r in runs) == ["der", "fip-stored"]
