"""`swat-edge search` on the torch side: check, split and scale the data, search latents, gather candidates
(searched networks, the linear model, dense references), fine-tune them, choose budget-first, and report the front.

Protocol (SWAT-NN's, reference/method.md): inputs and target are scaled to [-1, 1] with the *training* rows'
min and max; MSE figures are on that scaled target (comparable with the paper's CORNN numbers); the search
itself standardises the target and every scaling is folded into the returned model exactly. A validation split
of the training file decides everything (the best iterate of each start, the candidates, the fine-tuning stop,
the choice); below SearchSettings.cross_validation_below_rows rows, k-fold cross-validation over the training
file scores the candidates instead. A test file, when given, is only evaluated.

This module is the orchestration and the result types; what one search shares is in problem.py, the linear and
dense reference candidates in references.py, fitting and cross-validation in validation.py. Their public names
are re-exported here, where the CLI, the benchmarks and the tests import them.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from ..data import Dataset
from ..device.cost import Estimate, affine_nodes, estimate
from ..device.targets import TargetProfile
from ..errors import InputError, UsageError
from ..model import Layer, SparseMLP, forward, model_stats
from .fit import FitSettings
from .classify import ClassFigures, class_figures, indicator_dataset, to_classifier
from .inputs import INPUT_METHODS
from .latent import LatentRun, LatentSettings, Snapshot, optimise_latents
from .objective import Budgets, ObjectiveWeights
from .polish import polish
from .prune import prune
from .problem import (
    MIN_TRAIN_ROWS,
    MIN_VALIDATION_ROWS,
    Figures,
    PoolEntry,
    Problem,
    Trial,
    _assess,
    _build,
    _estimate,
    _figures,
    _figures_of,
    _prepare_problem,
    _structure_terms,
    _within_budgets,
    split_and_scale,
)
from .references import (LINEAR_DEPTH, _best_restarts, _least_squares_line, _reference_pool, _reference_shape,
                         _reference_snapshot, largest_network_params, reference_groups, reference_shapes)
from .workers import WorkQueue, piece_runner
from .validation import (CrossValidated, _cross_validated_entry, _fine_tune_entry, _fold_count, _trial,
                         cross_validate, fit_candidate, fit_start, reference_pieces, screens, uses_cross_validation)

__all__ = [
    "MIN_TRAIN_ROWS",
    "MIN_VALIDATION_ROWS",
    "SearchSettings",
    "Figures",
    "Candidate",
    "SearchResult",
    "check_dataset",
    "split_and_scale",
    "single_activation",
    "run_search",
    "search_settings",
    "fit_candidate",
    "cross_validate",
    "CrossValidated",
    "choose",
    "pareto_front",
    "uses_cross_validation",
    "LINEAR_DEPTH",
    "reference_shapes",
]

_PLOT_ROWS = 1000  # predicted-vs-actual points kept for the report


@dataclass(frozen=True)
class SearchSettings:
    """Everything that decides the found model besides the data, the embedding and the target."""

    latent: LatentSettings = LatentSettings()
    weights: ObjectiveWeights = ObjectiveWeights()
    validation_fraction: float = 0.2
    # weight-space fine-tuning steps of each candidate network (800 gave 1.3x the test MSE, geometric mean over
    # 8 CORNN tasks, for 5.7 s less search per task)
    finetune_steps: int = 2000
    finetune_depths: int = 2  # how many depths (best latent-only scores first) are fine-tuned to choose from
    # also fine-tune each of those networks projected onto one activation per layer (mixed layers cost a Split,
    # one node per activation and a Concat on onnxruntime); the objective, latency term included, chooses
    single_activation_candidates: bool = True
    # "auto": Levenberg-Marquardt (fit.py) for networks of up to lm_max_params free parameters, mini-batch Adam
    # beyond; "lm" or "adam" force one. LM reached 1e-3 to 1e-5x Adam's validation MSE on smooth CORNN tasks.
    fitter: str = "auto"
    # LM solves J^T J of the parameters' count squared per iteration (a 200-8-8-8-1 tanh, 1,689 parameters on
    # 2,400 rows: 0.56 s per iteration against 0.02 s for 249 parameters). A wide first layer counts as fitted
    # (FitSettings.max_first_layer_weights: within the span of its columns), so with the input stage this takes
    # many targets.
    lm_max_params: int = 1000
    # LM fits on at most this many training rows and stops early on at most this many validation rows, beyond it
    # on that many drawn at random (the same for every network; the candidates are then scored on every validation
    # row): an iteration costs rows x parameters^2. On 200,000 training rows a search took 105-214 s instead of
    # 476-557 s; Adam on every row ended at 1,295x (noiseless) and 5.4x (excess over the noise) the test error of LM
    # on every row, LM on the sample at 10x and 1.08x (benchmarks/large_data.py).
    lm_max_rows: int = 50_000
    fit: FitSettings = FitSettings()
    finetune_lr: float = 0.03  # Adam: cosine-decayed to finetune_final_lr
    finetune_final_lr: float = 0.0005
    finetune_batch_points: int = 256
    finetune_check_every: int = 50  # steps between validation checks (the best iterate is kept)
    # How the fine-tuned candidates (all within the budgets) are chosen. "budget-first": the cheapest on the target
    # (predicted latency, then validation MSE) among those whose validation MSE is within `tolerance` of the best,
    # so nothing is made smaller unless the target's cost model says it pays. "weighted": the lowest objective
    # score (log MSE + the weighted size and latency terms), for a user who names a trade-off (--latency-weight).
    choice: str = "budget-first"
    tolerance: float = 0.05
    # With cross-validation (small data) a candidate is also near the best when its out-of-fold MSE is within
    # this many standard errors of the paired per-row difference to the best (the one-standard-error rule):
    # there a 5% gap is often noise, and the cheaper network is the safer bet. 0: the tolerance alone.
    choice_standard_errors: float = 1.0
    calibration_rows: int = 256  # training rows stored in the model for int8 calibration
    # Dense networks of the family's largest width at these depths are fitted too, next to the search's
    # candidates and the linear model: the front then shows what a plain dense network buys on the target. They
    # are tanh, plus cheaper shapes on a target that charges a tanh much more than a ReLU (reference_shapes).
    # Depth 3: on all 54 CORNN tasks the dense sweep's best network was 3-4 layers deep on 41; on 8 of them
    # (seed 0) adding depth 3 took swat-edge's unbounded median ratio to the sweep from 2.16 to 1.10 on both
    # targets, for ~2.5 s more search time.
    dense_reference_depths: tuple[int, ...] = (1, 2, 3)
    # The dense references take every feature while their first layer has at most this many weights (64
    # features at width 8, the wide benchmark's data sets); beyond, they take the input stage's derived inputs
    # as the searched networks do: on 200 features their LM fits alone took over 10 minutes.
    dense_reference_max_first_weights: int = 512
    # random starts per dense reference, the best on validation kept: on himmelblau the 8-8 tanh reached 2.8e-4
    # from one start and 4.3e-5 as the best of 7
    dense_reference_restarts: int = 3
    # More starts, screened (holdout split only; 0: none): of dense_reference_screened_starts starts the first
    # dense_reference_screened_plain are fitted as they are, the others for dense_reference_screen_iterations
    # iterations first, and the dense_reference_screened_best best of those on validation fitted on. Local minima,
    # not iterations, decide these fits: the 12 restarts of one 8-8 tanh on a CORNN task end between 2.5e-6 and
    # 2.4e-2, and more iterations change none of them. On all 54 CORNN tasks (raspi4, benchmarks/
    # rescore_search.py) 8 starts took the median ratio to the dense sweep from 1.22-1.47 to 1.03-1.13 across the
    # budgets for +2.2 s of search; 12 starts cost +3 s and did no better. 2 plain starts, not 3, since the
    # cheaper networks are polished (polish_cheaper): the time polishing them costs, for the same answers.
    dense_reference_screened_starts: int = 8
    dense_reference_screened_plain: int = 2
    dense_reference_screen_iterations: int = 20
    dense_reference_screened_best: int = 2
    # Rounds of neuron resampling on the chosen network (polish.py; holdout split with Levenberg-Marquardt only;
    # 0: none): each redraws polish_width of its polish_among least useful hidden neurons, one per copy, refits the
    # copies side by side (--jobs 2) and keeps the better when validation improves; polish_patience rounds in a
    # row that keep nothing end it. Same structure, so the same cost on the target.
    polish_rounds: int = 6
    polish_among: int = 3
    polish_width: int = 2
    polish_patience: int = 2
    # ... and on up to this many cheaper networks, the trade-off a user exports with --candidate: the best on
    # validation within each of polish_cheaper budgets spaced evenly in log latency between the cheapest network
    # with a hidden layer and the chosen one (on raspi4, whose latency is the layer count, the best 1- and 2-layer
    # networks under a 3-layer choice). Then the choice is made again among all candidates.
    polish_cheaper: int = 2
    # Where the target charges every non-zero weight (a sparse kernel: generated C), the polished networks are then
    # pruned (prune.py): prune_rounds rounds, each removing prune_share of the weights by saliency (halved after a
    # refit beyond the limit) and refitting, while validation stays near the best for the chosen network (what the
    # choice takes) and within `tolerance` of their own for the others; each refit is a candidate, the choice is
    # made again. (Holdout split with Levenberg-Marquardt only, as polishing.)
    prune_rounds: int = 4
    prune_share: float = 0.25
    # Below this many rows one validation split is noise: candidates are scored by k-fold cross-validation over
    # all rows (each fold model stopped early on rows of its own, below), then refitted on all rows for the median
    # number of iterations the folds found best. (Levenberg-Marquardt only; Adam keeps the holdout split.)
    cross_validation_below_rows: int = 1000
    cross_validation_folds: int = 5
    # each fold model stops early on this share of its fold's training rows, not on the rows that score it
    # (0: on the held-out rows), and searched networks are scored from fresh weights of their structure, not the
    # decoded ones, which the held-out rows shaped (validation.py; benchmarks/results/small_data.md)
    cross_validation_stop_fraction: float = 0.2
    cross_validation_fresh_weights: bool = True
    int8: bool = False  # force int8 deployment (default: the target profile's int8 policy decides)
    # More features than the embedding's networks take: how the search derives its inputs (search/inputs.py);
    # every network is expanded back to all features, so the model takes the data's columns. "auto": both
    # stages, the one whose inputs give the lower validation MSE in a cubic least-squares fit (inputs.best_stage):
    # selection where a few features carry the target (make_friedman1 with 15-995 noise features), the
    # projection where every feature carries a little (benchmarks/results/many_features.md: tanh(x w) over 200
    # features, 0.0026 test MSE against select's 0.052); project on the classification sets (classify.md).
    inputs: str = "auto"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def check(self) -> "SearchSettings":
        """Refuse settings no search can run with (UsageError naming the flag), before any work."""
        self.fitter_for()
        if self.lm_max_rows < 1:
            raise UsageError(f"--fit-rows {self.lm_max_rows}: give 1 or more")
        if self.choice not in ("budget-first", "weighted"):
            raise UsageError(f"choice {self.choice!r}: use budget-first or weighted")
        if not self.tolerance >= 0.0:
            raise UsageError(f"--tolerance {self.tolerance:g}: give a share >= 0, e.g. 0.05 (5%)")
        if not 0.0 < self.prune_share < 1.0:
            raise UsageError(f"prune_share {self.prune_share:g}: give a share in (0, 1)")
        if not 0.0 <= self.cross_validation_stop_fraction < 1.0:
            raise UsageError(f"cross_validation_stop_fraction {self.cross_validation_stop_fraction:g}: give a share "
                             "in [0, 1)")
        if not self.choice_standard_errors >= 0.0:
            raise UsageError(f"choice_standard_errors {self.choice_standard_errors:g}: give a number >= 0")
        if self.inputs not in ("auto", *INPUT_METHODS):
            raise UsageError(f"--inputs {self.inputs}: use auto, {' or '.join(INPUT_METHODS)}")
        return self

    def fitter_for(self, largest_params: int = 0) -> str:
        """"lm" or "adam": what fine-tunes the candidates when the largest network has largest_params free
        parameters (any number of rows: Levenberg-Marquardt fits on at most lm_max_rows of them)."""
        if self.fitter not in ("auto", "lm", "adam"):
            raise UsageError(f"--fitter {self.fitter}: use auto, lm or adam")
        if self.fitter == "auto":
            return "lm" if largest_params <= self.lm_max_params else "adam"
        return self.fitter


def search_settings(*, steps: int, starts: int, latency_weight: float | None, validation: float, tolerance: float,
                    fitter: str, finetune_steps: int, int8: bool, seed: int, inputs: str = "auto",
                    fit_rows: int = SearchSettings.lm_max_rows) -> SearchSettings:
    """`swat-edge search`'s flags as settings: --latency-weight names a trade-off, so it switches the choice
    from budget-first (--tolerance) to the weighted score; checked before any work."""
    weights = ObjectiveWeights() if latency_weight is None else replace(ObjectiveWeights(), latency=latency_weight)
    return SearchSettings(
        latent=LatentSettings(steps=steps, starts_per_depth=starts), weights=weights, validation_fraction=validation,
        choice="budget-first" if latency_weight is None else "weighted", tolerance=tolerance, fitter=fitter,
        finetune_steps=finetune_steps, int8=int8, seed=seed, inputs=inputs, lm_max_rows=fit_rows,
    ).check()


@dataclass(frozen=True)
class Candidate:
    """One depth's best start (or the closest to the budgets): deployed figures on the target and scores."""

    depth: int
    start: int
    step: int
    val_mse: float  # hard-pruned, latent only, scaled target
    latency_us: float | None
    size_bytes: float | None
    nonzero_params: int
    active_neurons: int
    violation: float  # largest relative budget overshoot, 0 within budgets
    finetuned_val_mse: float | None = None  # after weight-space fine-tuning (what chooses the depth)
    projected: bool = False  # activations projected onto one per layer to meet a budget
    chosen: bool = False
    origin: str = "search"  # "search" (decoded from the latent space), "linear" or "dense" (reference networks)
    on_front: bool = False  # Pareto-optimal in (validation MSE, predicted latency, bytes) among the candidates
    polished: bool = False  # neuron resampling ran on it (SearchSettings.polish_rounds, polish_cheaper)


@dataclass(frozen=True)
class SearchResult:
    """What run_search found. When no candidate met the budgets, met_budgets is False, the models are None
    and `closest` holds the nearest candidate's figures."""

    met_budgets: bool
    model: SparseMLP | None  # pruned and fine-tuned
    latent_model: SparseMLP | None  # what the latent search alone found (see _latent_only): decoded and pruned
    chosen: Candidate | None
    candidates: tuple[Candidate, ...]
    candidate_models: tuple[SparseMLP, ...]  # each candidate fine-tuned, in the order of `candidates`
    closest: Candidate | None
    metrics: dict[str, dict[str, Figures]]  # {"latent_only"|"fine_tuned": {"train"|"validation"|"test": Figures}}
    dtype: str  # what the target runs: fp32 or int8
    estimate: Estimate | None  # of `model` on the target in `dtype`
    history: tuple[dict[str, Any], ...]  # search evaluations (MSE on the scaled target)
    finetune_history: tuple[tuple[int, float], ...]  # (step, validation MSE on the scaled target)
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (actual, predicted), raw units, subsampled
    split_rows: dict[str, int]
    validation_rows: np.ndarray  # indices of the held-out rows in the training file
    timings_s: dict[str, float]
    notes: tuple[str, ...] = field(default_factory=tuple)
    # the input stage the search ran on ("select" or "project"; None: the data has few enough features)
    input_stage: str | None = None
    # a classifier's figures per split ("train", "validation" unless cross-validated, "test"); None: regression
    classification: dict[str, ClassFigures] | None = None


def check_dataset(dataset: Dataset, family: Any, embedding_name: str) -> None:
    """Refuse data the embedding's family cannot take (its outputs), with the limit and the fix. Any number of
    features is taken (beyond the family's inputs, through the input stage, search/inputs.py), and any number of
    targets by a single-output family (see problem.Problem.summary)."""
    n_out = dataset.y.shape[1]
    if n_out != family.n_outputs and family.n_outputs != 1:
        raise InputError(
            f"{dataset.path}: {n_out} target column(s) ({', '.join(dataset.target_names)}), but embedding "
            f"{embedding_name} predicts exactly {family.n_outputs}; choose {family.n_outputs} with --target-col, or "
            f"train an embedding with that many outputs: swat-edge embed train --preset default --config "
            f"'{{\"family\": {{\"n_outputs\": {n_out}}}}}' --out DIR, then pass --embedding DIR"
        )


def _report_scaled(progress: Callable[[int, int, dict[str, Any]], None], to_scaled: float, step: int, total: int,
                   info: dict[str, Any]) -> None:
    """Pass the search's progress on with its MSE figures on the scaled target."""
    best = info.get("best_val_mse")
    progress(step, total, {**info, "train_mse": info["train_mse"] * to_scaled,
                           "best_val_mse": None if best is None else best * to_scaled})


def _candidate(problem: Problem, snap: Snapshot, model: SparseMLP, exact: Estimate | None, **extra: Any) -> Candidate:
    """The report's figures of one network: the verified estimate where there is one, else the search's."""
    a = snap.assessment
    latency = exact.latency_us[0] if exact is not None else None if a is None else a.latency_us
    size = exact.model_bytes if exact is not None else None if a is None else a.size_bytes
    stats = model_stats(model)
    violation = (problem.budgets.violation(latency, size) if latency is not None and size is not None
                 else snap.violation)
    return Candidate(
        depth=snap.depth, start=snap.start, step=snap.step,
        val_mse=_figures(model, problem.x_val, problem.y_val, problem.prep).mse, latency_us=latency, size_bytes=size,
        nonzero_params=stats.nonzero_params, active_neurons=stats.active_neurons, violation=violation, **extra,
    )


def _best_per_depth(snaps: Iterable[Snapshot | None]) -> dict[int, Snapshot]:
    out: dict[int, Snapshot] = {}
    for snap in snaps:
        if snap is not None and (snap.depth not in out or snap.score < out[snap.depth].score):
            out[snap.depth] = snap
    return out


def _feasible_pool(problem: Problem, run: LatentRun) -> list[PoolEntry]:
    """Each depth's best start within the budgets (the verified estimate agreeing), best latent-only scores
    first, at most finetune_depths of them."""
    pool = []
    for snap in _best_per_depth(run.best).values():
        model = _build(problem, snap)
        exact = _within_budgets(problem, model)
        if exact is not None:
            pool.append(PoolEntry(snap.score, snap, model, exact, projected=False))
    pool.sort(key=lambda entry: (entry.score, entry.snapshot.depth))
    return pool[: max(problem.settings.finetune_depths, 1)]


def _single_activation_variants(problem: Problem, pool: list[PoolEntry]) -> list[PoolEntry]:
    """The pooled networks with a mixed layer, projected onto one activation per layer (where within budgets)."""
    variants = []
    for entry in pool:
        single = single_activation(entry.model, problem.target)
        if any(a.activations != b.activations for a, b in zip(single.hidden, entry.model.hidden)):  # a mixed layer
            exact = _within_budgets(problem, single)
            if exact is not None:
                variants.append(PoolEntry(math.inf, entry.snapshot, single, exact, projected=True))
    return variants


def _projected_near_miss(problem: Problem, run: LatentRun) -> list[PoolEntry]:
    """The best over-budget network of any depth that meets the budgets once projected onto one activation per
    layer (none, or a list of one)."""
    projected = []
    for snap in _best_per_depth(run.unconstrained).values():
        if snap.violation == 0.0:
            continue
        model = single_activation(_build(problem, snap), problem.target)
        exact = _within_budgets(problem, model)
        if exact is not None:
            val = _figures(model, problem.x_val, problem.y_val, problem.prep).mse / problem.to_scaled
            score = math.log(max(val, 1e-30)) + _structure_terms(problem, model, exact)
            projected.append(PoolEntry(score, snap, model, exact, projected=True))
    return sorted(projected, key=lambda entry: (entry.score, entry.snapshot.depth))[:1]


def _fine_tune_pool(problem: Problem, run: LatentRun) -> list[PoolEntry]:
    """The networks to fine-tune and choose from.

    Each depth's best start within the budgets (`finetune_depths` of them, best latent-only scores first), plus,
    under a latency or size budget, the best over-budget network of each depth projected onto one activation per
    layer (on runtimes like onnxruntime a layer mixing k activations runs Split + k nodes + Concat, usually the
    largest latency term; the relaxed search reaches single-type layers slowly, so this projection often turns a
    near miss into a feasible network, and fine-tuning adapts its weights).
    """
    pool = _feasible_pool(problem, run)
    if problem.settings.single_activation_candidates:
        pool += _single_activation_variants(problem, pool)
    if problem.budgets.any:
        pool += _projected_near_miss(problem, run)
    return pool


def _latent_only(problem: Problem, trials: list[Trial], chosen: Trial) -> SparseMLP:
    """What the latent search alone found (the paper's procedure, an ablation figure): the chosen network as
    decoded, before projection and fine-tuning; when a reference network was chosen, the searched network that
    scored best on validation as decoded."""
    searched = [t for t in trials if t.entry.origin == "search"]
    if chosen.entry.origin != "search":
        if not searched:
            return chosen.entry.model
        chosen = min(searched, key=lambda t: (t.entry.snapshot.val_mse, t.entry.snapshot.depth))
    return _build(problem, chosen.entry.snapshot)


def choose(trials: list[Trial], settings: SearchSettings, row_errors: list[np.ndarray] | None = None) -> Trial:
    """The chosen network among fine-tuned candidates that all meet the budgets (see SearchSettings.choice).
    row_errors (each trial's squared error per row of the rows that scored it, out-of-fold with cross-validation)
    widen "near the best" to SearchSettings.choice_standard_errors standard errors of the paired difference."""
    if settings.choice == "weighted":
        return min(trials, key=lambda trial: (trial.score, trial.entry.snapshot.depth))
    best = min(range(len(trials)), key=lambda k: trials[k].val_mse)
    best_val = trials[best].val_mse

    def margin(k: int) -> float:
        margin = best_val * settings.tolerance
        if row_errors is not None and settings.choice_standard_errors > 0 and len(row_errors[k]) > 1:
            difference = row_errors[k] - row_errors[best]
            standard_error = float(np.std(difference, ddof=1) / np.sqrt(len(difference)))
            margin = max(margin, settings.choice_standard_errors * standard_error)
        return margin

    # what is near the best is closed downwards: a candidate better on validation than one near the best is near
    # it too, so the choice is never worse on validation than a cheaper candidate (the line included)
    threshold = max(trial.val_mse for k, trial in enumerate(trials) if trial.val_mse - best_val <= margin(k))
    near_best = [trial for trial in trials if trial.val_mse <= threshold]
    return min(near_best, key=lambda trial: (trial.entry.exact.latency_us[0], trial.val_mse,
                                              trial.entry.snapshot.depth))


Fitted = tuple[SparseMLP, float, tuple[tuple[int, float], ...]]  # fit_start's: model, validation MSE, history


def _side_by_side(problem: Problem, background: ThreadPoolExecutor, remote_fit: Callable[[SparseMLP], Fitted],
                  helped: bool, starts: list[SparseMLP]) -> list[Fitted]:
    """Each start fitted by fit_start: the first in this thread, the others (helped) by the helpers' remote_fit
    at the same time; results in start order."""
    if not helped:
        return [fit_start(problem, start) for start in starts]
    others = [background.submit(remote_fit, start) for start in starts[1:]]
    return [fit_start(problem, starts[0]), *(other.result() for other in others)]


def _polished(problem: Problem, trial: Trial, refit: Callable[[list[SparseMLP]], list[Fitted]],
              seed: int) -> tuple[Trial, str]:
    """The trial after SearchSettings.polish_rounds rounds of neuron resampling (polish.py), refit fitting starts
    as every candidate is fitted (fit_start); the trial itself when no round improved its validation MSE. The entry
    (the start, its structure and its estimate on the target) stays the trial's: only the weights change. With
    what the rounds did, for the note."""
    settings = problem.settings
    result = polish(trial.tuned, trial.val_mse, refit, problem.x_train, problem.y_train,
                    rounds=settings.polish_rounds, seed=seed, among=settings.polish_among,
                    width=settings.polish_width, patience=settings.polish_patience)
    summary = (f"{result.accepted} of {result.rounds} rounds kept, validation MSE {trial.val_mse:.3g} -> "
               f"{result.val_mse:.3g}")
    if result.fitted is None:
        return trial, summary
    return _trial(problem, trial.entry, result.model, result.val_mse, result.fitted), summary


def cheaper_to_polish(trials: list[Trial], chosen: Trial, count: int) -> list[Trial]:
    """Up to `count` trials cheaper than the chosen one worth polishing too: the best on validation within each of
    `count` latency budgets spaced evenly in log latency between the cheapest trial with a hidden layer and the
    chosen one (each trial once; the chosen one and the linear model never), most expensive budget first."""
    def latency(t: Trial) -> float:
        return t.entry.exact.latency_us[0]

    hidden = [t for t in trials if t.tuned.hidden]
    if count < 1 or not chosen.tuned.hidden or len(hidden) < 2:
        return []
    low, high = min(latency(t) for t in hidden), latency(chosen)
    picked: list[Trial] = []
    for k in range(count, 0, -1):
        budget = low * (high / low) ** (k / (count + 1)) if low > 0 else high * k / (count + 1)
        within = [t for t in hidden if latency(t) <= budget and t is not chosen]
        if within:
            best = min(within, key=lambda t: (t.val_mse, latency(t)))
            if all(best is not other for other in picked):
                picked.append(best)
    return picked


def _counted(refit: Callable[[list[SparseMLP]], list[Fitted]], counter: FitCounter, *, each_start: bool
             ) -> Callable[[list[SparseMLP]], list[Fitted]]:
    """refit, counting on `counter` each start it fits (each_start) or each call (its best validation MSE)."""
    def counted(starts: list[SparseMLP]) -> list[Fitted]:
        results = refit(starts)
        for val in [val for _, val, _ in results] if each_start else [min(val for _, val, _ in results)]:
            counter.add(val)
        return results
    return counted


def _polish_trials(problem: Problem, trials: list[Trial], chosen: Trial,
                   refit: Callable[[list[SparseMLP]], list[Fitted]], counter: FitCounter | None = None
                   ) -> tuple[list[Trial], Trial, list[Trial], tuple[str, ...]]:
    """The chosen trial and the cheaper ones cheaper_to_polish picks, polished (_polished), and the choice made
    again among all trials (a cheaper network polished to within the tolerance of the best is then chosen). With a
    note saying what polishing did (none when the chosen network is the linear model: no neuron to redraw).
    Returns the trials, the chosen one, the polished ones and the note."""
    settings = problem.settings
    if not chosen.tuned.hidden:
        return trials, chosen, [], ()
    targets = [chosen, *cheaper_to_polish(trials, chosen, settings.polish_cheaper)]
    if counter is not None:  # rounds: each a refit of polish_width starts
        counter.expect(len(targets) * settings.polish_rounds)
        refit = _counted(refit, counter, each_start=False)
    polished, summaries = {}, []
    for k, trial in enumerate(targets):
        polished[id(trial)], summary = _polished(problem, trial, refit, settings.seed + k)
        summaries.append(summary)
    if counter is not None:
        counter.finish()
    trials = [polished.get(id(t), t) for t in trials]
    rechosen = choose(trials, settings)  # holdout split only: no row errors
    note = f"polished by neuron resampling: the chosen network, {summaries[0]} (scaled target)"
    if len(targets) > 1:
        note += (f"; {len(targets) - 1} cheaper network{'s' if len(targets) > 2 else ''} of the front, "
                 + "; ".join(summaries[1:]))
    if rechosen is not polished[id(chosen)]:
        note += (f"; chosen again after polishing: a cheaper network (validation MSE {rechosen.val_mse:.3g}) is "
                 "within the tolerance of the best")
    return trials, rechosen, list(polished.values()), (note,)


def _prune_limits(trials: list[Trial], parents: list[Trial], settings: SearchSettings) -> list[float]:
    """The validation MSE each parent's pruning chain stays within (prune.prune): for the chosen network (first)
    what the budget-first choice takes as near the best, `tolerance` above the best trial's (not above its own:
    pruned beyond the best's it could not be chosen); for the others, and with a weighted choice, `tolerance`
    above their own (cheaper points of the trade-off). Holdout split: no standard-error margins."""
    own = [t.val_mse * (1.0 + settings.tolerance) for t in parents]
    if settings.choice != "budget-first" or not parents:
        return own
    return [min(t.val_mse for t in trials) * (1.0 + settings.tolerance), *own[1:]]


def _prune_trials(problem: Problem, trials: list[Trial], chosen: Trial, polished: list[Trial],
                  refit: Callable[[list[SparseMLP]], list[Fitted]], counter: FitCounter | None = None
                  ) -> tuple[list[Trial], Trial, tuple[str, ...]]:
    """The polished networks (the chosen one first) pruned (prune.py), each refit a new trial of origin "pruned"
    that keeps its network's depth, and the choice made again among all trials. With a note saying what pruning
    did. Returns the trials, the chosen one and the note."""
    settings = problem.settings
    parents = [chosen, *(t for t in polished if t is not chosen and t.tuned.hidden)] if chosen.tuned.hidden else []
    if not parents or settings.prune_rounds < 1:
        return trials, chosen, ()
    if counter is not None:
        counter.expect(len(parents) * settings.prune_rounds)
        refit = _counted(refit, counter, each_start=True)
    limits = _prune_limits(trials, parents, settings)
    chains = prune([(t.tuned, limit) for t, limit in zip(parents, limits)], refit, problem.x_train,
                   rounds=settings.prune_rounds, share=settings.prune_share)
    if counter is not None:
        counter.finish()
    pruned = []
    for parent, chain in zip(parents, chains):
        for step in chain:
            exact = _within_budgets(problem, step.start)
            if exact is not None:
                entry = replace(parent.entry, score=math.inf, model=step.start, exact=exact, origin="pruned")
                pruned.append(_trial(problem, entry, step.model, step.val_mse, step.fitted))
    trials = trials + pruned
    rechosen = choose(trials, settings)  # holdout split only: no row errors
    before, chain = model_stats(chosen.tuned).nonzero_params, chains[0]
    kept = [step for step in chain if step.within]
    note = (f"pruned weight by weight (the target charges every non-zero weight): the chosen network {before} -> "
            f"{model_stats(kept[-1].model).nonzero_params if kept else before} non-zero parameters while "
            + ("near the best on validation" if settings.choice == "budget-first"
               else f"within {settings.tolerance:.0%} of its validation MSE") + f" ({len(chain)} refits)")
    if len(parents) > 1:
        note += f", and {len(parents) - 1} cheaper polished network{'s' if len(parents) > 2 else ''} of the front"
    if rechosen.entry.origin == "pruned":
        note += f"; chosen: a pruned network ({model_stats(rechosen.tuned).nonzero_params} non-zero parameters)"
    return trials, rechosen, (note,)


def _out_of_fold_errors(problem: Problem, trials: list[Trial]) -> list[np.ndarray]:
    """Each cross-validated trial's squared error per row of the training file (scaled target, mean over
    outputs): what its out-of-fold MSE averages."""
    y_all = problem.all_rows[1]
    return [np.mean(((t.out_of_fold - y_all) * problem.prep.y_scale) ** 2, axis=1) for t in trials]


def _finetune_stage_message(pool: list[PoolEntry], settings: SearchSettings, train_rows: int,
                            cross_validation_rows: int | None = None) -> str:
    names = ", ".join(f"{e.snapshot.depth}{' (one activation per layer)' if e.projected else ''}" for e in pool
                      if e.origin == "search")
    references = list(dict.fromkeys(  # restarts of one dense reference named once
        "dense {}x{} {}".format(*_reference_shape(e)) if e.origin == "dense"
        else "linear"
        for e in pool if e.origin != "search"))
    if any(e.origin == "dense" for e in pool):
        if screens(settings, cross_validation_rows):
            extra = settings.dense_reference_screened_starts - settings.dense_reference_screened_plain
            references.append(f"{settings.dense_reference_screened_plain} starts each and the best "
                              f"{settings.dense_reference_screened_best} of {extra} more after "
                              f"{settings.dense_reference_screen_iterations} iterations")
        elif settings.dense_reference_restarts > 1:
            references.append(f"{settings.dense_reference_restarts} starts each")
    if cross_validation_rows is not None:
        how = (f"Levenberg-Marquardt, {settings.cross_validation_folds}-fold cross-validation over all "
               f"{cross_validation_rows} rows, then refitted on all of them")
    elif settings.fitter_for() == "lm":
        fitted_rows = (f"full batch of {train_rows} rows" if train_rows <= settings.lm_max_rows else
                       f"a random {settings.lm_max_rows} of the {train_rows} training rows")
        how = f"Levenberg-Marquardt, {fitted_rows}, up to {settings.fit.max_iterations} iterations each"
    else:
        how = f"Adam, mini-batches of {settings.finetune_batch_points} rows, {settings.finetune_steps} steps each"
    also = f", and the references {', '.join(references)}" if references else ""
    return f"fine-tuning the searched networks of depth {names or '-'}{also} ({how}, masks frozen)"


def pareto_front(points: list[tuple[float, ...]]) -> list[bool]:
    """Which points no other point dominates (every coordinate <=, one <; lower is better in each coordinate).
    Of equal points only the first is on the front."""
    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [not any(dominates(other, point) for other in points) and point not in points[:i]
            for i, point in enumerate(points)]


def _prediction_samples(splits: dict[str, tuple[np.ndarray, np.ndarray]], model: SparseMLP,
                        seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(actual, predicted) on at most _PLOT_ROWS rows of the validation and test splits, for the report."""
    predictions = {}
    for split in ("validation", "test"):
        if split in splits:
            x, y = splits[split]
            keep = np.random.default_rng(seed).permutation(len(x))[:_PLOT_ROWS]
            predictions[split] = (y[keep], forward(model, x[keep]))
    return predictions


def _search_latents(problem: Problem, progress: Callable[[int, int, dict[str, Any]], None] | None) -> LatentRun:
    prep = problem.prep
    return optimise_latents(
        problem.embedding, problem.latent_x(problem.x_train), problem.latent_y(problem.y_train),
        problem.latent_x(problem.x_val),
        problem.latent_y(problem.y_val), settings=replace(problem.settings.latent, seed=problem.settings.seed),
        weights=problem.settings.weights, budgets=problem.budgets, target=problem.target, cost_dtype=problem.dtype,
        input_affine=affine_nodes(prep.x_scale, prep.x_offset) if problem.dtype == "int8" else 0,
        assess=partial(_assess, problem),
        progress=None if progress is None else partial(_report_scaled, progress, problem.to_scaled),
    )


def _nothing_within_budgets(problem: Problem, run: LatentRun, data_path: Any, history: tuple[dict[str, Any], ...],
                            split_rows: dict[str, int], timings: dict[str, float]) -> SearchResult:
    """The result when no network met the budgets: the closest one's figures and what is reachable on the target
    (the linear model and each depth's best searched network, not fine-tuned, cheapest first) in `candidates`;
    or an error when every network the search found is a constant."""
    closest = run.closest
    assert closest is not None, "bug: the search scored no candidate"
    if not problem.budgets.any or closest.violation == 0.0:
        raise InputError(
            f"{data_path}: every network the search found computes a constant (every neuron of a layer "
            "off); try more --steps, another --seed, or a lower --latency-weight"
        )
    model = _build(problem, closest)
    line = _least_squares_line(problem, problem.x_train, problem.y_train)
    reachable = [_candidate(problem, _reference_snapshot(LINEAR_DEPTH), line,
                            _estimate(problem, line), origin="linear")]
    for snap in [closest, *(s for s in _best_per_depth(run.unconstrained).values() if s is not closest)]:
        searched = _build(problem, snap)
        reachable.append(_candidate(problem, snap, searched, _estimate(problem, searched)))
    return SearchResult(
        met_budgets=False, model=None, latent_model=None, chosen=None,
        candidates=tuple(sorted(reachable, key=lambda c: (c.latency_us, c.val_mse))), candidate_models=(),
        closest=_candidate(problem, closest, model, _estimate(problem, model)),
        metrics={}, dtype=problem.dtype, estimate=None, history=history, finetune_history=(), predictions={},
        split_rows=split_rows, validation_rows=problem.prep.val, timings_s=timings, notes=problem.prep.notes,
        input_stage=None if problem.stage is None else problem.stage.method,
    )


def run_search(
    dataset: Dataset,
    *,
    embedding: Any,
    target: TargetProfile,
    budgets: Budgets = Budgets(),
    settings: SearchSettings = SearchSettings(),
    test: Dataset | None = None,
    embedding_name: str = "",
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    stage: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> SearchResult:
    """Search, select, prune and fine-tune a model for `dataset` on `target` (see the module docstring). A
    classification data set is searched on class indicators (search/classify.py) split by class, and every
    fitted network becomes a classifier outputting logits, with its figures per split. `jobs` > 1 fits the
    reference networks in jobs - 1 worker processes (threads where workers.worker_processes() is false, or with
    Adam) while the latent search runs, and then each polishing round's second copy (the same model for any number).
    `progress(done, total, info)` hears the latent search's steps, then fine-tuning's fits and polishing's rounds
    (info["stage"] "fine-tune", "polish" and, on a target that charges every non-zero weight, "prune", with the
    best validation MSE so far).
    The workers may come from multiprocessing's fork server (workers.start_method), so a script calling this with
    jobs > 1 guards its top level with `if __name__ == "__main__":`, as multiprocessing asks."""
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more")
    options = dict(embedding=embedding, target=target, budgets=budgets, settings=settings,
                   embedding_name=embedding_name, progress=progress, stage=stage, jobs=jobs)
    if not dataset.is_classification:
        return _search(dataset, test=test, **options)
    labels = dataset.y[:, 0].astype(int)
    result = _search(indicator_dataset(dataset), test=None if test is None else indicator_dataset(test),
                     strata=labels, **options)
    if not result.met_budgets:
        return result
    cross_validated = "folds" in result.split_rows
    train = np.arange(dataset.n_rows) if cross_validated else np.setdiff1d(np.arange(dataset.n_rows),
                                                                          result.validation_rows)

    def classifier(model: SparseMLP) -> SparseMLP:
        return to_classifier(model, dataset.x[train], labels[train], dataset.classes, settings.seed)

    model = classifier(result.model)
    splits = {"train": (dataset.x[train], labels[train])}
    if not cross_validated:  # with cross-validation every row trained the final model: no held-out figure
        splits["validation"] = (dataset.x[result.validation_rows], labels[result.validation_rows])
    if test is not None:
        splits["test"] = (test.x, test.y[:, 0].astype(int))
    notes = result.notes + ((f"classification: {len(dataset.classes)} classes; fitted as class indicators by "
                             "least squares, logits calibrated by cross-entropy on the training rows; "
                             "candidates chosen by validation MSE of the indicators"),)
    return replace(result, model=model, latent_model=classifier(result.latent_model),
                   candidate_models=tuple(classifier(m) for m in result.candidate_models),
                   estimate=estimate(model, target, dtype=result.dtype, size_budget_bytes=budgets.size_bytes),
                   notes=notes,
                   classification={name: class_figures(model, x, y) for name, (x, y) in splits.items()})


class FitCounter:
    """Progress of a stage of fits for run_search's `progress` callback: (done, expected, {"stage": stage,
    "best_val_mse": the best validation MSE so far, scaled target}), counted from whichever thread fitted. Reported
    from `expect` on: the helpers start fitting while the latent search still reports its own progress."""

    def __init__(self, progress: Callable[[int, int, dict[str, Any]], None] | None, stage: str) -> None:
        self._expected: int | None = None
        self._done, self._best = 0, math.inf
        self._progress, self._stage = progress, stage
        self._lock = threading.Lock()

    def expect(self, count: int) -> None:
        """Start reporting, `count` in all."""
        with self._lock:
            self._expected = count
            self._report()

    def add(self, val_mse: float) -> None:
        """Count one fit (or round) that reached val_mse."""
        with self._lock:
            self._done += 1
            self._best = min(self._best, val_mse)
            self._report()

    def count(self, trials: list[Trial]) -> list[Trial]:
        """Count a fitted piece (its trials, returned as they are)."""
        self.add(min((t.val_mse for t in trials), default=math.inf))
        return trials

    def finish(self) -> None:
        """Done, short of what was expected (polishing stops when rounds keep nothing)."""
        with self._lock:
            self._expected = self._done
            self._report()

    def _report(self) -> None:
        if self._progress is not None and self._expected is not None:
            self._progress(self._done, max(self._expected, self._done),
                           {"stage": self._stage, "best_val_mse": None if math.isinf(self._best) else self._best})


def _fitter_for_size(problem: Problem) -> tuple[Problem, tuple[str, ...]]:
    """The problem with --fitter auto resolved to adam where its largest network is too large for
    Levenberg-Marquardt (SearchSettings.lm_max_params), and a note saying so; unchanged otherwise."""
    settings = problem.settings
    largest = largest_network_params(problem)
    if settings.fitter != "auto" or settings.fitter_for(largest) == settings.fitter_for():
        return problem, ()
    note = (f"fine-tuned with Adam: the largest network has {largest} free parameters, more than "
            f"Levenberg-Marquardt takes ({settings.lm_max_params})")
    return replace(problem, settings=replace(settings, fitter="adam")), (note,)


def _search(
    dataset: Dataset,
    *,
    embedding: Any,
    target: TargetProfile,
    budgets: Budgets,
    settings: SearchSettings,
    test: Dataset | None,
    embedding_name: str,
    progress: Callable[[int, int, dict[str, Any]], None] | None,
    stage: Callable[[str], None] | None,
    jobs: int = 1,
    strata: np.ndarray | None = None,
) -> SearchResult:
    """run_search on a regression data set (class indicators for a classification one)."""
    settings.check()
    family = getattr(embedding, "module", embedding).config.family
    check_dataset(dataset, family, embedding_name or str(getattr(embedding, "source", "")))
    if test is not None and test.x.shape[1] != dataset.x.shape[1]:
        raise InputError(f"{test.path}: {test.x.shape[1]} features, the training data has {dataset.x.shape[1]}")
    problem, fitter_note = _fitter_for_size(_prepare_problem(dataset, embedding, target, budgets, settings, strata))
    settings = problem.settings
    timings: dict[str, float] = {}
    cross_validation = uses_cross_validation(settings, dataset.n_rows)
    # what the fitting pieces carry to a worker process (pickled): the problem without the embedding, which they
    # do not use
    fitting = replace(problem, embedding=None)
    fit_entry = partial(_cross_validated_entry if cross_validation else _fine_tune_entry, fitting)
    split_rows = {"train": len(problem.prep.train), "validation": len(problem.prep.val),
                  "test": 0 if test is None else test.n_rows}
    screen = screens(settings, dataset.n_rows if cross_validation else None)
    references = _reference_pool(problem, settings.dense_reference_screened_starts if screen
                                 else settings.dense_reference_restarts)
    pieces = [piece for group in reference_groups(references)
              for piece in reference_pieces(fitting, fit_entry, group, screen=screen)]
    queue = WorkQueue(len(pieces))
    polishing = (settings.polish_rounds > 0 and not cross_validation
                 and settings.fitter_for() == "lm")
    polish_note: tuple[str, ...] = ()
    polished: list[Trial] = []
    counter = FitCounter(progress, "fine-tune")
    t0 = time.perf_counter()
    # The references are fitted by helpers (workers.py) while the latent search (torch) runs, and by this thread
    # too once it has fitted the searched networks; every piece is independent and single-threaded in BLAS (held
    # for the whole section: threadpoolctl's limit is process-wide; worker processes set their own) and the results
    # are kept in piece order, so the trials are the same for any number of jobs. The helpers then share the
    # polishing refits (the piece after the references: fit_start on a start handed over).
    with threadpool_limits(limits=1, user_api="blas"), \
            piece_runner([*pieces, partial(fit_start, fitting)], jobs - 1,
                         processes=settings.fitter_for() == "lm") as remote, \
            ThreadPoolExecutor(max_workers=max(jobs - 1, 1)) as background:
        helpers = [background.submit(queue.drain, lambda index: counter.count(remote(index))) for _ in range(jobs - 1)]
        try:
            run = _search_latents(problem, progress)
            timings["search_s"] = time.perf_counter() - t0
            history = tuple(_scaled_history(h, problem.to_scaled) for h in run.history)
            searched = _fine_tune_pool(problem, run)
            pool = searched + references
            if not pool:
                return _nothing_within_budgets(problem, run, dataset.path, history, split_rows, timings)
            if stage is not None:
                stage(_finetune_stage_message(pool, settings, len(problem.x_train),
                                              dataset.n_rows if cross_validation else None))
            counter.expect(len(searched) + len(pieces))
            trials = [counter.count([fit_entry(entry)])[0] for entry in searched]
            queue.drain(lambda index: counter.count(pieces[index]()))
            for helper in helpers:
                helper.result()  # a helper's exception surfaces here
            trials += [t for piece_trials in queue.results for t in piece_trials]
            trials = _best_restarts(trials)
            best_trial = choose(trials, settings, _out_of_fold_errors(problem, trials) if cross_validation else None)
            if polishing:
                if stage is not None:
                    stage(f"polishing the chosen network and up to {settings.polish_cheaper} cheaper ones: up to "
                          f"{settings.polish_rounds} rounds of neuron resampling, {settings.polish_width} copies "
                          "each")
                refit = partial(_side_by_side, problem, background, partial(remote, len(pieces)), jobs > 1)
                trials, best_trial, polished, polish_note = _polish_trials(problem, trials, best_trial, refit,
                                                                           FitCounter(progress, "polish"))
                if target.runtime.sparse_kernel:
                    if stage is not None:
                        stage(f"pruning the polished networks: up to {settings.prune_rounds} rounds of "
                              f"{settings.prune_share:.0%} of their weights, while within {settings.tolerance:.0%}")
                    trials, best_trial, prune_note = _prune_trials(problem, trials, best_trial, polished, refit,
                                                                   FitCounter(progress, "prune"))
                    polish_note += prune_note
        except BaseException:
            queue.cancel()  # an error or Ctrl-C: the helpers stop after the piece at hand
            raise
    final = best_trial.tuned
    latent_model = _latent_only(problem, trials, best_trial)
    timings["fine_tune_s"] = time.perf_counter() - t0 - timings["search_s"]

    front = pareto_front([(t.val_mse, t.entry.exact.latency_us[0], t.entry.exact.model_bytes) for t in trials])
    candidates = tuple(
        _candidate(problem, t.entry.snapshot, t.entry.model, t.entry.exact, finetuned_val_mse=t.val_mse,
                   projected=t.entry.projected, chosen=t is best_trial, origin=t.entry.origin, on_front=on_front,
                   polished=any(t is p for p in polished))
        for t, on_front in zip(trials, front)
    )
    splits = {"train": (problem.x_train, problem.y_train), "validation": (problem.x_val, problem.y_val)}
    if test is not None:
        splits["test"] = (test.x, test.y)
    metrics = {
        name: {split: _figures(m, x, y, problem.prep) for split, (x, y) in splits.items()}
        for name, m in (("latent_only", latent_model), ("fine_tuned", final))
    }
    predictions = _prediction_samples(splits, final, settings.seed)
    stage_note = ((f"{dataset.x.shape[1]} features, the embedding's networks take {problem.latent_inputs}: "
                   f"{problem.stage.description}; the model takes all features (--inputs select|project)",)
                  if problem.stage is not None else ())
    notes = problem.prep.notes + fitter_note + polish_note + stage_note
    if cross_validation:
        metrics, predictions, split_rows = _cross_validation_figures(problem, best_trial, metrics, predictions,
                                                                     split_rows)
        notes += (f"{dataset.n_rows} rows (< {settings.cross_validation_below_rows}): candidates chosen by "
                  f"{_fold_count(dataset.n_rows, settings.cross_validation_folds)}-fold cross-validation over all "
                  "rows, then refitted on all of them; validation figures are out-of-fold",)
    est = estimate(final, target, dtype="int8" if settings.int8 else None, size_budget_bytes=problem.budgets.size_bytes)
    return SearchResult(
        met_budgets=True, model=final, latent_model=latent_model, chosen=next(c for c in candidates if c.chosen),
        candidates=candidates, candidate_models=tuple(t.tuned for t in trials), closest=None, metrics=metrics,
        dtype=est.dtype, estimate=est, history=history,
        finetune_history=best_trial.finetune_history, predictions=predictions,
        split_rows=split_rows, validation_rows=problem.prep.val, timings_s=timings, notes=notes,
        input_stage=None if problem.stage is None else problem.stage.method,
    )


def _cross_validation_figures(problem: Problem, chosen: Trial, metrics: dict[str, dict[str, Figures]],
                              predictions: dict[str, tuple[np.ndarray, np.ndarray]], split_rows: dict[str, int]
                              ) -> tuple[dict[str, dict[str, Figures]], dict[str, tuple[np.ndarray, np.ndarray]],
                                         dict[str, int]]:
    """With cross-validation the chosen model saw every row: its "train" figure is on all rows and its
    "validation" figure is the out-of-fold one (what chose it); the latent-only figures keep the search's split."""
    x_all, y_all = problem.all_rows
    fine_tuned = dict(metrics["fine_tuned"])
    fine_tuned["train"] = _figures(chosen.tuned, x_all, y_all, problem.prep)
    fine_tuned["validation"] = _figures_of(chosen.out_of_fold, y_all, problem.prep)
    keep = np.random.default_rng(problem.settings.seed).permutation(len(y_all))[:_PLOT_ROWS]
    predictions = {**predictions, "validation": (y_all[keep], chosen.out_of_fold[keep])}
    split_rows = {**split_rows, "train": len(y_all), "validation": len(y_all),
                  "folds": _fold_count(len(y_all), problem.settings.cross_validation_folds)}
    return {**metrics, "fine_tuned": fine_tuned}, predictions, split_rows


def single_activation(model: SparseMLP, target: TargetProfile) -> SparseMLP:
    """Each hidden layer with one activation: its active neurons' most common one (ties: the cheaper on target)."""
    cost = {"identity": 0.0, **{a: getattr(target.cost, f"{a}_ns") for a in ("relu", "leaky_relu", "tanh", "sigmoid")}}
    hidden = []
    for layer in model.hidden:
        active = [a for a, m in zip(layer.activations, layer.mask) if m] or list(layer.activations)
        choice = min(set(active), key=lambda a: (-active.count(a), cost[a], a))
        hidden.append(Layer.make(layer.weight, layer.bias, choice, layer.mask))
    provenance = {**model.provenance, "activations": "projected onto one per layer to meet a budget"}
    return model.replace(hidden=tuple(hidden), provenance=provenance)


def _scaled_history(entry: dict[str, Any], factor: float) -> dict[str, Any]:
    out = dict(entry)
    out["train_mse"] = entry["train_mse"] * factor
    out["best_val_mse"] = None if entry["best_val_mse"] is None else entry["best_val_mse"] * factor
    out["val_mse_by_depth"] = {str(k): v * factor for k, v in entry["val_mse_by_depth"].items()}
    return out
