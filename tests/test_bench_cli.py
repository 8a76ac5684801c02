"""`keras-fip bench`: a quick run on this backend, and bad arguments."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BACKEND
from keras_fip.bench import cli
from keras_fip.bench import report
from keras_fip.bench import runner
from keras_fip.bench.registry import METHODS


@pytest.mark.large
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
        return _instant_run(*args, **kwargs)

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


@pytest.mark.large
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


@pytest.mark.large
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


@pytest.mark.large
def test_opt_in_variants_run_by_name(tmp_path):
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "der", "fip-stored", "--out", str(out),
                     "--no-plots"]) == 0
    with open(out / "results.json") as f:
        runs = json.load(f)["runs"]
    assert sorted(r["method"] for r in runs) == ["der", "fip-stored"]


def _instant_run(stream_name, stream, method, seed, epochs):
    """A run's record without training: the CLI's own work, in milliseconds."""
    tasks = len(stream)
    matrix = [[0.9 if k <= t else 0.0 for k in range(tasks)]
              for t in range(tasks)]
    return {"stream": stream_name, "method": method, "seed": seed,
            "epochs_per_task": epochs, "matrix": matrix, "seconds": 0.01,
            "average_accuracy": 0.9, "forgetting": 0.0,
            "backward_transfer": 0.0}


def _bench_instantly(out, monkeypatch, *extra):
    monkeypatch.setattr(runner, "run", _instant_run)
    return cli.main(["bench", "--quick", "--streams", "split-digits",
                     "--methods", "finetune", "fip", "--out", str(out),
                     *extra])


def _manifest(out):
    with open(out / "results.json") as f:
        return json.load(f)["files"]


def test_without_matplotlib_the_results_are_kept_and_the_fix_is_named(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "bench"
    assert _bench_instantly(out, monkeypatch) == 0
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]
    assert sorted(_manifest(out)) == ["results.json", "results.md"]
    assert "| fip | 1 |" in (out / "results.md").read_text()
    err = capsys.readouterr().err
    assert "matplotlib is not installed" in err
    assert 'pip install ".[bench]"' in err
    assert f"the results are saved in {out}" in err


def test_a_plotting_import_error_keeps_the_results(tmp_path, monkeypatch,
                                                   capsys):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'matplotlib.pyplot'")

    monkeypatch.setattr(report, "plots", broken)
    monkeypatch.setattr(cli, "_can_plot", lambda: True)
    out = tmp_path / "bench"
    assert _bench_instantly(out, monkeypatch) == 0
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]
    err = capsys.readouterr().err
    assert "no plots (No module named 'matplotlib.pyplot')" in err
    assert 'pip install ".[bench]"' in err


def test_a_plotting_crash_keeps_the_results(tmp_path, monkeypatch, capsys):
    def crash(*args, **kwargs):
        raise RuntimeError("simulated plotting crash")

    monkeypatch.setattr(report, "plots", crash)
    monkeypatch.setattr(cli, "_can_plot", lambda: True)
    out = tmp_path / "bench"
    with pytest.raises(RuntimeError, match="simulated plotting crash"):
        _bench_instantly(out, monkeypatch)
    assert sorted(os.listdir(out)) == ["results.json", "results.md"]
    assert f"plotting failed; the results are saved in {out}" in (
        capsys.readouterr().err)


def test_plots_join_the_results_and_their_manifest(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    assert _bench_instantly(out, monkeypatch) == 0
    names = sorted(os.listdir(out))
    assert names == ["results.json", "results.md",
                     "split-digits_curves.png", "split-digits_matrices.png"]
    assert sorted(_manifest(out)) == names
    assert (out / "split-digits_curves.png").stat().st_size > 1000


def test_without_scikit_learn_the_digits_streams_stop_before_any_run(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    calls = []
    monkeypatch.setattr(runner, "run", lambda *args: calls.append(args))
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--streams", "split-digits",
                     "permuted-digits", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert ("the split-digits, permuted-digits streams need scikit-learn"
            in err)
    assert 'pip install ".[bench]"' in err
    assert not calls and not out.exists()


def test_without_wordnet_data_its_streams_stop_before_any_run(
        tmp_path, monkeypatch, capsys):
    from keras_fip.datasets import wordnet

    monkeypatch.setattr(wordnet, "WORDNET_NOUNS",
                        str(tmp_path / "no_wordnet" / "data.noun"))
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--streams", "split-wordnet",
                     "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "the split-wordnet stream needs Debian's WordNet data" in err
    assert "apt-get install wordnet-base" in err
    assert not out.exists()
