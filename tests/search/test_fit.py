"""The second-order fitter: exact Jacobian (finite differences as the oracle), least squares on a linear model,
frozen structure, a teacher network recovered, early stopping, determinism."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from swat_edge.model import Layer, forward, random_model
from swat_edge.search import fit as fit_module
from swat_edge.search.fit import FitSettings, fit_levenberg_marquardt
from swat_edge.search.references import reference_network


def _data(model, rows: int, seed: int, noise: float = 0.0):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(-1, 1, (rows, model.n_inputs)) - model.input_offset) / model.input_scale
    y = forward(model, x)
    return x, y + noise * rng.normal(size=y.shape) * y.std(axis=0)


@pytest.mark.parametrize("project", [False, True])
@pytest.mark.parametrize("sparsity", [0.3, 0.0])  # 0.0: every weight free, the dense layers' outer-product path
def test_jacobian_matches_finite_differences(project: bool, sparsity: float) -> None:
    dead = 0.2 if sparsity else 0.0
    model = random_model((3, 5, 4, 2), sparsity=sparsity, dead_fraction=dead, seed=3)  # mixed activations, 2 outputs
    x = np.random.default_rng(0).uniform(-1, 1, (9, 3))
    structure = fit_module._structure(model.layers)
    n_fit = len(model.layers) - 1 if project else len(model.layers)
    sub = fit_module._Structure(*(f[:n_fit] for f in (structure.weight_rows, structure.weight_cols,
                                                      structure.bias_cols)))
    jac, prediction = fit_module._jacobian_block(model.layers, structure, x, n_fit, False)
    theta = fit_module._pack(model.layers, structure)[: sum(structure.sizes[:n_fit])]
    numeric = []
    for i in range(len(theta)):
        shifted = theta.copy()
        shifted[i] += 1e-7
        layers = (*fit_module._unpack(shifted, model.layers[:n_fit], sub), *model.layers[n_fit:])
        numeric.append(((fit_module._predict(layers, x) - prediction) / 1e-7).T.reshape(-1))
    assert jac.shape == (9 * 2, len(theta))
    np.testing.assert_allclose(jac, np.array(numeric).T, atol=2e-5)


def test_a_linear_model_gets_the_least_squares_solution() -> None:
    model = random_model((3, 1), seed=2)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)) * 5.0 + 2.0
    y = x @ np.array([[1.5], [-2.0], [0.3]]) + 4.0 + rng.normal(size=(200, 1))
    fitted = fit_levenberg_marquardt(model, x, y, settings=FitSettings(weight_decay=0.0)).model
    design = np.hstack([x, np.ones((200, 1))])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(forward(fitted, x), design @ coef, rtol=1e-7, atol=1e-7)


def test_structure_stays_frozen() -> None:
    model = random_model((3, 6, 5, 1), sparsity=0.4, dead_fraction=0.3, seed=5)
    x, y = _data(random_model((3, 6, 5, 1), seed=9), 300, seed=0)
    fitted = fit_levenberg_marquardt(model, x, y, settings=FitSettings(max_iterations=20)).model
    for before, after in zip(model.layers, fitted.layers):
        assert np.all(after.weight[before.weight == 0.0] == 0.0)  # a pruned weight never comes back
        assert before.activations == after.activations and np.array_equal(before.mask, after.mask)
    assert not np.allclose(fitted.hidden[0].weight, model.hidden[0].weight)  # and the free ones did move


@pytest.mark.parametrize("gram_min_params", [0, 1])  # 1: J^T J in float32, as for every larger network
@pytest.mark.parametrize("project", [False, True])
def test_recovers_a_teacher_network(project: bool, gram_min_params: int) -> None:
    teacher = random_model((2, 5, 5, 1), activations="tanh", per_layer=True, seed=7)
    x, y = _data(teacher, 600, seed=1)
    x_val, y_val = _data(teacher, 200, seed=2)
    rng = np.random.default_rng(3)
    start = teacher.replace(hidden=tuple(dataclasses.replace(layer, weight=layer.weight + 0.1 * rng.normal(
        size=layer.weight.shape)) for layer in teacher.hidden))
    settings = FitSettings(variable_projection=project, max_iterations=200, weight_decay=0.0,
                           float32_gram_min_params=gram_min_params)
    result = fit_levenberg_marquardt(start, x, y, x_val=x_val, y_val=y_val, settings=settings)
    start_mse = float(np.mean((forward(start, x_val) - y_val) ** 2))
    assert result.val_mse < 1e-6 * start_mse  # a first-order optimiser gets nowhere near this in 200 steps
    assert result.val_mse == pytest.approx(float(np.mean((forward(result.model, x_val) - y_val) ** 2)), rel=1e-9)


@pytest.mark.parametrize("project", [False, True])
def test_larger_networks_get_a_float32_gram_and_an_exact_gradient(project: bool) -> None:
    # J^T J is LM's curvature model only: in float32 for networks of float32_gram_min_params or more, while the
    # gradient J^T r (what the minimum is) stays float64
    x = np.random.default_rng(0).uniform(-1, 1, (500, 2))
    y = np.sin(3 * x[:, :1]) * x[:, 1:]
    for widths, expected in (((2, 8, 8, 1), np.float32), ((2, 8, 1), np.float64)):
        model = random_model(widths, activations="tanh", per_layer=True, seed=1, normalization=False)
        problem = fit_module._Problem(model, x, y, FitSettings(), project=project)
        reference = fit_module._Problem(model, x, y, FitSettings(float32_gram_min_params=0), project=project)
        assert problem.n_params >= 64 if expected is np.float32 else problem.n_params < 64
        assert problem.gram_dtype is expected and reference.gram_dtype is np.float64
        theta = problem.initial()
        gram, grad = problem.normal_equations(problem.layers_for(theta), theta)
        exact_gram, exact_grad = reference.normal_equations(reference.layers_for(theta), theta)
        np.testing.assert_array_equal(grad, exact_grad)
        scale = np.sqrt(np.outer(np.diag(exact_gram), np.diag(exact_gram)))
        assert np.max(np.abs(gram - exact_gram) / scale) < 1e-6
        assert np.array_equal(gram, exact_gram) == (expected is np.float64)


@pytest.mark.parametrize("project", [False, True])
def test_the_normal_equations_from_the_losss_forward_pass_are_those_of_a_fresh_one(project: bool) -> None:
    # LM builds the Jacobian of an accepted step from the forward pass its loss made; with a gated-off neuron
    # and a layer of two activations (masks and per-column slopes), and several outputs
    x = np.random.default_rng(3).uniform(-1, 1, (300, 2))
    y = np.hstack([np.sin(3 * x[:, :1]) * x[:, 1:], np.cos(2 * x[:, 1:])])
    model = reference_network((2, 6, 6, 2), "relu+tanh", seed=2)
    last = model.hidden[1]  # a neuron gated off where gradients flow through it to the first layer
    gated = Layer(weight=last.weight, bias=last.bias, activations=last.activations,
                  mask=np.array([True, True, False, True, True, True]))
    model = model.replace(hidden=(model.hidden[0], gated))
    problem = fit_module._Problem(model, x, y, FitSettings(), project=project)
    theta = problem.initial() * 1.1
    _, layers, forward_pass = problem.loss(theta)
    reused = problem.normal_equations(layers, theta, forward_pass)
    fresh = problem.normal_equations(layers, theta)
    for a, b in zip(reused, fresh):
        np.testing.assert_array_equal(a, b)
    if not project:  # and J^T r is the loss's gradient (the loss: a mean over rows and both outputs)
        decay = problem.settings.weight_decay * theta
        expected = (reused[1] - decay) + 2.0 * decay
        for i in range(0, len(theta), 7):
            step = np.zeros_like(theta)
            step[i] = 1e-6
            slope = (problem.loss(theta + step)[0] - problem.loss(theta - step)[0]) / 2e-6
            assert slope == pytest.approx(expected[i], rel=1e-5, abs=1e-9)


def test_keeps_the_best_validation_iterate() -> None:
    teacher = random_model((2, 6, 6, 1), activations="tanh", per_layer=True, seed=4)
    x, y = _data(teacher, 40, seed=1, noise=0.5)  # few noisy rows: the fit overfits
    x_val, y_val = _data(teacher, 200, seed=2, noise=0.5)
    result = fit_levenberg_marquardt(random_model((2, 6, 6, 1), activations="tanh", per_layer=True, seed=8), x, y,
                                     x_val=x_val, y_val=y_val,
                                     settings=FitSettings(patience=1000, max_float32_error=float("inf")))
    vals = [v for _, v in result.history]
    assert result.val_mse == min(vals) and vals[-1] > min(vals)  # it went past the best and came back


def test_the_chosen_iterate_runs_in_float32() -> None:
    # Without weight decay LM walks into valleys where output weights reach 1e11 and float32 cannot reproduce the
    # network (the export check then fails); the guard keeps only iterates float32 reproduces.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(800, 2))
    y = ((x[:, 0] ** 2 + x[:, 1] - 1.1) ** 2 + (x[:, 0] + x[:, 1] ** 2 - 0.7) ** 2)[:, None]
    start = random_model((2, 8, 8, 1), activations="tanh", per_layer=True, seed=0, normalization=False)
    beyond = np.random.default_rng(0).uniform(-1.5, 1.5, size=(256, 2))
    errors = {}
    for guard in (float("inf"), 2.5e-6):
        settings = FitSettings(weight_decay=0.0, max_float32_error=guard)
        result = fit_levenberg_marquardt(start, x[:600], y[:600], x_val=x[600:], y_val=y[600:], settings=settings)
        errors[guard] = fit_module._float32_error(result.model.layers, beyond)
    assert errors[float("inf")] > 1e-3  # the hazard is real
    assert errors[2.5e-6] <= 2.5e-6


def test_is_deterministic() -> None:
    model = random_model((3, 6, 5, 1), sparsity=0.2, seed=5)
    x, y = _data(random_model((3, 6, 5, 1), seed=9), 300, seed=0)
    a = fit_levenberg_marquardt(model, x, y, settings=FitSettings(max_iterations=15)).model
    b = fit_levenberg_marquardt(model, x, y, settings=FitSettings(max_iterations=15)).model
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.bias, lb.bias)


def test_a_wide_first_layer_is_fitted_within_the_span_of_its_starting_columns() -> None:
    # A teacher on 40 inputs whose first layer reads 4 directions of them; the start has the teacher's directions
    # with wrong weights inside that span. Beyond max_first_layer_weights LM fits 4 x 4 first-layer weights instead
    # of 40 x 4, stays in the span, and still recovers the teacher.
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(40, 4)))[0]
    teacher = random_model((40, 4, 1), activations="tanh", per_layer=True, seed=5)
    first = dataclasses.replace(teacher.hidden[0], weight=directions @ rng.normal(size=(4, 4)) * 3.0)
    teacher = teacher.replace(hidden=(first,))
    x, y = _data(teacher, 800, seed=1)
    x_val, y_val = _data(teacher, 200, seed=2)
    start = teacher.replace(hidden=(dataclasses.replace(first, weight=directions @ rng.normal(size=(4, 4))),))
    settings = FitSettings(max_iterations=200, weight_decay=0.0, max_first_layer_weights=100)
    result = fit_levenberg_marquardt(start, x, y, x_val=x_val, y_val=y_val, settings=settings)
    start_mse = float(np.mean((forward(start, x_val) - y_val) ** 2))
    assert result.val_mse < 1e-6 * start_mse
    assert result.val_mse == pytest.approx(float(np.mean((forward(result.model, x_val) - y_val) ** 2)), rel=1e-6)
    fitted = result.model.hidden[0].weight
    np.testing.assert_allclose(directions @ (directions.T @ fitted), fitted, atol=1e-9)  # within the span
    assert result.model.n_inputs == 40 and result.model.widths == start.widths
    # under the limit the whole 40 x 4 layer is free and leaves the span
    free = fit_levenberg_marquardt(start, x + 0.0, y + 0.01 * rng.normal(size=y.shape), x_val=x_val, y_val=y_val,
                                   settings=dataclasses.replace(settings, max_first_layer_weights=1024))
    outside = free.model.hidden[0].weight - directions @ (directions.T @ free.model.hidden[0].weight)
    assert np.abs(outside).max() > 1e-6
