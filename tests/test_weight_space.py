"""Per-layer ΔW size and rank, for LoRA and for unrestricted changes."""

import keras
import numpy as np
import pytest

from keras_fip import weight_space
from keras_fip.arrays import as_numpy


def _dense_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    hidden = keras.layers.Dense(10, name="query")(inputs)
    outputs = keras.layers.Dense(3, name="head")(hidden)
    return keras.Model(inputs, outputs)


def test_numerical_and_energy_rank_of_known_matrices():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 15))
    assert weight_space.numerical_rank(low) == 3
    assert weight_space.numerical_rank(np.zeros((4, 4))) == 0
    spiky = np.diag([10.0, 1.0, 0.1, 0.01])
    assert weight_space.energy_rank(spiky, fraction=0.9) == 1
    assert weight_space.energy_rank(spiky, fraction=0.99995) == 3


def test_lora_change_on_a_dense_layer_has_rank_r():
    model = _dense_model()
    before = weight_space.kernel_snapshot(model, layer_names=("query",))
    layer = model.get_layer("query")
    layer.enable_lora(2)
    rng = np.random.default_rng(1)
    layer.lora_kernel_b.assign(rng.normal(size=(2, 10)).astype("float32"))
    (row,) = weight_space.weight_changes(model, before, layer_names=("query",))
    assert row["layer"] == "query" and row["shape"] == [12, 10]
    assert row["rank"] == 2 and row["energy_rank"] <= 2
    delta = as_numpy(layer.kernel) - before["query"]
    want = np.linalg.norm(delta) / np.linalg.norm(before["query"])
    np.testing.assert_allclose(row["relative_change"], want, rtol=1e-4)


def test_unrestricted_change_is_full_rank_and_zero_change_is_rank_zero():
    model = _dense_model()
    before = weight_space.kernel_snapshot(model, layer_names=("query",))
    (still,) = weight_space.weight_changes(model, before, ("query",))
    assert still["rank"] == 0 and still["relative_change"] == 0.0
    layer = model.get_layer("query")
    rng = np.random.default_rng(2)
    layer.kernel.assign(before["query"].astype("float32")
                        + 1e-2 * rng.normal(size=(12, 10)).astype("float32"))
    (moved,) = weight_space.weight_changes(model, before, ("query",))
    assert moved["rank"] == 10 and moved["relative_change"] > 0


def test_lora_on_bert_attention_is_low_rank_per_head():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=20, num_layers=2, num_heads=4, hidden_dim=16,
        intermediate_dim=16, max_sequence_length=6)
    before = weight_space.kernel_snapshot(backbone)
    assert len(before) == 4  # query and value of two layers
    backbone.enable_lora(1)
    rng = np.random.default_rng(3)
    for layer in backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False):
            b = layer.lora_kernel_b
            layer.lora_kernel_b.assign(
                rng.normal(size=tuple(b.shape)).astype("float32"))
    rows = weight_space.weight_changes(backbone, before)
    assert {r["layer"].rsplit("/", 1)[1] for r in rows} == {"query", "value"}
    # Keras applies LoRA to the last kernel axis: rank <= r per head.
    assert all(1 <= r["rank"] <= 4 for r in rows)


def test_bad_layer_names_and_foreign_reference_are_explained():
    model = _dense_model()
    with pytest.raises(ValueError, match="no layer with a kernel named"):
        weight_space.kernel_snapshot(model, layer_names=("nothing",))
    with pytest.raises(ValueError, match="no kernel for query"):
        weight_space.weight_changes(model, {"other": np.zeros((2, 2))},
                                    layer_names=("query",))


def test_numerical_rank_takes_relative_tolerance_and_the_old_rtol():
    matrix = np.diag([1.0, 0.1, 0.001])
    assert weight_space.numerical_rank(matrix, relative_tolerance=0.01) == 2
    with pytest.warns(DeprecationWarning, match="`rtol` is deprecated"):
        assert weight_space.numerical_rank(matrix, rtol=0.01) == 2
    with pytest.raises(TypeError, match="both `relative_tolerance`"):
        weight_space.numerical_rank(matrix, 0.01, rtol=0.01)
    with pytest.raises(ValueError, match="relative_tolerance"):
        weight_space.numerical_rank(matrix, relative_tolerance=1.5)


def test_numerical_rank_docstring_example_runs():
    import re
    import textwrap

    (block,) = re.findall(r"```python\n(.*?)```",
                          weight_space.numerical_rank.__doc__, re.S)
    exec(textwrap.dedent(block), {})
