"""Second-order fitting of a masked network in weight space: Levenberg-Marquardt with the exact Jacobian and
variable projection of the linear output layer, stopped early on a validation split.

Networks in the family have at most a few hundred parameters, so the Jacobian (rows x parameters) is built by
one batched backward pass per output and J^T J is a small P x P matrix. Zero weights, gated-off neurons and
activations stay frozen (the search's structure); what moves is every non-zero weight and active bias.

Two phases share one iteration budget. First variable projection (Golub & Pereyra; Kaufman's Jacobian): for any
hidden stack the output layer's best weights are a least-squares solve, so LM moves only the hidden parameters and
the output layer is solved at every evaluation; then LM on every parameter from the best iterate, which goes on
where the projected problem stalls. Every accepted step is checked on the validation rows (the best iterate that
float32 reproduces is kept). numpy only (float64, one BLAS thread; J^T J of the larger networks in float32,
FitSettings.float32_gram_min_params): deterministic for the same inputs on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import InputError
from ..model import LEAKY_RELU_SLOPE, Layer, SparseMLP, apply_activation

__all__ = ["FitSettings", "FitResult", "fit_levenberg_marquardt", "weight_curvature"]


@dataclass(frozen=True)
class FitSettings:
    """How the second-order fit runs."""

    max_iterations: int = 300
    patience: int = 30  # accepted iterations without a better validation MSE before stopping
    variable_projection: bool = True
    # ridge on every free parameter, in the network's normalised space: keeps LM out of the valleys where hidden
    # features become collinear and output weights grow to 1e7-1e11 (such a network cannot run in float32)
    weight_decay: float = 1e-8
    # An iterate counts only if float32 arithmetic reproduces its float64 output within this (normalised
    # units): a quarter of the export check's 1e-5 x output scale, so the chosen network always exports.
    max_float32_error: float = 2.5e-6
    initial_damping: float = 1e-3  # Marquardt's lambda, relative to diag(J^T J)
    max_damping: float = 1e12  # beyond it no step reduces the loss: converged
    chunk_rows: int = 16384  # rows per Jacobian block (J^T J is accumulated, J itself is never whole)
    # J^T J in float32 (J built, projected and J^T r formed in float64) for networks with at least this many fitted
    # parameters; 0: always float64. The Gram matrix is only LM's model of the curvature: each step is still
    # accepted on the float64 loss and the gradient is exact, and single-precision syrk is 2.2x faster at 3,000 x
    # 168 (12 fits of 2-8-8-1 and 2-8-8-8-1 networks on 2 CORNN tasks: 1.8x faster in all, validation MSE ratio
    # geometric mean 0.88, within the scatter of local minima). Small networks keep float64: a 2-8-1 tanh (24
    # fitted parameters) that converges to 1e-8 in float64 stalled at 1e-4 with a float32 Gram (3 of 4 fits).
    float32_gram_min_params: int = 64
    # A first layer with more non-zero weights than this (a projected input stage over more than 64 features at
    # width 8) is trained within the span of its starting columns (_first_layer_basis): LM solves the square of
    # the free parameters per iteration, and a 200-8-8-8-1 tanh took 0.56 s an iteration against 0.02 s on
    # 2-8-8-8-1. For a projection folded into the first layer that span is the projection's directions.
    max_first_layer_weights: int = 512

    def check(self) -> "FitSettings":
        if (self.max_iterations < 0 or self.patience < 1 or self.weight_decay < 0 or self.chunk_rows < 1
                or self.float32_gram_min_params < 0):
            raise InputError(
                "fit settings need max_iterations >= 0, patience >= 1, weight_decay >= 0, chunk_rows >= 1 and "
                f"float32_gram_min_params >= 0, got {self.max_iterations}, {self.patience}, {self.weight_decay}, "
                f"{self.chunk_rows} and {self.float32_gram_min_params}"
            )
        return self


@dataclass(frozen=True)
class FitResult:
    """The best iterate on validation (training MSE when there is no validation split) and how it got there.
    MSE figures are on the raw target; history holds (iteration, validation MSE), iteration 0 included."""

    model: SparseMLP
    val_mse: float
    iterations: int
    history: tuple[tuple[int, float], ...]
    best_iteration: int = 0  # the iteration the returned model comes from (0: the start)


@dataclass(frozen=True)
class _Structure:
    """Which entries of each layer are free: (rows, cols) of non-zero weights into active neurons, active biases."""

    weight_rows: tuple[np.ndarray, ...]
    weight_cols: tuple[np.ndarray, ...]
    bias_cols: tuple[np.ndarray, ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(r) + len(b) for r, b in zip(self.weight_rows, self.bias_cols))


def _structure(layers: tuple[Layer, ...]) -> _Structure:
    rows, cols, biases = [], [], []
    for layer in layers:
        free = (layer.weight != 0.0) & layer.mask[None, :]
        r, c = np.nonzero(free)
        rows.append(r)
        cols.append(c)
        biases.append(np.flatnonzero(layer.mask))
    return _Structure(tuple(rows), tuple(cols), tuple(biases))


def _pack(layers: tuple[Layer, ...], structure: _Structure) -> np.ndarray:
    parts = []
    for layer, r, c, b in zip(layers, structure.weight_rows, structure.weight_cols, structure.bias_cols):
        parts += [layer.weight[r, c], layer.bias[b]]
    return np.concatenate(parts) if parts else np.zeros(0)


def _unpack(theta: np.ndarray, layers: tuple[Layer, ...], structure: _Structure) -> tuple[Layer, ...]:
    out, at = [], 0
    for layer, r, c, b in zip(layers, structure.weight_rows, structure.weight_cols, structure.bias_cols):
        weight = np.zeros_like(layer.weight)
        weight[r, c] = theta[at: at + len(r)]
        at += len(r)
        bias = np.where(layer.mask, layer.bias, 0.0)
        bias[b] = theta[at: at + len(b)]
        at += len(b)
        out.append(Layer(weight=weight, bias=bias, activations=layer.activations, mask=layer.mask))
    return tuple(out)


def _activation_slope(name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """d activation / dz, from the pre-activation z and the activation a (a masked neuron's slope is then masked)."""
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0.0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z >= 0.0, 1.0, LEAKY_RELU_SLOPE)
    if name == "tanh":
        return 1.0 - a * a
    if name == "sigmoid":
        return a * (1.0 - a)
    raise ValueError(f"bug: unknown activation {name!r}")


@dataclass(frozen=True)
class _Forward:
    """A forward pass through the hidden stack: every layer's input (x, h1, ..., h_last; masked neurons 0) and
    every hidden layer's pre-activation. The loss keeps it, so the Jacobian of an accepted step does not redo it."""

    inputs: list[np.ndarray]
    pre_activations: list[np.ndarray]


def _per_activation(layer: Layer, like: np.ndarray,
                    compute: Callable[[str, slice | np.ndarray], np.ndarray]) -> np.ndarray:
    """compute(name, columns) for each activation of the layer, assembled column by column (one call on every
    column when the layer has one activation, as most do: no gathers)."""
    names = set(layer.activations)
    if len(names) == 1:
        return compute(names.pop(), slice(None))
    out = np.empty_like(like)
    acts = np.asarray(layer.activations)
    for name in names:
        cols = acts == name
        out[:, cols] = compute(name, cols)
    return out


def _hidden_forward(hidden: tuple[Layer, ...], x: np.ndarray) -> _Forward:
    inputs, pre = [x], []
    h = x
    for layer in hidden:
        z = h @ layer.weight + layer.bias
        a = _per_activation(layer, z, lambda name, cols: apply_activation(name, z[:, cols]))
        h = a if layer.mask.all() else a * layer.mask
        inputs.append(h)
        pre.append(z)
    return _Forward(inputs, pre)


def _slopes(hidden: tuple[Layer, ...], forward: _Forward) -> list[np.ndarray]:
    """Every hidden layer's activation slopes at the forward pass (masked neurons 0)."""
    slopes = []
    for layer, z, a in zip(hidden, forward.pre_activations, forward.inputs[1:]):
        slope = _per_activation(layer, z, lambda name, cols: _activation_slope(name, z[:, cols], a[:, cols]))
        slopes.append(slope if layer.mask.all() else slope * layer.mask)
    return slopes


def _design(h_last: np.ndarray, output: Layer, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Output k's least-squares design: its free input columns of h_last and a ones column (the bias)."""
    rows = np.flatnonzero(output.weight[:, k] != 0.0)
    return np.hstack([h_last[:, rows], np.ones((len(h_last), 1))]), rows


def _solve_output(h_last: np.ndarray, y: np.ndarray, output: Layer, ridge: float) -> Layer:
    """The output layer's weights (its zero pattern kept) as a least-squares solve on the hidden stack; with
    ridge > 0 its weights (not the bias) are penalised by ridge * rows * |w|^2, as the loss is (weight decay)."""
    weight = np.zeros_like(output.weight)
    bias = np.zeros_like(output.bias)
    for k in range(output.n_out):
        design, rows = _design(h_last, output, k)
        if ridge > 0.0:
            gram = design.T @ design
            gram[np.arange(len(rows)), np.arange(len(rows))] += ridge * len(design)
            coef = np.linalg.solve(gram, design.T @ y[:, k])
        else:
            # min-norm exact solve: the reduced loss is then exactly the minimum over the output layer, which
            # the projected Jacobian's gradient assumes (a tiny stabilising ridge broke that and stalled LM)
            coef = np.linalg.lstsq(design, y[:, k], rcond=None)[0]
        weight[rows, k] = coef[:-1]
        bias[k] = coef[-1]
    return Layer(weight=weight, bias=bias, activations=output.activations, mask=output.mask)


def _range_basis(design: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the design's column space, rank-revealing (as lstsq's min-norm solve sees it)."""
    u, sv, _ = np.linalg.svd(design, full_matrices=False)
    rank = int(np.sum(sv > sv[0] * max(design.shape) * np.finfo(float).eps)) if len(sv) and sv[0] > 0 else 0
    return u[:, :rank]


def _weight_columns(layer_input: np.ndarray, grad: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    out: np.ndarray) -> None:
    """Write d prediction / d weight[rows, cols] (layer input x gradient at the layer's output) into `out`."""
    n_in, n_out = layer_input.shape[1], grad.shape[1]
    if len(rows) == n_in * n_out:  # every weight free (dense layers): the row-major outer product, no gathers
        # in place (1.4x faster than a broadcast product and a copy): `out` is a block of whole rows' contiguous
        # columns, so the reshape that splits them is a view
        np.einsum("ni,nj->nij", layer_input, grad, out=out.reshape(len(grad), n_in, n_out))
    else:
        np.multiply(layer_input[:, rows], grad[:, cols], out=out)


def _jacobian_block(
    layers: tuple[Layer, ...], structure: _Structure, x: np.ndarray, n_fit: int, project: bool,
    forward: _Forward | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(J, prediction) for one block of rows. J stacks outputs row-wise: (rows * n_outputs, n_params), with the
    columns of the first `n_fit` layers only (all layers without projection, the hidden ones with it), in the
    order _pack lays the parameters out. With projection, each output's columns are projected off the span of its
    least-squares design (Kaufman). J is written in place, one block of columns per layer: it is the largest
    array of an iteration, and building it from pieces cost half of an LM iteration on a 177-parameter network.
    `forward`: the hidden stack's forward pass on x when the caller has it."""
    hidden, output = layers[:-1], layers[-1]
    forward = forward if forward is not None else _hidden_forward(hidden, x)
    inputs, slopes = forward.inputs, _slopes(hidden, forward)
    prediction = inputs[-1] @ output.weight + output.bias
    offsets = np.cumsum((0, *structure.sizes[:n_fit]))
    jac = np.empty((output.n_out * len(x), offsets[-1]))
    for k in range(output.n_out):
        block = jac[k * len(x): (k + 1) * len(x)]
        grad = np.zeros((len(x), output.n_out))
        grad[:, k] = 1.0
        for index in range(len(layers) - 1, -1, -1):
            layer = layers[index]
            if index < n_fit:
                r, c, b = structure.weight_rows[index], structure.weight_cols[index], structure.bias_cols[index]
                at = offsets[index]
                _weight_columns(inputs[index], grad, r, c, block[:, at: at + len(r)])
                block[:, at + len(r): offsets[index + 1]] = grad[:, b]
            if index > 0:
                grad = (grad @ layer.weight.T) * slopes[index - 1]
        if project:
            basis = _range_basis(_design(inputs[-1], output, k)[0])
            block -= basis @ (basis.T @ block)
    return jac, prediction


def _predict(layers: tuple[Layer, ...], x: np.ndarray) -> np.ndarray:
    last_hidden = _hidden_forward(layers[:-1], x).inputs[-1]
    return last_hidden @ layers[-1].weight + layers[-1].bias


class _Problem:
    """The fitting problem in the network's normalised space: parameters <-> layers, loss, normal equations."""

    def __init__(self, model: SparseMLP, x: np.ndarray, y: np.ndarray, settings: FitSettings, *,
                 project: bool) -> None:
        self.model = model
        self.settings = settings
        self.x = x
        self.y = y
        self.layers = model.layers
        self.structure = _structure(self.layers)
        self.project = project and bool(model.hidden)
        self.n_fit = len(self.layers) - 1 if self.project else len(self.layers)
        self.n_params = sum(self.structure.sizes[: self.n_fit])
        self.fitted_structure = _Structure(*(f[: self.n_fit] for f in (
            self.structure.weight_rows, self.structure.weight_cols, self.structure.bias_cols)))
        low = 0 < settings.float32_gram_min_params <= self.n_params
        self.gram_dtype = np.float32 if low else np.float64

    def _layers_and_forward(self, theta: np.ndarray) -> tuple[tuple[Layer, ...], _Forward]:
        """The layers for theta (the output layer solved with projection) and the hidden stack's forward pass."""
        fitted = _unpack(theta, self.layers[: self.n_fit], self.fitted_structure)
        hidden = fitted[:-1] if not self.project else fitted
        forward = _hidden_forward(hidden, self.x)
        if not self.project:
            return fitted, forward
        output = _solve_output(forward.inputs[-1], self.y, self.layers[-1], self.settings.weight_decay)
        return (*fitted, output), forward

    def layers_for(self, theta: np.ndarray) -> tuple[Layer, ...]:
        return self._layers_and_forward(theta)[0]

    def initial(self) -> np.ndarray:
        return _pack(self.layers, self.structure)[: self.n_params]

    def loss(self, theta: np.ndarray) -> tuple[float, tuple[Layer, ...], _Forward]:
        """(loss, layers, forward pass on the training rows) at theta."""
        layers, forward = self._layers_and_forward(theta)  # one forward pass for both
        residual = forward.inputs[-1] @ layers[-1].weight + layers[-1].bias - self.y
        penalty = self.settings.weight_decay * float(theta @ theta)
        if self.project:
            penalty += self.settings.weight_decay * float(np.sum(layers[-1].weight ** 2))
        return float(np.mean(residual**2)) + penalty, layers, forward

    def normal_equations(self, layers: tuple[Layer, ...], theta: np.ndarray,
                         forward: _Forward | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(J^T J, J^T r) over all rows, both scaled by 1/rows, plus the weight-decay terms. `forward`: loss's
        forward pass at theta, reused when the rows fit in one Jacobian block."""
        gram = np.zeros((self.n_params, self.n_params))
        grad = np.zeros(self.n_params)
        step = self.settings.chunk_rows
        for start in range(0, len(self.x), step):
            x, y = self.x[start: start + step], self.y[start: start + step]
            whole = forward if len(x) == len(self.x) else None
            jac, prediction = _jacobian_block(layers, self.structure, x, self.n_fit, self.project, whole)
            residual = (prediction - y).T.reshape(-1)  # output-major, like the rows of jac
            low = jac.astype(self.gram_dtype, copy=False)
            gram += low.T @ low  # numpy's syrk (one triangle) for X.T @ X
            grad += jac.T @ residual
        n = len(self.x)
        decay = self.settings.weight_decay
        return gram / n + decay * np.eye(self.n_params), grad / n + decay * theta


def _damped_step(gram: np.ndarray, grad: np.ndarray, damping: float) -> np.ndarray:
    scale = np.maximum(np.diag(gram), 1e-12 * max(float(np.max(np.diag(gram), initial=0.0)), 1e-30))
    system = gram + damping * np.diag(scale)
    try:
        return -np.linalg.solve(system, grad)
    except np.linalg.LinAlgError:
        return -np.linalg.lstsq(system, grad, rcond=None)[0]


def _validation_mse(model: SparseMLP, layers: tuple[Layer, ...], x_val_n: np.ndarray, y_val: np.ndarray) -> float:
    prediction = _predict(layers, x_val_n) * model.output_scale + model.output_offset
    return float(np.mean((prediction - y_val) ** 2))


def _float32_error(layers: tuple[Layer, ...], x: np.ndarray) -> float:
    """Largest gap between the network's output in float32 (weights and arithmetic) and in float64."""
    exact = _predict(layers, x)
    h = x.astype(np.float32)
    for layer in layers:
        z = h @ layer.weight.astype(np.float32) + layer.bias.astype(np.float32)
        a = _per_activation(layer, z, lambda name, cols: apply_activation(name, z[:, cols]).astype(np.float32))
        h = a * layer.mask
    return float(np.max(np.abs(h - exact), initial=0.0))


@dataclass
class _Tracker:
    """The best iterate on the check rows so far, and the validation history, across the fit's phases.
    Only iterates that float32 reproduces (FitSettings.max_float32_error on `x_float32`) can become the best."""

    model: SparseMLP
    x_check: np.ndarray
    y_check: np.ndarray
    x_float32: np.ndarray  # normalised rows: validation rows and rows a bit beyond the training range
    max_float32_error: float
    best_val: float
    best_layers: tuple[Layer, ...]
    history: list[tuple[int, float]]
    iteration: int = 0
    since_best: int = 0
    best_iteration: int = 0

    def offer(self, layers: tuple[Layer, ...]) -> None:
        val = _validation_mse(self.model, layers, self.x_check, self.y_check)
        self.history.append((self.iteration, val))
        if val < self.best_val and _float32_error(layers, self.x_float32) <= self.max_float32_error:
            self.best_val, self.best_layers, self.since_best, self.best_iteration = val, layers, 0, self.iteration
        else:
            self.since_best += 1


def _levenberg_marquardt(problem: _Problem, tracker: _Tracker, max_iterations: int) -> None:
    """LM from the problem's start until max_iterations (counted on the tracker), patience, or convergence."""
    settings = problem.settings
    theta = problem.initial()
    loss, layers, forward = problem.loss(theta)
    damping = settings.initial_damping
    while tracker.iteration < max_iterations and problem.n_params and tracker.since_best < settings.patience:
        gram, grad = problem.normal_equations(layers, theta, forward)
        accepted = False
        while damping <= settings.max_damping:
            trial = theta + _damped_step(gram, grad, damping)
            trial_loss, trial_layers, trial_forward = problem.loss(trial)
            if np.isfinite(trial_loss) and trial_loss < loss:
                theta, loss, layers, forward, accepted = trial, trial_loss, trial_layers, trial_forward, True
                damping = max(damping / 3.0, 1e-12)
                break
            damping *= 4.0
        if not accepted:
            return  # no step lowers the training loss: a (local) minimum of this phase
        tracker.iteration += 1
        tracker.offer(layers)


def fit_levenberg_marquardt(
    model: SparseMLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    settings: FitSettings = FitSettings(),
) -> FitResult:
    """Fit `model`'s free parameters (raw inputs and targets) by LM; keep the best iterate on validation.

    Two phases share one iteration budget: with variable projection, LM on the hidden parameters with the output
    layer solved exactly (fast descent; stalls in some valleys), then LM on every parameter from the best
    iterate (it continues where the projected problem stalls: on CORNN it took bohachevsky 2-5-5-1 from 1e-7 to
    1e-9). Every accepted step is checked on the validation rows; `patience` accepted steps without a better
    validation MSE end the fit. Without validation rows the training MSE decides.
    """
    settings.check()
    # One BLAS thread: at these sizes (J^T J of a few hundred parameters) OpenBLAS's threads only spin; measured
    # 34.5 s with 2 threads against 1.7 s with one for 100 iterations on a 2-vCPU machine under load.
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(model, x_train, y_train, x_val, y_val, settings)


def _normalised_inputs(model: SparseMLP, x: np.ndarray) -> np.ndarray:
    """Raw inputs in the network's normalised space, where its layers work."""
    return np.asarray(x, dtype=np.float64) * model.input_scale + model.input_offset


def weight_curvature(model: SparseMLP, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per layer (hidden..., output), the mean over rows x (raw inputs) and outputs of (d output / d weight)^2 for
    each free weight, 0 elsewhere: the diagonal of the Gauss-Newton matrix in the network's normalised units, what
    Optimal Brain Damage ranks weights by (saliency 1/2 H_ii w_i^2)."""
    x_n = _normalised_inputs(model, x)
    layers = model.layers
    structure = _structure(layers)
    with threadpool_limits(limits=1, user_api="blas"):
        jac, _ = _jacobian_block(layers, structure, x_n, len(layers), False)
    diagonal = np.mean(jac**2, axis=0)
    curvature, at = [], 0
    for layer, rows, cols, biases in zip(layers, structure.weight_rows, structure.weight_cols, structure.bias_cols):
        per_weight = np.zeros_like(layer.weight)
        per_weight[rows, cols] = diagonal[at: at + len(rows)]
        curvature.append(per_weight)
        at += len(rows) + len(biases)
    return tuple(curvature)


def _first_layer_basis(model: SparseMLP, max_weights: int) -> np.ndarray | None:
    """An orthonormal basis (inputs x q, q <= width) of the first layer's columns when it has more than
    max_weights non-zero weights, else None: W = B (B^T W) exactly, so fitting B^T W on the inputs x B fits W
    within that span with q x width parameters instead of inputs x width."""
    if not model.hidden or np.count_nonzero(model.hidden[0].weight) <= max_weights:
        return None
    u, singular, _ = np.linalg.svd(model.hidden[0].weight, full_matrices=False)
    return u[:, singular > singular[0] * 1e-12]


def _in_basis(layer: Layer, basis: np.ndarray) -> Layer:
    return Layer(weight=basis.T @ layer.weight, bias=layer.bias, activations=layer.activations, mask=layer.mask)


def _fit(model: SparseMLP, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None,
         y_val: np.ndarray | None, settings: FitSettings) -> FitResult:
    x_n = _normalised_inputs(model, x_train)
    y_n = (np.asarray(y_train, dtype=np.float64).reshape(len(x_n), -1) - model.output_offset) / model.output_scale
    if x_val is None or y_val is None:
        x_check, y_check = x_n, np.asarray(y_train, dtype=np.float64).reshape(len(x_n), -1)
    else:
        x_check = _normalised_inputs(model, x_val)
        y_check = np.asarray(y_val, dtype=np.float64).reshape(len(x_check), -1)
    beyond = np.random.default_rng(0).uniform(-1.5, 1.5, size=(256, model.n_inputs))  # as the export checks
    basis = _first_layer_basis(model, settings.max_first_layer_weights)
    work = model  # fitted on the inputs x B with the first layer B^T W; expanded back at the end
    if basis is not None:
        work = model.replace(hidden=(_in_basis(model.hidden[0], basis), *model.hidden[1:]))
        x_n, x_check, beyond = x_n @ basis, x_check @ basis, beyond @ basis
    start_val = _validation_mse(work, work.layers, x_check, y_check)
    tracker = _Tracker(work, x_check, y_check, np.vstack([x_check[:512], beyond]), settings.max_float32_error,
                       start_val, work.layers, [(0, start_val)])
    phases = (True, False) if settings.variable_projection and work.hidden else (False,)
    current = work
    for project in phases:
        problem = _Problem(current, x_n, y_n, settings, project=project)
        if project:
            tracker.offer(problem.loss(problem.initial())[1])  # the start with its least-squares output layer
        _levenberg_marquardt(problem, tracker, settings.max_iterations)
        tracker.since_best = 0  # the next phase gets its own patience
        current = work.replace(hidden=tuple(tracker.best_layers[:-1]), output=tracker.best_layers[-1])
    if basis is not None:
        first = current.hidden[0]
        expanded = Layer(weight=basis @ first.weight, bias=first.bias, activations=first.activations, mask=first.mask)
        current = model.replace(hidden=(expanded, *current.hidden[1:]), output=current.output)
    return FitResult(model=current, val_mse=tracker.best_val, iterations=tracker.iteration,
                     history=tuple(tracker.history), best_iteration=tracker.best_iteration)
