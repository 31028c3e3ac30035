"""Gross outliers (`--outliers error|drop|keep`): a value far beyond the rest of its column would squeeze every
other row into a sliver of the [-1, 1] scaling and bend an MSE fit to itself; found, named, dropped on request."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swat_edge.data import OUTLIER_SPREADS, gross_outliers, load_dataset, load_train_and_test
from swat_edge.errors import DataError, UsageError


def _rows(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    return np.c_[x, np.sin(3 * x[:, 0]) + x[:, 1]]


def _csv(path: Path, rows: np.ndarray, header: str = "a,b,y") -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n")
    return path


def test_a_glitch_is_found_in_its_cell_and_nothing_else():
    rows = _rows()
    rows[17, 0], rows[40, 2] = 1e6, -5e4
    hits = gross_outliers(rows)
    assert sorted(map(tuple, np.argwhere(hits))) == [(17, 0), (40, 2)]
    # the rule's edge: just within and just beyond OUTLIER_SPREADS times the middle rows' range
    clean = _rows()
    low, high = np.quantile(clean[:, 0], [0.01, 0.99])
    for factor, found in ((0.99, False), (1.01, True)):
        edge = clean.copy()
        edge[5, 0] = high + factor * OUTLIER_SPREADS * (high - low)
        assert bool(gross_outliers(edge)[5, 0]) is found


@pytest.mark.parametrize("column", [
    np.r_[np.zeros(297), 1.0, 1.0, 1.0],  # an indicator: its middle rows hold one value
    np.exp(np.random.default_rng(1).normal(0, 2, 10_000)),  # a heavy tail (lognormal, sigma 2)
    np.r_[np.full(285, 1e-30), np.linspace(0.01, 1.0, 15)],  # a spike on 5% of the rows (like CORNN's easom)
    np.r_[np.arange(50.0), np.nan],  # an empty cell (NaN) is no outlier
])
def test_data_with_a_shape_of_its_own_has_no_outliers(column):
    assert not gross_outliers(column[:, None]).any()


def test_error_names_the_row_and_column_and_the_way_forward(tmp_path):
    rows = _rows()
    rows[17, 2] = 1e6
    with pytest.raises(DataError, match=r"d.csv row 18, column 'y': 1e\+06 is a gross outlier: .* times the range "
                                        r"of the column's middle rows \(.* to .*\) beyond it; .*--outliers drop\|keep"):
        load_dataset(_csv(tmp_path / "d.csv", rows), outliers="error")
    with pytest.raises(UsageError, match="--outliers clip: use error, drop, keep"):
        load_dataset(_csv(tmp_path / "d.csv", rows), outliers="clip")


def test_drop_drops_the_rows_and_says_so_and_keep_keeps_them(tmp_path):
    rows = _rows()
    rows[17, 2], rows[99, 1] = 1e6, -1e5
    path = _csv(tmp_path / "d.csv", rows)
    dropped = load_dataset(path, outliers="drop")
    keep = np.setdiff1d(np.arange(len(rows)), [17, 99])
    np.testing.assert_array_equal(dropped.x, rows[keep, :2])
    np.testing.assert_array_equal(dropped.y[:, 0], rows[keep, 2])
    assert dropped.outlier_note.startswith("dropped 2 of 300 rows with a gross outlier") and "in b, y" in dropped.outlier_note
    kept = load_dataset(path, outliers="keep")
    assert kept.n_rows == 300 and kept.outlier_note == ""


def test_class_labels_are_not_checked_and_a_test_file_is_only_evaluated(tmp_path):
    rows = _rows()
    rows[:, 2] = np.where(rows[:, 2] > 0, 1.0, 1000.0)  # two integer classes, one value far from the other
    rows[0, 2] = 1000.0
    data = load_dataset(_csv(tmp_path / "c.csv", rows), outliers="error")
    assert data.is_classification
    train = _csv(tmp_path / "d.csv", _rows())
    test_rows = _rows(seed=1)
    test_rows[3, 0] = 1e6
    _, test = load_train_and_test(train, _csv(tmp_path / "t.csv", test_rows), outliers="error")
    assert test is not None and test.x[3, 0] == 1e6
