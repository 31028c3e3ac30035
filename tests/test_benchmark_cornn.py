"""benchmarks/cornn.py (v2): the budgeted comparison on synthetic rows, pruning, the cache, and the smoke run on
the real CORNN data (which also checks the protocol each row records: one split, the search's fitter and restarts)."""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from cornn_data import CORNN_DIR, HAVE_CORNN, SKIP_REASON

from swat_edge.model import random_model

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_spec = importlib.util.spec_from_file_location("bench_cornn", REPO / "benchmarks" / "cornn.py")
cornn = importlib.util.module_from_spec(_spec)
sys.modules["bench_cornn"] = cornn  # dataclasses look their module up while the file executes
_spec.loader.exec_module(cornn)

from benchmarks import compare_run, compare_tables, compare_task  # noqa: E402


def _point(label: str, val: float, test: float, raspi: float, cm4: float | None = None, **extra) -> dict:
    return {"label": label, "val_mse": val, "test_mse": test, "nonzero": 20, "widths": [2, 4, 1],
            "latency_us": {"raspi4": raspi, "cortex-m4": raspi if cm4 is None else cm4}, "wall_s": 1.0, **extra}


def _row(task: str, swat: list[dict], sweep: list[dict], random: list[dict] | None = None, seed: int = 0) -> dict:
    """A row as compare_task.run_task writes it, with the fields the tables read."""
    random = random or [_point("4 relu", 1.0, 1.0, 10.0, finished_s=1.0)]
    swat = [dict(p, chosen=(i == 0)) for i, p in enumerate(swat)]
    searched = {"chosen_test_mse": 1.0, "best_searched_test_mse": 1.0, "latent_only_test_mse": 4.0,
                "chosen_origin": "search"}
    return {"task": task, "kind": "cornn", "seed": seed, "notes": [], "features": ["x", "y"],
            "rows": {"train": 80, "validation": 20, "test": 50}, "validation_sha256": "ab", "test_variance": 1.0,
            "constant_test_mse": 1.0, "care": {"fitter": "lm", "fit": {}, "restarts": 7},
            "search": {t: {"wall_s": 5.0, "candidates": 7} for t in ("raspi4", "cortex-m4")},
            "random_budget_s": {"raspi4": 5.0, "cortex-m4": 5.0},
            "methods": {"swat@raspi4": swat, "swat@cortex-m4": swat, "dense_sweep": sweep,
                        "dense_adam": [_point("8-8-8-8 tanh Adam", 0.5, 0.5, 30.0)], "pruned": sweep[:1],
                        "random": random},
            "ablation": {"target": "raspi4", "trained_decoder": searched,
                         "untrained_decoder": dict(searched, chosen_test_mse=2.0)},
            "references": {"linear_regression": {"test_mse": 0.5}, "hist_gradient_boosting": {"test_mse": 0.1}},
            "wall_s": {"swat@raspi4": 5.0, "dense_sweep": 50.0}, "task_wall_s": 60.0}


SWEEP = [_point("2 relu", 0.4, 0.4, 10.0), _point("4 relu", 0.2, 0.2, 20.0), _point("8 relu", 0.1, 0.1, 30.0),
         _point("8-8-8-8 tanh", 0.05, 0.05, 40.0)]


def test_outcome_counts_ratios_within_five_percent_as_ties():
    assert [compare_tables.outcome(r) for r in (0.5, 0.951, 1.0, 1.049, 1.06)] == ["win", "tie", "tie", "tie", "loss"]


def test_budgets_are_the_dense_sweeps_latency_quartiles_plus_unbounded():
    levels = compare_tables.budget_levels(_row("a", [_point("s", 1, 1, 1)], SWEEP), "raspi4")
    assert levels == {"q1": 17.5, "median": 25.0, "q3": 32.5, "unbounded": float("inf")}


def test_choice_within_a_budget_reads_validation_not_test():
    points = [_point("fast", 0.3, 0.01, 5.0), _point("good on validation", 0.1, 0.9, 10.0),
              _point("too slow", 0.01, 0.001, 50.0)]
    assert compare_tables.choose_within(points, "raspi4", 20.0)["label"] == "good on validation"
    assert compare_tables.choose_within(points, "raspi4", 6.0)["label"] == "fast"
    assert compare_tables.choose_within(points, "raspi4", 4.0) is None
    shuffled = [dict(p, test_mse=t) for p, t in zip(points, (5.0, 6.0, 7.0))]  # other test figures, same choice
    assert compare_tables.choose_within(shuffled, "raspi4", 20.0)["label"] == "good on validation"


def test_random_search_counts_only_what_finished_within_each_targets_search_time():
    drawn = [_point(f"n{i}", 1.0, 1.0, 10.0, finished_s=s) for i, s in enumerate((1.0, 4.0, 9.0))]
    row = _row("a", [_point("s", 1, 1, 1)], SWEEP, drawn)
    row["random_budget_s"] = {"raspi4": 5.0, "cortex-m4": 0.5}
    assert [p["label"] for p in compare_tables.points_for(row, "random", "raspi4")] == ["n0", "n1"]
    assert [p["label"] for p in compare_tables.points_for(row, "random", "cortex-m4")] == ["n0"]  # at least one
    pooled = compare_tables.points_for(row, "all_baselines", "raspi4")
    assert len(pooled) == len(SWEEP) + 1 + 2 + 1  # sweep, pruned, random prefix, Adam


def test_budgeted_counts_wins_ties_losses_and_one_sided_budgets():
    # swat: a fast network (12 us) better than anything the sweep has below 17.5 us, and a slow one.
    win = _row("win", [_point("fast", 0.1, 0.1, 12.0), _point("slow", 0.01, 0.2, 45.0)], SWEEP)
    # swat has nothing at q1 (its fastest is 25 us): a loss without a ratio; worse everywhere else.
    lose = _row("lose", [_point("slow", 0.3, 0.3, 25.0)], SWEEP)
    agg = compare_tables.budgeted([win, lose], "raspi4")
    q1 = agg["q1"]["vs"]["dense_sweep"]
    assert (q1["n"], q1["wins"], q1["losses"], q1["one_sided"]) == (2, 1, 1, 1)
    assert q1["median_ratio"] == pytest.approx(0.1 / 0.4)
    unbounded = agg["unbounded"]["vs"]["dense_sweep"]  # swat's best on validation is "slow": test 0.2 vs 0.05
    assert (unbounded["wins"], unbounded["ties"], unbounded["losses"]) == (0, 0, 2)
    assert unbounded["median_ratio"] == pytest.approx(np.median([0.2 / 0.05, 0.3 / 0.05]))
    assert agg["q1"]["budget_us_median"] == 17.5 and agg["unbounded"]["budget_us_median"] is None


def test_front_score_is_the_mean_log_mse_of_the_validation_choice_over_the_sweeps_latency_range():
    row = _row("a", [_point("s", 0.1, 0.1, 10.0)], [_point("a", 1.0, 1.0, 10.0), _point("b", 0.01, 0.01, 100.0)])
    assert compare_tables.front_score(row, "swat", "raspi4", grid=5) == pytest.approx(-1.0)
    # the sweep: 1.0 up to 100 us, 0.01 at the last grid point
    assert compare_tables.front_score(row, "dense_sweep", "raspi4", grid=5) == pytest.approx(-2.0 / 5)
    row["methods"]["swat@raspi4"] = [_point("s", 0.1, 0.1, 50.0, chosen=True)]  # nothing below 50 us: the constant
    assert compare_tables.front_score(row, "swat", "raspi4", grid=5) == pytest.approx((3 * 0.0 - 2) / 5)


def test_aggregate_and_markdown_have_every_target_level_and_task():
    rows = [_row("sphere", [_point("s", 0.1, 0.1, 12.0)], SWEEP), _row("levy", [_point("s", 0.3, 0.3, 25.0)], SWEEP)]
    report = {"aggregate": compare_tables.aggregate(rows, ("raspi4", "cortex-m4")), "rows": rows, "title": "CORNN",
              "command": "python benchmarks/cornn.py", "machine": "test", "jobs": 2, "wall_s": 60.0, "cached_rows": 1,
              "protocol": asdict(compare_task.Protocol()),
              "embedding": {"source": "default", "steps": 10, "weights_sha256": "ab" * 32}}
    head = report["aggregate"]["targets"]["raspi4"]["headline"]
    assert head["dense_8x4"]["n"] == 2 and head["dense_8x4"]["median_size_ratio"] == 1.0
    assert report["aggregate"]["ablation"]["untrained_over_trained_chosen"]["median_ratio"] == 2.0
    text = compare_tables.markdown(report)
    for target in ("raspi4", "cortex-m4"):
        assert f"## {target}: best test MSE within a predicted-latency budget" in text
        assert f"| sphere | 0 | {target} | 1.00e-01 |" in text
    assert "| q1 (17.5 us) | (a) dense sweep" in text and "| unbounded | all baselines pooled |" in text
    assert "1 of 2 rows from the cache" in text


def test_replication_reports_each_seed_and_the_spread_per_task():
    rows = [_row("sphere", [_point("s", 0.1, t, 12.0)], SWEEP, seed=s) for s, t in ((0, 0.1), (1, 0.4))]
    rep = compare_tables.replication(rows, ("raspi4",))
    assert rep["seeds"] == [0, 1] and len(rep["per_seed"]["raspi4"]["unbounded/dense_sweep"]) == 2
    assert rep["task_spread"]["raspi4"]["sphere"] == {"min": 0.1, "max": 0.4, "n": 2}


@pytest.mark.parametrize("target", [20, 37, 60, 150])
def test_pruned_to_comes_close_to_the_count_and_keeps_every_layer_connected(target):
    dense = random_model((2, 8, 8, 8, 8, 1), activations="tanh", seed=1, normalization=False)
    pruned = compare_task.pruned_to(dense, target)
    assert 0.8 * target <= compare_task.nonzero_params(pruned) <= target
    assert all(np.count_nonzero(layer.weight) > 0 for layer in compare_task.compiled(pruned).layers)
    assert pruned.input_scale is dense.input_scale  # not compiled: the fitter sees the dense network's scaling


def test_pruned_to_below_the_smallest_connected_network_gives_that_network():
    from swat_edge.model import model_stats

    dense = random_model((2, 8, 8, 8, 8, 1), activations="tanh", seed=1, normalization=False)
    stats = model_stats(compare_task.compiled(compare_task.pruned_to(dense, 5)))
    assert stats.widths == (2, 1, 1, 1, 1, 1) and stats.nonzero_params == 10  # one chain: 5 weights, 5 biases


def test_cache_is_keyed_by_fingerprint_and_ignores_damaged_entries(tmp_path):
    quick, full = compare_task.Protocol.quick(), compare_task.Protocol()
    key = compare_run.fingerprint("sha", full)
    assert key != compare_run.fingerprint("sha", quick) and key != compare_run.fingerprint("other", full)
    assert key != compare_run.fingerprint("sha", full, compare_run.code_sha256())  # other code, other results
    row = _row("sphere", [_point("s", 0.1, 0.1, 12.0)], SWEEP)
    compare_run.store_row(tmp_path, row, key)
    assert compare_run.cached_row(tmp_path, "sphere", 0, key) == row
    assert compare_run.cached_row(tmp_path, "sphere", 0, compare_run.fingerprint("sha", quick)) is None
    assert compare_run.cached_row(tmp_path, "sphere", 1, key) is None
    (tmp_path / "sphere.seed0.json").write_text("{ half written")
    assert compare_run.cached_row(tmp_path, "sphere", 0, key) is None


def test_missing_data_skips_with_a_message(tmp_path, capsys):
    assert cornn.main(["--cornn", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 0
    assert "CORNN data not found" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_seeds_without_tasks_mean_the_eight_replication_tasks():
    assert len(cornn.REPLICATION_TASKS) == 8 and len(set(cornn.REPLICATION_TASKS)) == 8
    args = type("Args", (), {"tasks": None, "quick": False})()
    assert cornn.chosen_tasks(args, ["a"], replication=True) == list(cornn.REPLICATION_TASKS)
    assert cornn.output_name(args, list(cornn.REPLICATION_TASKS), ["a"], replication=True) == "cornn_seeds"


def _assert_protocol_and_learning(row: dict, protocol) -> None:
    """What every row must show: one split for every method, the baselines' training budget equal to the
    search's, and every method learning something (the training mean's test MSE is the bar)."""
    settings = protocol.search_settings(row["seed"])
    assert {s["validation_sha256"] for s in row["search"].values()} == {row["validation_sha256"]}
    assert row["care"]["fitter"] == settings.fitter_for() == "lm"
    assert row["care"]["fit"] == json.loads(json.dumps(asdict(settings.fit)))
    assert row["care"]["restarts"] == max(s["candidates"] for s in row["search"].values()) >= 4
    for p in row["methods"]["dense_sweep"]:
        assert p["restarts"] == row["care"]["restarts"] == len(p["restart_val_mse"])
        assert p["val_mse"] == pytest.approx(min(p["restart_val_mse"]))
    assert len(row["methods"]["dense_sweep"]) == (len(protocol.sweep_depths) * len(protocol.sweep_widths)
                                                  * len(protocol.sweep_activations))
    mean_mse = row["constant_test_mse"]
    for target in protocol.targets:
        for method in ("swat", "dense_sweep", "pruned", "random", "dense_adam"):
            best = compare_tables.choose_within(compare_tables.points_for(row, method, target), target, float("inf"))
            assert 0 <= best["test_mse"] < mean_mse, (row["task"], target, method, best["test_mse"], mean_mse)
        chosen = compare_tables.chosen_point(row, target)
        assert chosen["test_mse"] < mean_mse / 10
        assert chosen["test_mse"] <= 2 * row["methods"]["dense_adam"][0]["test_mse"]


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_CORNN, reason=SKIP_REASON)
def test_quick_run_writes_tables_and_plots_then_resumes_from_its_cache(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = tmp_path / "out"
    args = ["--quick", "--jobs", "1", "--cornn", str(CORNN_DIR), "--out", str(out), "--cache", str(tmp_path / "cache")]
    assert cornn.main(args) == 0
    report = json.loads((out / "cornn_quick.json").read_text())
    assert [r["task"] for r in report["rows"]] == list(cornn.QUICK_TASKS) and report["cached_rows"] == 0
    for row in report["rows"]:
        _assert_protocol_and_learning(row, compare_task.Protocol.quick())
        assert set(row["methods"]) == {"swat@raspi4", "swat@cortex-m4", "dense_sweep", "dense_adam", "pruned", "random"}
    for png in ("cornn_quick_fronts.png", "cornn_quick_winrate.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "cornn_quick.md").read_text()
    assert all(f"| {t} | 0 | raspi4 |" in md for t in cornn.QUICK_TASKS)
    assert cornn.main(args) == 0  # again: every row from the cache, identical
    again = json.loads((out / "cornn_quick.json").read_text())
    assert again["cached_rows"] == 2 and again["rows"] == report["rows"]
