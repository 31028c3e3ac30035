"""Classification (issue 14, part 2): labels read and detected, a stratified split, indicator models turned into
logit classifiers exactly, figures checked against scikit-learn, and a search on scikit-learn's iris and
breast_cancer data sets whose exports (ONNX logits and probabilities, C predict_class) agree with the reference."""
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from clirun import run_cli  # noqa: E402

from swat_edge.data import load_dataset  # noqa: E402
from swat_edge.errors import DataError  # noqa: E402
from swat_edge.model import class_probabilities, forward, load_model, random_model  # noqa: E402
from swat_edge.search.classify import class_figures, stratified_folds, stratified_split, to_classifier  # noqa: E402

FAST = ["--steps", "40", "--starts", "3", "--no-measure"]


def _write(path: Path, x: np.ndarray, labels, header: str) -> Path:
    lines = [",".join([*(f"{v:.6g}" for v in row), str(label)]) for row, label in zip(x, labels)]
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    return path


def test_text_labels_are_classes_in_sorted_order_and_numbers_stay_numeric(tmp_path):
    x = np.arange(12.0)[:, None]
    data = load_dataset(_write(tmp_path / "t.csv", x, ["hot", "cold", "warm"] * 4, "a,state"))
    assert data.classes == ("cold", "hot", "warm") and data.y[:3, 0].tolist() == [1.0, 0.0, 2.0]
    assert data.task_note == "target 'state' holds labels: classification"
    ints = load_dataset(_write(tmp_path / "i.csv", x, [10, 2, 2, 10] * 3, "a,gear"))
    assert ints.classes == ("2", "10") and "2 integer values: classification" in ints.task_note
    assert not load_dataset(_write(tmp_path / "r.csv", x, [10, 2, 2, 10] * 3, "a,gear"), task="regress").classes
    with pytest.raises(DataError, match=r"row 2, column 'state': label 'lukewarm' is not one of the training "
                                        r"classes \(cold, hot, warm\)"):
        load_dataset(_write(tmp_path / "u.csv", x[:2], ["hot", "lukewarm"], "a,state"), task="classify",
                     classes=("cold", "hot", "warm"))
    (tmp_path / "f.csv").write_text("a,b,y\n1,x,p\n2,3,q\n")
    with pytest.raises(DataError, match=r"row 1, column 'b': 'x' is not a number; feature cells must be numeric"):
        load_dataset(tmp_path / "f.csv")


def test_the_split_holds_out_the_same_share_of_every_class():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    train, val = stratified_split(labels, fraction=0.2, seed=0, min_rows=4)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert np.bincount(labels[val]).tolist() == [16, 3, 1]


def test_cross_validation_folds_hold_every_class_in_the_same_share():
    labels = np.array([0] * 50 + [1] * 37 + [2] * 13)  # 100 rows, imbalanced
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))  # every row in exactly one fold
    counts = np.array([[np.sum(labels[f] == k) for k in range(3)] for f in folds])
    assert np.all(counts.max(axis=0) - counts.min(axis=0) <= 1)  # a class differs by at most one row per fold
    assert [f.tolist() for f in folds] == [f.tolist() for f in stratified_folds(labels, 5, seed=0)]


def test_the_classifier_keeps_the_hidden_stack_and_refits_the_output_layer_by_cross_entropy():
    from swat_edge.model import hidden_activations
    from swat_edge.search.classify import HEAD_RIDGE, feature_scales

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(400, 2))
    labels = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    model = random_model((2, 5, 3), seed=1).replace(output_scale=np.array([0.5, 2.0, 1.0]),
                                                    output_offset=np.array([0.1, -0.2, 0.3]))
    weight = model.output.weight.copy()
    weight[0, 1] = 0.0  # a zero weight stays zero: C emits nothing for it
    model = model.replace(output=model.output.__class__.make(weight, model.output.bias, "identity"))
    clf = to_classifier(model, x, labels, ("a", "b", "c"))
    assert clf.classes == ("a", "b", "c") and np.all(clf.output_scale == 1.0) and np.all(clf.output_offset == 0.0)
    for mine, theirs in zip(clf.hidden, model.hidden):
        np.testing.assert_array_equal(mine.weight, theirs.weight)
    assert clf.output.weight[0, 1] == 0.0
    h = hidden_activations(clf, x)
    scale = feature_scales(h)

    def penalised(w: np.ndarray, b: np.ndarray) -> float:
        p = class_probabilities(h @ w + b)[np.arange(len(x)), labels]
        return float(-np.mean(np.log(p)) + 0.5 * HEAD_RIDGE * np.sum((w * scale[:, None]) ** 2))

    best = penalised(clf.output.weight, clf.output.bias)
    for i, j in ((0, 0), (2, 1), (4, 2)):  # nudging any free weight or bias can only make the loss worse
        for delta in (1e-3, -1e-3):
            w = clf.output.weight.copy()
            w[i, j] += delta
            assert penalised(w, clf.output.bias) >= best - 1e-12
            b = clf.output.bias.copy()
            b[j] += delta
            assert penalised(clf.output.weight, b) >= best - 1e-12


@pytest.mark.parametrize("classes", [2, 3])
def test_the_cross_entropy_head_is_scikit_learns_logistic_regression(classes):
    from sklearn.linear_model import LogisticRegression

    from swat_edge.search.classify import cross_entropy_head

    rng = np.random.default_rng(classes)
    h = rng.uniform(-1, 1, size=(300, 4))
    h /= np.abs(h).max(axis=0)  # features reaching +-1, where the head's ridge is scikit-learn's plain one
    labels = (h[:, 0] + 0.5 * h[:, 1] + 0.3 * rng.normal(size=300) > 0).astype(int)
    if classes == 3:
        labels += (h[:, 2] > 0.4).astype(int)
    logits = 1 if classes == 2 else classes
    ridge = 1e-2
    weight, bias = cross_entropy_head(h, labels, np.full((4, logits), 0.1), np.zeros(logits), ridge=ridge)
    # scikit-learn's penalty is |w|^2 / (2 C) on the summed loss: C = 1 / (rows x ridge) on the mean
    oracle = LogisticRegression(C=1.0 / (300 * ridge), tol=1e-10, max_iter=10_000).fit(h, labels)
    np.testing.assert_allclose(weight, oracle.coef_.T, atol=1e-6)
    # softmax logits are defined up to a shared shift; the penalty fixes the weights but not the biases' mean
    np.testing.assert_allclose(bias - bias.mean() * (classes > 2),
                               oracle.intercept_ - oracle.intercept_.mean() * (classes > 2), atol=1e-6)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_classifier_does_not_depend_on_the_scale_a_linear_hidden_layer_carries(classes):
    # The same function twice: the second network's linear last hidden layer carries its features at 1e-3 and
    # its output layer makes up for it. Its head was flattened to the class prior when the ridge was on the raw
    # weights (breast_cancer, --inputs select: 62.9% test accuracy).
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(400, 2))
    labels = (x[:, 0] - 0.4 * x[:, 1] > 0.1).astype(int) + (classes == 3) * (x[:, 1] > 0.6).astype(int)
    model = random_model((2, 6, 4, classes if classes > 2 else 1), activations="tanh", per_layer=True, seed=3)
    linear = model.hidden[1].__class__.make(model.hidden[1].weight, model.hidden[1].bias, "identity")
    model = model.replace(hidden=(model.hidden[0], linear))
    small = model.replace(hidden=(model.hidden[0], linear.__class__.make(linear.weight * 1e-3, linear.bias * 1e-3,
                                                                         "identity")),
                          output=model.output.__class__.make(model.output.weight * 1e3, model.output.bias, "identity"))
    np.testing.assert_allclose(forward(small, x), forward(model, x), rtol=1e-9, atol=1e-9)
    names = tuple("abc"[:classes])
    expected = class_probabilities(forward(to_classifier(model, x, labels, names), x))
    got = class_probabilities(forward(to_classifier(small, x, labels, names), x))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    majority = np.bincount(labels).max() / len(labels)
    assert class_figures(to_classifier(small, x, labels, names), x, labels).accuracy > majority + 0.15


def test_figures_match_scikit_learn():
    from sklearn import metrics

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    labels = rng.integers(0, 3, size=300)
    model = random_model((3, 4, 3), seed=5).replace(classes=("p", "q", "r"), output_scale=np.full(3, 0.2))
    got = class_figures(model, x, labels)
    proba = class_probabilities(forward(model, x))
    predicted = proba.argmax(axis=1)
    assert got.accuracy == pytest.approx(metrics.accuracy_score(labels, predicted))
    assert got.balanced_accuracy == pytest.approx(metrics.balanced_accuracy_score(labels, predicted))
    assert got.log_loss == pytest.approx(metrics.log_loss(labels, proba, labels=[0, 1, 2]))
    np.testing.assert_allclose(got.f1, metrics.f1_score(labels, predicted, average=None, labels=[0, 1, 2]))
    np.testing.assert_array_equal(got.confusion, metrics.confusion_matrix(labels, predicted, labels=[0, 1, 2]))


def _bundled(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = getattr(datasets, f"load_{name}")()
    labels = np.asarray(bunch.target_names)[bunch.target]
    x_tr, x_te, y_tr, y_te = train_test_split(bunch.data, labels, test_size=0.25, random_state=0, stratify=labels)
    header = ",".join([f"f{i}" for i in range(bunch.data.shape[1])] + ["label"])
    return _write(tmp_path / f"{name}.csv", x_tr, y_tr, header), _write(tmp_path / f"{name}_test.csv", x_te, y_te,
                                                                          header)


@pytest.mark.parametrize("name, least_accuracy", [("iris", 0.85), ("breast_cancer", 0.9)])
def test_a_search_on_labels_gives_a_classifier_and_its_exports_agree(tiny_run, tmp_path, capsys, name,
                                                                     least_accuracy):
    from swat_edge.export.c import run_c_rows
    from swat_edge.export.cc import which_c_compiler
    from swat_edge.export.onnx import load_onnx, read_metadata
    from swat_edge.export.pipeline import export_c_file

    train, test = _bundled(tmp_path, name)
    code, stdout, err = run_cli(["search", "--data", train, "--test", test, "--target", "cortex-m4", "--embedding",
                                 tiny_run, "--out", tmp_path / "run", *FAST], capsys)
    assert code == 0, err
    assert "classification (target 'label' holds labels: classification)" in stdout
    assert "confusion (true class by row" in stdout
    model = load_model(tmp_path / "run" / "model.safetensors")
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["classification"]["classes"] == list(model.classes)
    assert card["classification"]["test"]["accuracy"] >= least_accuracy
    x_test = np.loadtxt(test, delimiter=",", skiprows=1, usecols=range(model.n_inputs))
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "run" / "model.onnx"))
    logits, proba = session.run(None, {"input": x_test.astype(np.float32)})
    np.testing.assert_allclose(logits, forward(model, x_test), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(proba, class_probabilities(forward(model, x_test)), atol=1e-5)
    assert read_metadata(load_onnx(tmp_path / "run" / "model.onnx"))["classes"] == list(model.classes)
    if which_c_compiler() is None:
        return
    c = export_c_file(model, tmp_path / "m.c")
    assert f"int m_predict_class(const float *in, float *scores);" in c.code.header
    _check_predict_class(c.code, model, x_test, tmp_path)


def _check_predict_class(csrc, model, x, tmp_path: Path) -> None:
    """Compile a driver that calls <prefix>_predict_class on every row; its classes are the reference's argmax."""
    from swat_edge.export.cc import compile_c, find_c_compiler, run_program

    (tmp_path / "m.c").write_text(csrc.source)
    (tmp_path / csrc.header_name).write_text(csrc.header)
    rows = ",".join(f"{float(v)!r}" for v in x.astype(np.float32).ravel())
    (tmp_path / "driver.c").write_text(
        f'#include <stdio.h>\n#include "{csrc.header_name}"\nstatic const float rows[] = {{{rows}}};\n'
        f"int main(void) {{ float s[M_N_OUTPUTS]; int r; for (r = 0; r < {len(x)}; ++r) "
        f'printf("%d\\n", m_predict_class(rows + r * M_N_INPUTS, s)); return 0; }}\n')
    exe = tmp_path / "driver"
    compile_c(find_c_compiler(None), [tmp_path / "m.c", tmp_path / "driver.c"], exe, flags=("-std=c99", "-O1"))
    out = run_program([str(exe)], what="the predict_class driver", timeout_s=60)
    got = np.array([int(v) for v in out.split()])
    expected = class_probabilities(forward(model, x.astype(np.float32).astype(np.float64))).argmax(axis=1)
    assert np.mean(got == expected) >= 0.99  # rows on a decision boundary may flip in float32


def test_a_classifier_exports_to_int8_onnx_and_int8_c_within_their_drift_limits(tmp_path):
    from swat_edge.export.c import INT8_MAX_RELATIVE_MSE
    from swat_edge.export.cc import which_c_compiler
    from swat_edge.export.pipeline import export_c_file, export_onnx_file

    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, size=(400, 3))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.3).astype(int)
    indicator = random_model((3, 6, 3), activations="tanh", seed=2).replace(calibration=x[:256])
    model = to_classifier(indicator, x, labels, ("low", "mid", "high"))
    result = export_onnx_file(model, tmp_path / "m.int8.onnx", quantization="static", heldout_rows=x[256:])
    assert result.written and result.drift is not None and result.drift.relative_mse < INT8_MAX_RELATIVE_MSE
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "m.int8.onnx"))
    assert [o.name for o in session.get_outputs()] == ["output", "probabilities"]
    proba = session.run(None, {"input": x[256:].astype(np.float32)})[1]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    if which_c_compiler() is not None:
        c = export_c_file(model, tmp_path / "m.c", dtype="int8", heldout_rows=x[256:])
        assert c.code.int8 is not None and c.code.int8.relative_mse < INT8_MAX_RELATIVE_MSE
        assert "int m_predict_class(const float *in, float *scores)" in c.code.source


def test_export_reads_a_labelled_holdout_file_for_a_classifier(tmp_path):
    from swat_edge.export.pipeline import export_file
    from swat_edge.model import save_model

    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(120, 2))
    labels = (x[:, 0] > 0).astype(int)
    model = to_classifier(random_model((2, 4, 1), activations="tanh", seed=3).replace(calibration=x[:60]), x, labels,
                          ("off", "on"))
    holdout = _write(tmp_path / "h.csv", x[60:], np.array(["off", "on"])[labels[60:]], "x0,x1,state")
    result = export_file(save_model(model, tmp_path / "m.safetensors"), tmp_path / "m.int8.onnx", holdout=holdout)
    assert result.written and result.rows.heldout.shape == (60, 2) and result.rows.heldout_targets is None
