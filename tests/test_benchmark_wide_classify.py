"""benchmarks/wide.py and classify.py: their data (fixed splits, the features kept whole) and the protocol that
makes the dense baseline a fair one (the search's split, fitter and calibration)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from benchmarks import classify, many_features, wide  # noqa: E402


def test_wide_data_keeps_every_feature_and_a_fixed_split():
    task = wide.load("friedman1_60")
    again = wide.load("friedman1_60")
    assert task.x_train.shape == (1500, 60) and task.x_test.shape == (500, 60)
    np.testing.assert_array_equal(task.x_test, again.x_test)  # the split does not depend on anything but the seed
    assert task.y_train.min() == pytest.approx(-1.0) and task.y_train.max() == pytest.approx(1.0)


def test_many_features_data_has_hundreds_of_features_and_a_fixed_split():
    task = many_features.load("friedman1_1000")
    assert task.x_train.shape == (1500, 1000) and task.x_test.shape == (500, 1000)
    np.testing.assert_array_equal(task.x_test, many_features.load("friedman1_1000").x_test)
    assert many_features.load("index200").x_train.shape == (1500, 200)


def test_classification_data_is_stratified_and_labelled():
    train, test = classify.load("wine")
    assert train.classes == ("class_0", "class_1", "class_2") and train.x.shape[1] == 13
    share = [np.mean(train.y[:, 0] == k) - np.mean(test.y[:, 0] == k) for k in range(3)]
    assert max(abs(s) for s in share) < 0.03


def test_the_dense_baseline_is_fitted_and_calibrated_as_the_search_does(monkeypatch):
    from dataclasses import replace

    from swat_edge.search import run as search_run
    from swat_edge.search.run import SearchSettings

    train, _ = classify.load("iris")
    seen, folds = [], []
    real_fit, real_cv = search_run.fit_candidate, search_run.cross_validate

    def spy(model, x_tr, y_tr, x_val, y_val, settings):
        seen.append((len(x_tr), len(x_val), y_tr.shape[1], settings))
        return real_fit(model, x_tr, y_tr, x_val, y_val, settings)

    def cv_spy(start, x_all, y_all, settings, **options):
        folds.append((len(x_all), y_all.shape[1], settings, options["strata"]))
        return real_cv(start, x_all, y_all, settings, **options)

    monkeypatch.setattr(search_run, "fit_candidate", spy)
    monkeypatch.setattr(search_run, "cross_validate", cv_spy)
    monkeypatch.setattr(classify, "DENSE_DEPTHS", (1,))
    monkeypatch.setattr(classify, "DENSE_WIDTHS", (4,))
    monkeypatch.setattr(classify, "DENSE_ACTIVATIONS", ("tanh",))
    # 112 training rows: below cross_validation_below_rows, scored by the search's folds, stratified by class
    settings = SearchSettings(seed=0)
    model, label, _ = classify.dense_baseline(train, settings)
    assert not seen and len(folds) == classify.RESTARTS
    assert all(f[:3] == (train.n_rows, 3, settings) for f in folds)
    assert all(np.array_equal(f[3], train.y[:, 0].astype(int)) for f in folds)
    assert model.classes == train.classes and label == "4 tanh"
    # with cross-validation off: every start on the search's stratified holdout split, one indicator per class
    holdout = replace(settings, cross_validation_below_rows=0)
    folds.clear()
    model, label, _ = classify.dense_baseline(train, holdout)
    assert not folds and len(seen) == classify.RESTARTS and all(s[3] is holdout for s in seen)
    assert {(s[0], s[1], s[2]) for s in seen} == {(train.n_rows - round(0.2 * train.n_rows), round(0.2 * train.n_rows),
                                                    3)}
    assert model.classes == train.classes


def test_classification_splits_differ_by_seed_and_stay_stratified():
    train0, test0 = classify.load("iris", 0)
    train1, test1 = classify.load("iris", 1)
    assert not np.array_equal(test0.x, test1.x)
    assert sorted(np.bincount(test1.y[:, 0].astype(int))) == sorted(np.bincount(test0.y[:, 0].astype(int)))


def test_only_reruns_the_named_data_sets_and_keeps_the_other_rows(tmp_path, capsys):
    import json

    from benchmarks.compare_run import provenance_lines, run_datasets

    calls = []

    def run_one(name, quick, embedding):
        calls.append(name)
        return {"name": name, "methods": {"m": {"score": float(len(calls))}}}

    def markdown(report):
        return "\n".join(provenance_lines(report)) + "\n"

    def run(*argv):
        return run_datasets("x.py", ["--out", str(tmp_path), *argv], ("a", "b", "c"), ("a",), run_one, markdown,
                            "x", "score")

    with pytest.raises(SystemExit):  # nothing to keep the other rows from yet
        run("--only", "b")
    assert run() == 0 and calls == ["a", "b", "c"]
    assert run("--only", "b") == 0 and calls == ["a", "b", "c", "b"]
    report = json.loads((tmp_path / "x.json").read_text())
    assert [row["methods"]["m"]["score"] for row in report["datasets"]] == [1.0, 4.0, 3.0]  # a and c kept, in order
    assert report["reused"] == {"a": "python benchmarks/x.py", "c": "python benchmarks/x.py"}
    assert report["command"] == "python benchmarks/x.py --only b"
    # a second partial run names the run that made each kept row
    assert run("--only", "c") == 0
    report = json.loads((tmp_path / "x.json").read_text())
    assert report["reused"] == {"a": "python benchmarks/x.py", "b": "python benchmarks/x.py --only b"}
    text = (tmp_path / "x.md").read_text()
    assert "Rows of a: kept from an earlier run of `python benchmarks/x.py`." in text
    assert "Rows of b: kept from an earlier run of `python benchmarks/x.py --only b`." in text
    with pytest.raises(SystemExit):
        run("--only", "nope")
    capsys.readouterr()
