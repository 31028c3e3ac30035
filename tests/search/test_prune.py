"""Pruning by saliency (search/prune.py): Optimal Brain Damage's saliency against the output change it predicts,
which weights go, and when a chain of prune-and-refit rounds stops."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from swat_edge.model import Layer, forward, random_model
from swat_edge.search.prune import prune, prune_weights, saliency


def _free(model) -> int:
    return sum(int(((layer.weight != 0.0) & layer.mask[None, :]).sum()) for layer in model.layers)


def test_an_output_weights_saliency_is_half_the_mean_squared_change_its_removal_makes():
    # the output is linear in an output-layer weight, so OBD's second-order estimate is exact there
    model = random_model((3, 6, 5, 1), activations="tanh", per_layer=True, seed=2)
    x = np.random.default_rng(0).uniform(-1, 1, (300, 3))
    scores = saliency(model, x)
    assert [s.shape for s in scores] == [layer.weight.shape for layer in model.layers]
    output = model.output
    for i in np.flatnonzero(output.weight[:, 0]):
        weight = output.weight.copy()
        weight[i, 0] = 0.0
        changed = model.replace(output=dataclasses.replace(output, weight=weight))
        change = (forward(changed, x) - forward(model, x)) / model.output_scale  # in the network's units
        assert scores[-1][i, 0] == pytest.approx(0.5 * float(np.mean(change**2)), rel=1e-9)
    for score, layer in zip(scores, model.layers):  # zero weights score 0, free ones > 0
        assert np.all(score[layer.weight == 0.0] == 0.0) and np.all(score[layer.weight != 0.0] > 0.0)


def test_a_hidden_weights_saliency_predicts_its_removals_cost_for_a_small_weight():
    model = random_model((2, 4, 1), activations="tanh", per_layer=True, seed=5)
    hidden = model.hidden[0]
    weight = hidden.weight.copy()
    weight[0, 1] = 1e-3  # small: the second-order estimate is close
    model = model.replace(hidden=(Layer(weight=weight, bias=hidden.bias, activations=hidden.activations,
                                        mask=hidden.mask),))
    x = np.random.default_rng(1).uniform(-1, 1, (400, 2))
    weight[0, 1] = 0.0
    without = model.replace(hidden=(Layer(weight=weight, bias=hidden.bias, activations=hidden.activations,
                                          mask=hidden.mask),))
    change = (forward(without, x) - forward(model, x)) / model.output_scale
    assert saliency(model, x)[0][0, 1] == pytest.approx(0.5 * float(np.mean(change**2)), rel=1e-2)


def test_prune_weights_removes_the_lowest_share_and_leaves_every_layer_a_weight():
    model = random_model((3, 6, 5, 1), sparsity=0.2, seed=4)
    scores = tuple(np.abs(layer.weight) for layer in model.layers)  # any scores: magnitude here
    pruned = prune_weights(model, scores, 0.25)
    removed = _free(model) - _free(pruned)
    assert removed == int(np.ceil(0.25 * _free(model)))
    gone = [(abs(a.weight[i, j])) for a, b in zip(model.layers, pruned.layers)
            for i, j in zip(*np.nonzero((a.weight != 0) & (b.weight == 0)))]
    kept = [abs(b.weight[i, j]) for b in pruned.layers for i, j in zip(*np.nonzero(b.weight != 0))]
    assert max(gone) <= min(kept)  # the lowest scores went
    for a, b in zip(model.layers, pruned.layers):  # nothing else changed
        np.testing.assert_array_equal(b.weight[b.weight != 0], a.weight[b.weight != 0])
        np.testing.assert_array_equal(a.bias, b.bias)
    everything = prune_weights(model, scores, 0.99)
    assert all(int((layer.weight != 0).sum()) == 1 for layer in everything.layers)


def test_a_chain_goes_on_while_within_its_limit_and_halves_its_share_after_a_refit_beyond_it():
    model = random_model((2, 8, 8, 1), activations="tanh", per_layer=True, seed=3)
    assert _free(model) == 88
    x = np.random.default_rng(2).uniform(-1, 1, (200, 2))
    calls = []

    def refit(starts):  # a fake fitter: the validation MSE grows by 0.001 for every weight gone
        calls.append(len(starts))
        return [(start, 1.0 + 0.001 * (88 - _free(start)), f"history {_free(start)}") for start in starts]

    chains = prune([(model, 1.05), (model, 2.1)], refit, x, rounds=5, share=0.25)
    # 88 -> 66 -> 49 -> 36 (a quarter, rounded up, each round); 1.052 after the third round is beyond the limit
    # 1.05: that refit is kept as a point, and the chain prunes 49 again by an eighth (-> 42, 1.046, within), then
    # 42 by an eighth (-> 36, beyond again); the other is within its limit 2.1 throughout
    assert [[_free(step.model) for step in chain] for chain in chains] == [[66, 49, 36, 42, 36],
                                                                           [66, 49, 36, 27, 20]]
    assert [step.val_mse for step in chains[0]] == pytest.approx([1.022, 1.039, 1.052, 1.046, 1.052])
    assert [step.within for step in chains[0]] == [True, True, False, True, False]
    assert chains[1][-1].fitted == "history 20" and _free(chains[1][-1].start) == 20
    assert calls == [2, 2, 2, 2, 2]  # the chains' rounds refitted side by side
    assert prune([(model, 1.05)], refit, x, rounds=0, share=0.25) == [[]]
