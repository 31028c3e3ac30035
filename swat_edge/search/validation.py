"""How a candidate is fitted and scored: fine-tuning on the training split, early-stopped on the validation split,
or below SearchSettings.cross_validation_below_rows k-fold cross-validation over the training file and a refit on
all of it. fit_candidate is the one fitter the search and the benchmarks' baselines share, so every network gets
the same care.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..model import Layer, SparseMLP, forward
from .classify import stratified_folds
from .fit import FitResult, FitSettings, fit_levenberg_marquardt
from .latent import fine_tune
from .problem import PoolEntry, Problem, Trial, _figures, _figures_of, _structure_terms
from .references import _least_squares_line

if TYPE_CHECKING:
    from .run import SearchSettings


def fit_candidate(model: SparseMLP, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                  settings: SearchSettings) -> tuple[SparseMLP, tuple[tuple[int, float], ...]]:
    """One network fine-tuned as the search fine-tunes every candidate: the fitter `settings.fitter_for` picks for
    this many rows, early-stopped on (x_val, y_val), the best iterate kept. Returns the model and its (step,
    validation MSE in raw units) history. Baselines that must get the same care call this."""
    if settings.fitter_for() == "lm":
        fitted = _levenberg_marquardt(model, x_train, y_train, x_val, y_val, settings)
        return fitted.model, fitted.history
    history: list[tuple[int, float]] = []
    tuned = fine_tune(model, x_train, y_train, x_val=x_val, y_val=y_val, steps=settings.finetune_steps,
                      lr=settings.finetune_lr, final_lr=settings.finetune_final_lr, seed=settings.seed,
                      batch_points=settings.finetune_batch_points, history=history,
                      check_every=settings.finetune_check_every)
    return tuned, tuple(history)


def lm_rows(rows: int, settings: SearchSettings) -> np.ndarray | None:
    """Which of `rows` training rows Levenberg-Marquardt fits on (or validation rows it stops on): None (all of them)
    up to SearchSettings.lm_max_rows, beyond it that many drawn at random, the same for every network of a search
    (seeded by SearchSettings.seed), in file order."""
    if rows <= settings.lm_max_rows:
        return None
    return np.sort(np.random.default_rng(settings.seed).permutation(rows)[: settings.lm_max_rows])


def lm_sample(x: np.ndarray, y: np.ndarray, settings: SearchSettings) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) on lm_rows' rows: the arrays themselves when that is all of them."""
    rows = lm_rows(len(x), settings)
    return (x, y) if rows is None else (x[rows], y[rows])


def _levenberg_marquardt(model: SparseMLP, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                         y_val: np.ndarray, settings: SearchSettings, fit: FitSettings | None = None) -> FitResult:
    """Levenberg-Marquardt as every fit of the search runs it: on lm_sample's training rows, stopped on its
    validation rows, with settings.fit (or `fit`)."""
    (x_fit, y_fit), (x_check, y_check) = lm_sample(x_train, y_train, settings), lm_sample(x_val, y_val, settings)
    return fit_levenberg_marquardt(model, x_fit, y_fit, x_val=x_check, y_val=y_check,
                                   settings=settings.fit if fit is None else fit)


def _trial(problem: Problem, entry: PoolEntry, tuned: SparseMLP, val_scaled: float,
           history: tuple[tuple[int, float], ...], out_of_fold: np.ndarray | None = None) -> Trial:
    """A fitted pool entry with its objective score; history comes in raw units and is kept on the scaled target."""
    score = math.log(max(val_scaled / problem.to_scaled, 1e-30)) + _structure_terms(problem, entry.model, entry.exact)
    scale2 = float(np.mean(problem.prep.y_scale**2))
    return Trial(entry, score, tuned, val_scaled, tuple((step, val * scale2) for step, val in history), out_of_fold)


def fit_start(problem: Problem, start: SparseMLP) -> tuple[SparseMLP, float, tuple[tuple[int, float], ...]]:
    """One start fitted on the holdout split as every candidate is: (the model, its validation MSE on the scaled
    target, its history in raw units)."""
    tuned, history = fit_candidate(start, problem.x_train, problem.y_train, problem.x_val, problem.y_val,
                                   problem.settings)
    return tuned, _figures(tuned, problem.x_val, problem.y_val, problem.prep).mse, history


def _fine_tune_entry(problem: Problem, entry: PoolEntry) -> Trial:
    return _trial(problem, entry, *fit_start(problem, entry.model))


def screens(settings: SearchSettings, cross_validation_rows: int | None = None) -> bool:
    """Whether the dense references' starts are screened (SearchSettings.dense_reference_screened_starts): on the
    holdout split with Levenberg-Marquardt only."""
    return (settings.dense_reference_screened_starts > settings.dense_reference_screened_plain
            and cross_validation_rows is None and settings.fitter_for() == "lm")


def reference_pieces(problem: Problem, fit_entry: Callable[[PoolEntry], Trial], group: list[PoolEntry],
                     *, screen: bool) -> list[Callable[[], list[Trial]]]:
    """One reference group's fitting as independent pieces whose trials, concatenated in order, are the group's:
    each start fitted with fit_entry, or, screening, the first dense_reference_screened_plain of them, and the
    other starts as one piece: each fitted for dense_reference_screen_iterations first, the
    dense_reference_screened_best best on validation fitted on from there (ties: the earlier start). Small pieces
    let idle threads share the work."""
    keep = problem.settings.dense_reference_screened_plain
    plain = group if not screen or len(group) <= keep else group[:keep]
    pieces: list[Callable[[], list[Trial]]] = [functools.partial(_fitted, fit_entry, entry) for entry in plain]
    if len(plain) < len(group):
        pieces.append(functools.partial(_screened, problem, fit_entry, group[keep:]))
    return pieces


def _fitted(fit_entry: Callable[[PoolEntry], Trial], entry: PoolEntry) -> list[Trial]:
    return [fit_entry(entry)]


def _screened(problem: Problem, fit_entry: Callable[[PoolEntry], Trial], rest: list[PoolEntry]) -> list[Trial]:
    short = replace(problem.settings.fit, max_iterations=problem.settings.dense_reference_screen_iterations)
    screened = [_levenberg_marquardt(entry.model, problem.x_train, problem.y_train, problem.x_val, problem.y_val,
                                     problem.settings, short) for entry in rest]
    ranked = sorted(range(len(rest)), key=lambda k: (screened[k].val_mse, k))
    best = ranked[:problem.settings.dense_reference_screened_best]
    return [fit_entry(replace(rest[k], model=screened[k].model)) for k in sorted(best)]


def uses_cross_validation(settings: SearchSettings, rows: int) -> bool:
    """Whether a search over `rows` rows (training file) scores its candidates by cross-validation."""
    return rows < settings.cross_validation_below_rows and settings.fitter_for() == "lm"


def _fold_count(rows: int, folds: int) -> int:
    return min(folds, rows)


def _folds(rows: int, folds: int, seed: int, strata: np.ndarray | None = None) -> list[np.ndarray]:
    """Cross-validation folds over the training file's rows: by class for a classifier, else at random."""
    if strata is not None:
        return stratified_folds(strata, _fold_count(rows, folds), seed)
    return np.array_split(np.random.default_rng(seed).permutation(rows), _fold_count(rows, folds))


def _stopping_split(kept: np.ndarray, held: np.ndarray, settings: SearchSettings, fold: int,
                    strata: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, stop rows) of a fold's kept rows: the fold model stops early on rows of its own, so its held-out
    rows only score it (stopped on the held-out rows, the more flexible networks looked best out of fold and lost
    to a straight line on test). cross_validation_stop_fraction 0: stop on the held-out rows."""
    if settings.cross_validation_stop_fraction <= 0.0:
        return kept, held
    parts = max(2, round(1.0 / settings.cross_validation_stop_fraction))
    stop = _folds(len(kept), parts, settings.seed + 1 + fold, None if strata is None else strata[kept])[0]
    return np.delete(kept, stop), kept[stop]


@dataclass(frozen=True)
class CrossValidated:
    """One network scored by k-fold cross-validation and refitted on all rows."""

    model: SparseMLP  # the refit on all rows (or the best fold's model, see cross_validate)
    out_of_fold: np.ndarray  # each row's prediction by the fold model that held it out
    history: tuple[tuple[int, float], ...]  # the first fold's (step, MSE on its stopping rows, raw units)


def cross_validate(start: SparseMLP, x_all: np.ndarray, y_all: np.ndarray, settings: SearchSettings, *,
                   strata: np.ndarray | None = None, y_scale: np.ndarray | float = 1.0,
                   fold_start: Callable[[np.ndarray], SparseMLP] | None = None) -> CrossValidated:
    """k-fold scores of one network (fitted from `start`, or from fold_start(kept rows), on each fold's
    complement, stopped early on a share of it, _stopping_split), then refitted on all rows for the median best
    iteration count. The search scores its candidates with this below cross_validation_below_rows rows; a
    baseline that must get the same care calls it too. y_scale weighs the targets when the refit is compared with
    the fold models."""
    out_of_fold = np.empty_like(y_all)
    best_iterations, history, fold_models = [], (), []
    for fold, held in enumerate(_folds(len(x_all), settings.cross_validation_folds, settings.seed, strata)):
        kept = np.setdiff1d(np.arange(len(x_all)), held)
        fit_rows, stop_rows = _stopping_split(kept, held, settings, fold, strata)
        fitted = fit_levenberg_marquardt(start if fold_start is None else fold_start(kept), x_all[fit_rows],
                                         y_all[fit_rows], x_val=x_all[stop_rows], y_val=y_all[stop_rows],
                                         settings=settings.fit)
        out_of_fold[held] = forward(fitted.model, x_all[held])
        best_iterations.append(fitted.best_iteration)
        fold_models.append((float(np.mean(((out_of_fold[held] - y_all[held]) * y_scale) ** 2)), fitted.model))
        history = history or fitted.history
    iterations = int(np.median(best_iterations))
    refit_start = start if fold_start is None else fold_start(np.arange(len(x_all)))
    refit = fit_levenberg_marquardt(refit_start, x_all, y_all, settings=replace(
        settings.fit, max_iterations=iterations, patience=iterations + 1)).model
    # A refit without a held-out stop can end where no fold did (measured: on diabetes a network whose every
    # refit iterate float32 could not reproduce stayed at its start, 5x the folds' MSE on all rows). Then the
    # fold model that did best on its held-out rows is deployed instead.
    best_fold = min(fold_models, key=lambda pair: pair[0])[1]

    def weighted_mse(model: SparseMLP) -> float:
        return float(np.mean(((forward(model, x_all) - y_all) * y_scale) ** 2))

    if weighted_mse(refit) > weighted_mse(best_fold):
        refit = best_fold
    return CrossValidated(refit, out_of_fold, history)


def fresh_weights(model: SparseMLP, seed: int) -> SparseMLP:
    """The network's structure (zero pattern, gates, activations, scaling) with seeded random weights where its
    weights are non-zero: hidden weights N(0, 1/fan-in), biases as random_model draws them."""
    rng = np.random.default_rng(seed)
    layers = []
    for index, layer in enumerate(model.layers):
        free = layer.weight != 0.0
        fan_in = np.maximum(free.sum(axis=0), 1)
        weight = np.where(free, rng.normal(0.0, 1.0, layer.weight.shape) / np.sqrt(fan_in), 0.0)
        bias_spread = 0.1 if index == len(model.layers) - 1 else 0.5
        bias = np.where(layer.mask, rng.normal(0.0, bias_spread, layer.bias.shape), 0.0)
        layers.append(Layer(weight=weight, bias=bias, activations=layer.activations, mask=layer.mask))
    return model.replace(hidden=tuple(layers[:-1]), output=layers[-1])


def _cross_validated_entry(problem: Problem, entry: PoolEntry) -> Trial:
    """A candidate scored by cross_validate over the training file.

    The line starts from its own fold's solution: its usual start was fitted on rows of this fold. A searched
    network starts from fresh weights (fresh_weights): its decoded weights come from a latent search on the
    training split and were stopped on the validation split, so every fold's held-out rows shaped them. From
    them (cross_validation_fresh_weights=False, the stopping rows split off) a searched network was chosen on all
    5 splits of diabetes in benchmarks/small_data.py (331 rows; 10% better than the line out of fold on the
    first) at 0.97-1.16x the line's test MSE (median 1.11); from fresh weights the line was chosen on all 5.
    """
    x_all, y_all = problem.all_rows
    fold_start = ((lambda rows: _least_squares_line(problem, x_all[rows], y_all[rows]))
                  if entry.origin == "linear" else None)
    fresh = entry.origin == "search" and problem.settings.cross_validation_fresh_weights
    start = fresh_weights(entry.model, problem.settings.seed) if fresh else entry.model
    cv = cross_validate(start, x_all, y_all, problem.settings, strata=problem.strata,
                        y_scale=problem.prep.y_scale, fold_start=fold_start)
    return _trial(problem, entry, cv.model, _figures_of(cv.out_of_fold, y_all, problem.prep).mse, cv.history,
                  cv.out_of_fold)
