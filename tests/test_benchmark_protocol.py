"""The benchmark's protocol (issue 13), pinned: every baseline trains with the search's fitter, settings, early
stopping and restarts on the search's split; the full protocol is the issue's; the test rows never choose."""
from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import compare_tables, compare_task  # noqa: E402
from benchmarks.compare_data import Task  # noqa: E402


def _toy_task(rows: int = 400, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(rows + 200, 2))
    y = np.sin(2 * x[:, 0]) * x[:, 1] + 0.3 * x[:, 0] ** 2
    y = 2 * (y - y[:rows].min()) / np.ptp(y[:rows]) - 1
    return Task("toy", "real", x[:rows], y[:rows], x[rows:], y[rows:], ("a", "b"))


def test_the_full_protocol_runs_the_search_as_swat_edge_search_does():
    """No override of the search's defaults in the full benchmark: lowering its steps or its fitter's budget
    (for the search and the baselines alike) must be a visible change of this test."""
    from swat_edge.search.run import SearchSettings

    full = compare_task.Protocol()
    assert full.search_settings(3) == SearchSettings(seed=3)
    assert full.targets == ("raspi4", "cortex-m4")


def test_the_full_sweep_and_the_adam_baseline_are_the_issues():
    full = compare_task.Protocol()
    shapes = [(d, w, a) for d in full.sweep_depths for w in full.sweep_widths for a in full.sweep_activations]
    assert len(shapes) == 40 and full.sweep_depths == (1, 2, 3, 4) and full.sweep_widths == (2, 3, 4, 6, 8)
    assert set(full.sweep_activations) == {"relu", "tanh"}
    assert (full.adam_widths, full.adam_steps) == ((8, 8, 8, 8), 3000)
    assert full.random_networks is None  # the random search's budget is the search's wall time


def test_the_quick_protocol_gives_the_search_and_the_baselines_one_fitter_budget():
    quick = compare_task.Protocol.quick()
    settings = quick.search_settings(0)
    assert settings.fit.max_iterations == quick.fit_iterations  # the search is shortened exactly as the baselines


def _split(task: Task, settings):
    return compare_task.search_split(task, settings)


def test_the_split_is_the_searchs_own():
    from swat_edge.search.run import SearchSettings, split_and_scale

    task = _toy_task()
    settings = SearchSettings(seed=5)
    split = _split(task, settings)
    prep = split_and_scale(compare_task.as_dataset(task), fraction=settings.validation_fraction, seed=5)
    assert np.array_equal(split.validation_rows, prep.val)
    assert np.array_equal(split.x_train, task.x_train[prep.train]) and np.array_equal(split.x_val, task.x_train[prep.val])
    assert set(split.scaling) == {"input_scale", "input_offset", "output_scale", "output_offset"}


def test_every_restart_is_fitted_by_the_searchs_fitter_with_its_settings_and_validation_rows(monkeypatch):
    """A spy on the Levenberg-Marquardt fitter: `restarts` calls, each with the search's FitSettings and the
    search's validation rows; lowering the restarts or passing other settings fails here."""
    from swat_edge.search import validation as search_fit  # the fitter as the search (and every baseline) calls it
    from swat_edge.search.run import SearchSettings

    task = _toy_task(rows=1200)  # at least cross_validation_below_rows: the holdout split, as the search
    settings = SearchSettings(seed=2)
    split = _split(task, settings)
    calls, real = [], search_fit.fit_levenberg_marquardt

    def spy(model, x_train, y_train, *, x_val=None, y_val=None, settings=None):
        calls.append((model, x_train, x_val, y_val, settings))
        return real(model, x_train, y_train, x_val=x_val, y_val=y_val, settings=replace(settings, max_iterations=3))

    monkeypatch.setattr(search_fit, "fit_levenberg_marquardt", spy)
    trained = compare_task.best_of_restarts((2, 4, 1), "tanh", 5, split, settings)
    assert len(calls) == 5 and len(trained.restart_val_mse) == 5
    assert trained.val_mse == min(trained.restart_val_mse)
    for _start, x_train, x_val, y_val, fit_settings in calls:
        assert fit_settings is settings.fit
        assert x_train is split.x_train and x_val is split.x_val and y_val is split.y_val
    starts = [call[0].hidden[0].weight for call in calls]
    assert all(not np.array_equal(starts[0], w) for w in starts[1:])  # five different starts
    first = calls[0][0]
    assert np.array_equal(first.input_scale, split.scaling["input_scale"])  # scaled as the search's references


def test_below_the_cross_validation_limit_every_restart_is_scored_by_the_searchs_folds(monkeypatch):
    """400 rows: like the search's candidates, each restart is fitted on 4/5 of every fold's complement, stopped on
    the other 1/5 of it, refitted on all rows, and scored by its out-of-fold MSE."""
    from swat_edge.model import forward
    from swat_edge.search import validation as search_fit
    from swat_edge.search.run import SearchSettings

    task = _toy_task()
    settings = SearchSettings(seed=2)
    split = _split(task, settings)
    calls, real = [], search_fit.fit_levenberg_marquardt

    def spy(model, x_train, y_train, *, x_val=None, y_val=None, settings=None):
        calls.append((len(x_train), None if x_val is None else len(x_val)))
        return real(model, x_train, y_train, x_val=x_val, y_val=y_val, settings=replace(settings, max_iterations=3))

    monkeypatch.setattr(search_fit, "fit_levenberg_marquardt", spy)
    trained = compare_task.best_of_restarts((2, 4, 1), "tanh", 2, split, settings)
    folds = settings.cross_validation_folds
    assert calls == [(256, 64)] * folds + [(400, None)] + [(256, 64)] * folds + [(400, None)]
    assert trained.val_mse == min(trained.restart_val_mse)
    # the score is out-of-fold: not the refitted model's error on rows it was fitted on
    in_sample = float(np.mean((forward(trained.model, split.x_all) - split.y_all) ** 2))
    assert trained.val_mse != pytest.approx(in_sample, rel=1e-6)


def test_with_adam_the_baselines_fit_like_the_search(monkeypatch):
    from swat_edge.search import validation as latent  # Adam's fine_tune as the search (and every baseline) calls it
    from swat_edge.search.run import SearchSettings

    task = _toy_task()
    settings = SearchSettings(fitter="adam", finetune_steps=7)
    assert settings.fitter_for() == "adam"
    seen = {}

    def spy(model, x_train, y_train, **kwargs):
        seen.update(kwargs)
        return model

    monkeypatch.setattr(latent, "fine_tune", spy)
    compare_task.fit_like_the_search(compare_task.start_network((2, 3, 1), "relu", 0, _split(task, settings)),
                                     _split(task, settings), settings)
    assert seen["steps"] == 7 and seen["lr"] == settings.finetune_lr and seen["seed"] == settings.seed
    assert seen["batch_points"] == settings.finetune_batch_points and seen["check_every"] == settings.finetune_check_every
    assert seen["x_val"] is not None


def _choices(row: dict, targets) -> list:
    """Every method's choice at every budget level (label and validation MSE), and every point's validation MSE."""
    out = []
    for target in targets:
        levels = compare_tables.budget_levels(row, target)
        for method in ("swat", *compare_tables.BASELINES, "dense_adam"):
            points = compare_tables.points_for(row, method, target)
            out.append((target, method, tuple((p["label"], p["val_mse"]) for p in points)))
            for level, budget in levels.items():
                chosen = compare_tables.choose_within(points, target, budget)
                out.append((target, method, level, None if chosen is None else (chosen["label"], chosen["val_mse"])))
    return out


@pytest.mark.torch
def test_permuting_the_test_targets_changes_no_choice():
    """Run a task twice, the second time with its test targets shuffled: every method's points, validation
    figures and choice at every budget stay the same (only the test MSEs move), so no test row chooses."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from swat_edge.search.embedding.storage import load_embedding

    embedding = load_embedding("default")
    untrained = compare_task.untrained_embedding(embedding, 12345)
    protocol = replace(compare_task.Protocol.quick(), targets=("raspi4",), sweep_depths=(1,), sweep_widths=(3, 6),
                       random_networks=3, prune_keep=(0.5,))
    task = _toy_task()
    permuted = replace(task, y_test=np.random.default_rng(1).permutation(task.y_test))
    rows = [compare_task.run_task(t, 0, protocol, embedding, untrained) for t in (task, permuted)]
    assert _choices(rows[0], protocol.targets) == _choices(rows[1], protocol.targets)
    swat = [[p["test_mse"] for p in r["methods"]["swat@raspi4"]] for r in rows]
    assert swat[0] != swat[1]  # the permutation did reach the test figures
    assert rows[0]["care"] == rows[1]["care"] and rows[0]["validation_sha256"] == rows[1]["validation_sha256"]
    assert asdict(protocol.search_settings(0).fit) == rows[0]["care"]["fit"]
