"""keras_fip.composition: operations that chain, lineage, the graph."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

import keras_fip
from keras_fip import composition
from keras_fip.composition import lineage as lineage_module
from keras_fip.sparsity import MaskGradient


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = np.arange(48) % 4
    a = (x[:24], y[:24] % 2)
    b = (x[24:], 2 + y[24:] % 2)
    return {"A": a, "B": b}


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(4)])


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _composer(tmp_path, **kwargs):
    data = _data()
    return composition.Composer(tmp_path / "graph", train=data,
                                evaluate=data, loss=_loss(), **kwargs)


def _weights(model):
    return [keras.ops.convert_to_numpy(v.value)
            for v in model.trainable_variables]


def _fit_in_order(model, x, y, steps, batch_size, seed):
    order = composition.training_order(len(y), steps, batch_size, seed)
    model.fit(x[order], y[order], batch_size=batch_size, epochs=1,
              shuffle=False, verbose=0)


def test_a_two_step_chain_equals_the_steps_run_by_hand(tmp_path):
    data = _data()
    composer = _composer(tmp_path)
    root = composer.start(_model(), "A", knows=["A"])
    sparsify = composition.Sparsify(0.5, steps=6, batch_size=8)
    learn = composition.LearnTask("B", steps=5, batch_size=8)
    chained = composer.apply(composer.apply(root, sparsify), learn)

    # The same two steps with keras_fip's parts, on the model in memory.
    model = _model()
    xa, ya = data["A"]
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3), memory=keras_fip.Memory(24, seed=0),
        sparse_target=sparsify.target()), loss=_loss())
    keras_fip.callbacks.remember_task(model, 0, xa, ya)
    _fit_in_order(model, xa, ya, 6, 8, 0)
    keras_fip.sparsity.make_pruning_permanent(model)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-3), memory=keras_fip.Memory(24, seed=0),
        objectives=[MaskGradient()]), loss=_loss())
    keras_fip.callbacks.remember_task(model, 0, xa, ya)
    _fit_in_order(model, *data["B"], 5, 8, 0)

    result = chained.load_model()
    for got, want in zip(_weights(result), _weights(model)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert chained.lineage.knows == ["A", "B"]
    assert chained.lineage.parent == "A-sparse50"
    accuracy = keras_fip.evaluation.accuracy(model, *data["B"])
    assert chained.lineage.measurements["accuracy"]["B"] == pytest.approx(
        accuracy)


def test_lineage_round_trip_rebuilds_the_graph_and_its_operations(tmp_path):
    composer = _composer(tmp_path)
    root = composer.start(_model(), "A", knows=["A"])
    learn = composition.LearnTask("B", steps=3, batch_size=8,
                                  settings={"beta": 3.0})
    prune = composition.MagnitudePrune(0.6, steps=2, batch_size=8)
    composer.apply(composer.apply(root, learn), prune)
    composer.apply(root, composition.FineTune("B", steps=2, batch_size=8))

    graph = composition.NetworkGraph.read(composer.directory)
    assert len(graph) == 4
    assert graph.roots() == ["A"]
    assert sorted(graph.children("A")) == ["A-finetuneB", "A-learnB"]
    assert graph.path_to("A-learnB-magnitude60") == [
        "A", "A-learnB", "A-learnB-magnitude60"]
    assert graph.operations_to("A-learnB-magnitude60") == [learn, prune]
    rebuilt = graph.operations_to("A-learnB")[0]
    assert rebuilt.settings == {"beta": 3.0}
    inner = rebuilt.inner()
    assert isinstance(inner, keras.optimizers.Adam)
    assert float(keras.ops.convert_to_numpy(
        inner.learning_rate)) == pytest.approx(1e-3)
    node = graph.lineages["A-learnB-magnitude60"]
    assert node.measurements["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert node.backend == keras.backend.backend()
    assert node.keras_fip_version == keras_fip.__version__
    text = graph.table()
    assert "learn B → magnitude 60%" in text and "fine-tune B" in text
    graph.plot(str(tmp_path / "graph.png"))
    assert os.path.getsize(tmp_path / "graph.png") > 1000


def test_the_files_stay_ordinary_keras_files(tmp_path):
    composer = _composer(tmp_path)
    root = composer.start(_model(), "A", knows=["A"])
    loaded = keras.saving.load_model(root.path)
    for got, want in zip(_weights(loaded), _weights(_model())):
        np.testing.assert_array_equal(got, want)
    with zipfile.ZipFile(root.path) as archive:
        assert lineage_module.MEMBER in archive.namelist()
        assert not any("optimizer" in n for n in archive.namelist())
    # A new lineage replaces the old one: one member, the new text.
    record = root.lineage
    record.measurements = {"accuracy": {"A": 0.25}}
    composition.write_lineage(root.path, record)
    with zipfile.ZipFile(root.path) as archive:
        assert archive.namelist().count(lineage_module.MEMBER) == 1
    assert composition.read_lineage(root.path).measurements == {
        "accuracy": {"A": 0.25}}
    keras.saving.load_model(root.path)


def test_sparsity_is_kept_by_learning_and_fine_tuning(tmp_path):
    composer = _composer(tmp_path)
    root = composer.start(_model(), "A", knows=["A"])
    sparse = composer.apply(root, composition.MagnitudePrune(0.7, steps=0))
    assert sparse.lineage.measurements["sparsity"] == pytest.approx(
        0.7, abs=0.01)
    for operation in (composition.LearnTask("B", steps=4, batch_size=8),
                      composition.FineTune("B", steps=4, batch_size=8)):
        kept = composer.apply(sparse, operation)
        assert kept.lineage.measurements["sparsity"] == pytest.approx(
            sparse.lineage.measurements["sparsity"])
        assert kept.lineage.measurements["distance_from_parent"] > 0
    lost = composer.apply(sparse, composition.FineTune(
        "B", steps=4, batch_size=8, keep_sparsity=False), name="dense-again")
    assert lost.lineage.measurements["sparsity"] < 0.5


def test_move_toward_another_network_gets_closer(tmp_path):
    composer = _composer(tmp_path)
    root = composer.start(_model(0), "A", knows=["A"])
    other = composer.start(_model(1), "other", knows=["A"])
    moved = composer.apply(root, composition.MoveToward(
        "other", steps=10, step_norm=0.05, batch_size=8))
    target = _weights(other.load_model())

    def distance(weights):
        return np.sqrt(sum(np.sum((w - t) ** 2)
                           for w, t in zip(weights, target)))

    before = distance(_weights(root.load_model()))
    after = distance(_weights(moved.load_model()))
    # Ten steps of length 0.05 toward the target.
    assert before - 0.5 - 1e-3 <= after < before - 0.2
    assert moved.name == "A-toward-other"
    assert moved.lineage.knows == ["A"]


def test_if_exists_refuses_reuses_or_overwrites(tmp_path):
    composer = _composer(tmp_path)
    root = composer.start(_model(), "A", knows=["A"])
    learn = composition.LearnTask("B", steps=2, batch_size=8)
    first = composer.apply(root, learn)
    with pytest.raises(FileExistsError, match="if_exists='reuse'"):
        composer.apply(root, learn)
    reusing = _composer(tmp_path, if_exists="reuse")
    # An equal operation made anew (its Adam numbered differently by Keras).
    keras.optimizers.Adam()
    again = reusing.apply("A", composition.LearnTask("B", steps=2,
                                                     batch_size=8))
    assert again.lineage.created == first.lineage.created
    with pytest.raises(FileExistsError, match="another network"):
        reusing.apply("A", composition.LearnTask("B", steps=3, batch_size=8),
                      name="A-learnB")
    overwriting = _composer(tmp_path, if_exists="overwrite")
    replaced = overwriting.apply("A", composition.LearnTask(
        "B", steps=3, batch_size=8), name="A-learnB")
    assert replaced.lineage.operation["config"]["steps"] == 3


@pytest.mark.parametrize("make, message", [
    (lambda: composition.Sparsify(1.0), "sparsity"),
    (lambda: composition.Sparsify(0.5, ramp=0.5, hard_mask_at=0.2),
     "hard_mask_at"),
    (lambda: composition.Sparsify(0.5, strength=-1), "strength"),
    (lambda: composition.LearnTask(""), "task"),
    (lambda: composition.LearnTask("B", steps=0), "steps"),
    (lambda: composition.LearnTask("B", settings={"memory": None}),
     "may not set"),
    (lambda: composition.LearnTask("B", settings={"betta": 1.0}), "betta"),
    (lambda: composition.LearnTask("B", inner_optimizer="adam"),
     "inner_optimizer"),
    (lambda: composition.MagnitudePrune(0.5, steps=-1), "steps"),
    (lambda: composition.MoveToward("", steps=3), "target"),
    (lambda: composition.MoveToward("B", step_norm=0), "step_norm"),
])
def test_bad_operation_arguments_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_operations_round_trip_through_their_configs():
    for operation in (
            composition.LearnTask("B", steps=7, memory_size=5,
                                  inner_optimizer=keras.optimizers.SGD(0.1),
                                  settings={"beta": 2.0}),
            composition.Sparsify(0.8, steps=40, hard_mask_at=None,
                                 prune=["*dense*/kernel"]),
            composition.MoveToward("x.keras", steps=9, strength=2.0),
            composition.FineTune("C", keep_sparsity=False),
            composition.MagnitudePrune(0.9, steps=0)):
        config = keras.saving.serialize_keras_object(operation)
        json.dumps(config)
        assert composition.operation_of(config) == operation


def test_bad_composer_inputs_are_refused_before_training(tmp_path):
    data = _data()
    with pytest.raises(ValueError, match="loss"):
        composition.Composer(tmp_path, train=data, evaluate=data, loss=None)
    with pytest.raises(ValueError, match="3 inputs and 2 labels"):
        composition.Composer(tmp_path, train={"A": (np.ones((3, 6)),
                                                    [0, 1])},
                             evaluate=data, loss=_loss())
    with pytest.raises(ValueError, match="Task names"):
        composition.Composer(tmp_path, train={"a b": data["A"]},
                             evaluate=data, loss=_loss())
    with pytest.raises(ValueError, match="if_exists"):
        _composer(tmp_path, if_exists="skip")
    composer = _composer(tmp_path)
    with pytest.raises(ValueError, match="no training data"):
        composer.start(_model(), "A", knows=["Z"])
    with pytest.raises(TypeError, match="list of task names"):
        composer.start(_model(), "A", knows="A")
    root = composer.start(_model(), "A", knows=["A"])
    with pytest.raises(ValueError, match="already knows task 'A'"):
        composer.apply(root, composition.LearnTask("A", steps=2))
    with pytest.raises(KeyError, match="No training data for task 'C'"):
        composer.apply(root, composition.FineTune("C", steps=2))
    with pytest.raises(FileNotFoundError, match="No network 'nowhere'"):
        composer.apply(root, composition.MoveToward("nowhere", steps=2))
    with pytest.raises(TypeError, match="operation"):
        composer.apply(root, "sparsify")
    with pytest.raises(FileNotFoundError, match="No network 'B'"):
        composer.apply("B", composition.FineTune("B", steps=2))
    assert sorted(os.listdir(composer.directory)) == ["A.keras"]


def test_reading_files_without_a_lineage_or_with_a_broken_one(tmp_path):
    model = _model()
    plain = str(tmp_path / "plain.keras")
    model.save(plain)
    with pytest.raises(ValueError, match="holds no lineage"):
        composition.read_lineage(plain)
    with pytest.raises(FileNotFoundError):
        composition.read_lineage(str(tmp_path / "missing.keras"))
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="not a `.keras` file"):
        composition.read_lineage(str(text))
    with zipfile.ZipFile(plain, "a") as archive:
        archive.writestr(lineage_module.MEMBER, json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="format"):
        composition.read_lineage(plain)
    # A graph whose parent file is missing says so.
    composer = _composer(tmp_path)
    root = composer.start(model, "A", knows=["A"])
    composer.apply(root, composition.FineTune("B", steps=2, batch_size=8))
    os.remove(root.path)
    with pytest.raises(ValueError, match="made from 'A'"):
        composition.NetworkGraph.read(composer.directory)


def test_models_with_dict_inputs_chain(tmp_path):
    rng = np.random.default_rng(1)
    features = {"a": rng.normal(size=(32, 3)).astype("float32"),
                "b": rng.normal(size=(32, 3)).astype("float32")}
    labels = np.arange(32) % 4
    half = {k: v[:16] for k, v in features.items()}
    rest = {k: v[16:] for k, v in features.items()}
    data = {"A": (half, labels[:16] % 2), "B": (rest, 2 + labels[16:] % 2)}
    keras.utils.set_random_seed(0)
    inputs = {"a": keras.Input((3,), name="a"),
              "b": keras.Input((3,), name="b")}
    hidden = keras.layers.Dense(8, activation="relu")(
        keras.layers.Concatenate()([inputs["a"], inputs["b"]]))
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    composer = composition.Composer(tmp_path, train=data, evaluate=data,
                                    loss=_loss())
    root = composer.start(model, "A", knows=["A"])
    learned = composer.apply(root, composition.LearnTask(
        "B", steps=3, batch_size=8))
    pruned = composer.apply(learned, composition.Sparsify(
        0.5, steps=4, batch_size=8))
    assert pruned.lineage.knows == ["A", "B"]
    assert pruned.lineage.measurements["sparsity"] == pytest.approx(
        0.5, abs=0.02)


def test_a_network_that_knows_no_task_can_learn_but_not_be_sparsified(
        tmp_path):
    composer = _composer(tmp_path)
    blank = composer.start(_model(), "blank", knows=[])
    with pytest.raises(ValueError, match="knows none"):
        composer.apply(blank, composition.Sparsify(0.5, steps=2))
    learned = composer.apply(blank, composition.LearnTask(
        "A", steps=3, batch_size=8))
    assert learned.lineage.knows == ["A"]
    pruned = composer.apply(blank, composition.MagnitudePrune(0.5, steps=0))
    assert pruned.lineage.measurements["sparsity"] == pytest.approx(
        0.5, abs=0.02)
