"""benchmarks/large_data.py: what each variant runs, the data it draws, and the table's excess ratios."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("torch")

from benchmarks import large_data  # noqa: E402


def test_each_variant_is_the_default_search_but_its_fitter_or_row_sample():
    from swat_edge.search.run import SearchSettings

    sample, every, adam = (large_data.variant_settings(v, seed=3) for v in ("20000", "all", "adam"))
    assert (sample.fitter, sample.lm_max_rows, sample.seed) == ("lm", 20_000, 3)
    assert every.fitter == "lm" and every.lm_max_rows >= 10**9
    assert adam.fitter == "adam" and adam.lm_max_rows == SearchSettings().lm_max_rows


def test_the_data_is_drawn_by_the_seed_and_the_test_rows_apart():
    train, test = large_data.datasets("smooth4", 500, seed=0)
    again, _ = large_data.datasets("smooth4", 500, seed=0)
    np.testing.assert_array_equal(train.x, again.x)
    np.testing.assert_allclose(train.y[:, 0], train.x[:, 0] * train.x[:, 1] + np.tanh(train.x[:, 2]))
    assert test.n_rows == large_data.TEST_ROWS and not np.array_equal(test.x[:500], train.x)


def test_the_table_divides_excess_over_the_noise_by_all_rows_excess():
    def row(data, variant, test_mse):
        return {"data": data, "rows": 1000, "variant": variant, "seed": 0, "test_mse": test_mse,
                "val_mse_scaled": 0.01, "origin": "dense", "depth": 1, "nonzero_params": 49, "latency_us": 16.5,
                "wall_s": 10.0}

    report = {"command": "c", "machine": "m", "minutes": 1.0,
              "rows": [row("friedman1", "all", 1.01), row("friedman1", "5000", 1.03), row("smooth4", "adam", 2e-3),
                       row("smooth4", "all", 1e-3)]}
    lines = large_data.markdown(report).splitlines()
    assert any(line.startswith("| friedman1 | 800 | LM, 5,000 rows | 1.03 | 0.03 | 3.00 |") for line in lines)
    assert any(line.startswith("| smooth4 | 800 | Adam, all rows | 0.002 | 0.002 | 2.00 |") for line in lines)
