"""The input stage (issue 14, part 1): more features than the embedding's networks take. Expansion back to all
features is exact, selection finds the informative features among noise, and a search on 12 features gives a
model, an ONNX graph and C code that take all 12 columns."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.data import Dataset, minmax_scaling  # noqa: E402
from swat_edge.device.targets import load_target  # noqa: E402
from swat_edge.errors import UsageError  # noqa: E402
from swat_edge.model import forward, random_model  # noqa: E402
from swat_edge.search.embedding.storage import load_embedding  # noqa: E402
from swat_edge.search.inputs import _standardised, expand_inputs, project_features, select_features  # noqa: E402
from swat_edge.search.latent import LatentSettings  # noqa: E402
from swat_edge.search.run import SearchSettings, run_search  # noqa: E402

NAMES = tuple(f"f{i}" for i in range(12))


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # 12 features on hostile scales and offsets, one constant; the target uses f2, f5 (through a product) and f9
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 12)) * np.geomspace(0.01, 1000, 12) + np.linspace(-500, 500, 12)
    x[:, 7] = 42.0
    u = (x - x.min(axis=0)) / np.maximum(np.ptp(x, axis=0), 1e-12)
    y = np.sin(3 * u[:, 2]) + 2 * u[:, 5] * u[:, 9] + 0.5 * u[:, 9] ** 2
    return x, y[:, None]


@pytest.mark.parametrize("make", [select_features, project_features])
def test_a_network_on_the_stage_expands_exactly_to_all_features(make) -> None:
    x, y = _data()
    stage = make(x, y, 8, NAMES)
    z = stage.z(x)
    z_scale, z_offset = minmax_scaling(z)
    small = random_model((stage.matrix.shape[1], 6, 5, 1), seed=3).replace(
        input_scale=z_scale, input_offset=z_offset, feature_names=stage.names)
    scale, offset = minmax_scaling(x)
    wide = expand_inputs(small, stage, input_scale=scale, input_offset=offset, feature_names=NAMES)
    assert wide.n_inputs == 12 and wide.feature_names == NAMES
    np.testing.assert_allclose(forward(wide, x), forward(small, z), rtol=1e-9, atol=1e-9)
    assert not wide.hidden[0].weight[7].any()  # the constant feature is read by nothing


def test_selection_finds_the_informative_features_and_leaves_the_rest_at_zero_weight() -> None:
    x, y = _data()
    stage = select_features(x, y, 3, NAMES)
    assert set(stage.names) == {"f2", "f5", "f9"}  # f5 acts only with f9: the product terms find it
    assert np.count_nonzero(stage.matrix) == 3 and not stage.shift.any()


def _selection_oracle(x: np.ndarray, y: np.ndarray, k: int) -> list[int]:
    """Forward selection as the module docstring states it, one least-squares solve per candidate and step."""
    z, _, std = _standardised(x)
    y = (y - y.mean(axis=0)) / np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
    usable = [j for j in range(x.shape[1]) if np.isfinite(std[j])]
    chosen: list[int] = []
    design = np.ones((len(z), 1))
    while len(chosen) < min(k, len(usable)):
        def rss(j: int) -> float:
            zj = z[:, j:j + 1]
            trial = np.hstack([design, zj, zj ** 2, zj ** 3, *(zj * z[:, s:s + 1] for s in chosen)])
            coef = np.linalg.lstsq(trial, y, rcond=None)[0]
            return float(np.sum((trial @ coef - y) ** 2))
        best = min((j for j in usable if j not in chosen), key=rss)
        zj = z[:, best:best + 1]
        design = np.hstack([design, zj, zj ** 2, zj ** 3, *(zj * z[:, s:s + 1] for s in chosen)])
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_selection_chooses_what_one_least_squares_solve_per_candidate_chooses(seed: int) -> None:
    # the batched scoring (one eigendecomposition per block of candidates) is an optimisation of the plain
    # algorithm: same features in the same order, with a copy of a feature, a binary and a constant one, two targets
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(700, 90))
    x[:, 3] = x[:, 1]
    x[:, 5] = np.sign(x[:, 5])
    x[:, 6] = 7.0
    y = np.c_[np.sin(x[:, 0]) + x[:, 2] * x[:, 4] + 0.1 * rng.normal(size=700), x[:, 7] ** 2 + x[:, 5]]
    stage = select_features(x, y, 8, tuple(f"f{i}" for i in range(90)))
    assert [int(name[1:]) for name in stage.names] == _selection_oracle(x, y, 8)
    assert {"f0", "f2", "f4", "f7"} <= set(stage.names) and "f6" not in stage.names
    assert not {"f1", "f3"} <= set(stage.names)  # a copy of a chosen feature adds nothing


def test_projection_directions_are_uncorrelated_scores_of_all_features() -> None:
    x, y = _data()
    stage = project_features(x, y, 4, NAMES)
    z = stage.z(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-8)  # centred scores
    corr = np.corrcoef(z.T)
    np.testing.assert_allclose(corr - np.diag(np.diag(corr)), 0.0, atol=1e-8)


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return load_embedding(tiny_run)


@pytest.mark.parametrize("inputs", ["select", "project"])
def test_a_search_on_more_features_than_the_embedding_takes_gives_a_model_on_all_of_them(tiny, inputs, tmp_path):
    from swat_edge.export.c import run_c_rows
    from swat_edge.export.onnx import run_onnx
    from swat_edge.export.pipeline import export_c_file, export_onnx_file

    x, y = _data(seed=1)
    data = Dataset("wide.csv", x, y, NAMES, ("y",), "0" * 64)
    settings = SearchSettings(latent=LatentSettings(steps=30, starts_per_depth=2, eval_every=10, cost_every=5),
                              inputs=inputs)
    max_inputs = tiny.config.family.max_inputs
    assert max_inputs < 12
    result = run_search(data, embedding=tiny, target=load_target("cortex-m4"), settings=settings)
    assert result.model.n_inputs == 12 and result.model.feature_names == NAMES
    said = {"select": "forward selection kept", "project": "partial-least-squares directions"}[inputs]
    assert any(note.startswith("12 features, the embedding's networks take") and said in note for note in result.notes)
    for cand, model in zip(result.candidates, result.candidate_models):
        assert model.n_inputs == 12
        if cand.origin == "search" and inputs == "select":  # read through the stage: at most max_inputs features
            assert np.count_nonzero(np.any(model.layers[0].weight != 0, axis=1)) <= max_inputs
    export_onnx_file(result.model, tmp_path / "m.onnx")
    np.testing.assert_allclose(run_onnx((tmp_path / "m.onnx").read_bytes(), x[:50]).astype(np.float64),
                               forward(result.model, x[:50]), rtol=1e-4, atol=1e-4)
    c = export_c_file(result.model, tmp_path / "m.c")
    assert c.code.n_inputs == 12
    if c.check is not None:
        single, _, _ = run_c_rows(c.code, x[:50])
        np.testing.assert_allclose(single, forward(result.model, x[:50]), rtol=1e-4, atol=1e-4)


def _wide_search(tiny, **fields):
    x, y = _data(seed=1)
    data = Dataset("wide.csv", x, y, NAMES, ("y",), "0" * 64)
    settings = SearchSettings(latent=LatentSettings(steps=30, starts_per_depth=2, eval_every=10, cost_every=5),
                              finetune_steps=100, polish_rounds=0, **fields)
    return run_search(data, embedding=tiny, target=load_target("raspi4"), settings=settings)


def test_dense_references_read_the_selected_inputs_when_every_feature_would_make_their_first_layer_too_wide(tiny):
    def features_read(result) -> list[set[int]]:
        return [set(np.flatnonzero(np.any(model.layers[0].weight != 0, axis=1)))
                for cand, model in zip(result.candidates, result.candidate_models) if cand.origin == "dense"]

    every = features_read(_wide_search(tiny, inputs="select"))  # 12 features x width 3: 36 weights, within 512
    assert every and all(len(read) >= 11 for read in every)  # all but the constant feature f7
    narrow = _wide_search(tiny, inputs="select", dense_reference_max_first_weights=30)
    selected = {NAMES.index(name) for note in narrow.notes if "forward selection kept" in note
                for name in note.split(": ")[2].split("; ")[0].split(", ")}
    read = features_read(narrow)
    assert read and len(selected) == tiny.config.family.max_inputs
    assert all(features <= selected for features in read)


def test_auto_fits_with_adam_when_the_largest_network_is_too_large_for_levenberg_marquardt(tiny):
    # with the references on the stage's 2 inputs, select's largest network (2-3-3-3-1) has 37 free parameters
    # and project's (its first layer reads all 12 features through the projection) 67
    small = _wide_search(tiny, inputs="select", dense_reference_max_first_weights=30, lm_max_params=40)
    large = _wide_search(tiny, inputs="project", dense_reference_max_first_weights=30, lm_max_params=40)
    assert not any("fine-tuned with Adam" in note for note in small.notes)
    assert any(note.startswith("fine-tuned with Adam: the largest network has 67 free parameters, more than "
                               "Levenberg-Marquardt takes (40)") for note in large.notes)
    # Adam checks validation every finetune_check_every steps; LM records every accepted iteration
    assert {step % 50 for step, _ in large.finetune_history} == {0}
    assert {step % 50 for step, _ in small.finetune_history} != {0}


def test_an_unknown_input_method_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--inputs pca: use auto, select or project"):
        SearchSettings(inputs="pca").check()


def test_auto_inputs_take_the_stage_whose_inputs_carry_more_of_the_target_on_validation() -> None:
    from swat_edge.search.inputs import best_stage, stage_score

    rng = np.random.default_rng(0)
    names = tuple(f"f{i}" for i in range(40))
    x = rng.uniform(-1, 1, size=(1200, 40))
    few = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2]  # three features carry it: selection
    every = np.tanh(x @ (rng.normal(size=40) * 2 / np.sqrt(40)))  # every feature a little: the projection
    train, val = slice(0, 900), slice(900, None)
    for y, expected in ((few, "select"), (every, "project")):
        stage, scores = best_stage(x[train], y[train, None], x[val], y[val, None], 8, names)
        assert stage.method == expected and set(scores) == {"select", "project"}
        assert scores[expected] < 0.5 * min(s for m, s in scores.items() if m != expected)
        assert scores[expected] == stage_score(stage, x[train], y[train, None], x[val], y[val, None])


def test_an_auto_search_says_which_stage_it_took_and_why(tiny):
    result = _wide_search(tiny)  # inputs="auto": f2, f5 x f9, f9 carry the target; f5 only through a product
    note = next(note for note in result.notes if note.startswith("12 features, the embedding's networks take"))
    assert "--inputs auto: validation MSE of a cubic least-squares fit on each method's inputs, select " in note
    said = "select" if "forward selection kept" in note else "project"
    assert result.input_stage == said  # and card.json's data.input_stage
