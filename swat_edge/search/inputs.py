"""The input stage: a data set with more features than the embedding's networks take (n > k = max_inputs) is
searched on k derived inputs z = x A + c, and every network is then expanded back to the n raw features by
folding A and c into its first layer, exactly, so the exported model takes the data's columns.

Two ways to derive z (SearchSettings.inputs):
- "select": greedy forward selection of k features, each step adding the feature whose cubic terms and products
  with the features already chosen most reduce a least-squares fit's residual (so a feature that acts only
  through an interaction still counts). A is a column selection: the first layer's weights on the other
  features are zero, which the C export emits as no code at all.
- "project": k partial-least-squares directions of the standardised features (linear combinations that explain
  the target best). A is dense; fine-tuning then trains the whole n-wide first layer, i.e. the projection.
Numpy only (no torch): pure functions over arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import minmax_scaling
from ..model import Layer, SparseMLP

__all__ = ["INPUT_METHODS", "InputStage", "select_features", "project_features", "input_stage", "stage_score",
           "best_stage", "expand_inputs"]

INPUT_METHODS = ("select", "project")
# Rows the stage is fitted on at most (a seeded subsample of the training rows beyond it): the ranking is stable
# long before, and greedy selection fits n x k small least-squares problems.
STAGE_MAX_ROWS = 5000


@dataclass(frozen=True)
class InputStage:
    """z = x @ matrix + shift maps raw rows x (n features) to the k inputs the search sees, named `names`."""

    method: str
    matrix: np.ndarray  # (n, k)
    shift: np.ndarray  # (k,)
    names: tuple[str, ...]
    description: str  # one line for the user: what was kept or how z was made

    def z(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.matrix + self.shift


def _standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x standardised on its rows, mean, std); a constant column gets std inf, so it standardises to 0."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, np.inf)
    return (x - mean) / std, mean, std


def _subsample(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= STAGE_MAX_ROWS:
        return x, y
    rows = np.sort(np.random.default_rng(seed).permutation(len(x))[:STAGE_MAX_ROWS])
    return x[rows], y[rows]


# Candidate features scored together in select_features: each block holds rows x (3 + k) terms per feature
# (at 5,000 rows and k = 8, 64 features are ~25 MB of float64).
SELECT_BLOCK = 64


def _orthonormal_basis(design: np.ndarray) -> np.ndarray:
    """An orthonormal basis of design's column space (columns that add nothing beyond rounding dropped)."""
    u, s, _ = np.linalg.svd(design, full_matrices=False)
    return u[:, s > s[0] * 1e-10 * max(design.shape)] if len(s) else u


def _residual_sums(basis: np.ndarray, residual: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """For each candidate c, the residual sum of squares of y regressed on the design and terms[c] (rows x m),
    given an orthonormal basis of the design and y's residual on it: whatever of terms[c] the design does not
    already span explains what it can of the residual, through the small normal equations of those parts (one
    batched m x m eigendecomposition for all candidates instead of a least-squares solve per candidate)."""
    inside = np.matmul(basis.T, terms)  # (c, basis, m): the parts the design spans
    transposed = terms.transpose(0, 2, 1)
    own = np.matmul(transposed, terms)
    gram = own - np.matmul(inside.transpose(0, 2, 1), inside)
    moments = np.matmul(transposed, residual)  # the residual is orthogonal to the design already
    values, vectors = np.linalg.eigh(gram)
    # a direction counts if it is more than rounding of the candidate's own terms (a feature the design already
    # spans, e.g. a copy of a chosen one, explains nothing, and its Gram matrix is rounding of ~1e-16 x scale)
    scale = np.max(np.diagonal(own, axis1=1, axis2=2), axis=1)
    counts = values > 1e-12 * scale[:, None]
    along = np.matmul(vectors.transpose(0, 2, 1), moments)  # (c, m, outputs)
    explained = np.sum(np.where(counts[:, :, None], along ** 2 / np.where(counts, values, 1.0)[:, :, None], 0.0),
                       axis=(1, 2))
    return float(np.sum(residual ** 2)) - explained


def _terms(z: np.ndarray, candidates: list[int], chosen: list[int]) -> np.ndarray:
    """(candidates, rows, 3 + len(chosen)): each candidate's cubic terms and products with the chosen features."""
    zc = z[:, candidates].T[:, :, None]
    return np.concatenate([zc, zc ** 2, zc ** 3, *(zc * z[None, :, s:s + 1] for s in chosen)], axis=2)


def select_features(x: np.ndarray, y: np.ndarray, k: int, names: tuple[str, ...], seed: int = 0) -> InputStage:
    """Greedy forward selection of k features (see the module docstring); y is (rows, outputs)."""
    x, y = _subsample(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), seed)
    z, _, std = _standardised(x)
    y = (y - y.mean(axis=0)) / np.where(y.std(axis=0) > 0, y.std(axis=0), 1.0)
    usable = [j for j in range(x.shape[1]) if np.isfinite(std[j])]
    chosen: list[int] = []
    design = np.ones((len(z), 1))
    while len(chosen) < min(k, len(usable)):
        basis = _orthonormal_basis(design)
        residual = y - basis @ (basis.T @ y)
        candidates = [j for j in usable if j not in chosen]
        sums = np.concatenate([_residual_sums(basis, residual, _terms(z, candidates[at:at + SELECT_BLOCK], chosen))
                               for at in range(0, len(candidates), SELECT_BLOCK)])
        best = int(np.argmin(sums))  # ties: the earlier feature
        zj = z[:, candidates[best]:candidates[best] + 1]
        design = np.hstack([design, zj, zj ** 2, zj ** 3, *(zj * z[:, s:s + 1] for s in chosen)])
        chosen.append(candidates[best])
    chosen = chosen or [0]
    matrix = np.zeros((x.shape[1], len(chosen)))
    matrix[chosen, np.arange(len(chosen))] = 1.0
    kept = tuple(names[j] for j in chosen)
    return InputStage("select", matrix, np.zeros(len(chosen)), kept,
                      f"forward selection kept {len(chosen)} of {x.shape[1]} features: {', '.join(kept)}")


def project_features(x: np.ndarray, y: np.ndarray, k: int, names: tuple[str, ...], seed: int = 0) -> InputStage:
    """k partial-least-squares directions (NIPALS, PLS2) of the standardised features; z = x_std @ R, the
    rotation R giving the scores of the original (not deflated) features."""
    x, y = _subsample(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), seed)
    z, mean, std = _standardised(x)
    x_res = z.copy()
    y_res = y - y.mean(axis=0)
    weights, loadings = [], []
    for _ in range(min(k, np.linalg.matrix_rank(z))):
        # the dominant left singular vector of X^T Y is the PLS weight (one step of NIPALS at convergence)
        u, _, _ = np.linalg.svd(x_res.T @ y_res, full_matrices=False)
        w = u[:, 0]
        w = w * np.sign(w[np.argmax(np.abs(w))])  # a sign convention, so the result is deterministic
        t = x_res @ w
        tt = float(t @ t)
        if tt <= 1e-12:
            break
        p = x_res.T @ t / tt
        x_res = x_res - np.outer(t, p)
        y_res = y_res - np.outer(t, y_res.T @ t / tt)
        weights.append(w)
        loadings.append(p)
    w_mat, p_mat = np.array(weights).T, np.array(loadings).T
    rotation = w_mat @ np.linalg.pinv(p_mat.T @ w_mat)
    matrix = rotation / std[:, None]  # on raw x: inf std (constant columns) gives zero rows
    shift = -(mean / std) @ rotation
    count = matrix.shape[1]
    return InputStage("project", matrix, shift, tuple(f"pls{i + 1}" for i in range(count)),
                      f"{count} partial-least-squares directions of all {x.shape[1]} features")


def input_stage(method: str, x: np.ndarray, y: np.ndarray, k: int, names: tuple[str, ...],
                seed: int = 0) -> InputStage:
    """The stage `method` ("select" or "project") fitted on training rows x, y."""
    if method == "select":
        return select_features(x, y, k, names, seed)
    if method == "project":
        return project_features(x, y, k, names, seed)
    raise ValueError(f"bug: input method {method!r}")


def _cubic_design(z: np.ndarray) -> np.ndarray:
    """A constant, each input's cubic terms and every product of two inputs."""
    k = z.shape[1]
    products = [z[:, i:i + 1] * z[:, j:j + 1] for i in range(k) for j in range(i + 1, k)]
    return np.hstack([np.ones((len(z), 1)), z, z ** 2, z ** 3, *products])


def stage_score(stage: InputStage, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray) -> float:
    """How much of the target the stage's inputs carry, cheaply: the validation MSE of a least-squares fit of
    their cubic terms and pairwise products (on z scaled to [-1, 1] by the training rows)."""
    z_train, z_val = stage.z(x_train), stage.z(x_val)
    scale, offset = minmax_scaling(z_train)
    y_train = np.asarray(y_train, dtype=np.float64).reshape(len(z_train), -1)
    coef = np.linalg.lstsq(_cubic_design(z_train * scale + offset), y_train, rcond=None)[0]
    predicted = _cubic_design(z_val * scale + offset) @ coef
    return float(np.mean((predicted - np.asarray(y_val, dtype=np.float64).reshape(predicted.shape)) ** 2))


def best_stage(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, k: int,
               names: tuple[str, ...], seed: int = 0) -> tuple[InputStage, dict[str, float]]:
    """Both stages fitted on the training rows; the one whose inputs score the lower stage_score on the
    validation rows (ties: select, whose networks read fewer features), and every method's score. Selection wins
    where a few features carry the target (make_friedman1 with noise features), the projection where every
    feature carries a little of it (tanh(x w) over 200 features: 0.034 against 0.32)."""
    stages = {method: input_stage(method, x_train, y_train, k, names, seed) for method in INPUT_METHODS}
    scores = {method: stage_score(stage, x_train, y_train, x_val, y_val) for method, stage in stages.items()}
    chosen = min(INPUT_METHODS, key=lambda method: (scores[method], INPUT_METHODS.index(method)))
    return stages[chosen], scores


def expand_inputs(model: SparseMLP, stage: InputStage, *, input_scale: np.ndarray, input_offset: np.ndarray,
                  feature_names: tuple[str, ...], input_fill: np.ndarray | None = None) -> SparseMLP:
    """`model` (on the stage's k inputs z, with its own z scaling) as an equivalent model on the n raw features,
    whose scaling is x_n = x * input_scale + input_offset.

    With x = (x_n - o) / s (zero rows where s = 0), z * s_z + o_z = x_n @ (A' diag(s_z)) + (c' s_z + o_z),
    A' = diag(1/s) A, c' = c - (o/s) A; the first layer W, b becomes A' diag(s_z) W, b + (c' s_z + o_z) W.
    """
    scale = np.asarray(input_scale, dtype=np.float64)
    safe = np.where(scale != 0.0, scale, 1.0)
    a = np.where((scale != 0.0)[:, None], stage.matrix / safe[:, None], 0.0)
    c = stage.shift - (np.where(scale != 0.0, input_offset / safe, 0.0)) @ stage.matrix
    first = model.layers[0]
    weight = (a * model.input_scale[None, :]) @ first.weight
    bias = first.bias + (c * model.input_scale + model.input_offset) @ first.weight
    weight[np.abs(weight) < 1e-300] = 0.0
    new_first = Layer.make(weight, bias, first.activations, first.mask)
    layers = [new_first, *model.layers[1:]]
    return model.replace(hidden=tuple(layers[:-1]), output=layers[-1], input_scale=scale,
                         input_offset=np.asarray(input_offset, dtype=np.float64), feature_names=feature_names,
                         input_fill=input_fill, calibration=None)
