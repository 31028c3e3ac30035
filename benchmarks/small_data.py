"""Small data: how the search scores its candidates below SearchSettings.cross_validation_below_rows rows (k-fold
cross-validation), the earlier way against today's, on scikit-learn's small bundled sets.

    .venv/bin/python benchmarks/small_data.py            # diabetes, iris, wine, breast_cancer x 5 splits (~6 min)
    .venv/bin/python benchmarks/small_data.py --quick    # diabetes and iris, one split

Variants (SearchSettings), each on the same splits and seeds:
- earlier: each fold model stopped early on its own held-out rows (cross_validation_stop_fraction=0), searched
  networks scored from their decoded weights (cross_validation_fresh_weights=False), the choice within the 5%
  tolerance alone (choice_standard_errors=0);
- today: the defaults (each fold model stopped on a fifth of its fold's training rows, searched networks scored from
  fresh weights of their structure, and a candidate within one standard error of the best counts as near it).
Data: diabetes (regression, `--target raspi4`, a 75/25 split drawn by the seed) and iris, wine, breast_cancer
(classification, `--target cortex-m4`, stratified 75/25 splits as benchmarks/classify.py draws them); the seed also
seeds the search. Figures on the test rows: the chosen model's MSE (regression, raw units) or accuracy, and the
same search's linear candidate's, so "never below a straight line" can be read off; the chosen model's predicted
latency and where it came from. Writes benchmarks/results/small_data{,_quick}.{json,md}.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASETS, QUICK = ("diabetes", "iris", "wine", "breast_cancer"), ("diabetes", "iris")
SPLITS, QUICK_SPLITS = (0, 1, 2, 3, 4), (0,)
TARGETS = {"diabetes": "raspi4"}  # classification: cortex-m4, as benchmarks/classify.py
EARLIER = {"cross_validation_stop_fraction": 0.0, "cross_validation_fresh_weights": False,
           "choice_standard_errors": 0.0}


def _diabetes(seed: int) -> tuple[Any, Any]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    from swat_edge.data import Dataset

    bunch = load_diabetes()
    x_tr, x_te, y_tr, y_te = train_test_split(bunch.data, bunch.target, test_size=0.25, random_state=seed)
    names = tuple(bunch.feature_names)
    return (Dataset("diabetes:train", x_tr, y_tr[:, None], names, ("progression",), "-"),
            Dataset("diabetes:test", x_te, y_te[:, None], names, ("progression",), "-"))


def _test_figure(model: Any, test: Any) -> float:
    """Accuracy of a classifier, MSE (raw units) of a regressor, on the test rows."""
    from swat_edge.model import forward
    from swat_edge.search.classify import class_figures

    if test.is_classification:
        return class_figures(model, test.x, test.y[:, 0].astype(int)).accuracy
    return float(np.mean((forward(model, test.x) - test.y) ** 2))


def run_one(name: str, seed: int, variant: str, embedding: Any) -> dict[str, Any]:
    from benchmarks.classify import load
    from swat_edge.device.targets import load_target
    from swat_edge.search.run import SearchSettings, run_search

    train, test = _diabetes(seed) if name == "diabetes" else load(name, seed)
    settings = SearchSettings(seed=seed)
    if variant == "earlier":
        settings = replace(settings, **EARLIER)
    t0 = time.perf_counter()
    result = run_search(train, embedding=embedding, target=load_target(TARGETS.get(name, "cortex-m4")),
                        settings=settings, jobs=2)
    wall = time.perf_counter() - t0
    linear = next(k for k, c in enumerate(result.candidates) if c.origin == "linear")
    return {"data": name, "seed": seed, "variant": variant, "target": TARGETS.get(name, "cortex-m4"),
            "metric": "accuracy" if train.is_classification else "mse",
            "chosen": _test_figure(result.model, test), "linear": _test_figure(result.candidate_models[linear], test),
            "origin": result.chosen.origin, "latency_us": result.chosen.latency_us,
            "nonzero_params": result.chosen.nonzero_params, "wall_s": wall}


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.compare_run import provenance_lines

    lines = ["# Small data: cross-validated choice, earlier against today", "", *provenance_lines(report), "",
             "Means over the splits (each split's figure in brackets). diabetes: test MSE (raw units; lower is "
             "better); the others: test accuracy. `vs line`: chosen / the same search's linear candidate (MSE) or "
             "chosen - linear (accuracy, points).", "",
             "| data | variant | chosen | linear candidate | vs line | chosen from | predicted us |",
             "|---|---|---:|---:|---:|---|---:|"]
    for name in dict.fromkeys(r["data"] for r in report["rows"]):
        for variant in ("earlier", "today"):
            rows = [r for r in report["rows"] if r["data"] == name and r["variant"] == variant]
            if not rows:
                continue
            chosen, line = np.array([r["chosen"] for r in rows]), np.array([r["linear"] for r in rows])
            if rows[0]["metric"] == "mse":
                cell = lambda v: f"{np.mean(v):.0f} ({', '.join(f'{x:.0f}' for x in v)})"  # noqa: E731
                versus = f"{np.mean(chosen / line):.2f}x"
            else:
                cell = lambda v: f"{100 * np.mean(v):.1f}% ({', '.join(f'{100 * x:.1f}' for x in v)})"  # noqa: E731
                versus = f"{100 * np.mean(chosen - line):+.1f}"
            origins = ", ".join(f"{o} {sum(r['origin'] == o for r in rows)}"
                                for o in dict.fromkeys(r["origin"] for r in rows))
            latency = np.mean([r["latency_us"] for r in rows])
            lines.append(f"| {name} | {variant} | {cell(chosen)} | {cell(line)} | {versus} | {origins} | "
                         f"{latency:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from swat_edge.search.embedding.storage import load_embedding

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="diabetes and iris, one split")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the CLI runs a search
    embedding = load_embedding("default")
    t0 = time.perf_counter()
    rows = []
    for name in QUICK if args.quick else DATASETS:
        for seed in QUICK_SPLITS if args.quick else SPLITS:
            for variant in ("earlier", "today"):
                rows.append(run_one(name, seed, variant, embedding))
                r = rows[-1]
                print(f"{name} split {seed} {variant}: chosen {r['chosen']:.4g} ({r['origin']}), linear "
                      f"{r['linear']:.4g}, {r['wall_s']:.1f} s", flush=True)
    report = {"command": "python benchmarks/small_data.py" + (" --quick" if args.quick else ""),
              "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
              "minutes": (time.perf_counter() - t0) / 60, "rows": rows}
    from benchmarks.compare_run import write_report

    write_report(Path(args.out) / ("small_data_quick" if args.quick else "small_data"), report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
