"""How a candidate is fitted and scored: fine-tuning on the training split, early-stopped on the validation split,
or below SearchSettings.cross_validation_below_rows k-fold cross-validation over the training file and a refit on
all of it. fit_candidate is the one fitter the search and the benchmarks' baselines share, so every network gets
the same care.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..model import SparseMLP, forward
from .classify import stratified_folds
from .fit import fit_levenberg_marquardt
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
    if settings.fitter_for(len(x_train)) == "lm":
        fitted = fit_levenberg_marquardt(model, x_train, y_train, x_val=x_val, y_val=y_val, settings=settings.fit)
        return fitted.model, fitted.history
    history: list[tuple[int, float]] = []
    tuned = fine_tune(model, x_train, y_train, x_val=x_val, y_val=y_val, steps=settings.finetune_steps,
                      lr=settings.finetune_lr, final_lr=settings.finetune_final_lr, seed=settings.seed,
                      batch_points=settings.finetune_batch_points, history=history,
                      check_every=settings.finetune_check_every)
    return tuned, tuple(history)


def _trial(problem: Problem, entry: PoolEntry, tuned: SparseMLP, val_scaled: float,
           history: tuple[tuple[int, float], ...], out_of_fold: np.ndarray | None = None) -> Trial:
    """A fitted pool entry with its objective score; history comes in raw units and is kept on the scaled target."""
    score = math.log(max(val_scaled / problem.to_scaled, 1e-30)) + _structure_terms(problem, entry.model, entry.exact)
    scale2 = float(np.mean(problem.prep.y_scale**2))
    return Trial(entry, score, tuned, val_scaled, tuple((step, val * scale2) for step, val in history), out_of_fold)


def _fine_tune_entry(problem: Problem, entry: PoolEntry) -> Trial:
    tuned, history = fit_candidate(entry.model, problem.x_train, problem.y_train, problem.x_val, problem.y_val,
                                   problem.settings)
    return _trial(problem, entry, tuned, _figures(tuned, problem.x_val, problem.y_val, problem.prep).mse, history)


def screens(settings: SearchSettings, train_rows: int, cross_validation_rows: int | None = None) -> bool:
    """Whether the dense references' starts are screened (SearchSettings.dense_reference_screened_starts): on the
    holdout split with Levenberg-Marquardt only."""
    return (settings.dense_reference_screened_starts > settings.dense_reference_restarts
            and cross_validation_rows is None and settings.fitter_for(train_rows) == "lm")


def fit_reference_group(problem: Problem, fit_entry: Callable[[PoolEntry], Trial], group: list[PoolEntry],
                        *, screen: bool) -> list[Trial]:
    """One reference group fitted: the first dense_reference_restarts starts with fit_entry, and, screening, of
    the other starts each fitted for dense_reference_screen_iterations first, the dense_reference_screened_best
    best on validation fitted on from there (ties: the earlier start)."""
    keep = problem.settings.dense_reference_restarts
    if not screen or len(group) <= keep:
        return [fit_entry(entry) for entry in group]
    short = replace(problem.settings.fit, max_iterations=problem.settings.dense_reference_screen_iterations)
    rest = group[keep:]
    screened = [fit_levenberg_marquardt(entry.model, problem.x_train, problem.y_train, x_val=problem.x_val,
                                        y_val=problem.y_val, settings=short) for entry in rest]
    ranked = sorted(range(len(rest)), key=lambda k: (screened[k].val_mse, k))
    best = ranked[:problem.settings.dense_reference_screened_best]
    return ([fit_entry(entry) for entry in group[:keep]]
            + [fit_entry(replace(rest[k], model=screened[k].model)) for k in sorted(best)])


def uses_cross_validation(settings: SearchSettings, rows: int) -> bool:
    """Whether a search over `rows` rows (training file) scores its candidates by cross-validation."""
    return rows < settings.cross_validation_below_rows and settings.fitter_for(rows) == "lm"


def _fold_count(rows: int, folds: int) -> int:
    return min(folds, rows)


def _folds(rows: int, folds: int, seed: int, strata: np.ndarray | None = None) -> list[np.ndarray]:
    """Cross-validation folds over the training file's rows: by class for a classifier, else at random."""
    if strata is not None:
        return stratified_folds(strata, _fold_count(rows, folds), seed)
    return np.array_split(np.random.default_rng(seed).permutation(rows), _fold_count(rows, folds))


def _cross_validated_entry(problem: Problem, entry: PoolEntry) -> Trial:
    """k-fold scores of one candidate (fitted from its start on each fold's complement, stopped on the fold),
    then the candidate refitted on all rows for the median best iteration count."""
    settings, prep = problem.settings, problem.prep
    x_all, y_all = problem.all_rows
    out_of_fold = np.empty_like(y_all)
    best_iterations, history, fold_models = [], (), []
    for held in _folds(len(x_all), settings.cross_validation_folds, settings.seed, problem.strata):
        kept = np.setdiff1d(np.arange(len(x_all)), held)
        # The line starts from its own fold's solution: its usual start was fitted on rows of this fold. (The
        # searched networks' starts come from the latent search on the training split: a mild optimism that
        # the dense references, from random starts, do not have.)
        start = _least_squares_line(problem, x_all[kept], y_all[kept]) if entry.origin == "linear" else entry.model
        fitted = fit_levenberg_marquardt(start, x_all[kept], y_all[kept], x_val=x_all[held],
                                         y_val=y_all[held], settings=settings.fit)
        out_of_fold[held] = forward(fitted.model, x_all[held])
        best_iterations.append(fitted.best_iteration)
        fold_models.append((fitted.val_mse, fitted.model))
        history = history or fitted.history
    iterations = int(np.median(best_iterations))
    start = _least_squares_line(problem, x_all, y_all) if entry.origin == "linear" else entry.model
    refit = fit_levenberg_marquardt(start, x_all, y_all, settings=replace(
        settings.fit, max_iterations=iterations, patience=iterations + 1)).model
    # A refit without a held-out stop can end where no fold did (measured: on diabetes a network whose every
    # refit iterate float32 could not reproduce stayed at its start, 5x the folds' MSE on all rows). Then the
    # fold model that did best on its held-out rows is deployed instead.
    best_fold = min(fold_models, key=lambda pair: pair[0])[1]
    if _figures(refit, x_all, y_all, prep).mse > _figures(best_fold, x_all, y_all, prep).mse:
        refit = best_fold
    return _trial(problem, entry, refit, _figures_of(out_of_fold, y_all, prep).mse, history, out_of_fold)
