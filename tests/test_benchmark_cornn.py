"""benchmarks/cornn.py: its aggregates and cache on synthetic rows, and its smoke run on the real CORNN data."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cornn_data import CORNN_DIR, HAVE_CORNN, SKIP_REASON

from swat_edge.model import model_stats, random_model

REPO = Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location("bench_cornn", REPO / "benchmarks" / "cornn.py")
cornn = importlib.util.module_from_spec(_spec)
sys.modules["bench_cornn"] = cornn  # dataclasses look their module up while the file executes
_spec.loader.exec_module(cornn)


def _method(mse: float, nz: int = 20) -> dict:
    return {"test_mse": mse, "nonzero": nz, "active_neurons": 5, "predicted_us": 10.0, "sparse_macs": nz,
            "dense_macs": nz, "widths": [2, 5, 1], "wall_s": 1.0}


def _row(task: str, swat: float, dense: float, random: float | None = None) -> dict:
    methods = {"swat": _method(swat), "latent_only": _method(swat * 2), "dense": _method(dense, 249)}
    if random is not None:
        methods["random"] = _method(random)
    return {"task": task, "seed": 0, "search_wall_s": 10.0, "task_wall_s": 40.0, "methods": methods,
            "started_at": f"2026-11-28T06:0{len(task)}:00+00:00", "finished_at": f"2026-11-28T06:1{len(task)}:00+00:00",
            "host": {"swat_p50_us": 5.0, "dense_p50_us": 6.0, "dense_over_swat": 1.2, "int8_p50_us": None}}


def test_outcome_counts_ratios_within_five_percent_as_ties():
    assert [cornn.outcome(r) for r in (0.5, 0.951, 1.0, 1.049, 1.06)] == ["win", "tie", "tie", "tie", "loss"]


def test_aggregate_counts_wins_ties_losses_and_ratios_per_baseline():
    rows = [_row("a", 1.0, 2.0, 1.0), _row("b", 3.0, 1.0, 1.0), _row("c", 1.0, 4.0)]
    agg = cornn.aggregate(rows)
    dense = agg["vs"]["dense"]
    assert (dense["wins"], dense["ties"], dense["losses"], dense["n"]) == (2, 0, 1, 3)
    assert dense["median_ratio"] == pytest.approx(0.5)
    assert dense["mean_ratio"] == pytest.approx((0.5 + 3.0 + 0.25) / 3)
    assert dense["geomean_ratio"] == pytest.approx((0.5 * 3.0 * 0.25) ** (1 / 3))
    assert agg["vs"]["random"]["n"] == 2 and agg["vs"]["random"]["losses"] == 1  # only rows that have it
    assert agg["vs"]["latent_only"]["wins"] == 3
    assert "pruned" not in agg["vs"]
    assert agg["methods"]["dense"]["median_nonzero"] == 249
    assert agg["task_wall_s_total"] == pytest.approx(120.0)
    assert agg["host_dense_over_swat_median"] == pytest.approx(1.2)
    assert agg["compute_span_s"] == 600.0  # all three rows started 06:01, finished 06:11


def test_markdown_has_one_line_per_task_and_per_baseline():
    rows = [_row("sphere", 1e-3, 2e-3), _row("levy", 5e-3, 1e-3)]
    report = {"aggregate": cornn.aggregate(rows), "rows": rows, "seed": 0, "command": "python benchmarks/cornn.py",
              "machine": "test", "jobs": 2, "wall_s": 60.0, "cached_rows": 1, "protocol": {"target": "raspi4"},
              "embedding": {"source": "default", "steps": 10, "weights_sha256": "ab" * 32}}
    text = cornn.markdown(report)
    assert "| sphere | 1.00e-03 |" in text and "| levy | 5.00e-03 |" in text
    assert "| (a) dense 8-8-8-8 | 2 | 1 | 0 | 1 |" in text
    assert "1 of 2 task rows from the cache" in text


@pytest.mark.parametrize("target", [20, 37, 60, 150])
def test_pruned_to_comes_close_to_the_count_and_keeps_every_layer_connected(target):
    dense = random_model((2, 8, 8, 8, 8, 1), activations="tanh", seed=1, normalization=False)
    pruned = cornn.pruned_to(dense, target)
    stats = model_stats(pruned)
    assert 0.8 * target <= stats.nonzero_params <= target
    assert all(np.count_nonzero(layer.weight) > 0 for layer in pruned.layers)


def test_pruned_to_below_the_smallest_connected_network_gives_that_network():
    dense = random_model((2, 8, 8, 8, 8, 1), activations="tanh", seed=1, normalization=False)
    stats = model_stats(cornn.pruned_to(dense, 5))
    assert stats.widths == (2, 1, 1, 1, 1, 1) and stats.nonzero_params == 10  # one chain: 5 weights, 5 biases


def test_cache_is_keyed_by_fingerprint_and_ignores_damaged_entries(tmp_path):
    quick, full = cornn.Protocol.quick(), cornn.Protocol()
    key = cornn.fingerprint("sha", full)
    assert key != cornn.fingerprint("sha", quick) and key != cornn.fingerprint("other", full)
    assert key != cornn.fingerprint("sha", full, cornn.code_sha256())  # other code, other results
    row = _row("sphere", 1e-3, 2e-3)
    cornn.store_row(tmp_path, row, key)
    assert cornn.cached_row(tmp_path, "sphere", 0, key) == row
    assert cornn.cached_row(tmp_path, "sphere", 0, cornn.fingerprint("sha", quick)) is None
    assert cornn.cached_row(tmp_path, "sphere", 1, key) is None
    (tmp_path / "sphere.seed0.json").write_text("{ half written")
    assert cornn.cached_row(tmp_path, "sphere", 0, key) is None


def test_missing_data_skips_with_a_message(tmp_path, capsys):
    assert cornn.main(["--cornn", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 0
    assert "CORNN data not found" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def _assert_beats_the_baselines(row: dict) -> None:
    """The searched model against baselines of the same task: predicting the training mean (computed here from
    the CORNN files, in the protocol's scaled-target units) and the dense 8-8-8-8 the run trained. Measured
    (quick): sphere 7.6e-12 against mean 0.18 and dense 2.6e-3; himmelblau 6.8e-4 against 0.084 and 0.027."""
    from swat_edge.search.compare_decoders import load_cornn_task

    task = load_cornn_task(CORNN_DIR, row["task"])
    mean_mse = float(np.mean((task.y_train.mean() - task.y_test) ** 2))
    methods = row["methods"]
    for name, figures in methods.items():  # every method, trained or searched, learns something
        assert 0 <= figures["test_mse"] < mean_mse, (row["task"], name, figures["test_mse"], mean_mse)
    swat = methods["swat"]["test_mse"]
    assert swat < mean_mse / 10, (row["task"], swat, mean_mse)
    assert swat <= 2 * methods["dense"]["test_mse"], (row["task"], swat, methods["dense"]["test_mse"])


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_CORNN, reason=SKIP_REASON)
def test_quick_run_writes_tables_and_plot_then_resumes_from_its_cache(tmp_path):
    pytest.importorskip("torch")
    args = ["--quick", "--jobs", "1", "--cornn", str(CORNN_DIR), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert cornn.main(args) == 0
    report = json.loads((tmp_path / "out" / "cornn_quick.json").read_text())
    assert [r["task"] for r in report["rows"]] == list(cornn.QUICK_TASKS) and report["cached_rows"] == 0
    for row in report["rows"]:
        assert set(row["methods"]) == set(cornn.METHODS)
        swat = row["methods"]["swat"]
        assert 0 < swat["nonzero"] <= 249 and swat["predicted_us"] > 0
        _assert_beats_the_baselines(row)
        assert row["host"]["swat_p50_us"] > 0 and row["host"]["dense_over_swat"] > 0
        assert row["host"]["c_swat_p50_ns"] > 0 and row["host"]["c_dense_over_swat"] > 0  # the test machine has cc
        assert row["methods"]["pruned"]["nonzero"] <= swat["nonzero"]
    assert (tmp_path / "out" / "cornn_quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "out" / "cornn_quick.md").read_text()
    assert all(f"| {t} |" in md for t in cornn.QUICK_TASKS)
    assert cornn.main(args) == 0  # again: every row from the cache, identical
    again = json.loads((tmp_path / "out" / "cornn_quick.json").read_text())
    assert again["cached_rows"] == 2 and again["rows"] == report["rows"]
