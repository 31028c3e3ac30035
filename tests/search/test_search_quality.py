"""What the search's answer must never be worse than: a straight line on validation (the linear candidate), and
the fitter it chooses (Levenberg-Marquardt up to lm_max_params free parameters, Adam beyond)."""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.data import Dataset  # noqa: E402
from swat_edge.device.targets import load_target  # noqa: E402
from swat_edge.errors import UsageError  # noqa: E402
from swat_edge.model import forward  # noqa: E402
from swat_edge.search.embedding.storage import load_embedding  # noqa: E402
from swat_edge.search.latent import LatentSettings  # noqa: E402
from swat_edge.search.run import LINEAR_DEPTH, SearchSettings, reference_shapes, run_search  # noqa: E402

FAST = SearchSettings(latent=LatentSettings(steps=40, starts_per_depth=3, eval_every=8, cost_every=4),
                      finetune_steps=30)


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return load_embedding(tiny_run)


def _line_data(n: int = 100, seed: int = 0) -> Dataset:
    # 1 feature, 100 rows, a weak linear trend under heavy noise: a straight line is about all there is to learn
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, size=(n, 1))
    y = 0.3 * x[:, 0] + 2.0 * rng.normal(size=n)
    return Dataset("line.csv", x, y[:, None], ("x",), ("y",), "0" * 64)


def _validation_mse_of_line(data: Dataset, validation_rows: np.ndarray) -> float:
    train = np.setdiff1d(np.arange(data.n_rows), validation_rows)
    design = np.hstack([data.x, np.ones((data.n_rows, 1))])
    coef = np.linalg.lstsq(design[train], data.y[train], rcond=None)[0]
    return float(np.mean((design[validation_rows] @ coef - data.y[validation_rows]) ** 2))


def test_never_worse_than_a_straight_line_on_validation_with_a_holdout(tiny) -> None:
    data = _line_data()
    result = run_search(data, embedding=tiny, target=load_target("raspi4"),
                        settings=dataclasses.replace(FAST, fitter="adam"))  # Adam keeps the holdout split
    val = result.validation_rows
    found = float(np.mean((forward(result.model, data.x[val]) - data.y[val]) ** 2))
    assert found <= _validation_mse_of_line(data, val) * (1 + 1e-6)
    assert any(c.depth == LINEAR_DEPTH for c in result.candidates)  # the line competed


def _cross_validated_line_mse(data: Dataset, folds: int, seed: int) -> float:
    """The oracle: k-fold out-of-fold MSE of a least-squares line, on the target scaled as the search scales it."""
    rows = np.random.default_rng(seed).permutation(data.n_rows)
    design = np.hstack([data.x, np.ones((data.n_rows, 1))])
    out_of_fold = np.empty_like(data.y)
    for held in np.array_split(rows, folds):
        kept = np.setdiff1d(np.arange(data.n_rows), held)
        out_of_fold[held] = design[held] @ np.linalg.lstsq(design[kept], data.y[kept], rcond=None)[0]
    return float(np.mean((out_of_fold - data.y) ** 2))


def test_small_data_is_chosen_by_cross_validation_and_never_worse_than_a_line(tiny) -> None:
    data = _line_data()  # 100 rows, 1 feature, mostly noise
    result = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST)
    assert result.split_rows["folds"] == 5 and result.split_rows["validation"] == 100
    assert any("5-fold cross-validation" in note for note in result.notes)
    linear = next(c for c in result.candidates if c.depth == LINEAR_DEPTH)
    assert result.chosen.finetuned_val_mse <= linear.finetuned_val_mse * (1 + 1e-9)
    # the linear candidate's figure is the k-fold MSE an independent least-squares fit gets on the same folds
    train_rows = np.setdiff1d(np.arange(data.n_rows), result.validation_rows)
    y_scale = 2.0 / np.ptp(data.y[train_rows])  # the [-1, 1] scaling of the search's training rows
    assert linear.finetuned_val_mse == pytest.approx(_cross_validated_line_mse(data, 5, 0) * y_scale**2, rel=1e-3)
    assert result.metrics["fine_tuned"]["validation"].mse == pytest.approx(result.chosen.finetuned_val_mse)
    assert result.metrics["fine_tuned"]["validation"].rows == 100


def test_cross_validation_only_below_the_row_limit_and_with_levenberg_marquardt() -> None:
    from swat_edge.search.run import uses_cross_validation

    settings = SearchSettings()
    assert uses_cross_validation(settings, 999) and not uses_cross_validation(settings, 1000)
    assert not uses_cross_validation(dataclasses.replace(settings, fitter="adam"), 100)


def test_the_linear_candidate_is_the_least_squares_line(tiny) -> None:
    data = _line_data(seed=1)
    settings = dataclasses.replace(FAST, weights=dataclasses.replace(FAST.weights, sparsity=10.0))  # favours small
    result = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=settings)
    linear = next(c for c in result.candidates if c.depth == LINEAR_DEPTH)
    assert linear.finetuned_val_mse is not None and linear.nonzero_params == 2  # one weight and the bias
    if result.chosen.depth == LINEAR_DEPTH:
        assert not result.model.hidden


def test_fitter_is_chosen_by_network_size_and_can_be_forced() -> None:
    settings = SearchSettings()
    assert settings.fitter_for() == "lm" and settings.fitter_for(settings.lm_max_params) == "lm"
    assert settings.fitter_for(settings.lm_max_params + 1) == "adam"
    assert dataclasses.replace(settings, fitter="adam").fitter_for() == "adam"
    assert dataclasses.replace(settings, fitter="lm").fitter_for(10**6) == "lm"
    with pytest.raises(UsageError, match="--fitter sgd: use auto, lm or adam"):
        dataclasses.replace(settings, fitter="sgd").fitter_for()


def test_levenberg_marquardt_fits_on_a_seeded_sample_of_at_most_lm_max_rows_rows() -> None:
    from swat_edge.model import random_model
    from swat_edge.search.fit import fit_levenberg_marquardt
    from swat_edge.search.validation import fit_candidate, lm_rows

    settings = SearchSettings(lm_max_rows=300, fit=dataclasses.replace(SearchSettings().fit, max_iterations=20))
    assert lm_rows(300, settings) is None
    rows = lm_rows(1000, settings)
    assert len(rows) == 300 and len(set(rows)) == 300 and np.all(np.diff(rows) > 0) and rows.max() < 1000
    np.testing.assert_array_equal(rows, lm_rows(1000, settings))  # the same sample for every network of a search
    assert not np.array_equal(rows, lm_rows(1000, dataclasses.replace(settings, seed=1)))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1400, 2))
    y = (np.sin(2 * x[:, 0]) * x[:, 1])[:, None]
    x_val, y_val = x[1000:], y[1000:]  # 400 validation rows: early stopping checks a sample of 300 of them too
    check = lm_rows(400, settings)
    start = random_model((2, 4, 1), activations="tanh", per_layer=True, seed=1, normalization=False)
    sampled, _ = fit_candidate(start, x[:1000], y[:1000], x_val, y_val, settings)
    oracle = fit_levenberg_marquardt(start, x[rows], y[rows], x_val=x_val[check], y_val=y_val[check],
                                     settings=settings.fit)
    every = fit_levenberg_marquardt(start, x[:1000], y[:1000], x_val=x_val, y_val=y_val, settings=settings.fit)
    for a, b, c in zip(sampled.layers, oracle.model.layers, every.model.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
    assert any(not np.array_equal(a.weight, c.weight) for a, c in zip(sampled.layers, every.model.layers))
    with pytest.raises(UsageError, match="--fit-rows 0: give 1 or more"):
        SearchSettings(lm_max_rows=0).check()
    from swat_edge.search.run import _finetune_stage_message

    assert "(Levenberg-Marquardt, a random 300 of the 1000 training rows," in _finetune_stage_message([], settings, 1000)
    assert "(Levenberg-Marquardt, full batch of 300 rows," in _finetune_stage_message([], settings, 300)


def test_levenberg_marquardt_beats_adam_on_a_smooth_target() -> None:
    # The reason LM is the default fitter: from the same start on a smooth target it ends far more accurate than
    # the Adam schedule it replaced (2,000 steps, cosine learning rate, best validation iterate).
    from swat_edge.model import random_model
    from swat_edge.search.fit import fit_levenberg_marquardt
    from swat_edge.search.latent import fine_tune

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(600, 2))
    y = (np.sin(2 * x[:, 0]) * np.cos(x[:, 1]))[:, None]
    start = random_model((2, 5, 5, 1), activations="tanh", per_layer=True, seed=1, normalization=False)
    settings = SearchSettings()
    adam = fine_tune(start, x[:450], y[:450], x_val=x[450:], y_val=y[450:], steps=settings.finetune_steps,
                     lr=settings.finetune_lr, final_lr=settings.finetune_final_lr,
                     batch_points=settings.finetune_batch_points, check_every=settings.finetune_check_every)
    lm = fit_levenberg_marquardt(start, x[:450], y[:450], x_val=x[450:], y_val=y[450:], settings=settings.fit).model
    mse = lambda m: float(np.mean((forward(m, x[450:]) - y[450:]) ** 2))  # noqa: E731
    assert mse(lm) < 0.1 * mse(adam)


def _trial(val_mse: float, latency_us: float, depth: int = 1, score: float = 0.0):
    from types import SimpleNamespace

    entry = SimpleNamespace(exact=SimpleNamespace(latency_us=(latency_us,)), snapshot=SimpleNamespace(depth=depth))
    return SimpleNamespace(val_mse=val_mse, entry=entry, score=score)


def test_budget_first_picks_the_cheapest_within_tolerance_of_the_best() -> None:
    from swat_edge.search.run import choose

    best, near, cheap_but_worse, slow = _trial(1.00, 20.0), _trial(1.04, 15.0), _trial(1.2, 10.0), _trial(1.01, 30.0)
    trials = [best, near, cheap_but_worse, slow]
    assert choose(trials, SearchSettings()) is near  # within 5% of the best and cheaper than it
    assert choose(trials, SearchSettings(tolerance=0.0)) is best
    assert choose(trials, SearchSettings(tolerance=0.5)) is cheap_but_worse
    # nothing made smaller for its own sake: at equal predicted latency the more accurate network wins
    a, b = _trial(1.00, 15.0, depth=2), _trial(1.03, 15.0, depth=1)
    assert choose([b, a], SearchSettings()) is a


def test_with_row_errors_a_cheaper_network_within_one_standard_error_is_chosen() -> None:
    from swat_edge.search.run import choose

    rng = np.random.default_rng(0)
    best_rows = rng.exponential(1.0, 300)
    best, line = _trial(float(best_rows.mean()), 20.0), _trial(float(best_rows.mean()) * 1.08, 5.0)
    # 8% worse on average: beyond the 5% tolerance, but noisy row by row (small data) or the same on every row
    noisy = best_rows * 1.08 + rng.normal(0.0, 3.0, 300)
    noisy += best_rows.mean() * 1.08 - noisy.mean()
    consistent = best_rows * 1.08
    assert choose([best, line], SearchSettings()) is best
    assert choose([best, line], SearchSettings(), [best_rows, noisy]) is line
    assert choose([best, line], SearchSettings(), [best_rows, consistent]) is best
    assert choose([best, line], SearchSettings(choice_standard_errors=0.0), [best_rows, noisy]) is best
    # a noisy network 10% worse is near the best, so the line, 8% worse on every row, is too: the cheaper line
    # is chosen, never a network worse on validation than it
    wobbly = _trial(float(best_rows.mean()) * 1.10, 10.0)
    noisier = best_rows * 1.10 + rng.normal(0.0, 3.0, 300)
    noisier += best_rows.mean() * 1.10 - noisier.mean()
    assert choose([best, line, wobbly], SearchSettings(), [best_rows, consistent, noisier]) is line


def test_weighted_choice_uses_the_objective_score() -> None:
    from swat_edge.search.run import choose

    low_score, high_score = _trial(2.0, 30.0, score=-1.0), _trial(1.0, 10.0, score=0.0)
    assert choose([high_score, low_score], SearchSettings(choice="weighted")) is low_score


def test_pareto_front() -> None:
    from swat_edge.search.run import pareto_front

    points = [(1.0, 10.0, 100.0), (2.0, 5.0, 100.0), (2.0, 12.0, 100.0), (1.0, 10.0, 100.0), (0.5, 20.0, 50.0)]
    assert pareto_front(points) == [True, True, False, False, True]  # 2 dominated by 0; 3 repeats 0


def test_bad_choice_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="--tolerance -0.1"):
        SearchSettings(tolerance=-0.1).check()
    with pytest.raises(UsageError, match="choice 'best'"):
        SearchSettings(choice="best").check()


def test_a_refit_worse_than_its_folds_is_replaced_by_the_best_fold_model(tiny, monkeypatch) -> None:
    # The refit on all rows has no held-out stop; when it ends worse (on all rows) than the best fold model, that
    # fold model is deployed. Simulated: every refit returns its start with the output layer's bias off by 5.
    from swat_edge.search import validation  # where the search's cross-validation calls the fitter

    real_fit = validation.fit_levenberg_marquardt

    def broken_refit(model, x, y, *, x_val=None, y_val=None, settings):
        result = real_fit(model, x, y, x_val=x_val, y_val=y_val, settings=settings)
        if x_val is not None:
            return result
        output = dataclasses.replace(result.model.output, bias=result.model.output.bias + 5.0)
        return dataclasses.replace(result, model=result.model.replace(output=output))

    monkeypatch.setattr(validation, "fit_levenberg_marquardt", broken_refit)
    data = _line_data()
    result = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST)
    in_sample = float(np.mean((forward(result.model, data.x) - data.y) ** 2))
    assert in_sample < 2.0 * float(np.var(data.y))  # a bias off by 5 (y's spread is ~2) would be ~25 + var


def test_reference_shapes_follow_what_the_target_charges_for_an_activation() -> None:
    # onnxruntime charges a tanh about 2x a ReLU (both tiny next to a node): the tanh references only
    assert reference_shapes(load_target("raspi4"), 8, (1, 2)) == ((1, 8, "tanh"), (2, 8, "tanh"))
    # generated C on a Cortex-M4: tanhf 2,000 ns, ReLU 50 ns; add the cheap activation, the cheap one with a
    # half-tanh last hidden layer and a half-width tanh
    m4 = load_target("cortex-m4")
    assert m4.cost.tanh_ns >= 4 * m4.cost.relu_ns
    assert reference_shapes(m4, 8, (1, 2)) == ((1, 8, "tanh"), (2, 8, "tanh"), (1, 8, "relu"), (2, 8, "relu"),
                                               (1, 8, "relu+tanh"), (2, 8, "relu+tanh"), (1, 4, "tanh"))
    assert reference_shapes(m4, 8, (2,)) == ((2, 8, "tanh"), (2, 8, "relu"), (2, 8, "relu+tanh"))


def test_a_mixed_reference_is_the_cheap_activation_with_half_its_last_hidden_layer_tanh() -> None:
    from swat_edge.search.references import reference_network

    network = reference_network((2, 6, 6, 1), "relu+tanh", seed=0)
    assert network.hidden[0].activations == ("relu",) * 6
    assert network.hidden[1].activations == ("tanh",) * 3 + ("relu",) * 3
    # the same weights as the plain network of the cheap activation: only the activations differ
    plain = reference_network((2, 6, 6, 1), "relu", seed=0)
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(network.hidden, plain.hidden))
    assert reference_network((2, 1, 1), "relu+tanh", seed=0).hidden[0].activations == ("tanh",)


def test_each_reference_shape_is_one_candidate_the_best_of_its_restarts(tiny) -> None:
    data = _line_data(n=300)
    result = run_search(data, embedding=tiny, target=load_target("cortex-m4"),
                        settings=dataclasses.replace(FAST, dense_reference_restarts=2))
    # the candidates are compiled (dead neurons go), so widths may shrink; depth and activations stay
    dense = [(c.depth, "+".join(sorted({a for layer in m.hidden for a in layer.activations})))
             for c, m in zip(result.candidates, result.candidate_models) if c.origin == "dense"]
    assert sorted(dense) == sorted([(1, "tanh"), (2, "tanh"), (3, "tanh"), (1, "relu"), (2, "relu"), (3, "relu"),
                                    (1, "relu+tanh"), (2, "relu+tanh"), (3, "relu+tanh"), (1, "tanh")])


def test_a_latency_budget_narrows_each_reference_to_the_widest_that_fits(tiny) -> None:
    """Under a budget that the family's widest networks miss, each reference depth keeps the widest dense shape
    that meets it (one wider breaks it) instead of dropping out; without a budget nothing is narrowed."""
    from swat_edge.device.cost import estimate
    from swat_edge.search.objective import Budgets
    from swat_edge.search.problem import _prepare_problem
    from swat_edge.search.references import _reference_pool, _reference_shape, reference_network

    m4 = load_target("cortex-m4")
    data = _line_data(n=300)

    def latency_us(depth: int, width: int, activation: str) -> float:
        return float(estimate(reference_network((1, *([width] * depth), 1), activation, seed=0), m4).latency_us[0])

    widest = tiny.config.family.max_width
    # the widest depth-1 tanh misses the budget by one neuron; every ReLU network is cheaper
    budget_us = latency_us(1, widest - 1, "tanh") * 1.01

    def dense_shapes(budgets: Budgets) -> list[tuple[int, int, str]]:
        problem = _prepare_problem(data, tiny, m4, budgets, FAST)
        return sorted({_reference_shape(e) for e in _reference_pool(problem, 1) if e.origin == "dense"})

    assert (1, widest, "tanh") in dense_shapes(Budgets())
    shapes = dense_shapes(Budgets(latency_us=budget_us))
    assert (1, widest - 1, "tanh") in shapes and (1, widest, "tanh") not in shapes
    for depth, width, activation in shapes:
        assert latency_us(depth, width, activation) <= budget_us * 1.001  # (the reference also scales its inputs)
        if (depth, width, activation) != (1, widest // 2, "tanh"):  # the half-width tanh is there anyway
            assert width == widest or latency_us(depth, width + 1, activation) > budget_us
    assert len(shapes) == len(set(shapes))


def _wavy_data(n: int = 1200, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 2))
    y = np.sin(3 * x[:, 0]) * np.cos(2 * x[:, 1]) + 0.01 * rng.normal(size=n)
    return Dataset("wavy.csv", x, y[:, None], ("a", "b"), ("y",), "1" * 64)


def test_screened_starts_only_add_to_each_reference_shape(tiny) -> None:
    """The first dense_reference_screened_plain starts are fitted exactly as without screening; the screened ones can
    only lower each shape's best validation MSE (holdout split: >= 1000 rows)."""
    data = _wavy_data()
    base = dataclasses.replace(FAST, dense_reference_depths=(1, 2), dense_reference_restarts=2,
                               dense_reference_screened_plain=2, dense_reference_screen_iterations=10,
                               dense_reference_screened_best=2)
    results = {starts: run_search(data, embedding=tiny, target=load_target("raspi4"),
                                  settings=dataclasses.replace(base, dense_reference_screened_starts=starts))
               for starts in (0, 6)}
    best = {starts: {c.depth: c.val_mse for c in r.candidates if c.origin == "dense"} for starts, r in results.items()}
    assert sorted(best[0]) == sorted(best[6]) == [1, 2]
    assert all(best[6][d] <= best[0][d] for d in best[0])
    searched = {s: sorted(c.val_mse for c in r.candidates if c.origin == "search") for s, r in results.items()}
    assert searched[0] == searched[6]  # screening touches the references only


def test_cross_validation_stops_each_fold_on_rows_that_neither_fit_nor_score_it(monkeypatch) -> None:
    from swat_edge.model import random_model
    from swat_edge.search import validation

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (200, 2))
    y = np.sin(3 * x[:, :1]) + 0.1 * rng.normal(size=(200, 1))
    x[:, 1] = np.arange(200)  # each row's index travels with it, so the spy can name the rows of every fit
    start = random_model((2, 4, 1), activations="tanh", per_layer=True, seed=0, normalization=False)
    seen, real = [], validation.fit_levenberg_marquardt

    def spy(model, x_train, y_train, *, x_val=None, y_val=None, settings=None):
        seen.append((set(x_train[:, 1].astype(int)), None if x_val is None else set(x_val[:, 1].astype(int))))
        return real(model, x_train, y_train, x_val=x_val, y_val=y_val, settings=settings)

    monkeypatch.setattr(validation, "fit_levenberg_marquardt", spy)
    settings = SearchSettings(fit=dataclasses.replace(SearchSettings().fit, max_iterations=5))
    validation.cross_validate(start, x, y, settings)
    held_out = [set(fold) for fold in validation._folds(200, 5, settings.seed)]
    assert len(seen) == 6 and seen[-1] == (set(range(200)), None)  # 5 folds, then the refit on all rows
    for (fit_rows, stop_rows), held in zip(seen, held_out):
        assert len(stop_rows) == 32 and len(fit_rows) == 128
        assert not (stop_rows & held) and not (fit_rows & held) and not (fit_rows & stop_rows)
    old_way = dataclasses.replace(settings, cross_validation_stop_fraction=0.0)
    seen.clear()
    validation.cross_validate(start, x, y, old_way)
    assert [stop for _, stop in seen[:5]] == held_out


def test_fresh_weights_keep_the_structure_and_replace_every_weight() -> None:
    from swat_edge.model import random_model
    from swat_edge.search.validation import fresh_weights

    model = random_model((3, 6, 5, 2), sparsity=0.4, dead_fraction=0.3, seed=4)
    fresh = fresh_weights(model, seed=0)
    for old, new in zip(model.layers, fresh.layers):
        assert np.array_equal(old.weight != 0, new.weight != 0)
        assert np.array_equal(old.mask, new.mask) and old.activations == new.activations
        free = old.weight != 0
        assert not np.any(np.isclose(old.weight[free], new.weight[free]))
        assert np.all(new.bias[~old.mask] == 0)
    assert np.array_equal(fresh.input_scale, model.input_scale)
    assert np.array_equal(fresh.output_offset, model.output_offset)
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(fresh.layers, fresh_weights(model, 0).layers))


def test_below_the_row_limit_searched_networks_are_scored_from_fresh_weights(tiny, monkeypatch) -> None:
    from swat_edge.search import validation

    starts, made = [], []
    real_cv, real_fresh = validation.cross_validate, validation.fresh_weights

    def cv_spy(start, *args, **kwargs):
        starts.append(start)
        return real_cv(start, *args, **kwargs)

    def fresh_spy(model, seed):
        made.append(real_fresh(model, seed))
        return made[-1]

    monkeypatch.setattr(validation, "cross_validate", cv_spy)
    monkeypatch.setattr(validation, "fresh_weights", fresh_spy)
    result = run_search(_line_data(), embedding=tiny, target=load_target("raspi4"), settings=FAST)
    searched = [c for c in result.candidates if c.origin == "search"]
    assert searched and len(made) == len(searched)
    assert all(any(start is fresh for start in starts) for fresh in made)
    made.clear()
    run_search(_line_data(), embedding=tiny, target=load_target("raspi4"),
               settings=dataclasses.replace(FAST, cross_validation_fresh_weights=False))
    assert not made
