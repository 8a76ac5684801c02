"""FIP on generative language models: per-token distances, padding masks,
anchor storages (outputs, top-k, weight snapshot) and LoRA, through a tiny
KerasHub `GPT2CausalLM` with its preprocessor (raw strings in)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_fip
from keras_fip import anchors as anchor_storage
from keras_fip import backend as fip_backend
from keras_fip import distances
from keras_fip.arrays import as_numpy
from keras_fip.callbacks import TaskBoundary
from keras_fip.callbacks import remember_task
from keras_fip.terms import Invariance

keras_hub = pytest.importorskip("keras_hub")

SEQUENCE = 12
TEXT_A = np.array(["the cat sat on a mat", "a dog ran far away",
                   "birds fly high up", "fish swim in the sea"] * 2)
TEXT_B = np.array(["run fast now", "go to bed early", "eat the food",
                   "sing a song"] * 2)


def _tokenizer():
    """A byte-level GPT-2 tokenizer with one merge (no files needed)."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    raw, chars = bytes_to_unicode()
    vocabulary = {c: b[0] for b, c in zip(raw, chars)}
    vocabulary["Ġt"] = 256
    vocabulary["<|endoftext|>"] = 257
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary,
                                          merges=["Ġ t"])


def _causal_lm(seed=0):
    keras.utils.set_random_seed(seed)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        _tokenizer(), sequence_length=SEQUENCE)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=258, num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=SEQUENCE, dropout=0.0)
    return keras_hub.models.GPT2CausalLM(backbone=backbone,
                                         preprocessor=preprocessor)


def _compile_fip(lm, storage="auto", beta=0.3, top_k=8, capacity=8, **kw):
    # The language-model workflows were measured with 0.6's defaults (top-k
    # anchors keep probabilities, which the Bhattacharyya distance reads).
    fip = keras_fip.FIPOptimizer.default_of_0_5(
        keras.optimizers.Adam(1e-2), beta=beta, memory_batch_size=4,
        memory=keras_fip.Memory(capacity, anchor_storage=storage,
                                top_k=top_k), **kw)
    lm.compile(optimizer=fip, weighted_metrics=[],
               loss=keras.losses.SparseCategoricalCrossentropy(
                   from_logits=True))
    return fip


def _adapt(lm, epochs=1):
    lm.fit(TEXT_B, epochs=epochs, batch_size=4, verbose=0,
           callbacks=[TaskBoundary(1, TEXT_B)])


def _logits(lm, x):
    return as_numpy(lm(x, training=False))


# ----------------------------------------------------------------------
# Per-token distances and the padding mask (no model)
# ----------------------------------------------------------------------
@pytest.mark.parametrize("distance", ["bhattacharyya", "kl", "squared_l2"])
@pytest.mark.parametrize("token_reduction", ["mean", "sum"])
def test_padded_positions_change_neither_the_term_nor_its_gradient(
        distance, token_reduction):
    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(3, 5, 7)).astype("float32")
    anchors = rng.normal(size=(3, 5, 7)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]],
                    "bool")
    term = Invariance(distance, "sum", token_reduction=token_reduction)
    changed = outputs.copy()
    changed[~mask] = rng.normal(size=(int((~mask).sum()), 7)) * 50.0

    def value_and_grad(y):
        def loss(values):
            return term.loss(values[0], ops.convert_to_tensor(anchors), None,
                             inputs={"padding_mask": mask})
        value, grads = fip_backend.value_and_grad(
            loss, [ops.convert_to_tensor(y)])
        return float(as_numpy(value)), as_numpy(grads[0])

    value, grad = value_and_grad(outputs)
    value_changed, grad_changed = value_and_grad(changed)
    assert value == pytest.approx(value_changed, rel=1e-6)
    np.testing.assert_allclose(grad[mask], grad_changed[mask], rtol=1e-5,
                               atol=1e-7)
    assert np.all(grad[~mask] == 0) and np.all(grad_changed[~mask] == 0)
    # And the real tokens do count: a sequence's mean is over its tokens.
    per_token = as_numpy(distances.get(distance)(outputs, anchors))
    expected = [(per_token[i][mask[i]].mean() if token_reduction == "mean"
                 else per_token[i][mask[i]].sum()) for i in range(3)]
    assert value == pytest.approx(sum(expected), rel=1e-5)


def test_bhattacharyya_of_a_sequence_is_zero_at_its_anchor():
    y = np.random.default_rng(1).normal(size=(2, 4, 300)).astype("float32")
    at_anchor = as_numpy(distances.bhattacharyya(y, y))
    np.testing.assert_allclose(at_anchor, 0.0, atol=1e-6)


def _kl_and_bhattacharyya_gaps(logits_p, logits_q, k):
    """Full minus top-k distances, and each one's stated bound (NumPy)."""
    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(logits_p.astype("float64")), softmax(
        logits_q.astype("float64"))
    indices, log_q = anchor_storage.encode_top_k(logits_q, k)
    tail = np.ones(q.shape, bool)
    np.put_along_axis(tail, indices.astype("int64"), False, axis=-1)
    q_tail, p_tail = (q * tail).sum(-1), (p * tail).sum(-1)
    ratio = np.where(tail, np.log(q / q_tail[..., None])
                     - np.log(p / p_tail[..., None]), -np.inf)
    kl_bound = q_tail * np.maximum(ratio.max(-1), 0.0)
    bc_full = np.sqrt(p * q).sum(-1)
    bc_bound = np.sqrt(p_tail * q_tail) / bc_full
    gaps = {}
    for name in ("kl", "bhattacharyya"):
        full = as_numpy(distances.get(name)(logits_p, logits_q))
        pc, qc = anchor_storage.coarse_grained(logits_p, indices, log_q)
        coarse = as_numpy(distances.get(name)(pc, qc, from_logits=False))
        gaps[name] = full - coarse
    return gaps, {"kl": kl_bound, "bhattacharyya": bc_bound}, q_tail


def test_top_k_anchors_agree_with_full_anchors_within_the_bound():
    rng = np.random.default_rng(2)
    logits_q = (rng.normal(size=(4, 6, 120)) * 3).astype("float32")
    logits_p = logits_q + rng.normal(size=logits_q.shape).astype(
        "float32") * 0.5
    previous = None
    for k in (4, 16, 64):
        gaps, bounds, q_tail = _kl_and_bhattacharyya_gaps(logits_p,
                                                          logits_q, k)
        for name in gaps:
            assert np.all(gaps[name] >= -1e-5), name  # coarse ≤ full
            assert np.all(gaps[name] <= bounds[name] + 1e-5), name
        total = float(np.abs(gaps["kl"]).mean())
        if previous is not None:
            assert total < previous  # the error shrinks as k grows
        previous = total
    assert float(q_tail.max()) < 0.5


# ----------------------------------------------------------------------
# The memory of a CausalLM (raw strings through the preprocessor)
# ----------------------------------------------------------------------
@pytest.mark.large
def test_causal_lm_memory_stores_token_ids_and_masks_and_generates():
    lm = _causal_lm()
    fip = _compile_fip(lm, storage="outputs")
    remember_task(lm, 0, TEXT_A)
    inputs, labels, tasks, anchors = fip.memory.stored()
    assert set(inputs) == {"token_ids", "padding_mask"}
    assert inputs["token_ids"].shape == (8, SEQUENCE)
    assert anchors.shape == (8, SEQUENCE, 258)
    assert np.all(labels == -1) and np.all(tasks == 0)  # reservoir
    _adapt(lm)
    loss = float(as_numpy(fip.invariance_loss))
    assert np.isfinite(loss) and loss > 0
    text = lm.generate(["the cat"], max_length=SEQUENCE)
    assert isinstance(text[0], str) and text[0].startswith("the cat")


def _footprint(memory, lm):
    spec = memory.spec
    input_bytes = sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize
                      for s in spec["inputs"])
    weight_bytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                       for v in lm.trainable_variables)
    return anchor_storage.footprint_bytes(
        memory.anchor_storage, memory.capacity, input_bytes,
        spec["outputs"]["shape"], memory.top_k, weight_bytes)


@pytest.mark.parametrize("storage", ["outputs", "top_k", "snapshot"])
def test_memory_footprint_equals_the_formula(storage):
    lm = _causal_lm()
    fip = _compile_fip(lm, storage=storage, top_k=8)
    remember_task(lm, 0, TEXT_A)
    assert fip.memory.anchor_storage == storage
    assert fip.memory.nbytes == _footprint(fip.memory, lm)
    by_hand = {"outputs": 8 * SEQUENCE * 258 * 4,
               "top_k": 8 * SEQUENCE * 8 * 8,
               "snapshot": 4 * lm.count_params()}
    fixed = 8 * (SEQUENCE * (4 + 1) + 16) + 16  # int32 ids, bool mask
    assert fip.memory.nbytes == fixed + by_hand[storage]


def test_auto_storage_follows_the_documented_rule():
    resolve = anchor_storage.resolve
    assert resolve("auto", 200, (10,), 10_000) == "outputs"
    # 200 × 512 × 256k floats: far above 64 MiB and the weights.
    assert resolve("auto", 200, (512, 256_000), 2_000_000_000) == "snapshot"
    # Larger than 64 MiB but smaller than the weights: keep the outputs.
    assert resolve("auto", 200, (512, 1000), 200_000_000) == "outputs"
    assert resolve("top_k", 200, (10,), 10) == "top_k"


@pytest.mark.large
def test_snapshot_anchors_equal_stored_anchors_at_the_start_of_a_task():
    stored, snapshot = _causal_lm(), _causal_lm()
    _compile_fip(stored, storage="outputs")
    fip = _compile_fip(snapshot, storage="snapshot")
    remember_task(stored, 0, TEXT_A)
    remember_task(snapshot, 0, TEXT_A)
    inputs, _, _, anchors = stored.optimizer.memory.stored()
    state = [v.value for v in snapshot.non_trainable_variables]
    weights = [v.value for v in fip.memory.snapshot_weights]
    recomputed, _ = snapshot.stateless_call(weights, state,
                                            snapshot.optimizer.memory
                                            .stored()[0], training=False)
    # Stored anchors come from the compiled anchoring pass in chunks, the
    # recomputation from one eager call: the same outputs to a few ulps
    # (3e-8 measured on JAX).
    np.testing.assert_allclose(as_numpy(recomputed), anchors, rtol=1e-5,
                               atol=1e-6)
    # Training from there takes the same path either way.
    _adapt(stored)
    _adapt(snapshot)
    for a, b in zip(stored.trainable_variables, snapshot.trainable_variables):
        np.testing.assert_allclose(as_numpy(a), as_numpy(b), atol=1e-5)
    np.testing.assert_allclose(
        float(as_numpy(stored.optimizer.invariance_loss)),
        float(as_numpy(fip.invariance_loss)), rtol=1e-4)
    del inputs


@pytest.mark.parametrize("storage", ["outputs", "top_k", "snapshot"])
def test_save_load_and_restore_optimizer_keep_the_memory(tmp_path, storage):
    lm = _causal_lm()
    fip = _compile_fip(lm, storage=storage)
    remember_task(lm, 0, TEXT_A)
    if storage == "snapshot":  # one trained file is enough
        _adapt(lm)
    path = str(tmp_path / "lm.keras")
    lm.save(path)
    loaded = keras.saving.load_model(path)
    restored = keras_fip.saving.restore_optimizer(loaded, path)
    assert restored.memory.anchor_storage == storage
    assert restored.memory.nbytes == fip.memory.nbytes
    for a, b in zip(fip.memory.variables, restored.memory.variables):
        np.testing.assert_array_equal(as_numpy(a), as_numpy(b))
    np.testing.assert_allclose(_logits(loaded, fip.memory.stored()[0]),
                               _logits(lm, fip.memory.stored()[0]),
                               atol=1e-5)


# ----------------------------------------------------------------------
# FIP with LoRA
# ----------------------------------------------------------------------
@pytest.mark.large
def test_fip_with_lora_updates_only_the_adapters_and_keeps_old_outputs(
        tmp_path):
    def adapted(with_fip):
        lm = _causal_lm()
        lm.backbone.enable_lora(2)
        frozen = {v.path: as_numpy(v).copy()
                  for v in lm.non_trainable_variables
                  if "float" in str(v.dtype)}  # not the dropout seed
        trainable = {v.path: as_numpy(v).copy()
                     for v in lm.trainable_variables}
        if with_fip:
            fip = _compile_fip(lm, storage="snapshot", beta=0.05)
            remember_task(lm, 0, TEXT_A)
            protected = fip.memory.stored()[0]
        else:
            lm.compile(optimizer=keras.optimizers.Adam(1e-2),
                       weighted_metrics=[],
                       loss=keras.losses.SparseCategoricalCrossentropy(
                           from_logits=True))
            protected = keras_fip.evaluation.model_inputs(lm, TEXT_A)
        before = _logits(lm, protected)
        lm.fit(TEXT_B, epochs=8, batch_size=4, verbose=0,
               callbacks=[TaskBoundary(1, TEXT_B)] if with_fip else [])
        for v in lm.non_trainable_variables:
            if v.path in frozen:
                np.testing.assert_array_equal(as_numpy(v), frozen[v.path])
        moved = [p for p, value in trainable.items()
                 if not np.array_equal(value, as_numpy(
                     {v.path: v for v in lm.trainable_variables}[p]))]
        drift = float(np.abs(_logits(lm, protected) - before).mean())
        return lm, moved, drift

    lm, moved, fip_drift = adapted(True)
    assert all("lora_kernel" in p or p.endswith("bias") for p in moved)
    assert any("lora_kernel" in p for p in moved)
    snapshot = lm.optimizer.memory.snapshot_weights
    assert len(snapshot) == len(lm.trainable_variables)  # adapters only
    assert lm.optimizer.memory.nbytes < 0.2 * 4 * lm.count_params()
    _, _, lora_drift = adapted(False)
    # A random tiny model has few directions that leave its outputs on A
    # alone; FIP still moves them less than LoRA at the same optimizer
    # (measured 0.022 against 0.028 mean |Δlogit| on JAX).
    assert fip_drift < 0.9 * lora_drift
    # Keras merges adapters into kernels on save: restoring is refused.
    path = str(tmp_path / "lora.keras")
    lm.save(path)
    loaded = keras.saving.load_model(path)
    with pytest.raises(ValueError, match="LoRA adapters"):
        keras_fip.saving.restore_optimizer(loaded, path)


# ----------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------
def test_a_mask_that_is_not_zero_one_is_refused():
    memory = keras_fip.Memory(4)
    model = _causal_lm()
    x = keras_fip.evaluation.model_inputs(model, TEXT_A[:4])
    memory.build(model, x)
    bad = dict(x, padding_mask=x["padding_mask"].astype("int32") * 2)
    with pytest.raises(ValueError, match="0/1"):
        memory.add(bad)


def test_a_mask_that_does_not_match_the_output_positions_is_refused():
    inputs = {"tokens": keras.Input((6,), dtype="int32", name="tokens"),
              "padding_mask": keras.Input((5,), dtype="int32",
                                          name="padding_mask")}
    hidden = keras.layers.Embedding(20, 4)(inputs["tokens"])
    model = keras.Model(inputs, keras.layers.Dense(9)(hidden))
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.Adam(), memory=keras_fip.Memory(4)), loss="mse")
    x = {"tokens": np.ones((4, 6), "int32"),
         "padding_mask": np.ones((4, 5), "int32")}
    with pytest.raises(ValueError, match="one entry per output token"):
        remember_task(model, 0, x)


def test_storages_a_term_or_policy_cannot_use_are_refused():
    with pytest.raises(ValueError, match="Unknown anchor_storage"):
        keras_fip.Memory(4, anchor_storage="logits")
    with pytest.raises(ValueError, match="top_k"):
        keras_fip.Memory(4, anchor_storage="top_k", top_k=0)
    with pytest.raises(ValueError, match="token_reduction"):
        keras_fip.FIPOptimizer(keras.optimizers.Adam(),
                               token_reduction="max")
    cases = [
        (lambda m: keras_fip.FIPOptimizer(keras.optimizers.Adam(), memory=m,
                                          distance="squared_l2"),
         "top_k", "distribution distances"),
        (lambda m: keras_fip.FIPOptimizer(keras.optimizers.Adam(), memory=m,
                                          anchors="stored"),
         "snapshot", "anchors='stored'"),
        (lambda m: keras_fip.baselines.DERPPOptimizer(
            keras.optimizers.Adam(), memory=m), "top_k", "DarkReplayTerm"),
    ]
    for make, storage, message in cases:
        lm = _causal_lm()
        lm.compile(optimizer=make(keras_fip.Memory(4, anchor_storage=storage)),
                   loss=keras.losses.SparseCategoricalCrossentropy(
                       from_logits=True))
        with pytest.raises(ValueError, match=message):
            remember_task(lm, 0, TEXT_A[:4])


@pytest.mark.parametrize("distance, match", [
    ("bhattacharyya", "num_classes"), ("auto", r"\(batch, 1\)")])
def test_outputs_a_distance_cannot_use_are_refused(distance, match):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1),
                              keras.layers.Reshape(())])
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.Adam(), memory=keras_fip.Memory(4),
        distance=distance), loss="mse")
    with pytest.raises(ValueError, match=match):
        remember_task(model, 0, np.ones((4, 3), "float32"))


@pytest.mark.large
def test_reference_kl_penalises_drift_on_the_new_inputs(tmp_path):
    lm = _causal_lm()
    kl = keras_fip.baselines.ReferenceKLOptimizer(
        keras.optimizers.Adam(1e-2), weight=2.0, memory_batch_size=4,
        memory=keras_fip.Memory(8, anchor_storage="snapshot"))
    lm.compile(optimizer=kl, weighted_metrics=[],
               loss=keras.losses.SparseCategoricalCrossentropy(
                   from_logits=True))
    remember_task(lm, 0, TEXT_A)
    assert not kl.memory.is_active  # no old network before the first task
    _adapt(lm, epochs=2)
    inputs, _, tasks, _ = kl.memory.stored()
    assert np.all(tasks == 1)  # the new task's inputs, not A's
    assert float(as_numpy(kl.terms[0].last_loss)) > 0
    restored = keras_fip.baselines.ReferenceKLOptimizer.from_config(
        kl.get_config())
    assert restored.weight == 2.0 and restored.memory.anchor_storage == \
        "snapshot"
