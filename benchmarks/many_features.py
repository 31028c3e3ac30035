"""Hundreds of features: how long `swat-edge search` takes and what it finds when the data has far more
features than the embedding's networks take (200 and 1,000), with either input stage.

    .venv/bin/python benchmarks/many_features.py           # 3 data sets, seed 0 (2.8 min on 2 quiet cores)
    .venv/bin/python benchmarks/many_features.py --quick   # 1 data set, short schedules (smoke run)

Data (wide.py's generators: seed 0, 2,000 rows, 75/25 train/test split, target scaled to [-1, 1] by the
training rows): make_friedman1 with 200 and 1,000 features (5 informative, the rest noise), and "index200":
y = tanh(x w) + noise over 200 uniform features with dense random w (every feature matters a little). Methods, on the search's split:
`swat-edge search --target cortex-m4 --inputs select`, `--inputs project` (its first layer, dense over every
feature, is fitted by Levenberg-Marquardt within the span of its starting columns, FitSettings.
max_first_layer_weights) and
`--inputs auto` (the better of the two on validation by a cubic least-squares fit), and
least-squares linear regression on all features as the floor. The dense MLPs of wide.py are not fitted here:
on all 200 features their LM fits alone took over 10 minutes a data set.
Writes benchmarks/results/many_features{,_quick}.{json,md}.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.compare_data import Task  # noqa: E402
from benchmarks.wide import load  # noqa: E402  (its generators take any feature count)

DATASETS = ("friedman1_200", "friedman1_1000", "index200")
QUICK = ("friedman1_200",)
JOBS = min(2, os.cpu_count() or 1)  # as `swat-edge search` runs by default


def _test_mse(model: Any, task: Task) -> float:
    from swat_edge.model import forward

    return float(np.mean((forward(model, task.x_test).ravel() - task.y_test) ** 2))


def run_dataset(name: str, quick: bool, embedding: Any) -> dict[str, Any]:
    from dataclasses import replace

    from swat_edge.device.targets import load_target
    from swat_edge.model import Layer, SparseMLP, model_stats
    from swat_edge.search.run import run_search

    from benchmarks.compare_run import stage_taken
    from benchmarks.compare_task import Protocol, as_dataset, compiled, search_split

    task = load(name)
    protocol = Protocol.quick() if quick else Protocol()
    settings = protocol.search_settings(0)
    split = search_split(task, settings)
    target = load_target("cortex-m4")
    rows: dict[str, Any] = {}
    for method in ("select", "project", "auto"):
        t0 = time.perf_counter()
        result = run_search(as_dataset(task), embedding=embedding, target=target,
                            settings=replace(settings, inputs=method), jobs=JOBS)
        wall = time.perf_counter() - t0
        test_mse = _test_mse(result.model, task)
        adam = any(note.startswith("fine-tuned with Adam") for note in result.notes)
        rows[f"swat ({method})"] = {
            "label": f"swat-edge --inputs {method}", "test_mse": test_mse,
            "r2": 1.0 - test_mse / float(np.var(task.y_test)), "wall_s": wall, "fitter": "adam" if adam else "lm",
            "origin": result.chosen.origin, "widths": list(result.model.widths), "stage": stage_taken(result),
            "nonzero": model_stats(compiled(result.model)).nonzero_params,
            "cortex_m4_us": float(result.estimate.latency_us[0])}
    design = np.hstack([split.x_train, np.ones((len(split.x_train), 1))])
    coef = np.linalg.lstsq(design, split.y_train, rcond=None)[0]
    line = SparseMLP.make([], Layer.make(coef[:-1], coef[-1], "identity"))
    test_mse = _test_mse(line, task)
    rows["linear regression"] = {"label": "least squares", "test_mse": test_mse,
                                 "r2": 1.0 - test_mse / float(np.var(task.y_test))}
    return {"name": name, "source": task.notes[0], "features": task.x_train.shape[1],
            "rows_train": len(task.x_train), "rows_test": len(task.x_test), "methods": rows}


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.compare_run import provenance_lines

    lines = ["# swat-edge with hundreds of features: search time and test MSE", "", *provenance_lines(report), "",
             "Test MSE on the target scaled to [-1, 1] (R^2); search wall time (`--jobs` as the CLI's default here); the "
             "fitter the search chose; the chosen network (non-zero parameters, predicted cortex-m4 us).", "",
             "| data | features | swat-edge select | s | swat-edge project | s | swat-edge auto: took | s | "
             "linear (all features) |", "|---|---:|---|---:|---|---:|---|---:|---:|"]
    for row in report["datasets"]:
        m = row["methods"]

        def cell(key: str) -> str:
            p = m[key]
            return (f"{p['test_mse']:.3g} ({p['r2']:.3f}); {p['fitter'].upper()}, {p['origin']} "
                    f"{'-'.join(map(str, p['widths']))}, {p['nonzero']} nz, {p['cortex_m4_us']:.1f} us")

        line = m["linear regression"]
        lines.append(f"| {row['name']} | {row['features']} | {cell('swat (select)')} | "
                     f"{m['swat (select)']['wall_s']:.1f} | {cell('swat (project)')} | "
                     f"{m['swat (project)']['wall_s']:.1f} | {m['swat (auto)']['stage']}, "
                     f"{m['swat (auto)']['test_mse']:.3g} | {m['swat (auto)']['wall_s']:.1f} | "
                     f"{line['test_mse']:.3g} ({line['r2']:.3f}) |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.compare_run import run_datasets

    return run_datasets("many_features.py", argv, DATASETS, QUICK, run_dataset, markdown, "many_features",
                        "test_mse")


if __name__ == "__main__":
    raise SystemExit(main())
