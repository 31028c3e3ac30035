"""Classification (issue 14, part 2): swat-edge against dense MLPs of the family trained with the same care, on
scikit-learn's bundled classification sets.

    .venv/bin/python benchmarks/classify.py              # iris, wine, breast_cancer, digits; 5 splits, 2 processes
    .venv/bin/python benchmarks/classify.py --quick      # iris and wine, one split, short schedules (smoke run)

Data: load_iris (4 features, 3 classes), load_wine (13, 3), load_breast_cancer (30, 2), load_digits (64, 10);
stratified 75/25 train/test splits, one per seed (SPLITS; seed s draws the split and seeds the search and the
baselines). A test set of 38 rows (iris) moves accuracy by 2.6 points per row, so the figures are means over the
splits, each split's difference listed beside them. Methods, on the search's stratified train/validation split or,
below SearchSettings.cross_validation_below_rows rows, its stratified folds:
- swat-edge `search --target cortex-m4` with `--inputs select`, `--inputs project` and `--inputs auto` (features beyond the
  embedding's 8 go through the input stage; the model takes all of them; with 8 features or fewer there is no
  input stage and the two are one search);
- dense MLPs of the family on all features: depth 1-2 x width {4, 8} x {tanh, relu}, each the best of 3 starts
  fitted and scored exactly as the search fits and scores its candidates (class indicators, Levenberg-Marquardt,
  early stopping on the validation rows or cross-validation and a refit on all rows), then given logits by the
  same calibration (search/classify.py); chosen on validation (or out-of-fold) MSE;
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
SPLITS, QUICK_SPLITS = (0, 1, 2, 3, 4), (0,)
JOBS = 2  # processes, one split each


def load(name: str, seed: int = 0):
    """(train Dataset, test Dataset) with class labels: the stratified split drawn by `seed`."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    from swat_edge.data import Dataset

    bunch = getattr(datasets, f"load_{name}")()
    classes = tuple(str(c) for c in bunch.target_names)
    x_tr, x_te, y_tr, y_te = train_test_split(bunch.data.astype(np.float64), bunch.target, test_size=0.25,
                                              random_state=seed, stratify=bunch.target)
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
    """The best dense network of the sweep on validation, fitted, scored and calibrated as the search does its
    candidates: on the search's stratified holdout split or, below cross_validation_below_rows rows, by its
    stratified k-fold cross-validation and a refit on all rows."""
    from swat_edge.model import forward, random_model
    from swat_edge.search.classify import indicator_dataset, to_classifier
    from swat_edge.search.run import cross_validate, fit_candidate, split_and_scale, uses_cross_validation

    labels = train.y[:, 0].astype(int)
    indicators = indicator_dataset(train)
    prep = split_and_scale(indicators, fraction=settings.validation_fraction, seed=settings.seed, strata=labels)
    fields = dict(input_scale=prep.x_scale, input_offset=prep.x_offset, output_scale=prep.output_scale,
                  output_offset=prep.output_offset)
    folds = uses_cross_validation(settings, train.n_rows)
    fit_rows = np.arange(train.n_rows) if folds else prep.train
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
                    if folds:
                        cv = cross_validate(start, indicators.x, indicators.y, settings, strata=labels,
                                            y_scale=prep.y_scale)
                        model, val = cv.model, float(np.mean(((cv.out_of_fold - indicators.y) * prep.y_scale) ** 2))
                    else:
                        model = fit_candidate(start, x_tr, y_tr, x_val, y_val, settings)[0]
                        val = float(np.mean(((forward(model, x_val) - y_val) * prep.y_scale) ** 2))
                    if best is None or val < best[0]:
                        best = (val, model, f"{'-'.join(map(str, widths[1:-1]))} {activation}")
    assert best is not None
    classifier = to_classifier(best[1], train.x[fit_rows], labels[fit_rows], train.classes, settings.seed)
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


def run_split(name: str, seed: int, quick: bool) -> dict[str, Any]:
    """Every method on the split drawn by `seed` (its own process: loads the embedding itself)."""
    import torch

    from swat_edge.device.targets import load_target
    from swat_edge.search.embedding.storage import load_embedding
    from swat_edge.search.run import run_search

    from benchmarks.compare_run import stage_taken
    from benchmarks.compare_task import Protocol

    torch.set_num_threads(1)
    embedding = load_embedding("default")
    train, test = load(name, seed)
    settings = (Protocol.quick() if quick else Protocol()).search_settings(seed)
    family_inputs = embedding.module.config.family.max_inputs
    methods: dict[str, Any] = {}
    for inputs in ("select", "project", "auto"):
        if inputs != "select" and train.x.shape[1] <= family_inputs:  # no input stage: the same search
            methods[f"swat ({inputs})"] = methods["swat (select)"]
            continue
        t0 = time.perf_counter()
        result = run_search(train, embedding=embedding, target=load_target("cortex-m4"),
                            settings=replace(settings, inputs=inputs))
        methods[f"swat ({inputs})"] = {**_figures(result.model, test, time.perf_counter() - t0),
                                       "origin": result.chosen.origin, "stage": stage_taken(result)}
    model, label, wall = dense_baseline(train, settings)
    methods["dense (best on validation)"] = {**_figures(model, test, wall), "label": label}
    methods["logistic regression"] = logistic_reference(train, test)
    return {"seed": seed, "rows_train": train.n_rows, "rows_test": test.n_rows, "features": train.x.shape[1],
            "classes": len(train.classes), "methods": methods}


def _mean_methods(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """Each method's numeric figures averaged over the splits (the dense label: the most frequent one)."""
    out: dict[str, Any] = {}
    for method in splits[0]["methods"]:
        rows = [split["methods"][method] for split in splits]
        out[method] = {key: float(np.mean([row[key] for row in rows])) for key, value in rows[0].items()
                       if isinstance(value, (int, float))}
        for key in ("label", "origin", "stage"):
            if key in rows[0]:
                values = [row[key] for row in rows]
                out[method][key] = max(set(values), key=values.count)
    return out


def run_dataset(name: str, quick: bool, embedding: Any) -> dict[str, Any]:
    """run_split over SPLITS (QUICK_SPLITS with --quick) in JOBS processes; the means in "methods"."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    seeds = QUICK_SPLITS if quick else SPLITS
    # spawn, not fork: this process may have run torch and onnxruntime (their thread pools must not be forked)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(JOBS, len(seeds)), mp_context=spawn) as pool:
        splits = list(pool.map(run_split, [name] * len(seeds), seeds, [quick] * len(seeds)))
    first = splits[0]
    return {"name": name, "features": first["features"], "classes": first["classes"],
            "rows_train": first["rows_train"], "rows_test": first["rows_test"], "splits": splits,
            "methods": _mean_methods(splits)}


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.compare_run import provenance_lines, size_latency_rows

    dense_key = "dense (best on validation)"
    splits = len(report["datasets"][0]["splits"])
    lines = ["# swat-edge classification against dense MLPs of the family (same fitter, split and calibration)", "",
             *provenance_lines(report), "",
             f"Test accuracy (balanced accuracy; log-loss), means over {splits} stratified 75/25 splits; difference "
             "= swat-edge - dense, in accuracy points (mean, then each split's).", "",
             "| data | features / classes / test rows | swat-edge select | swat-edge project | swat-edge auto "
             "(took, most splits) | dense (best on validation) | logistic regression | select - dense | "
             "project - dense | auto - dense |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["datasets"]:
        m = row["methods"]
        cell = lambda k: (f"{100 * m[k]['accuracy']:.1f}% ({100 * m[k]['balanced_accuracy']:.1f}%; "  # noqa: E731
                          f"{m[k]['log_loss']:.3f})")

        def difference(method: str) -> str:
            each = [100 * (s["methods"][method]["accuracy"] - s["methods"][dense_key]["accuracy"])
                    for s in row["splits"]]
            return f"{np.mean(each):+.1f} ({', '.join(f'{d:+.1f}' for d in each)})"

        ran_auto = "swat (auto)" in m  # rows kept from a run before --inputs auto chose by validation: not run
        auto = f"{cell('swat (auto)')} ({m['swat (auto)'].get('stage', '-')})" if ran_auto else "not run"
        auto_difference = difference("swat (auto)") if ran_auto else "-"
        lines.append(f"| {row['name']} | {row['features']} / {row['classes']} / {row['rows_test']} | "
                     f"{cell('swat (select)')} | {cell('swat (project)')} | {auto} | {cell(dense_key)} "
                     f"{m[dense_key]['label']} | {cell('logistic regression')} | {difference('swat (select)')} | "
                     f"{difference('swat (project)')} | {auto_difference} |")
    lines += ["", "Size and predicted latency, means over the splits (non-zero parameters; cortex-m4 / raspi4 us):", "",
              *size_latency_rows(report["datasets"], ("cortex_m4", "raspi4"))]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.compare_run import run_datasets

    return run_datasets("classify.py", argv, DATASETS, QUICK, run_dataset, markdown, "classify", "accuracy")


if __name__ == "__main__":
    raise SystemExit(main())
