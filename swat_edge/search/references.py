"""The candidates from outside the latent space: the least-squares linear model and the dense reference networks
the target calls for (reference_shapes). They put on the front what a straight line and a plain dense network buy
on the target, and they do not depend on the latent search, so run.py fits them while the search runs.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..device.targets import TargetProfile
from ..model import Layer, SparseMLP, random_model
from .inputs import expand_inputs
from .latent import Snapshot
from .problem import PoolEntry, Problem, Trial, _calibration_rows, _within_budgets


LINEAR_DEPTH = 0  # a candidate's depth 0 is the linear model (no hidden layer), start -1: not from the search


def _reference_entry(problem: Problem, model: SparseMLP, depth: int, origin: str) -> PoolEntry | None:
    """A network from outside the latent space as a pool entry (None when it does not meet the budgets)."""
    exact = _within_budgets(problem, model)
    if exact is None:
        return None
    return PoolEntry(score=math.inf, snapshot=_reference_snapshot(depth), model=model, exact=exact, projected=False,
                     origin=origin)


def _reference_snapshot(depth: int) -> Snapshot:
    """The placeholder snapshot of a network from outside the latent space (start -1)."""
    return Snapshot(depth=depth, start=-1, step=0, val_mse=math.nan, score=math.inf, latent=np.zeros(0),
                    threshold=0.0, assessment=None, violation=0.0)


def _provenance(problem: Problem, depth: int, fit: str) -> dict[str, Any]:
    return {"generator": "swat-edge search", "target": problem.target.name, "seed": problem.settings.seed,
            "depth": depth, "fit": fit}


def _least_squares_line(problem: Problem, x: np.ndarray, y: np.ndarray) -> SparseMLP:
    """The linear model (no hidden layer) fitted by least squares to raw rows x, y."""
    fields = problem.model_fields
    x_n = x * fields["input_scale"] + fields["input_offset"]
    y_n = (y - fields["output_offset"]) / fields["output_scale"]
    coef = np.linalg.lstsq(np.hstack([x_n, np.ones((len(x_n), 1))]), y_n, rcond=None)[0]
    return SparseMLP.make([], Layer.make(coef[:-1], coef[-1], "identity"),
                          provenance=_provenance(problem, LINEAR_DEPTH, "least squares"),
                          calibration=_calibration_rows(problem), **fields)


def _linear_entry(problem: Problem) -> PoolEntry | None:
    """The least-squares linear model as a candidate, so the search never ends worse than a straight line on
    validation."""
    model = _least_squares_line(problem, problem.x_train, problem.y_train)
    return _reference_entry(problem, model, LINEAR_DEPTH, "linear")


# A target whose tanh costs at least this many times its cheapest piecewise-linear activation (generated C on an
# MCU: libm tanhf is ~160 cycles against ~4 for a ReLU, the price of ~35 multiply-adds) is activation-bound:
# there a tanh network of the largest width misses the small latency budgets, so its dense references add the
# cheap activation and a half-width tanh layer (on 8 CORNN tasks under a 9.6 us cortex-m4 budget the best dense
# network was a 2-4-1 tanh on 4, a ReLU network on the others), and networks of the cheap activation whose last
# hidden layer is half tanh (MIXED_TANH_SHARE): smooth where the output is formed, at a few tanh's price, which a
# sweep of one activation per network does not have (cortex-m4, 18 CORNN tasks searched with their median latency
# budget: the answer on 12, its test MSE 0.01-0.94x on 11, worse on none; README, step 3).
CHEAP_ACTIVATION_RATIO = 4.0
MIXED_TANH_SHARE = 0.5


def mixed_activation(cheap: str) -> str:
    """The name of a reference shape of the cheap activation whose last hidden layer is part tanh."""
    return f"{cheap}+tanh"


def reference_shapes(target: TargetProfile, max_width: int, depths: Iterable[int]) -> tuple[tuple[int, int, str], ...]:
    """The search's dense references on this target as (depth, width, activation): tanh at the largest width
    for each depth; on an activation-bound target also the cheapest of relu / leaky_relu at each depth, that
    activation with a part-tanh last hidden layer at each depth (mixed_activation) and a one-layer tanh of half the
    width."""
    depths = tuple(depths)
    shapes = [(depth, max_width, "tanh") for depth in depths]
    cheapest = min(("relu", "leaky_relu"), key=lambda a: (getattr(target.cost, f"{a}_ns"), a))
    if target.cost.tanh_ns >= CHEAP_ACTIVATION_RATIO * getattr(target.cost, f"{cheapest}_ns"):
        shapes += [(depth, max_width, cheapest) for depth in depths]
        shapes += [(depth, max_width, mixed_activation(cheapest)) for depth in depths]
        if max_width >= 2 and 1 in depths:
            shapes.append((1, max_width // 2, "tanh"))
    return tuple(shapes)


def references_read_every_feature(problem: Problem) -> bool:
    """Whether the dense references take every feature of the data (True) or, like the searched networks, the
    input stage's derived inputs: beyond SearchSettings.dense_reference_max_first_weights weights in their first
    layer Levenberg-Marquardt's cost (the square of the parameters per iteration) would dwarf the search."""
    family = getattr(problem.embedding, "module", problem.embedding).config.family
    return (problem.stage is None
            or problem.n_inputs * family.max_width <= problem.settings.dense_reference_max_first_weights)


def first_layer_reads(problem: Problem) -> int:
    """How many inputs the first layer of the search's widest network reads once expanded to the data's features:
    all of them for a dense reference that takes every feature or a projected stage (a dense first layer that
    fine-tuning trains), the stage's inputs for a selected one."""
    if problem.stage is None or references_read_every_feature(problem) or problem.stage.method == "project":
        return problem.n_inputs
    return problem.latent_inputs


def largest_network_params(problem: Problem) -> int:
    """Free parameters of the search's largest network (the family's deepest and widest, dense, first_layer_reads
    inputs): what decides whether Levenberg-Marquardt can fit the search's networks (SearchSettings.fitter_for)."""
    family = getattr(problem.embedding, "module", problem.embedding).config.family
    width, depth = family.max_width, max(family.max_depth, *problem.settings.dense_reference_depths)
    first = first_layer_reads(problem) * width
    if first > problem.settings.fit.max_first_layer_weights:
        first = width * width  # LM trains it within the span of its columns (FitSettings.max_first_layer_weights)
    return first + width + (depth - 1) * (width * width + width) + (width + 1) * problem.y_train.shape[1]


def reference_network(widths: tuple[int, ...], activation: str, seed: int) -> SparseMLP:
    """A seeded random dense network of a reference shape (inputs, hidden..., outputs) and activation as
    reference_shapes names it: one for every neuron, or mixed_activation's (the first MIXED_TANH_SHARE of the last
    hidden layer's neurons tanh)."""
    body, _, head = activation.partition("+")
    network = random_model(widths, activations=body, per_layer=True, seed=seed, normalization=False)
    if not head:
        return network
    last = network.hidden[-1]
    heads = max(1, round(MIXED_TANH_SHARE * last.n_out))
    activations = tuple(head if i < heads else body for i in range(last.n_out))
    return network.replace(hidden=(*network.hidden[:-1], Layer.make(last.weight, last.bias, activations, last.mask)))


def _dense_start(problem: Problem, depth: int, width: int, activation: str, restart: int) -> SparseMLP:
    """A seeded dense start of the shape, scaled and labelled as the search's reference: on every feature, or on
    the input stage's inputs and expanded to every feature (references_read_every_feature)."""
    every = references_read_every_feature(problem)
    n_in = problem.n_inputs if every else problem.latent_inputs
    start = reference_network((n_in, *([width] * depth), problem.y_train.shape[1]), activation,
                              seed=problem.settings.seed + restart)
    fields = problem.model_fields
    if not every:
        start = expand_inputs(start.replace(**problem.stage_fields), problem.stage,
                              input_scale=fields["input_scale"], input_offset=fields["input_offset"],
                              feature_names=fields["feature_names"], input_fill=fields["input_fill"])
    return start.replace(provenance=_provenance(problem, depth, "dense reference"),
                         calibration=_calibration_rows(problem), **fields)


def _widest_within_budgets(problem: Problem, depth: int, width: int, activation: str) -> int | None:
    """The largest width <= `width` at which the dense shape meets the budgets (None: not even width 1).
    Without budgets that is `width`; with them a user who names a budget gets the widest dense network of each
    reference depth that fits, not none (a 2-8-1 tanh, 23 us on cortex-m4, misses a 9.6 us budget that a 2-2-1
    tanh, 7.1 us, meets)."""
    if not problem.budgets.any:
        return width
    for narrower in range(width, 0, -1):
        if _within_budgets(problem, _dense_start(problem, depth, narrower, activation, 0)) is not None:
            return narrower
    return None


def _dense_entries(problem: Problem, family: Any, starts: int) -> list[PoolEntry]:
    """The target's dense references (reference_shapes, each narrowed to the widest that meets the budgets),
    each from `starts` seeded starts, in shape order."""
    entries, shapes = [], []
    for depth, width, activation in reference_shapes(problem.target, family.max_width,
                                                     problem.settings.dense_reference_depths):
        fitting = _widest_within_budgets(problem, depth, width, activation)
        if fitting is None or (depth, fitting, activation) in shapes:
            continue  # nothing of this depth fits, or a wider shape narrowed to one already there
        shapes.append((depth, fitting, activation))
        for restart in range(starts):
            entry = _reference_entry(problem, _dense_start(problem, depth, fitting, activation, restart), depth,
                                     "dense")
            if entry is not None:
                entries.append(entry)
    return entries


def _reference_shape(entry: PoolEntry) -> tuple[int, int, str]:
    """A dense reference's (depth, width, activation), as reference_shapes names it."""
    kinds = {a for layer in entry.model.hidden for a in layer.activations}
    activation = kinds.pop() if len(kinds) == 1 else mixed_activation(*(kinds - {"tanh"}))
    return entry.snapshot.depth, entry.model.hidden[0].n_out, activation


def _best_restarts(trials: list[Trial]) -> list[Trial]:
    """One trial per dense reference shape: the restart with the best validation MSE (the others
    are dropped, so the front is not crowded with restarts of one network)."""
    best: dict[tuple[int, int, str], Trial] = {}
    for trial in (t for t in trials if t.entry.origin == "dense"):
        shape = _reference_shape(trial.entry)
        if shape not in best or trial.val_mse < best[shape].val_mse:
            best[shape] = trial
    return [t for t in trials if t.entry.origin != "dense" or best[_reference_shape(t.entry)] is t]


def _reference_pool(problem: Problem, starts: int) -> list[PoolEntry]:
    """The candidates from outside the latent space (the linear model, then the dense references from `starts`
    starts each): they do not depend on the latent search, so they can be fitted while it runs."""
    linear = _linear_entry(problem)
    family = getattr(problem.embedding, "module", problem.embedding).config.family
    return ([linear] if linear is not None else []) + _dense_entries(problem, family, starts)


def reference_groups(references: list[PoolEntry]) -> list[list[PoolEntry]]:
    """The reference pool as the units fitted together: the linear model alone, each dense shape's starts."""
    groups: list[list[PoolEntry]] = []
    for entry in references:
        same = (groups and entry.origin == "dense" and groups[-1][0].origin == "dense"
                and _reference_shape(groups[-1][0]) == _reference_shape(entry))
        if same:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    return groups
