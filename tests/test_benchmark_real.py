"""benchmarks/real.py and its data (benchmarks/compare_data.py): bundled sets, CSV pairs, train-only feature
selection, and a quick run on a CSV pair with the reference rows."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_spec = importlib.util.spec_from_file_location("bench_real", REPO / "benchmarks" / "real.py")
real = importlib.util.module_from_spec(_spec)
sys.modules["bench_real"] = real
_spec.loader.exec_module(real)

from benchmarks import compare_data  # noqa: E402

sklearn = pytest.importorskip("sklearn")


def test_feature_selection_keeps_the_informative_ones_including_a_quadratic_effect():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(1500, 10))
    y = 10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] + 5 * x[:, 4]
    kept = compare_data.most_informative_features(x, y, 8)
    assert len(kept) == 8 and {0, 1, 2, 3, 4} <= set(kept.tolist())  # |correlation| would drop x2


def test_feature_selection_reads_the_training_rows_only():
    rng = np.random.default_rng(1)
    x, x_test = rng.normal(size=(400, 10)), rng.normal(size=(100, 10))
    y = x[:, :8] @ np.arange(1.0, 9.0)
    task = compare_data.real_task("t", x, y, x_test, rng.normal(size=100), tuple(f"f{i}" for i in range(10)), 8, "s")
    other = compare_data.real_task("t", x, y, x_test * 100, rng.normal(size=100), tuple(f"f{i}" for i in range(10)),
                                   8, "s")
    assert task.feature_names == other.feature_names == tuple(f"f{i}" for i in range(8))
    assert "dropped f8, f9" in task.notes[1]
    assert task.y_train.min() == -1.0 and task.y_train.max() == 1.0  # scaled by the training rows


@pytest.mark.parametrize("name,features,train,test", [("diabetes", 10, 331, 111), ("friedman1", 10, 1500, 500),
                                                      ("friedman2", 4, 1500, 500), ("friedman3", 4, 1500, 500)])
def test_bundled_sets_have_a_fixed_split_and_at_most_eight_inputs(name, features, train, test):
    task = compare_data.load_bundled(name, 8)
    again = compare_data.load_bundled(name, 8)
    assert (len(task.x_train), len(task.x_test)) == (train, test)
    assert task.x_train.shape[1] == min(features, 8)
    assert np.array_equal(task.x_test, again.x_test) and np.array_equal(task.y_train, again.y_train)
    assert (len(task.notes) == 2) == (features > 8)


def _write_pair(folder: Path, name: str, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(rows, 3))
    y = np.tanh(x[:, 0]) * 3 + x[:, 1] * x[:, 2] + rng.normal(0, 0.05, rows)
    split = int(rows * 0.75)
    for part, sl in (("train", slice(0, split)), ("test", slice(split, rows))):
        lines = ["a,b,c,target"] + [",".join(f"{v:.6f}" for v in (*x[i], y[i])) for i in range(rows)[sl]]
        (folder / f"{name}.{part}.csv").write_text("\n".join(lines) + "\n")


def test_csv_pairs_need_both_halves(tmp_path):
    _write_pair(tmp_path, "toy", 40, 0)
    assert compare_data.csv_pairs(tmp_path) == ["toy"]
    (tmp_path / "lone.train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lone"):
        compare_data.csv_pairs(tmp_path)


@pytest.mark.torch
def test_quick_run_on_a_csv_pair_reports_the_reference_rows(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    data.mkdir()
    _write_pair(data, "toy", 480, 3)
    out = tmp_path / "out"
    assert real.main(["--quick", "--jobs", "1", "--data-dir", str(data), "--datasets", "toy", "--out", str(out),
                      "--cache", str(tmp_path / "cache")]) == 0
    report = json.loads((out / "real_quick.json").read_text())
    (row,) = report["rows"]
    assert row["task"] == "toy" and row["kind"] == "real" and row["rows"]["test"] == 120
    refs = row["references"]
    assert 0 < refs["hist_gradient_boosting"]["test_mse"] < refs["linear_regression"]["test_mse"] < row["constant_test_mse"]
    md = (out / "real_quick.md").read_text()
    assert "| toy (seed 0) | 288/72/120 |" in md and "gradient boosting" in md
