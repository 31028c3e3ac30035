"""Polishing the chosen network by neuron resampling: redraw one of its least useful hidden neurons, refit, keep
the result when validation improves; a number of rounds, seeded.

Why: Levenberg-Marquardt fits of one architecture end in local minima orders of magnitude apart (the 12 starts of
an 8-8 tanh on CORNN's beale: 2.5e-6 to 2.4e-2 validation MSE), and more iterations move none of them. Random
restarts sample those minima blindly; from a good one, redrawing a neuron that carries little and refitting
reaches a nearby minimum that is often lower (the neuron that gets stuck in a poor minimum is usually one whose
contribution the others could absorb). The zero pattern, the gates and the activations stay as they are, so the
network costs the same on the target; only its weights change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import numpy as np

from ..model import Layer, SparseMLP, forward

__all__ = ["neuron_usefulness", "resample_neuron", "polish", "Polished"]

Fitted = TypeVar("Fitted")


def neuron_usefulness(model: SparseMLP, x: np.ndarray, y: np.ndarray) -> list[tuple[float, int, int]]:
    """(rise of the MSE on rows x, y when the neuron is gated off, hidden layer, neuron) for every active hidden
    neuron with a non-zero incoming weight, least useful first (ties: earlier layer, then neuron)."""
    base = float(np.mean((forward(model, x) - y) ** 2))
    ranked = []
    for index, layer in enumerate(model.hidden):
        for neuron in np.flatnonzero(layer.mask & np.any(layer.weight != 0.0, axis=0)):
            mask = layer.mask.copy()
            mask[neuron] = False
            hidden = list(model.hidden)
            hidden[index] = Layer(weight=layer.weight, bias=layer.bias, activations=layer.activations, mask=mask)
            rise = float(np.mean((forward(model.replace(hidden=tuple(hidden)), x) - y) ** 2)) - base
            ranked.append((rise, index, int(neuron)))
    return sorted(ranked)


def resample_neuron(model: SparseMLP, layer: int, neuron: int, rng: np.random.Generator) -> SparseMLP:
    """The network with hidden neuron `neuron` of hidden layer `layer` redrawn: its non-zero incoming weights
    N(0, 4 / fan-in) (twice random_model's spread: a new feature, not a copy of the old), its bias N(0, 0.5), its
    non-zero outgoing weights N(0, 1e-3^2) (it starts nearly silent; non-zero, so the fitter frees them)."""
    layers = [*model.hidden, model.output]
    own, after = layers[layer], layers[layer + 1]
    incoming = own.weight[:, neuron] != 0.0
    weight, bias = own.weight.copy(), own.bias.copy()
    weight[incoming, neuron] = rng.normal(0.0, 2.0 / np.sqrt(max(int(incoming.sum()), 1)), int(incoming.sum()))
    bias[neuron] = rng.normal(0.0, 0.5)
    outgoing = after.weight[neuron] != 0.0
    next_weight = after.weight.copy()
    next_weight[neuron, outgoing] = rng.normal(0.0, 1e-3, int(outgoing.sum()))
    layers[layer] = Layer(weight=weight, bias=bias, activations=own.activations, mask=own.mask)
    layers[layer + 1] = Layer(weight=next_weight, bias=after.bias, activations=after.activations, mask=after.mask)
    return model.replace(hidden=tuple(layers[:-1]), output=layers[-1])


@dataclass(frozen=True)
class Polished(Generic[Fitted]):
    model: SparseMLP
    val_mse: float
    fitted: Fitted | None  # what refit returned with the kept network (None: no round improved on the start)
    accepted: int  # rounds that improved the validation MSE
    rounds: int  # rounds run


def polish(model: SparseMLP, val_mse: float,
           refit: Callable[[list[SparseMLP]], list[tuple[SparseMLP, float, Fitted]]],
           x_train: np.ndarray, y_train: np.ndarray, *, rounds: int, seed: int, among: int = 3,
           width: int = 1, patience: int | None = None) -> Polished[Fitted]:
    """Up to `rounds` rounds of neuron resampling from `model` (validation MSE val_mse), stopping after `patience`
    rounds in a row that kept nothing (None: never). Each round redraws `width` different neurons among the `among`
    least useful on the training rows (chosen at random), one per start, refits the starts with refit(starts) ->
    [(model, validation MSE, anything the caller keeps)] (side by side if the caller can), and keeps the best
    refit when its validation MSE is lower than the network's. Seeded, and the draws do not depend on how refit
    runs the starts: the same inputs give the same network."""
    rng = np.random.default_rng(seed)
    accepted, kept, since_kept, done = 0, None, 0, 0
    ranked = neuron_usefulness(model, x_train, y_train)[:max(among, width)]  # again only when the network changes
    while done < rounds:
        if not ranked:
            break  # no hidden neuron to redraw (the linear model)
        picks = rng.choice(len(ranked), size=min(width, len(ranked)), replace=False)
        starts = [resample_neuron(model, ranked[k][1], ranked[k][2], rng) for k in picks]
        fitted, fitted_val, extra = min(refit(starts), key=lambda result: result[1])  # ties: the first start
        done += 1
        if fitted_val < val_mse:
            model, val_mse, kept, accepted, since_kept = fitted, fitted_val, extra, accepted + 1, 0
            ranked = neuron_usefulness(model, x_train, y_train)[:max(among, width)]
        else:
            since_kept += 1
            if patience is not None and since_kept >= patience:
                break
    return Polished(model, val_mse, kept, accepted, done)
