"""Classification on top of the regression search (issue 14, part 2).

The search, its candidates and its fine-tuner work on class indicators: one 0/1 column for two classes (the
second class), one column per class beyond (several targets, see problem.Problem.summary), fitted by least squares,
which Levenberg-Marquardt does well. Each fitted network's indicator outputs f are then turned into logits by a
logistic calibration over the training rows, logits = a f + c (a temperature and per-class offsets, fitted by
cross-entropy), folded exactly into the linear output layer: least squares shapes the scores, cross-entropy their
scale and the class priors. The exported
model outputs logits (ONNX also probabilities); class names travel with the model.
Numpy only: pure functions over arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..data import Dataset
from ..model import Layer, SparseMLP, class_probabilities, forward, hidden_activations

__all__ = ["ClassFigures", "indicator_dataset", "to_classifier", "cross_entropy_head", "feature_scales", "HEAD_RIDGE",
           "class_figures", "stratified_split", "CALIBRATION_MAX_ROWS"]

CALIBRATION_MAX_ROWS = 5000  # rows the logistic calibration is fitted on at most (seeded subsample beyond)
_RIDGE = 1e-4  # on the calibration's weights: keeps separable classes finite
_NEWTON_STEPS = 100
# Ridge on the cross-entropy output layer's weights (mean loss; hidden features scaled to [-1, 1]): on 5 stratified splits of
# iris and wine (the dense baselines of benchmarks/classify.py) 1e-3 lowered the test log-loss on 8 of 10 against the
# temperature-and-offsets map alone (e.g. iris 0.799 -> 0.544, wine 0.163 -> 0.059), accuracy within a row;
# 1e-4 overfitted (iris 0.363 -> 0.687), 1e-2 flattened confident splits (iris 0.090 -> 0.161).
HEAD_RIDGE = 1e-3
_HEAD_CHUNK_ROWS = 1024  # rows per block of the Hessian's outer products (memory: rows x features^2)


def indicator_dataset(dataset: Dataset) -> Dataset:
    """The regression the search solves for a classification data set: 0/1 indicator targets."""
    labels = dataset.y[:, 0].astype(int)
    k = len(dataset.classes)
    if k == 2:
        return replace(dataset, y=(labels == 1).astype(np.float64)[:, None], target_names=(dataset.classes[1],),
                       classes=())
    return replace(dataset, y=np.eye(k)[labels], target_names=dataset.classes, classes=())


def stratified_split(labels: np.ndarray, *, fraction: float, seed: int, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices holding out `fraction` of every class (at least one row of each class
    with two or more rows), in a seeded order; at least min_rows validation rows."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for k in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == k))
        take = int(round(fraction * len(rows)))
        take = min(max(take, 1), len(rows) - 1) if len(rows) > 1 else 0
        val += rows[:take].tolist()
    if len(val) < min_rows:
        rest = rng.permutation(np.setdiff1d(np.arange(len(labels)), val))
        val += rest[: min_rows - len(val)].tolist()
    val_rows = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), val_rows), val_rows


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """`folds` disjoint row sets covering every row, each class dealt round-robin over them in a seeded order
    (continuing where the previous class stopped), so every fold holds about the same share of each class."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    at = 0
    for k in np.unique(labels):
        for row in rng.permutation(np.flatnonzero(labels == k)):
            out[at % folds].append(int(row))
            at += 1
    return [np.sort(np.asarray(rows, dtype=np.int64)) for rows in out]


def _newton_update(theta: np.ndarray, current: float, grad: np.ndarray, hess: np.ndarray,
                   loss: Callable[[np.ndarray], float]) -> tuple[np.ndarray, float, bool]:
    """One Newton step on a convex loss, halved until the loss does not rise: (theta, loss, converged)."""
    step = np.linalg.lstsq(hess + 1e-12 * np.eye(len(hess)), grad, rcond=None)[0]
    scale = 1.0
    while scale > 1e-6:
        value = loss(theta - scale * step)
        if value <= current:
            return theta - scale * step, value, current - value < 1e-12 * max(1.0, abs(value))
        scale *= 0.5
    return theta, current, True


def _logistic_map(f: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(a, c) minimising the cross-entropy of the logits a f + c (sigmoid of the one logit for two classes, else
    softmax) plus a small ridge on a: a temperature and per-class offsets, by damped Newton steps on the exact
    Hessian of these 1 + logits parameters (cheap for any number of rows and classes)."""
    binary = f.shape[1] == 1
    n_classes = 2 if binary else f.shape[1]
    target = np.eye(n_classes)[labels]
    phi = np.hstack([np.zeros_like(f), f]) if binary else f  # each class's score; class 0's logit is 0 if binary
    n = len(f)

    def unpack(theta: np.ndarray) -> np.ndarray:
        offsets = np.concatenate([[0.0], theta[1:]]) if binary else theta[1:]
        return theta[0] * phi + offsets

    def loss(theta: np.ndarray) -> float:
        p = class_probabilities(unpack(theta)[:, 1:] if binary else unpack(theta))
        return float(-np.mean(np.log(np.clip(p[np.arange(n), labels], 1e-300, None))) + 0.5 * _RIDGE * theta[0] ** 2)

    theta = np.concatenate([[1.0], np.zeros(1 if binary else n_classes)])
    current = loss(theta)
    for _ in range(_NEWTON_STEPS):
        z = unpack(theta)
        p = class_probabilities(z[:, 1:] if binary else z)
        r = p - target
        pf = np.sum(p * phi, axis=1)
        h_aa = np.sum(p * phi ** 2) - np.sum(pf ** 2)
        h_ac = np.sum(p * phi - p * pf[:, None], axis=0)
        h_cc = np.diag(p.sum(axis=0)) - p.T @ p
        grad = np.concatenate([[np.sum(r * phi)], r.sum(axis=0)]) / n
        hess = np.block([[np.array([[h_aa]]), h_ac[None, :]], [h_ac[:, None], h_cc]]) / n
        if binary:  # only the second class's offset is a parameter
            grad, hess = grad[[0, 2]], hess[np.ix_([0, 2], [0, 2])]
        grad[0] += _RIDGE * theta[0]
        hess[0, 0] += _RIDGE
        theta, current, converged = _newton_update(theta, current, grad, hess, loss)
        if converged:
            break
    offsets = theta[1:] if not binary else theta[1:2]
    return float(theta[0]), offsets


def _class_probabilities_and_curvature(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities of the logit columns' classes, per-row Hessian of the cross-entropy in the logits): for one
    logit (two classes) p(1 - p), else diag(p) - p p^T."""
    p = class_probabilities(z)
    if z.shape[1] == 1:
        q = p[:, 1:]
        return q, (q * (1.0 - q))[:, :, None]
    return p, p[:, :, None] * np.eye(p.shape[1])[None] - p[:, :, None] * p[:, None, :]


def feature_scales(h: np.ndarray) -> np.ndarray:
    """Each hidden feature's largest |value| on these rows, floored at 1e-6 of the largest one's (a feature of
    rounding noise is not blown up to the size of the others); 1 where every feature is 0."""
    scale = np.max(np.abs(h), axis=0, initial=0.0)
    return np.maximum(scale, 1e-6 * np.max(scale, initial=0.0)) if np.any(scale > 0) else np.ones(h.shape[1])


def cross_entropy_head(h: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                       ridge: float = HEAD_RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """The output layer (weight: features x logits, its zero pattern kept; bias: logits) minimising the mean
    cross-entropy of logits h weight + bias (sigmoid of one logit for two classes, else softmax) plus
    ridge/2 |weight * feature_scales(h)|^2, by damped Newton steps on the exact Hessian from the given layer
    (never worse than it).

    The ridge is on the weights of the features scaled to [-1, 1], so the head is the same at any scale a hidden
    layer carries its features: a network whose last hidden layer is linear can carry them at 1e-3 with output
    weights of 1e3 (Levenberg-Marquardt found one on breast_cancer with --inputs select), and with the ridge on the
    raw weights its head was flattened to the class prior (62.9% test accuracy, the majority class)."""
    scale = feature_scales(h)
    weight, bias = _cross_entropy_head(h / scale, labels, weight * scale[:, None], bias, ridge)
    return weight / scale[:, None], bias


def _cross_entropy_head(h: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                        ridge: float) -> tuple[np.ndarray, np.ndarray]:
    n, logits = len(h), weight.shape[1]
    h1 = np.hstack([h, np.ones((n, 1))])
    free = np.vstack([weight != 0.0, np.ones((1, logits), dtype=bool)]).ravel()  # (feature, logit) order
    decay = np.vstack([np.full(weight.shape, ridge), np.zeros((1, logits))]).ravel()[free]
    target = np.eye(2 if logits == 1 else logits)[labels]
    target = target[:, 1:] if logits == 1 else target

    def grid_of(theta: np.ndarray) -> np.ndarray:
        grid = np.zeros(h1.shape[1] * logits)
        grid[free] = theta
        return grid.reshape(h1.shape[1], logits)

    def loss(theta: np.ndarray) -> float:
        z = h1 @ grid_of(theta)
        p = class_probabilities(z)
        return float(-np.mean(np.log(np.clip(p[np.arange(n), labels], 1e-300, None)))
                     + 0.5 * np.sum(decay * theta ** 2))

    theta = np.vstack([weight, bias[None, :]]).ravel()[free]
    current = loss(theta)
    width = h1.shape[1]
    for _ in range(_NEWTON_STEPS):
        p, curvature = _class_probabilities_and_curvature(h1 @ grid_of(theta))
        grad = (h1.T @ (p - target)).ravel()[free] / n + decay * theta
        hess = np.zeros((width * width, logits * logits))
        for start in range(0, n, _HEAD_CHUNK_ROWS):
            rows = slice(start, start + _HEAD_CHUNK_ROWS)
            outer = (h1[rows, :, None] * h1[rows, None, :]).reshape(-1, width * width)
            hess += outer.T @ curvature[rows].reshape(-1, logits * logits)
        hess = hess.reshape(width, width, logits, logits).transpose(0, 2, 1, 3).reshape(width * logits, -1)
        hess = hess[np.ix_(free, free)] / n + np.diag(decay)
        theta, current, converged = _newton_update(theta, current, grad, hess, loss)
        if converged:
            break
    grid = grid_of(theta)
    return grid[:-1], grid[-1]


def to_classifier(model: SparseMLP, x: np.ndarray, labels: np.ndarray, classes: tuple[str, ...],
                  seed: int = 0) -> SparseMLP:
    """The indicator model `model` as a classifier outputting logits: its output layer refitted by cross-entropy
    on rows x (labels: class indices), from the logistic map of its outputs (output scaling folded in)."""
    rows = np.arange(len(x))
    if len(rows) > CALIBRATION_MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).permutation(len(x))[:CALIBRATION_MAX_ROWS])
    labels = labels[rows].astype(int)
    a, c = _logistic_map(forward(model, x[rows]), labels)
    # outputs f = (h W + b) S + O  =>  logits = a f + c = h (a W * S) + (a (b S + O) + c)
    out = model.output
    weight, bias = cross_entropy_head(hidden_activations(model, x[rows]), labels,
                                      a * out.weight * model.output_scale[None, :],
                                      a * (out.bias * model.output_scale + model.output_offset) + c)
    names = (f"logit {classes[1]}",) if len(classes) == 2 else tuple(f"logit {name}" for name in classes)
    provenance = {**model.provenance, "classifier": "least-squares indicators, cross-entropy output layer"}
    return model.replace(output=Layer.make(weight, bias, "identity"), output_scale=np.ones(len(bias)),
                         output_offset=np.zeros(len(bias)), target_names=names, classes=classes,
                         provenance=provenance)


@dataclass(frozen=True)
class ClassFigures:
    """A classifier on one split: accuracy, balanced accuracy (mean recall), log-loss, F1 per class and the
    confusion matrix (rows: true class, columns: predicted)."""

    rows: int
    accuracy: float
    balanced_accuracy: float
    log_loss: float
    f1: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]

    def to_dict(self, classes: tuple[str, ...]) -> dict[str, Any]:
        return {"rows": self.rows, "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
                "log_loss": self.log_loss, "f1": dict(zip(classes, self.f1)),
                "confusion": {"classes": list(classes), "rows_true_columns_predicted": [list(r) for r in self.confusion]}}


def class_figures(model: SparseMLP, x: np.ndarray, labels: np.ndarray) -> ClassFigures:
    """The classifier's figures on rows x with true class indices `labels`."""
    k = len(model.classes)
    labels = np.asarray(labels).astype(int)
    p = class_probabilities(forward(model, x))
    predicted = np.argmax(p, axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support, claimed, hits = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    recall = np.where(support > 0, hits / np.maximum(support, 1), np.nan)
    precision = np.where(claimed > 0, hits / np.maximum(claimed, 1), 0.0)
    f1 = np.where(precision + np.nan_to_num(recall) > 0,
                  2 * precision * np.nan_to_num(recall) / np.maximum(precision + np.nan_to_num(recall), 1e-300), 0.0)
    p_true = np.clip(p[np.arange(len(labels)), labels], 1e-15, 1.0)
    return ClassFigures(rows=len(labels), accuracy=float(np.mean(predicted == labels)),
                        balanced_accuracy=float(np.nanmean(recall)), log_loss=float(-np.mean(np.log(p_true))),
                        f1=tuple(float(v) for v in f1), confusion=tuple(tuple(int(v) for v in r) for r in confusion))
