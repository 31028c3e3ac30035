"""Pruning a fitted network weight by weight where the target charges every non-zero weight (generated C: each is
a multiply-add and 4 bytes): remove the least salient share of its weights, refit, and go on while validation
stays within a limit (for the chosen network: what the choice still takes as near the best); each refit is a
cheaper point of the trade-off.

Saliency is Optimal Brain Damage's (LeCun, Denker & Solla 1990): 1/2 H_ii w_i^2 with H the Gauss-Newton matrix of
the network's output, the loss a weight's removal costs to second order at a minimum. The refit starts from the
pruned weights with the zero pattern frozen (the fitter never frees a zero weight), so each round only moves the
weights that remain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import numpy as np

from ..model import Layer, SparseMLP
from .fit import weight_curvature

__all__ = ["Pruned", "prune", "prune_weights", "saliency"]

Fitted = TypeVar("Fitted")

_CURVATURE_ROWS = 4096  # rows the saliency is measured on (a seeded sample beyond): a Jacobian of rows x weights


def saliency(model: SparseMLP, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per layer (hidden..., output), each weight's Optimal Brain Damage saliency on rows x (0 for zero weights
    and weights into gated-off neurons)."""
    if len(x) > _CURVATURE_ROWS:
        x = x[np.sort(np.random.default_rng(0).permutation(len(x))[:_CURVATURE_ROWS])]
    return tuple(0.5 * curvature * layer.weight**2
                 for curvature, layer in zip(weight_curvature(model, x), model.layers))


def prune_weights(model: SparseMLP, scores: tuple[np.ndarray, ...], share: float) -> SparseMLP:
    """The network with ceil(share x its free weights) of them, the lowest scores first (ties: earlier layer,
    then row-major order), set to zero; every layer keeps at least one free weight."""
    layers = model.layers
    free = [_free(layer) for layer in layers]
    ranked = sorted((float(score[i, j]), index, int(i), int(j))
                    for index, (score, is_free) in enumerate(zip(scores, free))
                    for i, j in zip(*np.nonzero(is_free)))
    remaining = [int(is_free.sum()) for is_free in free]
    target = math.ceil(share * len(ranked))
    weights = [layer.weight.copy() for layer in layers]
    removed = 0
    for _, index, i, j in ranked:
        if removed >= target:
            break
        if remaining[index] > 1:
            weights[index][i, j] = 0.0
            remaining[index] -= 1
            removed += 1
    pruned = [Layer(weight=w, bias=layer.bias, activations=layer.activations, mask=layer.mask)
              for w, layer in zip(weights, layers)]
    return model.replace(hidden=tuple(pruned[:-1]), output=pruned[-1])


@dataclass(frozen=True)
class Pruned(Generic[Fitted]):
    model: SparseMLP  # refitted
    start: SparseMLP  # as pruned, before the refit
    val_mse: float
    fitted: Fitted  # what refit returned with it
    within: bool  # validation MSE within the network's limit: the chain went on from it


def prune(models: list[tuple[SparseMLP, float]],
          refit: Callable[[list[SparseMLP]], list[tuple[SparseMLP, float, Fitted]]],
          x_train: np.ndarray, *, rounds: int, share: float) -> list[list[Pruned[Fitted]]]:
    """For each (network, limit), `rounds` rounds of pruning: each removes a share of the free weights with the
    lowest saliency on x_train (prune_weights), refits with refit(starts) -> [(model, validation MSE, anything the
    caller keeps)], and goes on from the refit while its validation MSE is at most the network's limit; a refit
    beyond it halves the share, and the next round prunes the last refit within the limit again (a quarter too
    much may be an eighth that is not). The networks' rounds are refitted side by side (one refit call per
    round). Returns each network's refits in order, those beyond the limit included (cheaper points of the
    trade-off). Deterministic: no draws."""
    chains: list[list[Pruned[Fitted]]] = [[] for _ in models]
    current = [model for model, _ in models]
    shares = [share] * len(models)
    live = [True] * len(models)
    for _ in range(rounds):
        starts, owners = [], []
        for k, model in enumerate(current):
            if not live[k]:
                continue
            start = prune_weights(model, saliency(model, x_train), shares[k])
            if _free_weights(start) == _free_weights(model):
                live[k] = False  # one weight per layer left
                continue
            starts.append(start)
            owners.append(k)
        if not starts:
            break
        for k, start, (fitted_model, val, extra) in zip(owners, starts, refit(starts)):
            within = val <= models[k][1]
            chains[k].append(Pruned(fitted_model, start, val, extra, within))
            if within:
                current[k] = fitted_model
            else:
                shares[k] /= 2.0
    return chains


def _free(layer: Layer) -> np.ndarray:
    """Which weights the fitter moves: non-zero, into an active neuron."""
    return (layer.weight != 0.0) & layer.mask[None, :]


def _free_weights(model: SparseMLP) -> int:
    return sum(int(_free(layer).sum()) for layer in model.layers)
