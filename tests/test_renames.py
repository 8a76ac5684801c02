"""One name for a term's weight; the 0.5 names still work for one release."""

import warnings

import keras
import pytest

import keras_fip
from keras_fip import baselines
from keras_fip import sparsity
from keras_fip import terms
from keras_fip.deprecation import renamed_arguments
from keras_fip.deprecation import upgrade_config


def _sgd():
    return keras.optimizers.SGD(0.1, name="sgd")


# (factory taking keyword arguments, {0.5 name: value}, {0.6 name: value}).
RENAMED = {
    "TowardWeights": (terms.TowardWeights, {"strength": 2.0},
                      {"weight": 2.0}),
    "AwayFromStart": (terms.AwayFromStart, {"strength": 2.0},
                      {"weight": 2.0}),
    "AdversarialOutputDiversity": (terms.AdversarialOutputDiversity,
                                   {"strength": 2.0}, {"weight": 2.0}),
    "SparseTarget": (lambda **kw: sparsity.SparseTarget(0.5, **kw),
                     {"strength": 2.0}, {"weight": 2.0}),
    "ReplayTerm": (baselines.ReplayTerm, {"replay_weight": 2.0},
                   {"weight": 2.0}),
    "ReplayOptimizer": (lambda **kw: baselines.ReplayOptimizer(_sgd(), **kw),
                        {"replay_weight": 2.0}, {"weight": 2.0}),
    "DarkReplayTerm": (baselines.DarkReplayTerm,
                       {"alpha": 0.1, "beta": 0.7},
                       {"logit_weight": 0.1, "label_weight": 0.7}),
    "DERPPOptimizer": (lambda **kw: baselines.DERPPOptimizer(_sgd(), **kw),
                       {"alpha": 0.1, "beta": 0.7},
                       {"logit_weight": 0.1, "label_weight": 0.7}),
    "DistillationTerm": (baselines.DistillationTerm, {"alpha": 3.0},
                         {"weight": 3.0}),
    "LwFOptimizer": (lambda **kw: baselines.LwFOptimizer(_sgd(), **kw),
                     {"alpha": 3.0}, {"weight": 3.0}),
    "FisherPenaltyTerm": (baselines.FisherPenaltyTerm, {"ewc_lambda": 7.0},
                          {"weight": 7.0}),
    "EWCOptimizer": (lambda **kw: baselines.EWCOptimizer(_sgd(), **kw),
                     {"ewc_lambda": 7.0}, {"weight": 7.0}),
    "PathIntegralPenaltyTerm": (baselines.PathIntegralPenaltyTerm,
                                {"si_lambda": 0.4}, {"weight": 0.4}),
    "SIOptimizer": (lambda **kw: baselines.SIOptimizer(_sgd(), **kw),
                    {"si_lambda": 0.4}, {"weight": 0.4}),
}


def _config(obj):
    config = obj.get_config()
    config.pop("name", None)  # Keras numbers optimizer names
    return config


def _ours(caught):
    return [w for w in caught if "since keras_fip" in str(w.message)]


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_the_old_keyword_warns_and_means_the_new_one(name):
    make, old, new = RENAMED[name]
    with pytest.warns(DeprecationWarning) as caught:
        built = make(**old)
    for old_name, new_name in zip(old, new):
        assert any(f"`{old_name}` is deprecated" in str(w.message)
                   and f"pass `{new_name}`" in str(w.message)
                   for w in caught)
    # The warning points at the caller, not inside keras_fip.
    assert _ours(caught)
    assert all(w.filename == __file__ for w in _ours(caught))
    config = _config(built)
    for new_name, value in new.items():
        assert config[new_name] == pytest.approx(value)
        assert not set(old) & set(config)
    assert config == _config(make(**new))


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_the_old_and_the_new_keyword_together_are_refused(name):
    make, old, new = RENAMED[name]
    old_name, new_name = next(iter(old)), next(iter(new))
    with pytest.raises(TypeError, match=f"both `{new_name}` and its "
                                        f"deprecated name `{old_name}`"):
        make(**{old_name: 1.0, new_name: 1.0})


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_a_config_saved_by_0_5_loads_without_a_warning(name):
    make, old, new = RENAMED[name]
    built = make(**new)
    config = built.get_config()
    for old_name, new_name in zip(old, new):  # as 0.5 wrote it
        config[old_name] = config.pop(new_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(built, keras.optimizers.Optimizer):
            loaded = type(built).from_config(config)
        else:
            serialized = keras.saving.serialize_keras_object(built)
            serialized["config"] = config
            loaded = keras.saving.deserialize_keras_object(serialized)
    assert not _ours(caught)
    assert type(loaded) is type(built)
    assert _config(loaded) == _config(built)


def test_a_0_5_optimizer_config_with_terms_loads():
    optimizer = keras_fip.ContinualOptimizer(
        _sgd(), terms=[baselines.ReplayTerm(0.3),
                       baselines.DarkReplayTerm(0.2, 0.4)],
        memory=keras_fip.Memory(8), anchors="stored")
    config = keras.optimizers.serialize(optimizer)
    replay, dark = config["config"]["terms"]
    replay["config"]["replay_weight"] = replay["config"].pop("weight")
    dark["config"]["alpha"] = dark["config"].pop("logit_weight")
    dark["config"]["beta"] = dark["config"].pop("label_weight")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clone = keras.optimizers.deserialize(config)
    assert not _ours(caught)
    assert clone.get_config() == optimizer.get_config()
    assert clone.terms[1].label_weight == 0.4


@pytest.mark.parametrize("obj, old, new", [
    (terms.TowardWeights(weight=2.0), "strength", "weight"),
    (terms.AwayFromStart(weight=2.0), "strength", "weight"),
    (baselines.ReplayTerm(2.0), "replay_weight", "weight"),
    (baselines.DarkReplayTerm(0.1, 0.7), "alpha", "logit_weight"),
    (baselines.DarkReplayTerm(0.1, 0.7), "beta", "label_weight"),
    (baselines.DistillationTerm(3.0), "alpha", "weight"),
    (baselines.FisherPenaltyTerm(7.0), "strength", "weight"),
    (baselines.DERPPOptimizer(_sgd(), logit_weight=0.1), "alpha",
     "logit_weight"),
    (baselines.DERPPOptimizer(_sgd(), label_weight=0.7), "beta",
     "label_weight"),
    (baselines.LwFOptimizer(_sgd(), weight=3.0), "alpha", "weight"),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_the_old_attribute_warns_and_reads_the_new_one(obj, old, new):
    with pytest.warns(DeprecationWarning, match=f"`.{new}` instead"):
        value = getattr(obj, old)
    assert value == getattr(obj, new)


def test_fip_keeps_the_paper_beta_and_derpp_has_no_beta_argument():
    import inspect

    fip = inspect.signature(keras_fip.FIPOptimizer).parameters
    derpp = inspect.signature(baselines.DERPPOptimizer).parameters
    assert "beta" in fip and "beta" not in derpp
    assert {"logit_weight", "label_weight"} <= set(derpp)


def test_renamed_arguments_refuses_a_target_that_does_not_exist():
    with pytest.raises(ValueError, match="no argument 'weight'"):
        @renamed_arguments(since="0.6", strength="weight")
        def f(power=1.0):
            return power


def test_upgrade_config_keeps_a_key_already_renamed():
    config = {"strength": 1.0, "weight": 2.0}
    assert upgrade_config(terms.TowardWeights, config) == {"weight": 2.0}
    assert config == {"strength": 1.0, "weight": 2.0}  # not modified
