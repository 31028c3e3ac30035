"""Many features (issue 14, part 1): swat-edge's input stage (forward selection or partial least squares, folded
into the first layer) against dense MLPs of the family on all features, trained with the same care.

    .venv/bin/python benchmarks/wide.py             # 5 data sets with 10-60 features, seed 0 (~15 min on 2 cores)
    .venv/bin/python benchmarks/wide.py --quick     # 2 data sets, short schedules (smoke run)

Data (fixed generator seed 0 and 75/25 train/test split; target scaled to [-1, 1] by the training rows):
diabetes (all 10 features), make_friedman1 with 20 and 60 features (5 informative, the rest pure noise), and
"index40"/"index12": y = tanh(x w) + noise over 40 (12) uniform features with dense random w, where every feature
matters a little (what a projection should suit). Methods, each on the same search split:
- swat-edge `search --target raspi4 --inputs select`, `--inputs project` and `--inputs auto` (the better
  of the two on validation by a cubic least-squares fit; the model takes all features);
- dense MLPs of the family on all features: depth 1-2 x width {4, 8} x {tanh, relu}, each the best of the
  search's restart count fitted by the search's fitter with its early stopping, or below 1,000 rows (diabetes)
  its k-fold cross-validation and refit on all rows, as the search does (benchmarks/compare_task.py);
- least-squares linear regression (reference).
Writes benchmarks/results/wide{,_quick}.{json,md}.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.compare_data import DATA_SEED, TEST_FRACTION, Task, scale_target  # noqa: E402

DATASETS = ("diabetes", "friedman1_20", "friedman1_60", "index12", "index40")
QUICK = ("diabetes", "index12")
DENSE_DEPTHS, DENSE_WIDTHS, DENSE_ACTIVATIONS = (1, 2), (4, 8), ("tanh", "relu")
RESTARTS = 3  # the search's dense references' restarts (SearchSettings.dense_reference_restarts)


def _arrays(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn import datasets

    if name == "diabetes":
        bunch = datasets.load_diabetes()
        return bunch.data, bunch.target, "load_diabetes (442 rows, 10 features)"
    if name.startswith("friedman1_"):
        n = int(name.split("_")[1])
        x, y = datasets.make_friedman1(n_samples=2000, n_features=n, noise=1.0, random_state=DATA_SEED)
        return x, y, f"make_friedman1(2000 rows, {n} features, {n - 5} of them noise, noise 1.0)"
    if name.startswith("index"):
        n = int(name[len("index"):])
        rng = np.random.default_rng(DATA_SEED)
        x = rng.uniform(-1.0, 1.0, size=(2000, n))
        w = rng.normal(size=n) * (2.0 / np.sqrt(n))
        y = np.tanh(x @ w) + 0.05 * rng.normal(size=2000)
        return x, y, f"tanh(x w) + 0.05 noise, 2000 rows, {n} uniform features, dense random w"
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")


def load(name: str) -> Task:
    from sklearn.model_selection import train_test_split

    x, y, source = _arrays(name)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=DATA_SEED)
    y_tr, y_te = scale_target(y_tr, y_te)
    return Task(name, "real", x_tr, y_tr, x_te, y_te, tuple(f"f{i}" for i in range(x.shape[1])), (source,))


def _point(model: Any, label: str, task: Task, wall_s: float) -> dict[str, Any]:
    from swat_edge.device.cost import estimate
    from swat_edge.device.targets import load_target
    from swat_edge.model import forward, model_stats

    from benchmarks.compare_task import compiled

    test_mse = float(np.mean((forward(model, task.x_test).ravel() - task.y_test) ** 2))
    return {"label": label, "test_mse": test_mse, "r2": 1.0 - test_mse / float(np.var(task.y_test)),
            "nonzero": model_stats(compiled(model)).nonzero_params,
            "raspi4_us": float(estimate(model, load_target("raspi4")).latency_us[0]),
            "cortex_m4_us": float(estimate(model, load_target("cortex-m4")).latency_us[0]), "wall_s": wall_s}


def run_dataset(name: str, quick: bool, embedding: Any) -> dict[str, Any]:
    from dataclasses import replace

    from swat_edge.device.targets import load_target
    from swat_edge.model import Layer, SparseMLP

    from benchmarks.compare_run import stage_taken
    from benchmarks.compare_task import Protocol, as_dataset, best_of_restarts, search_split, shape_label
    from swat_edge.search.run import run_search

    task = load(name)
    protocol = Protocol.quick() if quick else Protocol()
    settings = protocol.search_settings(0)
    split = search_split(task, settings)
    rows: dict[str, Any] = {}
    for method in ("select", "project", "auto"):
        t0 = time.perf_counter()
        result = run_search(as_dataset(task), embedding=embedding, target=load_target("raspi4"),
                            settings=replace(settings, inputs=method))
        rows[f"swat ({method})"] = _point(result.model, f"swat-edge --inputs {method}", task, time.perf_counter() - t0)
        rows[f"swat ({method})"].update(origin=result.chosen.origin, stage=stage_taken(result))
    dense = []
    n_in = task.x_train.shape[1]
    for depth in DENSE_DEPTHS:
        for width in DENSE_WIDTHS:
            for activation in DENSE_ACTIVATIONS:
                widths = (n_in, *([width] * depth), 1)
                trained = best_of_restarts(widths, activation, RESTARTS, split, settings)
                dense.append((trained.val_mse, _point(trained.model, shape_label(widths, activation), task,
                                                      trained.wall_s)))
    rows["dense (best on validation)"] = min(dense, key=lambda d: d[0])[1]
    design = np.hstack([split.x_train, np.ones((len(split.x_train), 1))])
    coef = np.linalg.lstsq(design, split.y_train, rcond=None)[0]
    line = SparseMLP.make([], Layer.make(coef[:-1], coef[-1], "identity"))
    rows["linear regression"] = _point(line, "least squares", task, 0.0)
    return {"name": name, "source": task.notes[0], "features": n_in, "rows_train": len(task.x_train),
            "rows_test": len(task.x_test), "methods": rows, "dense_all": [d[1] for d in dense]}


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.compare_run import provenance_lines, size_latency_rows

    lines = [f"# swat-edge with many features: input stage vs dense MLPs of the family on all features",
             "", *provenance_lines(report), "",
             "Test MSE on the target scaled to [-1, 1] (R^2); ratio = swat-edge / best dense (chosen on validation).",
             "", "| data | features | swat-edge select | swat-edge project | swat-edge auto (took) | dense (best on "
             "validation) | linear | select / dense | project / dense | auto / dense |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["datasets"]:
        m = row["methods"]
        cell = lambda k: f"{m[k]['test_mse']:.3g} ({m[k]['r2']:.3f})"  # noqa: E731
        dense = m["dense (best on validation)"]["test_mse"]
        lines.append(f"| {row['name']} | {row['features']} | {cell('swat (select)')} | {cell('swat (project)')} | "
                     f"{cell('swat (auto)')} ({m['swat (auto)']['stage']}) | "
                     f"{cell('dense (best on validation)')} {m['dense (best on validation)']['label']} | "
                     f"{cell('linear regression')} | {m['swat (select)']['test_mse'] / dense:.2f} | "
                     f"{m['swat (project)']['test_mse'] / dense:.2f} | {m['swat (auto)']['test_mse'] / dense:.2f} |")
    lines += ["", "Size and predicted latency of the chosen models (non-zero parameters; raspi4 / cortex-m4 us):", "",
              *size_latency_rows(report["datasets"], ("raspi4", "cortex_m4"))]
    for key in ("select", "project", "auto"):
        ratios = [r["methods"][f"swat ({key})"]["test_mse"] / r["methods"]["dense (best on validation)"]["test_mse"]
                  for r in report["datasets"]]
        lines.append(f"\n--inputs {key}: median ratio {np.median(ratios):.2f}, worst {max(ratios):.2f}.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.compare_run import run_datasets

    return run_datasets("wide.py", argv, DATASETS, QUICK, run_dataset, markdown, "wide", "test_mse")


if __name__ == "__main__":
    raise SystemExit(main())
