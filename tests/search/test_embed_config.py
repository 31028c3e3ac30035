import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.errors import InputError, UsageError  # noqa: E402
from swat_edge.search.embedding.config import PRESETS, EmbeddingConfig, config_from_dict, make_config  # noqa: E402
from swat_edge.search.embedding.family import Family, check_family, family_from_dict  # noqa: E402
from swat_edge.search.embedding.generator import Distribution, check_distribution  # noqa: E402


def test_default_family_covers_the_issue_minimum():
    f = make_config("default").family
    assert f.max_inputs >= 8 and f.min_depth == 1 and f.max_depth == 4 and f.max_width <= 8 and f.n_outputs == 1
    assert {"sigmoid", "tanh", "leaky_relu"} <= set(f.activations)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(max_width=0), r"max_width is 0; it must lie in 1\.\.64"),
        (dict(max_inputs=0), r"max_inputs is 0"),
        (dict(min_depth=3, max_depth=2), r"min_depth is 3; it must lie in 1\.\.2"),
        (dict(n_outputs=0), r"n_outputs is 0"),
        (dict(max_depth=2.5), r"max_depth is 2\.5; expected a whole number"),
        (dict(activations=("tanh", "swish")), r"unknown activation 'swish'"),
        (dict(activations=("tanh", "tanh")), r"list one twice"),
        (dict(activations=()), r"expected a non-empty list"),
    ],
)
def test_bad_family_bounds_are_refused_with_one_line(changes, message):
    with pytest.raises(InputError, match=message) as err:
        check_family(Family(**changes))
    assert "\n" not in str(err.value)


def test_family_from_dict_refuses_unknown_fields():
    with pytest.raises(InputError, match=r"unknown field 'width'; known fields"):
        family_from_dict({"width": 4})


def test_bad_distribution_is_refused():
    with pytest.raises(InputError, match=r"gain_max is 0\.5; it must be a number in \[1\.0, 100\.0\]"):
        check_distribution(Distribution(gain_min=1.0, gain_max=0.5))
    with pytest.raises(InputError, match=r"sparsities"):
        check_distribution(Distribution(sparsities=(1.5,)))


def test_presets_round_trip_through_json_dicts():
    for config in PRESETS.values():
        assert config_from_dict(config.to_dict()) == config


def test_make_config_applies_overrides_steps_and_seed():
    cfg = make_config("tiny", overrides={"recipe": {"lr": 0.002}, "family": {"max_width": 4}}, steps=7, seed=3)
    assert cfg.recipe.lr == 0.002 and cfg.recipe.steps == 7 and cfg.recipe.seed == 3 and cfg.family.max_width == 4
    assert cfg.family.max_inputs == PRESETS["tiny"].family.max_inputs  # untouched fields come from the preset


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(preset="huge"), UsageError, r"unknown preset 'huge'; available: default, tiny"),
        (dict(preset="tiny", steps=0), InputError, r"recipe: steps is 0"),
        (dict(preset="tiny", overrides={"model": {}}), InputError, r"unknown section 'model'"),
        (dict(preset="tiny", overrides={"recipe": {"lrate": 1}}), InputError, r"unknown field 'lrate'"),
        (dict(preset="tiny", overrides={"architecture": {"latent_dim": 0}}), InputError, r"latent_dim is 0"),
        (dict(preset="tiny", overrides={"family": {"max_width": 0}}), InputError, r"family: max_width is 0"),
    ],
)
def test_make_config_refuses_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_config(**kwargs)


def test_config_is_plain_data():
    assert EmbeddingConfig() == make_config("default")
