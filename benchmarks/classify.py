"""Classification (issue 14, part 2): swat-edge against dense MLPs of the family trained with the same care, on
scikit-learn's bundled classification sets.

    .venv/bin/python benchmarks/classify.py            # iris, wine, breast_cancer, digits, seed 0 (~10 min, 2 cores)
    .venv/bin/python benchmarks/classify.py --quick    # iris and wine, short schedules (smoke run)

Data: load_iris (4 features, 3 classes), load_wine (13, 3), load_breast_cancer (30, 2), load_digits (64, 10);
a fixed stratified 75/25 train/test split (seed 0). Methods, on the search's stratified train/validation split:
- swat-edge `search --target cortex-m4` with `--inputs select` and `--inputs project` (features beyond the
  embedding's 8 go through the input stage; the model takes all of them);
- dense MLPs of the family on all features: depth 1-2 x width {4, 8} x {tanh, relu}, each the best of 3 starts
  fitted exactly as the search fits its candidates (class indicators, Levenberg-Marquardt, early stopping on the
  validation rows), then given logits by the same calibration (search/classify.py); chosen on validation MSE;
- scikit-learn's LogisticRegression on standardised features (a reference, not deployable in this toolchain).
Writes benchmarks/results/classify{,_quick}.{json,md}.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASETS = ("iris", "wine", "breast_cancer", "digits")
QUICK = ("iris", "wine")
DENSE_DEPTHS, DENSE_WIDTHS, DENSE_ACTIVATIONS, RESTARTS = (1, 2), (4, 8), ("tanh", "relu"), 3


def load(name: str):
    """(train Dataset, test Dataset) with class labels, fixed stratified split."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    from swat_edge.data import Dataset

    bunch = getattr(datasets, f"load_{name}")()
    classes = tuple(str(c) for c in bunch.target_names)
    x_tr, x_te, y_tr, y_te = train_test_split(bunch.data.astype(np.float64), bunch.target, test_size=0.25,
                                              random_state=0, stratify=bunch.target)
    names = tuple(f"f{i}" for i in range(bunch.data.shape[1]))

    def dataset(x: np.ndarray, y: np.ndarray, part: str) -> Dataset:
        return Dataset(f"{name}:{part}", x, y[:, None].astype(np.float64), names, ("label",), "-", classes=classes)

    return dataset(x_tr, y_tr, "train"), dataset(x_te, y_te, "test")


def _figures(model: Any, test: Any, wall_s: float) -> dict[str, Any]:
    from swat_edge.device.cost import estimate
    from swat_edge.device.targets import load_target
    from swat_edge.model import model_stats
    from swat_edge.search.classify import class_figures

    from benchmarks.compare_task import compiled

    f = class_figures(model, test.x, test.y[:, 0].astype(int))
    return {"accuracy": f.accuracy, "balanced_accuracy": f.balanced_accuracy, "log_loss": f.log_loss,
            "nonzero": model_stats(compiled(model)).nonzero_params,
            "cortex_m4_us": float(estimate(model, load_target("cortex-m4")).latency_us[0]),
            "raspi4_us": float(estimate(model, load_target("raspi4")).latency_us[0]), "wall_s": wall_s}


def dense_baseline(train: Any, settings: Any) -> tuple[Any, str, float]:
    """The best dense network of the sweep on validation, fitted and calibrated as the search does."""
    from swat_edge.model import forward, random_model
    from swat_edge.search.classify import indicator_dataset, to_classifier
    from swat_edge.search.run import fit_candidate, split_and_scale

    labels = train.y[:, 0].astype(int)
    indicators = indicator_dataset(train)
    prep = split_and_scale(indicators, fraction=settings.validation_fraction, seed=settings.seed, strata=labels)
    fields = dict(input_scale=prep.x_scale, input_offset=prep.x_offset, output_scale=prep.output_scale,
                  output_offset=prep.output_offset)
    x_tr, y_tr = indicators.x[prep.train], indicators.y[prep.train]
    x_val, y_val = indicators.x[prep.val], indicators.y[prep.val]
    t0 = time.perf_counter()
    best: tuple[float, Any, str] | None = None
    for depth in DENSE_DEPTHS:
        for width in DENSE_WIDTHS:
            for activation in DENSE_ACTIVATIONS:
                widths = (train.x.shape[1], *([width] * depth), y_tr.shape[1])
                for restart in range(RESTARTS):
                    start = random_model(widths, activations=activation, per_layer=True, seed=settings.seed + restart,
                                         normalization=False).replace(**fields)
                    model = fit_candidate(start, x_tr, y_tr, x_val, y_val, settings)[0]
                    val = float(np.mean(((forward(model, x_val) - y_val) * prep.y_scale) ** 2))
                    if best is None or val < best[0]:
                        best = (val, model, f"{'-'.join(map(str, widths[1:-1]))} {activation}")
    assert best is not None
    classifier = to_classifier(best[1], x_tr, labels[prep.train], train.classes, settings.seed)
    return classifier, best[2], time.perf_counter() - t0


def logistic_reference(train: Any, test: Any) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(train.x, train.y[:, 0].astype(int))
    y = test.y[:, 0].astype(int)
    proba = clf.predict_proba(test.x)
    return {"accuracy": float(accuracy_score(y, proba.argmax(axis=1))),
            "balanced_accuracy": float(balanced_accuracy_score(y, proba.argmax(axis=1))),
            "log_loss": float(log_loss(y, proba, labels=list(range(proba.shape[1]))))}


def run_dataset(name: str, quick: bool, embedding: Any) -> dict[str, Any]:
    from swat_edge.device.targets import load_target
    from swat_edge.search.run import run_search

    from benchmarks.compare_task import Protocol

    train, test = load(name)
    settings = (Protocol.quick() if quick else Protocol()).search_settings(0)
    methods: dict[str, Any] = {}
    for inputs in ("select", "project"):
        t0 = time.perf_counter()
        result = run_search(train, embedding=embedding, target=load_target("cortex-m4"),
                            settings=replace(settings, inputs=inputs))
        methods[f"swat ({inputs})"] = {**_figures(result.model, test, time.perf_counter() - t0),
                                       "origin": result.chosen.origin}
    model, label, wall = dense_baseline(train, settings)
    methods["dense (best on validation)"] = {**_figures(model, test, wall), "label": label}
    methods["logistic regression"] = logistic_reference(train, test)
    return {"name": name, "features": train.x.shape[1], "classes": len(train.classes), "rows_train": train.n_rows,
            "rows_test": test.n_rows, "methods": methods}


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.compare_run import size_latency_rows

    lines = ["# swat-edge classification against dense MLPs of the family (same fitter, split and calibration)", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}; {report['minutes']:.1f} min.", "",
             "Test accuracy (balanced accuracy; log-loss); difference = swat-edge - dense, in accuracy points.", "",
             "| data | features / classes | swat-edge select | swat-edge project | dense (best on validation) | "
             "logistic regression | select - dense | project - dense |", "|---|---|---|---|---|---|---:|---:|"]
    for row in report["datasets"]:
        m = row["methods"]
        cell = lambda k: (f"{100 * m[k]['accuracy']:.1f}% ({100 * m[k]['balanced_accuracy']:.1f}%; "  # noqa: E731
                          f"{m[k]['log_loss']:.3f})")
        dense = m["dense (best on validation)"]
        lines.append(f"| {row['name']} | {row['features']} / {row['classes']} | {cell('swat (select)')} | "
                     f"{cell('swat (project)')} | {cell('dense (best on validation)')} {dense['label']} | "
                     f"{cell('logistic regression')} | "
                     f"{100 * (m['swat (select)']['accuracy'] - dense['accuracy']):+.1f} | "
                     f"{100 * (m['swat (project)']['accuracy'] - dense['accuracy']):+.1f} |")
    lines += ["", "Size and predicted latency (non-zero parameters; cortex-m4 / raspi4 us):", "",
              *size_latency_rows(report["datasets"], ("cortex_m4", "raspi4"))]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.compare_run import run_datasets

    return run_datasets("classify.py", argv, DATASETS, QUICK, run_dataset, markdown, "classify", "accuracy")


if __name__ == "__main__":
    raise SystemExit(main())
