"""Neuron resampling of the chosen network (search/polish.py): which neuron is least useful, what a redraw changes
(and what it must not: the structure the target prices), and a polish that is never worse than its start, is
seeded, and finds a lower minimum where Levenberg-Marquardt stalls."""
from __future__ import annotations

import numpy as np

from swat_edge.model import Layer, forward, random_model
from swat_edge.search.fit import FitSettings, fit_levenberg_marquardt
from swat_edge.search.polish import neuron_usefulness, polish, resample_neuron


def _with_output_weights(model, column: np.ndarray):
    return model.replace(output=Layer.make(column[:, None], model.output.bias, "identity"))


def test_the_least_useful_neuron_is_the_one_the_output_barely_reads():
    model = random_model((2, 4, 1), activations="tanh", per_layer=True, seed=0, normalization=False)
    model = _with_output_weights(model, np.array([1.0, 1e-4, -2.0, 0.5]))
    off = model.hidden[0].mask.copy()
    x = np.random.default_rng(0).uniform(-1, 1, (200, 2))
    y = forward(model, x)
    ranked = neuron_usefulness(model, x, y)
    assert [(layer, neuron) for _, layer, neuron in ranked][:1] == [(0, 1)]
    assert [r[0] for r in ranked] == sorted(r[0] for r in ranked) and ranked[0][0] >= 0.0
    off[2] = False  # a gated-off neuron is not a candidate
    gated = model.replace(hidden=(Layer(model.hidden[0].weight, model.hidden[0].bias, model.hidden[0].activations,
                                        off),))
    assert (0, 2) not in {(layer, neuron) for _, layer, neuron in neuron_usefulness(gated, x, y)}


def test_a_redraw_changes_one_neuron_and_keeps_the_structure():
    model = random_model((3, 5, 4, 2), sparsity=0.3, dead_fraction=0.2, seed=4, normalization=False)
    layer = 0
    neuron = int(np.flatnonzero(model.hidden[0].mask & np.any(model.hidden[0].weight != 0, axis=0))[0])
    redrawn = resample_neuron(model, layer, neuron, np.random.default_rng(1))
    for before, after in zip(model.layers, redrawn.layers):
        np.testing.assert_array_equal(before.weight != 0.0, after.weight != 0.0)  # the zero pattern
        np.testing.assert_array_equal(before.mask, after.mask)
        assert before.activations == after.activations
    changed = [np.argwhere(b.weight != a.weight) for b, a in zip(model.layers, redrawn.layers)]
    assert set(changed[0][:, 1]) == {neuron}  # its incoming column only
    assert set(changed[1][:, 0]) <= {neuron}  # its outgoing row only
    assert np.all(np.abs(redrawn.hidden[1].weight[neuron]) < 1e-2)  # it starts nearly silent
    assert all(np.array_equal(b.weight, a.weight) for b, a in zip(model.layers[2:], redrawn.layers[2:]))


def _stalled_fit():
    """A 1-8-1 tanh fitted by LM to a wavy function from a start whose fit stalls above the teacher's level."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 1))
    y = np.sin(4 * x) + 0.5 * np.cos(7 * x)
    x_val = rng.uniform(-1, 1, (100, 1))
    y_val = np.sin(4 * x_val) + 0.5 * np.cos(7 * x_val)
    settings = FitSettings(max_iterations=150, patience=20)
    start = random_model((1, 8, 1), activations="tanh", per_layer=True, seed=2, normalization=False)

    def refit(starts):
        fitted = [fit_levenberg_marquardt(m, x, y, x_val=x_val, y_val=y_val, settings=settings) for m in starts]
        return [(f.model, f.val_mse, f) for f in fitted]

    first = refit([start])[0]
    return first, refit, x, y


def test_polishing_is_never_worse_seeded_and_finds_a_lower_minimum():
    (model, val, _), refit, x, y = _stalled_fit()
    calls = []

    def counting(starts):
        calls.append(len(starts))
        return refit(starts)

    result = polish(model, val, counting, x, y, rounds=6, seed=0)
    again = polish(model, val, refit, x, y, rounds=6, seed=0)
    assert calls == [1] * 6 and result.rounds == 6
    assert result.val_mse < 0.5 * val and result.accepted >= 1 and result.fitted is not None
    assert result.fitted.model is result.model
    np.testing.assert_array_equal(forward(result.model, x), forward(again.model, x))  # seeded
    calls.clear()
    wide = polish(model, val, counting, x, y, rounds=3, seed=0, width=2)  # two different neurons per round
    assert calls == [2] * 3 and wide.val_mse < val


def test_a_refit_is_kept_only_when_it_lowers_the_validation_mse():
    model = random_model((2, 3, 1), activations="tanh", per_layer=True, seed=0, normalization=False)
    x = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    y = forward(model, x)
    vals = iter([2.0, 0.5, 0.7, 0.4, 0.9])

    def refit(starts):
        return [(start, next(vals), start) for start in starts]

    result = polish(model, 1.0, refit, x, y, rounds=5, seed=3)
    assert result.val_mse == 0.4 and result.accepted == 2
    unchanged = polish(model, 0.1, lambda starts: [(s, 1.0, s) for s in starts], x, y, rounds=3, seed=3)
    assert unchanged.model is model and unchanged.fitted is None and unchanged.accepted == 0
    # patience: two rounds in a row that keep nothing end it (the count starts again after a kept round)
    vals = iter([0.5, 0.7, 0.4, 0.9, 0.8, 0.1])
    impatient = polish(model, 1.0, refit, x, y, rounds=6, seed=3, patience=2)
    assert impatient.rounds == 5 and impatient.val_mse == 0.4 and impatient.accepted == 2
    line = random_model((2, 1), seed=0, normalization=False)  # no hidden neuron: nothing to redraw, no round run
    assert polish(line, 1.0, refit, x, y, rounds=3, seed=0).rounds == 0
    # the best of a round's refits is the one offered, and it is kept only below the network's figure
    pairs = iter([(3.0, 0.6), (0.8, 0.9), (0.2, 0.3)])

    def two(starts):
        return [(start, val, k) for k, (start, val) in enumerate(zip(starts, next(pairs)))]

    result = polish(model, 1.0, two, x, y, rounds=3, seed=3, width=2)
    assert result.val_mse == 0.2 and result.accepted == 2 and result.fitted == 0


def _trial(latency_us: float, val_mse: float, hidden: bool = True):
    from types import SimpleNamespace

    return SimpleNamespace(entry=SimpleNamespace(exact=SimpleNamespace(latency_us=(latency_us,))),
                           tuned=SimpleNamespace(hidden=(object(),) if hidden else ()), val_mse=val_mse)


def test_the_cheaper_networks_polished_are_the_best_within_budgets_spread_below_the_choice():
    from swat_edge.search.run import cheaper_to_polish

    # raspi4-like latencies: the layer count decides (1 layer 16.5 us, 2 layers 18.9 us, 3 layers 21.3 us)
    line = _trial(14.0, 1e-1, hidden=False)
    one_a, one_b = _trial(16.4, 2e-3), _trial(16.5, 1e-3)
    two_a, two_b = _trial(18.8, 5e-4), _trial(18.9, 4e-4)
    chosen, rival = _trial(21.3, 1e-4), _trial(21.2, 1.5e-4)
    trials = [line, one_a, one_b, two_a, two_b, rival, chosen]
    # log-spaced budgets between 16.4 (the cheapest with a hidden layer) and 21.3: 17.8 and 19.5 us
    assert cheaper_to_polish(trials, chosen, 2) == [two_b, one_b]
    assert cheaper_to_polish(trials, chosen, 1) == [one_b]  # one budget, at 18.7 us: no 2-layer network meets it
    assert cheaper_to_polish(trials, chosen, 0) == []
    assert cheaper_to_polish(trials, line, 2) == []  # a chosen line: nothing is cheaper with a hidden layer
    # the same network is the best within two budgets: polished once
    assert cheaper_to_polish([one_b, _trial(19.0, 1e-2), chosen], chosen, 2) == [one_b]
