"""Bounded anchoring: anchors taken in chunks by a compiled pass, top-k
encoded in float32, and no forward pass at a task's end when the next
task's start re-anchors every sample (`anchors="task_start"`)."""

import keras
import numpy as np
import pytest

import keras_fip
from conftest import compile_fip
from conftest import make_mlp
from conftest import toy_tasks
from keras_fip.anchors import outputs as output_anchors
from keras_fip.anchors import taking
from keras_fip.anchors import top_k
from keras_fip.arrays import as_numpy
from keras_fip.callbacks import TaskBoundary


def _sequence_model(positions=5, features=6, classes=11):
    """Per-position logits, (batch, positions, classes)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((positions, features)),
                             keras.layers.Dense(16, activation="tanh"),
                             keras.layers.Dense(classes)])


def _sequences(n=23, positions=5, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, positions, features)).astype("float32")
    return x, np.arange(n) % 3


def _anchored(storage, batch_size):
    model = _sequence_model()
    x, y = _sequences()
    memory = keras_fip.Memory(capacity=20, anchor_storage=storage, top_k=4)
    memory.build(model, x)
    memory.add(x, y)
    memory.consolidate(model, batch_size=batch_size)
    return model, memory


@pytest.mark.parametrize("storage", ["outputs", "top_k"])
def test_anchors_taken_in_chunks_equal_the_one_batch_anchors(storage):
    # 20 samples in chunks of 3 (the last one padded) against one batch.
    _, chunked = _anchored(storage, batch_size=3)
    model, whole = _anchored(storage, batch_size=256)
    for a, b in zip(chunked.anchor_variables, whole.anchor_variables):
        np.testing.assert_allclose(as_numpy(a), as_numpy(b), rtol=1e-5,
                                   atol=1e-6)
    inputs = whole.stored_inputs()
    eager = as_numpy(model(inputs, training=False))
    expected = ([eager] if storage == "outputs"
                else list(top_k.encode_top_k(eager, 4)))
    n = whole.size
    for variable, want in zip(chunked.anchor_variables, expected):
        np.testing.assert_allclose(as_numpy(variable)[:n], want, rtol=1e-5,
                                   atol=1e-5)
    assert as_numpy(chunked.anchored)[:n].all() and chunked.is_active


def test_head_outputs_in_chunks_equal_the_eager_call():
    model = _sequence_model()
    x, _ = _sequences(n=10)
    heads = taking.head_outputs(model, x, batch_size=4)
    np.testing.assert_allclose(heads[0], as_numpy(model(x, training=False)),
                               rtol=1e-5, atol=1e-6)


def test_encoding_sees_one_chunk_at_a_time(monkeypatch):
    model = _sequence_model()
    x, y = _sequences()
    memory = keras_fip.Memory(capacity=20, anchor_storage="top_k", top_k=4)
    memory.build(model, x)
    memory.add(x, y)
    seen = []
    encode = top_k.TopKAnchors.encode

    def spy(self, outputs, head, from_logits):
        seen.append(outputs.shape[0])
        return encode(self, outputs, head, from_logits)

    monkeypatch.setattr(top_k.TopKAnchors, "encode", spy)
    memory.consolidate(model, batch_size=8)
    assert seen == [8, 8, 4]


def test_top_k_is_encoded_in_float32():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 50)).astype("float32") * 5
    log_probs = top_k._log_probabilities(logits, from_logits=True)
    assert log_probs.dtype == np.float32
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert top_k._log_probabilities(probabilities, False).dtype == np.float32
    indices, values = top_k.encode_top_k(logits, 8)
    assert indices.dtype == np.int32 and values.dtype == np.float32
    # Against float64 NumPy: the same classes, log p to float32 precision.
    exact = logits.astype("float64")
    exact = exact - np.log(np.exp(exact).sum(-1, keepdims=True))
    np.testing.assert_array_equal(
        indices, np.argsort(-exact, axis=-1, kind="stable")[..., :8])
    np.testing.assert_allclose(
        values, np.take_along_axis(exact, indices, -1), atol=1e-5)


def _count_anchoring(monkeypatch):
    """Counts the anchoring forward passes (chunks) and model calls."""
    counts = {"chunks": 0}
    chunks = output_anchors.output_chunks

    def counted(*args, **kwargs):
        for chunk in chunks(*args, **kwargs):
            counts["chunks"] += 1
            yield chunk

    monkeypatch.setattr(output_anchors, "output_chunks", counted)
    return counts


def _fit(model, task, task_id, callbacks=()):
    model.fit(*task, epochs=2, batch_size=8, verbose=0, shuffle=False,
              callbacks=[TaskBoundary(task_id, *task), *callbacks])


def test_a_task_start_boundary_anchors_once(monkeypatch):
    task0, _ = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = compile_fip(model, capacity=16)
    fip.begin_task(model, 0, *task0)
    counts = _count_anchoring(monkeypatch)
    fip.end_task(model, 0, *task0)
    memory = fip.memory
    # The end anchors every sample (one chunk of 16): the memory protects
    # task 0 from here on, e.g. in a fit without a TaskBoundary.
    assert memory.size == 16 and counts["chunks"] == 1
    assert memory.is_active and as_numpy(memory.anchored)[:16].all()
    np.testing.assert_allclose(
        memory.stored()[3],
        as_numpy(model(memory.stored_inputs(), training=False)),
        rtol=1e-5, atol=1e-6)
    # The weights did not change: the next start does not anchor again.
    fip.begin_task(model, 1, *task0)
    assert counts["chunks"] == 1 and memory.is_active


def test_the_next_start_anchors_again_when_the_weights_changed(
        monkeypatch):
    task0, task1 = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = compile_fip(model, capacity=16)
    fip.begin_task(model, 0, *task0)
    fip.end_task(model, 0, *task0)
    # As EarlyStopping(restore_best_weights=True) listed after
    # TaskBoundary does: other weights, set after the task ended.
    kernel = model.trainable_variables[0]
    kernel.assign(as_numpy(kernel) * 0.5)
    counts = _count_anchoring(monkeypatch)
    fip.begin_task(model, 1, *task1)
    assert counts["chunks"] == 1
    np.testing.assert_allclose(
        fip.memory.stored()[3],
        as_numpy(model(fip.memory.stored_inputs(), training=False)),
        rtol=1e-5, atol=1e-6)


def _two_task_weights(provisional):
    task0, task1 = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = compile_fip(model, capacity=16, inner=keras.optimizers.Adam(1e-2))
    keras.utils.set_random_seed(1)
    _fit(model, task0, 0)
    if provisional:  # what a task's end did before: anchor the new samples
        fip.memory.consolidate(model, refresh=False)
    _fit(model, task1, 1)
    return ([as_numpy(v) for v in model.weights],
            [as_numpy(v) for v in fip.memory.anchor_variables])


def test_a_two_task_run_equals_the_run_with_the_provisional_pass():
    got_weights, got_anchors = _two_task_weights(provisional=False)
    want_weights, want_anchors = _two_task_weights(provisional=True)
    for got, want in zip(got_weights + got_anchors,
                         want_weights + want_anchors):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_stored_anchors_are_taken_at_the_end(monkeypatch):
    task0, _ = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = compile_fip(model, capacity=16, anchors="stored")
    counts = _count_anchoring(monkeypatch)
    _fit(model, task0, 0)
    memory = fip.memory
    assert counts["chunks"] == 1 and memory.is_active
    assert as_numpy(memory.anchored)[:16].all()
    inputs = memory.stored_inputs()
    np.testing.assert_allclose(
        memory.stored()[3], as_numpy(model(inputs, training=False)),
        rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("anchors", ["task_start", "stored"])
def test_a_failed_end_leaves_the_memory_as_it_was(monkeypatch, anchors):
    task0, task1 = toy_tasks()
    model = make_mlp(hidden=(16,), inputs=8, classes=4)
    fip = compile_fip(model, capacity=16, anchors=anchors)
    _fit(model, task0, 0)
    fip.begin_task(model, 1, *task1)
    before = fip.memory.state()

    def fail(*args, **kwargs):
        raise RuntimeError("failed while writing")

    # `add` has written every variable when it shuffles.
    monkeypatch.setattr(fip.memory, "shuffle", fail)
    with pytest.raises(RuntimeError, match="while writing"):
        fip.end_task(model, 1, *task1)
    for got, want in zip(fip.memory.state(), before):
        np.testing.assert_array_equal(got, want)


def test_state_without_anchors_restores_the_rest():
    model, memory = _anchored("outputs", batch_size=8)
    state = memory.state(anchors=False)
    anchors = [np.array(as_numpy(v)) for v in memory.anchor_variables]
    x, y = _sequences(seed=1)
    memory.add(x, y + 3, task_id=1, keep_anchors=False)
    assert not as_numpy(memory.anchored).any()
    memory.restore(state)
    for variable, want in zip(memory.anchor_variables, anchors):
        np.testing.assert_array_equal(as_numpy(variable), want)
    assert memory.is_active and as_numpy(memory.anchored)[:20].all()
