"""benchmarks/rescore_search.py: where the cached baselines come from (the committed report's rows, or a cache
folder), the same entry either way."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("torch")

from benchmarks import rescore_search  # noqa: E402


def _args(rows=None, cache=None):
    return argparse.Namespace(rows=str(rows) if rows else None, cache=str(cache) if cache else None)


def test_a_reports_rows_and_a_cache_folder_give_the_same_entry_lowest_seed_first(tmp_path):
    rows = [{"task": "beale", "seed": 1, "x": "second"}, {"task": "beale", "seed": 0, "x": "first"},
            {"task": "booth", "seed": 0, "x": "other"}]
    report = tmp_path / "cornn.json"
    report.write_text(json.dumps({"fingerprint": "abc", "rows": rows}))
    cache = tmp_path / "cache"
    cache.mkdir()
    for row in rows:
        (cache / f"{row['task']}.seed{row['seed']}.json").write_text(json.dumps({"fingerprint": "abc", "row": row}))
    from_report = rescore_search.cached_entry(_args(rows=report), "beale")
    assert from_report == {"fingerprint": "abc", "row": rows[1]}
    assert rescore_search.cached_entry(_args(cache=cache), "beale") == from_report
    assert rescore_search.cached_entry(_args(rows=report), "himmelblau") is None
    assert rescore_search.cached_entry(_args(cache=cache), "himmelblau") is None


def test_the_committed_full_run_has_a_row_for_every_task_of_the_suite():
    report = json.loads((REPO / "benchmarks" / "results" / "cornn.json").read_text())
    args = _args(rows=REPO / "benchmarks" / "results" / "cornn.json")
    tasks = {row["task"] for row in report["rows"]}
    assert len(tasks) == 54
    for task in tasks:
        entry = rescore_search.cached_entry(args, task)
        assert entry["fingerprint"] == report["fingerprint"]
        assert {"methods", "seed", "validation_sha256"} <= set(entry["row"])
