"""Compile passes: each keeps forward() within tolerance, never grows the net, and does its one job."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from swat_edge.compile import (
    PIPELINE,
    REPORT_COLUMNS,
    PassReport,
    drop_unused_inputs,
    fold_normalization,
    format_reports,
    fuse_identity_layers,
    group_activations,
    remove_dead_neurons,
    run_passes,
)
from swat_edge.errors import NumericsError, UsageError
from swat_edge.model import (
    ACTIVATIONS,
    Layer,
    SparseMLP,
    apply_activation,
    forward,
    forward_normalized,
    model_stats,
    output_tolerance,
    random_model,
    sample_inputs,
)

PASSES = (remove_dead_neurons, fuse_identity_layers, fold_normalization, group_activations, drop_unused_inputs)


def _with_layer(model: SparseMLP, i: int, **changes) -> SparseMLP:
    """Copy of `model` with hidden layer i rebuilt (weight/bias/activations/mask replaced where given)."""
    old = model.hidden[i]
    fields = dict(weight=old.weight, bias=old.bias, activations=old.activations, mask=old.mask) | changes
    hidden = list(model.hidden)
    hidden[i] = Layer.make(**fields)
    return model.replace(hidden=tuple(hidden))


def _identity_layers() -> SparseMLP:
    # 6 -> 10 relu -> 12 identity (one neuron gated off) -> 8 tanh -> 2
    m = random_model((6, 10, 12, 8, 2), seed=3)
    mask = np.ones(12, dtype=bool)
    mask[4] = False
    return _with_layer(m, 1, activations="identity", mask=mask)


def _bottleneck() -> SparseMLP:
    m = random_model((16, 16, 1, 16, 2), seed=5)
    return _with_layer(m, 1, activations="identity")


def _zero_layer() -> SparseMLP:
    m = random_model((5, 8, 8, 2), seed=6)
    return _with_layer(m, 1, weight=np.zeros((8, 8)))


def _all_gated() -> SparseMLP:
    m = random_model((5, 8, 6, 2), seed=7)
    return _with_layer(m, 0, mask=np.zeros(8, dtype=bool))


def _single_path() -> SparseMLP:
    # Only x2 -> h0[3] -> h1[1] -> y carries the input; every other neuron is constant or feeds nothing.
    rng = np.random.default_rng(8)
    w0, w1, wo = np.zeros((4, 6)), np.zeros((6, 5)), np.zeros((5, 1))
    w0[2, 3], w1[3, 1], wo[1, 0] = 1.3, -0.8, 2.0
    hidden = (
        Layer.make(w0, rng.normal(size=6), "tanh"),
        Layer.make(w1, rng.normal(size=5), ("relu", "sigmoid", "relu", "leaky_relu", "identity")),
    )
    return SparseMLP.make(hidden, Layer.make(wo, [0.3]), output_scale=[4.0], output_offset=[-2.0])


def _unused_inputs() -> SparseMLP:
    m = random_model((7, 10, 6, 2), seed=9)
    w = m.hidden[0].weight.copy()
    w[[1, 4]] = 0.0
    m = _with_layer(m, 0, weight=w)
    calibration = np.random.default_rng(9).normal(size=(20, 7))
    return m.replace(feature_names=tuple(f"f{i}" for i in range(7)), calibration=calibration)


def _zero_input_scale() -> SparseMLP:
    m = random_model((4, 6, 1), seed=11)
    scale = m.input_scale.copy()
    scale[2] = 0.0
    return m.replace(input_scale=scale)


MODELS = {
    "mixed": lambda: random_model((6, 12, 10, 3), sparsity=0.3, dead_fraction=0.2, seed=1),
    "per_layer": lambda: random_model((5, 8, 8, 8, 2), activations=ACTIVATIONS, per_layer=True, seed=2),
    "identity_layers": _identity_layers,
    "all_identity": lambda: random_model((4, 16, 16, 2), activations="identity", seed=4),
    "bottleneck": _bottleneck,
    "zero_layer": _zero_layer,
    "all_gated": _all_gated,
    "single_path": _single_path,
    "multi_output": lambda: random_model((3, 9, 5), sparsity=0.2, seed=8),
    "unused_inputs": _unused_inputs,
    "no_hidden": lambda: random_model((3, 2), seed=10),
    "zero_input_scale": _zero_input_scale,
    "wide_sparse": lambda: random_model(
        (8, 32, 32, 32, 1), activations=ACTIVATIONS, sparsity=0.8, dead_fraction=0.3, seed=12
    ),
}


def _rows(model: SparseMLP, n: int = 256) -> np.ndarray:
    x = sample_inputs(model, n, seed=1)
    return x if model.calibration is None else np.vstack([x, model.calibration])


def _assert_same_function(old: SparseMLP, new: SparseMLP, kept: tuple[int, ...]) -> None:
    x = _rows(old)
    y_old = forward(old, x)
    error = np.abs(forward(new, x[:, list(kept)]) - y_old)
    assert np.all(error <= output_tolerance(old, y_old)), f"max abs error {error.max():.3g}"


def _arrays(model: SparseMLP) -> list[np.ndarray]:
    out = [model.input_scale, model.input_offset, model.output_scale, model.output_offset]
    for layer in model.layers:
        out += [layer.weight, layer.bias, layer.mask]
    return out + ([] if model.calibration is None else [model.calibration])


def _same_model(a: SparseMLP, b: SparseMLP) -> bool:
    return (
        a.widths == b.widths
        and [layer.activations for layer in a.layers] == [layer.activations for layer in b.layers]
        and a.feature_names == b.feature_names
        and all(np.array_equal(p, q) for p, q in zip(_arrays(a), _arrays(b)))
    )


pass_x_model = pytest.mark.parametrize(
    "pass_fn, make_model",
    [pytest.param(p, f, id=f"{p.__name__}-{name}") for p in PASSES for name, f in MODELS.items()],
)
each_model = pytest.mark.parametrize("make_model", [pytest.param(f, id=name) for name, f in MODELS.items()])


# ---------------------------------------------------------------------------------------------------------
# Invariants of every pass on every model


@pass_x_model
def test_pass_keeps_the_function(pass_fn, make_model):
    model = make_model()
    before = [a.copy() for a in _arrays(model)]
    new, report = pass_fn(model)
    new.check()
    _assert_same_function(model, new, report.kept_inputs)
    assert all(np.array_equal(a, b) for a, b in zip(before, _arrays(model))), "the pass mutated its input"


@pass_x_model
def test_pass_never_grows_the_network(pass_fn, make_model):
    model = make_model()
    new, _ = pass_fn(model)
    assert new.n_inputs <= model.n_inputs
    assert new.n_outputs == model.n_outputs
    assert len(new.hidden) <= len(model.hidden)
    assert sum(new.widths[1:-1]) <= sum(model.widths[1:-1])
    if len(new.hidden) == len(model.hidden):  # no layer fused or collapsed: compare layer by layer
        assert all(a <= b for a, b in zip(new.widths, model.widths))
    assert model_stats(new).dense_macs <= model_stats(model).dense_macs


@pass_x_model
def test_pass_report_is_filled(pass_fn, make_model):
    model = make_model()
    new, report = pass_fn(model)
    before, after = model_stats(model), model_stats(new)
    assert report.name == pass_fn.__name__
    assert isinstance(report.summary, str) and report.summary and "\n" not in report.summary
    assert (report.widths_before, report.widths_after) == (model.widths, new.widths)
    assert (report.active_neurons_before, report.active_neurons_after) == (before.active_neurons, after.active_neurons)
    assert (report.nonzero_params_before, report.nonzero_params_after) == (before.nonzero_params, after.nonzero_params)
    assert (report.dense_macs_before, report.dense_macs_after) == (before.dense_macs, after.dense_macs)
    assert len(report.kept_inputs) == new.n_inputs
    assert len(report.kept_inputs) + len(report.dropped_inputs) == model.n_inputs
    assert report.max_abs_error is None  # only run_passes measures
    assert report.changed == (not _same_model(model, new))


# ---------------------------------------------------------------------------------------------------------
# run_passes over the whole pipeline


@each_model
def test_pipeline_keeps_the_function_and_leaves_a_deployable_model(make_model):
    model = make_model()
    result = run_passes(model, check_rows=128)
    _assert_same_function(model, result.model, result.kept_inputs)
    assert [r.name for r in result.reports] == [p.__name__ for p in PIPELINE]
    assert all(isinstance(r.max_abs_error, float) and r.max_abs_error >= 0.0 for r in result.reports)
    final = result.model
    assert all(layer.mask.all() for layer in final.layers)
    assert np.array_equal(final.input_scale, np.ones(final.n_inputs))
    assert np.array_equal(final.output_offset, np.zeros(final.n_outputs))
    assert final.feature_names == tuple(model.feature_names[i] for i in result.kept_inputs)
    for layer in final.hidden:
        ranks = [ACTIVATIONS.index(a) for a in layer.activations]
        assert ranks == sorted(ranks)


@each_model
def test_pipeline_is_idempotent(make_model):
    first = run_passes(make_model(), check_rows=64)
    second = run_passes(first.model, check_rows=64)
    assert [r.name for r in second.reports if r.changed] == []
    assert _same_model(first.model, second.model)
    assert second.kept_inputs == tuple(range(first.model.n_inputs))


def test_run_passes_raises_numerics_error_for_a_wrong_pass():
    def shift_output_bias(model: SparseMLP):
        out = model.output
        wrong = model.replace(output=Layer.make(out.weight, out.bias + 0.1, "identity"))
        return wrong, dataclasses.replace(fold_normalization(model)[1], name="shift_output_bias")

    with pytest.raises(NumericsError, match=r"^pass shift_output_bias: max abs error \S+ on output 'y0' exceeds"):
        run_passes(random_model((3, 4, 1), seed=0), passes=(group_activations, shift_output_bias))


def test_run_passes_composes_kept_inputs_into_original_columns():
    model = _unused_inputs()
    result = run_passes(model)
    assert result.kept_inputs == (0, 2, 3, 5, 6)
    assert result.model.feature_names == ("f0", "f2", "f3", "f5", "f6")
    assert np.array_equal(result.model.calibration, model.calibration[:, [0, 2, 3, 5, 6]])
    (drop,) = [r for r in result.reports if r.name == "drop_unused_inputs"]
    assert drop.dropped_inputs == ("f1", "f4")


def test_pipeline_drops_an_input_with_zero_scale():
    # fold_normalization runs first, so a zero input scale becomes a zero weight row that drop_unused_inputs sees.
    result = run_passes(_zero_input_scale())
    assert result.kept_inputs == (0, 1, 3)


def test_run_passes_records_the_passes_in_provenance():
    model = random_model((3, 4, 1), seed=0)
    once = run_passes(model, passes=(fold_normalization,))
    twice = run_passes(once.model, passes=(group_activations,))
    assert twice.model.provenance["passes"] == ["fold_normalization", "group_activations"]
    assert twice.model.provenance["generator"] == "random_model"
    assert "passes" not in model.provenance


def test_run_passes_rejects_zero_check_rows():
    with pytest.raises(UsageError, match="check_rows=0: must be at least 1"):
        run_passes(random_model((3, 4, 1), seed=0), check_rows=0)


def test_format_reports_rows_match_the_columns():
    result = run_passes(_unused_inputs())
    rows = format_reports(result.reports)
    assert len(rows) == len(result.reports)
    assert all(len(row) == len(REPORT_COLUMNS) and all(isinstance(c, str) for c in row) for row in rows)
    assert rows[-1][0] == "group_activations"
    assert rows[-1][1] == "-".join(map(str, result.model.widths))
    assert rows[-1][3] == str(model_stats(result.model).dense_macs)
    assert format_reports([remove_dead_neurons(_unused_inputs())[1]])[0][4] == "-"  # not measured


def test_pass_report_is_frozen():
    _, report = fold_normalization(random_model((3, 4, 1), seed=0))
    assert isinstance(report, PassReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.summary = "changed"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# remove_dead_neurons


def test_gated_off_neuron_disappears():
    w0 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    wo = np.array([[1.0], [2.0], [3.0]])
    hidden = (Layer.make(w0, [0.1, 0.2, 0.3], "relu", np.array([True, False, True])),)
    model = SparseMLP.make(hidden, Layer.make(wo, [0.0]))
    new, report = remove_dead_neurons(model)
    assert new.widths == (2, 2, 1)
    assert np.array_equal(new.hidden[0].weight, w0[:, [0, 2]])
    assert np.array_equal(new.hidden[0].bias, [0.1, 0.3])
    assert np.array_equal(new.output.weight, wo[[0, 2]])
    assert new.hidden[0].mask.all()
    assert report.summary == "removed 1 neurons: 1 gated off"


def test_constant_neuron_is_folded_into_the_next_bias():
    w0 = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, -1.0]])  # neuron 1 has no input: it outputs tanh(0.7)
    wo = np.array([[1.0], [2.0], [3.0]])
    hidden = (Layer.make(w0, [0.1, 0.7, -0.2], "tanh"),)
    model = SparseMLP.make(hidden, Layer.make(wo, [0.5]))
    new, report = remove_dead_neurons(model)
    assert new.widths == (2, 2, 1)
    assert new.output.bias[0] == pytest.approx(0.5 + 2.0 * np.tanh(0.7), abs=1e-15)
    assert "1 constant, folded into the next bias" in report.summary


def test_constant_neuron_folds_into_a_hidden_bias_before_its_activation():
    w0 = np.array([[0.0, 1.0], [0.0, -2.0]])
    w1 = np.array([[0.5, -1.5], [1.0, 1.0]])
    hidden = (Layer.make(w0, [0.4, 0.0], ("sigmoid", "relu")), Layer.make(w1, [0.1, 0.2], "tanh"))
    model = SparseMLP.make(hidden, Layer.make(np.ones((2, 1)), [0.0]))
    new, _ = remove_dead_neurons(model)
    expected = np.array([0.1, 0.2]) + apply_activation("sigmoid", np.array(0.4)) * w1[0]
    assert np.allclose(new.hidden[1].bias, expected, rtol=0, atol=1e-15)
    _assert_same_function(model, new, tuple(range(2)))


def test_dead_neuron_removal_cascades_to_a_fixpoint():
    # h0[1] feeds only h1[1], which is gated off: once h1[1] goes, h0[1] feeds nothing and goes too.
    w0 = np.array([[1.0, 1.0], [1.0, -1.0]])
    w1 = np.array([[1.0, 0.0], [0.0, 0.5]])
    hidden = (Layer.make(w0, [0.0, 0.0], "relu"), Layer.make(w1, [0.0, 0.0], "relu", np.array([True, False])))
    model = SparseMLP.make(hidden, Layer.make(np.ones((2, 1)), [0.0]))
    new, report = remove_dead_neurons(model)
    assert new.widths == (2, 1, 1, 1)
    assert report.summary == "removed 2 neurons: 1 gated off, 1 feeding nothing"


@pytest.mark.parametrize("make_model", [_zero_layer, _all_gated], ids=["zero_layer", "all_gated"])
def test_fully_dead_network_still_computes_its_constant(make_model):
    model = make_model()
    x = _rows(model)
    constant = forward(model, x)
    assert np.ptp(constant, axis=0).max() == 0.0  # the fixture really is constant
    new, report = remove_dead_neurons(model)
    assert new.hidden == ()
    assert new.output.weight.shape == (model.n_inputs, model.n_outputs) and not new.output.weight.any()
    assert np.allclose(forward(new, x), constant, rtol=0, atol=1e-12)
    assert report.summary.startswith("network output is constant: removed all 2 hidden layers")
    result = run_passes(model)
    assert result.model.widths == (1, model.n_outputs)
    assert result.kept_inputs == (0,)
    assert np.allclose(forward(result.model, x[:, :1]), constant, rtol=0, atol=1e-12)


def test_single_path_keeps_only_the_path():
    new, _ = remove_dead_neurons(_single_path())
    assert new.widths == (4, 1, 1, 1)
    assert new.hidden[0].activations == ("tanh",) and new.hidden[1].activations == ("sigmoid",)
    assert drop_unused_inputs(new)[1].dropped_inputs == ("x0", "x1", "x3")


# ---------------------------------------------------------------------------------------------------------
# fuse_identity_layers


def test_identity_layer_is_fused_into_the_next():
    model = _identity_layers()
    new, report = fuse_identity_layers(model)
    assert new.widths == (6, 10, 8, 2)
    assert new.hidden[1].activations == model.hidden[2].activations
    assert report.summary == "fused 1 identity layer(s): hidden 1 (12 neurons) into hidden 2"


def test_stack_of_identity_layers_fuses_to_one_layer():
    new, _ = fuse_identity_layers(random_model((4, 16, 16, 2), activations="identity", seed=4))
    assert new.widths == (4, 2)


def test_bottleneck_identity_layer_is_kept():
    model = _bottleneck()
    new, report = fuse_identity_layers(model)
    assert not report.changed and _same_model(model, new)
    assert report.summary == "kept 1: hidden 1 (1 neurons: fusing costs 256 > 32 MACs)"


def test_fusion_rescans_after_a_later_fusion_makes_an_earlier_one_cheap():
    # 8 -> 1 -> 64 -> 1 (all identity): 8x64 is too big at first; after 64 -> 1 fuses, 8 -> 1 -> 1 is cheap.
    model = random_model((8, 1, 64, 1), activations="identity", seed=13)
    new, _ = fuse_identity_layers(model)
    assert new.widths == (8, 1)
    _assert_same_function(model, new, tuple(range(8)))


# ---------------------------------------------------------------------------------------------------------
# fold_normalization, group_activations, drop_unused_inputs


def test_fold_normalization_leaves_identity_scaling():
    model = random_model((5, 7, 3), seed=14)
    new, report = fold_normalization(model)
    assert np.array_equal(new.input_scale, np.ones(5)) and np.array_equal(new.input_offset, np.zeros(5))
    assert np.array_equal(new.output_scale, np.ones(3)) and np.array_equal(new.output_offset, np.zeros(3))
    x = sample_inputs(model, 64, seed=2)
    assert np.allclose(forward_normalized(new, x), forward(model, x), rtol=1e-12, atol=1e-12)
    assert report.summary == "folded input scaling and output de-normalisation into the weights"
    assert fold_normalization(new)[1].summary == "scaling already identity"


def test_group_activations_makes_contiguous_canonical_stable_slices():
    model = random_model((4, 20, 15, 2), activations=ACTIVATIONS, seed=15)
    new, report = group_activations(model)
    assert report.changed
    for old_layer, new_layer in zip(model.hidden, new.hidden):
        ranks = [ACTIVATIONS.index(a) for a in new_layer.activations]
        assert ranks == sorted(ranks)
        for name in ACTIVATIONS:  # same neurons per group, in their original order
            old_cols = [j for j, a in enumerate(old_layer.activations) if a == name]
            new_cols = [j for j, a in enumerate(new_layer.activations) if a == name]
            assert np.array_equal(new_layer.bias[new_cols], old_layer.bias[old_cols])


def test_drop_unused_inputs_names_them_and_shrinks_everything():
    model = _unused_inputs()
    new, report = drop_unused_inputs(model)
    assert report.dropped_inputs == ("f1", "f4") and report.kept_inputs == (0, 2, 3, 5, 6)
    assert report.summary == "dropped 2 unused input(s): f1, f4"
    assert new.n_inputs == 5 and new.feature_names == ("f0", "f2", "f3", "f5", "f6")
    assert np.array_equal(new.input_scale, model.input_scale[[0, 2, 3, 5, 6]])
    assert np.array_equal(new.calibration, model.calibration[:, [0, 2, 3, 5, 6]])


def test_drop_unused_inputs_ignores_weights_into_gated_off_neurons():
    w0 = np.array([[1.0, 0.0], [0.0, 3.0]])  # x1 feeds only the gated-off neuron
    hidden = (Layer.make(w0, [0.0, 0.0], "relu", np.array([True, False])),)
    model = SparseMLP.make(hidden, Layer.make(np.ones((2, 1)), [0.0]))
    assert drop_unused_inputs(model)[1].dropped_inputs == ("x1",)


def test_drop_unused_inputs_keeps_the_first_input_when_none_is_used():
    model = SparseMLP.make((), Layer.make(np.zeros((3, 2)), [1.0, 2.0]))
    new, report = drop_unused_inputs(model)
    assert new.n_inputs == 1 and report.kept_inputs == (0,) and report.dropped_inputs == ("x1", "x2")
