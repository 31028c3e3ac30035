"""`swat-edge search` on the torch side: check, split and scale the data, search latents, gather candidates
(searched networks, the linear model, dense references), fine-tune them, choose budget-first, and report the front.

Protocol (SWAT-NN's, reference/method.md): inputs and target are scaled to [-1, 1] with the *training* rows'
min and max; MSE figures are on that scaled target (comparable with the paper's CORNN numbers); the search
itself standardises the target and every scaling is folded into the returned model exactly. A validation split
of the training file decides everything (the best iterate of each start, the candidates, the fine-tuning stop,
the choice); below SearchSettings.cross_validation_below_rows rows, k-fold cross-validation over the training
file scores the candidates instead. A test file, when given, is only evaluated.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from ..compile import PIPELINE, PIPELINE_INT8
from ..data import Dataset, holdout_split, minmax_scaling
from ..device.cost import Estimate, affine_nodes, choose_loop_layers, count_for, deployed_bytes, estimate, latency_us
from ..device.targets import TargetProfile
from ..errors import DataError, InputError, UsageError
from ..model import Layer, SparseMLP, forward, hidden_activations, model_stats, random_model
from .embedding.decode import SoftNetwork, to_sparse_mlp
from .fit import FitSettings, fit_levenberg_marquardt
from .classify import (ClassFigures, class_figures, indicator_dataset, stratified_folds, stratified_split,
                       to_classifier)
from .inputs import INPUT_METHODS, InputStage, expand_inputs, input_stage
from .latent import (
    Assessment,
    LatentRun,
    LatentSettings,
    Snapshot,
    family_param_count,
    fine_tune,
    optimise_latents,
    snapshot_network,
)
from .objective import Budgets, ObjectiveWeights

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
    "choose",
    "pareto_front",
    "uses_cross_validation",
    "LINEAR_DEPTH",
]

MIN_TRAIN_ROWS = 16
MIN_VALIDATION_ROWS = 4
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
    # "auto": full-batch Levenberg-Marquardt (fit.py) up to full_batch_max_rows training rows, mini-batch Adam
    # beyond; "lm" or "adam" force one. LM reached 1e-3 to 1e-5x Adam's validation MSE on smooth CORNN tasks.
    fitter: str = "auto"
    full_batch_max_rows: int = 200_000
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
    calibration_rows: int = 256  # training rows stored in the model for int8 calibration
    # Dense networks of the family's largest width at these depths are fitted too, next to the search's
    # candidates and the linear model: the front then shows what a plain dense network buys on the target. They
    # are tanh, plus cheaper shapes on a target that charges a tanh much more than a ReLU (reference_shapes).
    # Depth 3: on all 54 CORNN tasks the dense sweep's best network was 3-4 layers deep on 41; on 8 of them
    # (seed 0) adding depth 3 took swat-edge's unbounded median ratio to the sweep from 2.16 to 1.10 on both
    # targets, for ~2.5 s more search time.
    dense_reference_depths: tuple[int, ...] = (1, 2, 3)
    # random starts per dense reference, the best on validation kept: on himmelblau the 8-8 tanh reached 2.8e-4
    # from one start and 4.3e-5 as the best of 7
    dense_reference_restarts: int = 3
    # Below this many rows one validation split is noise: candidates are scored by k-fold cross-validation over
    # all rows (the fitter stopping early on each held-out fold), then refitted on all rows for the median
    # number of iterations the folds found best. (Levenberg-Marquardt only; Adam keeps the holdout split.)
    cross_validation_below_rows: int = 1000
    cross_validation_folds: int = 5
    int8: bool = False  # force int8 deployment (default: the target profile's int8 policy decides)
    # More features than the embedding's networks take: how the search derives its inputs (search/inputs.py);
    # every network is expanded back to all features, so the model takes the data's columns. "auto": select
    # for regression (benchmarks/results/wide.md: median 0.93x the best dense network's test MSE, project
    # 1.00x), project for classification (results/classify.md: wine 100% against select's 93.3%, breast
    # cancer 95.1% against 93.7%; digits equal).
    inputs: str = "auto"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def check(self) -> "SearchSettings":
        """Refuse settings no search can run with (UsageError naming the flag), before any work."""
        self.fitter_for(0)
        if self.choice not in ("budget-first", "weighted"):
            raise UsageError(f"choice {self.choice!r}: use budget-first or weighted")
        if not self.tolerance >= 0.0:
            raise UsageError(f"--tolerance {self.tolerance:g}: give a share >= 0, e.g. 0.05 (5%)")
        if self.inputs not in ("auto", *INPUT_METHODS):
            raise UsageError(f"--inputs {self.inputs}: use auto, {' or '.join(INPUT_METHODS)}")
        return self

    def fitter_for(self, train_rows: int) -> str:
        """"lm" or "adam": what fine-tunes the candidates on this many training rows."""
        if self.fitter not in ("auto", "lm", "adam"):
            raise UsageError(f"--fitter {self.fitter}: use auto, lm or adam")
        if self.fitter == "auto":
            return "lm" if train_rows <= self.full_batch_max_rows else "adam"
        return self.fitter


def search_settings(*, steps: int, starts: int, latency_weight: float | None, validation: float, tolerance: float,
                    fitter: str, finetune_steps: int, int8: bool, seed: int, inputs: str = "auto") -> SearchSettings:
    """`swat-edge search`'s flags as settings: --latency-weight names a trade-off, so it switches the choice
    from budget-first (--tolerance) to the weighted score; checked before any work."""
    weights = ObjectiveWeights() if latency_weight is None else replace(ObjectiveWeights(), latency=latency_weight)
    return SearchSettings(
        latent=LatentSettings(steps=steps, starts_per_depth=starts), weights=weights, validation_fraction=validation,
        choice="budget-first" if latency_weight is None else "weighted", tolerance=tolerance, fitter=fitter,
        finetune_steps=finetune_steps, int8=int8, seed=seed, inputs=inputs,
    ).check()


@dataclass(frozen=True)
class Figures:
    """Accuracy on one split: MSE on the target scaled to [-1, 1] by the training rows, and R^2 (both averaged
    over the targets; per target in mse_per_target and r2_per_target)."""

    mse: float
    r2: float
    rows: int
    mse_per_target: tuple[float, ...] = ()
    r2_per_target: tuple[float, ...] = ()


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
    # a classifier's figures per split ("train", "validation" unless cross-validated, "test"); None: regression
    classification: dict[str, ClassFigures] | None = None


def check_dataset(dataset: Dataset, family: Any, embedding_name: str) -> None:
    """Refuse data the embedding's family cannot take (its outputs), with the limit and the fix. Any number of
    features is taken (beyond the family's inputs, through the input stage, search/inputs.py), and any number of
    targets by a single-output family (see _Problem.summary)."""
    n_out = dataset.y.shape[1]
    if n_out != family.n_outputs and family.n_outputs != 1:
        raise InputError(
            f"{dataset.path}: {n_out} target column(s) ({', '.join(dataset.target_names)}), but embedding "
            f"{embedding_name} predicts exactly {family.n_outputs}; choose {family.n_outputs} with --target-col, or "
            f"train an embedding with that many outputs: swat-edge embed train --preset default --config "
            f"'{{\"family\": {{\"n_outputs\": {n_out}}}}}' --out DIR, then pass --embedding DIR"
        )


@dataclass(frozen=True)
class _Prepared:
    train: np.ndarray
    val: np.ndarray
    x_scale: np.ndarray
    x_offset: np.ndarray
    y_scale: np.ndarray
    y_offset: np.ndarray
    y_mean: np.ndarray  # of the scaled training target
    y_std: np.ndarray
    notes: tuple[str, ...]

    def x(self, x: np.ndarray) -> np.ndarray:
        return x * self.x_scale + self.x_offset

    def y_standard(self, y: np.ndarray) -> np.ndarray:
        return ((y * self.y_scale + self.y_offset) - self.y_mean) / self.y_std

    @property
    def output_scale(self) -> np.ndarray:
        return self.y_std / self.y_scale

    @property
    def output_offset(self) -> np.ndarray:
        return (self.y_mean - self.y_offset) / self.y_scale


def split_and_scale(dataset: Dataset, *, fraction: float, seed: int, strata: np.ndarray | None = None) -> _Prepared:
    """Hold out the validation rows (the same share of every stratum, e.g. class, when strata are given), check
    there is something to learn, fit the [-1, 1] scaling on training rows."""
    n = dataset.n_rows
    n_val = max(int(round(fraction * n)), MIN_VALIDATION_ROWS)
    if n - n_val < MIN_TRAIN_ROWS:
        raise DataError(
            dataset.path,
            f"has {n} rows; the search needs at least {MIN_TRAIN_ROWS + MIN_VALIDATION_ROWS} ({MIN_TRAIN_ROWS} to "
            f"train and {n_val} held out for validation at --validation {fraction:g}); add rows",
        )
    if strata is None:
        train, val = holdout_split(n, fraction=fraction, seed=seed, min_rows=MIN_VALIDATION_ROWS)
    else:
        train, val = stratified_split(strata, fraction=fraction, seed=seed, min_rows=MIN_VALIDATION_ROWS)
    y_train = dataset.y[train]
    for j, name in enumerate(dataset.target_names):
        if np.ptp(y_train[:, j]) <= 1e-12 * max(abs(float(y_train[0, j])), 1.0):
            raise DataError(
                dataset.path,
                f"the target is constant ({y_train[0, j]:g}) on all {len(train)} training rows; there is nothing "
                "to learn (choose another --target-col)",
                column=name,
            )
    x_scale, x_offset = minmax_scaling(dataset.x[train])
    y_scale, y_offset = minmax_scaling(y_train)
    y_scaled = y_train * y_scale + y_offset
    notes = tuple(
        f"feature {name!r} is constant on the training rows; the model ignores it (export drops that input)"
        for name, s in zip(dataset.feature_names, x_scale) if s == 0.0
    )
    return _Prepared(train, val, x_scale, x_offset, y_scale, y_offset, y_scaled.mean(axis=0),
                     y_scaled.std(axis=0), notes)


def _figures(model: SparseMLP, x: np.ndarray, y: np.ndarray, prep: _Prepared) -> Figures:
    return _figures_of(forward(model, x), y, prep)


def _figures_of(pred: np.ndarray, y: np.ndarray, prep: _Prepared) -> Figures:
    err = ((pred - y) * prep.y_scale) ** 2
    centred = ((y - y.mean(axis=0)) * prep.y_scale) ** 2
    sst = centred.sum(axis=0)
    r2 = 1.0 - err.sum(axis=0) / np.where(sst > 0, sst, np.nan)
    return Figures(mse=float(err.mean()), r2=float(np.nanmean(r2)) if np.isfinite(r2).any() else float("nan"),
                   rows=len(y), mse_per_target=tuple(float(v) for v in err.mean(axis=0)),
                   r2_per_target=tuple(float(v) for v in r2))


def _compile_unverified(model: SparseMLP, dtype: str) -> SparseMLP:
    # The search assesses hundreds of candidates; run_passes' per-pass verification (~10 ms) is left to the
    # export, which verifies the final model against forward() before writing anything.
    for pass_fn in PIPELINE_INT8 if dtype == "int8" else PIPELINE:
        model, _ = pass_fn(model)
    return model


def _search_dtype(target: TargetProfile, force_int8: bool) -> str:
    if force_int8 or target.int8_policy == "always":
        return "int8"
    return "fp32"  # "when_faster" is decided on the final model (cost.choose_dtype)


@dataclass(frozen=True)
class _Problem:
    """What stays fixed through one run_search call: the split and scaled data, the target and the settings."""

    embedding: Any
    target: TargetProfile
    budgets: Budgets
    settings: SearchSettings
    prep: _Prepared
    x_train: np.ndarray  # raw units, as read
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    dtype: str  # what the search assumes the target runs: fp32 or int8
    model_fields: dict[str, Any]  # the scalings and names every SparseMLP of this search carries
    to_scaled: float  # standardised MSE x to_scaled = MSE on the [-1, 1]-scaled target
    param_scale: float  # the family's largest network's parameter count (normalises the sparsity term)
    # more features than the family takes: the stage mapping them to the search's inputs, and the fields of the
    # decoded networks on those inputs (their z scaling and names) before they are expanded to all features
    stage: InputStage | None = None
    stage_fields: dict[str, Any] = field(default_factory=dict)
    # several targets and a single-output family: the latent search fits one summary target, the standardised
    # targets' first principal component (summary = y_standard @ summary), and every decoded network then gets
    # a K-output layer solved by least squares on its hidden features (fine-tuning trains it with the rest)
    summary: np.ndarray | None = None
    strata: np.ndarray | None = None  # a classifier's labels, in the file's order (stratified splits and folds)

    @property
    def n_inputs(self) -> int:
        return self.x_train.shape[1]

    @property
    def latent_inputs(self) -> int:
        """How many inputs the searched networks take (the stage's, or the data's)."""
        return self.n_inputs if self.stage is None else len(self.stage.names)

    def latent_y(self, y: np.ndarray) -> np.ndarray:
        """Targets as the latent search sees them: standardised, or their summary (one column)."""
        standard = self.prep.y_standard(y)
        return standard if self.summary is None else (standard @ self.summary)[:, None]

    def decode_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """SparseMLP fields for a decoded network: its outputs are the summary's when there is one."""
        if self.summary is None:
            return fields
        return {**fields, "output_scale": np.ones(1), "output_offset": np.zeros(1), "target_names": ("summary",)}

    def latent_x(self, x: np.ndarray) -> np.ndarray:
        """Raw rows as the latent search sees them: scaled to [-1, 1], through the stage if there is one."""
        if self.stage is None:
            return self.prep.x(x)
        return self.stage.z(x) * self.stage_fields["input_scale"] + self.stage_fields["input_offset"]

    @functools.cached_property
    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row of the training file (training and validation split), in the file's order."""
        order = np.argsort(np.concatenate([self.prep.train, self.prep.val]))
        return np.vstack([self.x_train, self.x_val])[order], np.vstack([self.y_train, self.y_val])[order]


@dataclass(frozen=True)
class _PoolEntry:
    """A network chosen for fine-tuning, with its latent-only score and its verified estimate on the target."""

    score: float  # orders the pool before its cut (single-activation variants, added after it: inf)
    snapshot: Snapshot
    model: SparseMLP
    exact: Estimate
    projected: bool  # activations projected onto one per layer
    origin: str = "search"  # or "linear" / "dense": a reference network from outside the latent space


@dataclass(frozen=True)
class _Trial:
    """A pool entry after fine-tuning: its score decides the chosen network."""

    entry: _PoolEntry
    score: float
    tuned: SparseMLP
    val_mse: float  # of the tuned model, scaled target (out-of-fold with cross-validation)
    finetune_history: tuple[tuple[int, float], ...]  # (step, validation MSE on the scaled target)
    out_of_fold: np.ndarray | None = None  # cross-validation: each row's prediction by the fold that held it out


def _hard_model(problem: _Problem, net: SoftNetwork, threshold: float, **extra: Any) -> SparseMLP:
    """A decoded network as a SparseMLP on the data's raw features (expanded through the input stage when the
    search ran on derived inputs); extra: more SparseMLP fields (provenance, calibration)."""
    if problem.stage is None:
        model = to_sparse_mlp(net, 0, n_inputs=problem.n_inputs, weight_threshold=threshold,
                              **problem.decode_fields(problem.model_fields))
    else:
        small = to_sparse_mlp(net, 0, n_inputs=problem.latent_inputs, weight_threshold=threshold,
                              **problem.decode_fields(problem.stage_fields))
        fields = problem.model_fields
        model = expand_inputs(small, problem.stage, input_scale=fields["input_scale"],
                              input_offset=fields["input_offset"], feature_names=fields["feature_names"],
                              input_fill=fields["input_fill"])
    if problem.summary is not None:
        model = _widen_outputs(problem, model)
    return model.replace(**extra) if extra else model


def _widen_outputs(problem: _Problem, model: SparseMLP) -> SparseMLP:
    """A network decoded for the summary target with an output layer for every target instead: least squares on
    its active hidden features (a seeded subsample of the training rows), the search's output scaling."""
    rows = np.random.default_rng(problem.settings.seed).permutation(len(problem.x_train))
    rows = np.sort(rows[: problem.settings.latent.projection_rows])
    h = hidden_activations(model, problem.x_train[rows])
    active = model.hidden[-1].mask if model.hidden else np.ones(h.shape[1], dtype=bool)
    design = np.hstack([h[:, active], np.ones((len(rows), 1))])
    coef = np.linalg.lstsq(design, problem.prep.y_standard(problem.y_train[rows]), rcond=None)[0]
    weight = np.zeros((h.shape[1], coef.shape[1]))
    weight[active] = coef[:-1]
    fields = problem.model_fields
    return model.replace(output=Layer.make(weight, coef[-1], "identity"), output_scale=fields["output_scale"],
                         output_offset=fields["output_offset"], target_names=fields["target_names"])


def _assess(problem: _Problem, net: SoftNetwork, threshold: float) -> Assessment:
    """A hard candidate's deployed figures on the target (optimise_latents' `assess`)."""
    model = _hard_model(problem, net, threshold)
    compiled = _compile_unverified(model, problem.dtype)
    loops = choose_loop_layers(compiled, problem.target, problem.budgets.size_bytes) if problem.dtype == "fp32" \
        else frozenset()
    counts = count_for(compiled, problem.target, problem.dtype, loops)
    return Assessment(latency_us=float(latency_us(counts, problem.target.cost, 1)),
                      size_bytes=float(deployed_bytes(counts, problem.target)),
                      nonzero_params=model_stats(compiled).nonzero_params)


def _report_scaled(progress: Callable[[int, int, dict[str, Any]], None], to_scaled: float, step: int, total: int,
                   info: dict[str, Any]) -> None:
    """Pass the search's progress on with its MSE figures on the scaled target."""
    best = info.get("best_val_mse")
    progress(step, total, {**info, "train_mse": info["train_mse"] * to_scaled,
                           "best_val_mse": None if best is None else best * to_scaled})


def _build(problem: _Problem, snap: Snapshot) -> SparseMLP:
    """The snapshot's network as a pruned SparseMLP in raw units, with calibration rows and provenance."""
    settings = problem.settings
    provenance = {
        "generator": "swat-edge search", "embedding_sha256": str(getattr(problem.embedding, "weights_sha256", "")),
        "target": problem.target.name, "seed": settings.seed, "depth": snap.depth, "start": snap.start,
        "step": snap.step, "weight_threshold": snap.threshold,
    }
    net = snapshot_network(problem.embedding, snap)
    return _hard_model(problem, net, snap.threshold, provenance=provenance, calibration=_calibration_rows(problem))


def _structure_terms(problem: _Problem, model: SparseMLP, exact: Estimate) -> float:
    """The objective's size and latency terms of a hard model (what the score adds to log MSE)."""
    w = problem.settings.weights
    terms = w.sparsity * model_stats(model).nonzero_params / problem.param_scale
    if w.latency or w.size or problem.budgets.any:
        terms += w.latency * math.log(exact.latency_us[0]) + w.size * math.log(max(exact.model_bytes, 1))
    return terms


def _candidate(problem: _Problem, snap: Snapshot, model: SparseMLP, exact: Estimate | None, **extra: Any) -> Candidate:
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


def _estimate(problem: _Problem, model: SparseMLP) -> Estimate:
    """The model's estimate on the target in the problem's dtype, generated C's loop layers chosen for the size
    budget as `swat-edge export --size-budget` chooses them."""
    return estimate(model, problem.target, dtype=problem.dtype, size_budget_bytes=problem.budgets.size_bytes)


def _within_budgets(problem: _Problem, model: SparseMLP) -> Estimate | None:
    """The model's verified estimate on the target, or None when it breaks a budget."""
    exact = _estimate(problem, model)
    return exact if problem.budgets.violation(exact.latency_us[0], exact.model_bytes) == 0.0 else None


def _feasible_pool(problem: _Problem, run: LatentRun) -> list[_PoolEntry]:
    """Each depth's best start within the budgets (the verified estimate agreeing), best latent-only scores
    first, at most finetune_depths of them."""
    pool = []
    for snap in _best_per_depth(run.best).values():
        model = _build(problem, snap)
        exact = _within_budgets(problem, model)
        if exact is not None:
            pool.append(_PoolEntry(snap.score, snap, model, exact, projected=False))
    pool.sort(key=lambda entry: (entry.score, entry.snapshot.depth))
    return pool[: max(problem.settings.finetune_depths, 1)]


def _single_activation_variants(problem: _Problem, pool: list[_PoolEntry]) -> list[_PoolEntry]:
    """The pooled networks with a mixed layer, projected onto one activation per layer (where within budgets)."""
    variants = []
    for entry in pool:
        single = single_activation(entry.model, problem.target)
        if any(a.activations != b.activations for a, b in zip(single.hidden, entry.model.hidden)):  # a mixed layer
            exact = _within_budgets(problem, single)
            if exact is not None:
                variants.append(_PoolEntry(math.inf, entry.snapshot, single, exact, projected=True))
    return variants


def _projected_near_miss(problem: _Problem, run: LatentRun) -> list[_PoolEntry]:
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
            projected.append(_PoolEntry(score, snap, model, exact, projected=True))
    return sorted(projected, key=lambda entry: (entry.score, entry.snapshot.depth))[:1]


LINEAR_DEPTH = 0  # a candidate's depth 0 is the linear model (no hidden layer), start -1: not from the search


def _calibration_rows(problem: _Problem) -> np.ndarray:
    rows = np.random.default_rng(problem.settings.seed).permutation(len(problem.x_train))
    return problem.x_train[np.sort(rows[: problem.settings.calibration_rows])]


def _reference_entry(problem: _Problem, model: SparseMLP, depth: int, origin: str) -> _PoolEntry | None:
    """A network from outside the latent space as a pool entry (None when it does not meet the budgets)."""
    exact = _within_budgets(problem, model)
    if exact is None:
        return None
    return _PoolEntry(score=math.inf, snapshot=_reference_snapshot(depth), model=model, exact=exact, projected=False,
                      origin=origin)


def _reference_snapshot(depth: int) -> Snapshot:
    """The placeholder snapshot of a network from outside the latent space (start -1)."""
    return Snapshot(depth=depth, start=-1, step=0, val_mse=math.nan, score=math.inf, latent=np.zeros(0),
                    threshold=0.0, assessment=None, violation=0.0)


def _provenance(problem: _Problem, depth: int, fit: str) -> dict[str, Any]:
    return {"generator": "swat-edge search", "target": problem.target.name, "seed": problem.settings.seed,
            "depth": depth, "fit": fit}


def _least_squares_line(problem: _Problem, x: np.ndarray, y: np.ndarray) -> SparseMLP:
    """The linear model (no hidden layer) fitted by least squares to raw rows x, y."""
    fields = problem.model_fields
    x_n = x * fields["input_scale"] + fields["input_offset"]
    y_n = (y - fields["output_offset"]) / fields["output_scale"]
    coef = np.linalg.lstsq(np.hstack([x_n, np.ones((len(x_n), 1))]), y_n, rcond=None)[0]
    return SparseMLP.make([], Layer.make(coef[:-1], coef[-1], "identity"),
                          provenance=_provenance(problem, LINEAR_DEPTH, "least squares"),
                          calibration=_calibration_rows(problem), **fields)


def _linear_entry(problem: _Problem) -> _PoolEntry | None:
    """The least-squares linear model as a candidate, so the search never ends worse than a straight line on
    validation."""
    model = _least_squares_line(problem, problem.x_train, problem.y_train)
    return _reference_entry(problem, model, LINEAR_DEPTH, "linear")


# A target whose tanh costs at least this many times its cheapest piecewise-linear activation (generated C on an
# MCU: libm tanhf is ~160 cycles against ~4 for a ReLU, the price of ~35 multiply-adds) is activation-bound:
# there a tanh network of the largest width misses the small latency budgets, so its dense references add the
# cheap activation and a half-width tanh layer (on 8 CORNN tasks under a 9.6 us cortex-m4 budget the best dense
# network was a 2-4-1 tanh on 4, a ReLU network on the others).
CHEAP_ACTIVATION_RATIO = 4.0


def reference_shapes(target: TargetProfile, max_width: int, depths: Iterable[int]) -> tuple[tuple[int, int, str], ...]:
    """The search's dense references on this target as (depth, width, activation): tanh at the largest width
    for each depth; on an activation-bound target also the cheapest of relu / leaky_relu at each depth and a
    one-layer tanh of half the width."""
    depths = tuple(depths)
    shapes = [(depth, max_width, "tanh") for depth in depths]
    cheapest = min(("relu", "leaky_relu"), key=lambda a: (getattr(target.cost, f"{a}_ns"), a))
    if target.cost.tanh_ns >= CHEAP_ACTIVATION_RATIO * getattr(target.cost, f"{cheapest}_ns"):
        shapes += [(depth, max_width, cheapest) for depth in depths]
        if max_width >= 2 and 1 in depths:
            shapes.append((1, max_width // 2, "tanh"))
    return tuple(shapes)


def _dense_entries(problem: _Problem, family: Any) -> list[_PoolEntry]:
    """The target's dense references (reference_shapes), each from SearchSettings.dense_reference_restarts
    seeded starts."""
    entries = []
    for depth, width, activation in reference_shapes(problem.target, family.max_width,
                                                     problem.settings.dense_reference_depths):
        for restart in range(problem.settings.dense_reference_restarts):
            widths = (problem.n_inputs, *([width] * depth), problem.y_train.shape[1])
            start = random_model(widths, activations=activation, per_layer=True,
                                 seed=problem.settings.seed + restart, normalization=False)
            model = start.replace(provenance=_provenance(problem, depth, "dense reference"),
                                  calibration=_calibration_rows(problem), **problem.model_fields)
            entry = _reference_entry(problem, model, depth, "dense")
            if entry is not None:
                entries.append(entry)
    return entries


def _reference_shape(entry: _PoolEntry) -> tuple[int, int, str]:
    """A dense reference's (depth, width, activation)."""
    return entry.snapshot.depth, entry.model.hidden[0].n_out, entry.model.hidden[0].activations[0]


def _best_restarts(trials: list[_Trial]) -> list[_Trial]:
    """One trial per dense reference shape: the restart with the best validation MSE (the others
    are dropped, so the front is not crowded with restarts of one network)."""
    best: dict[tuple[int, int, str], _Trial] = {}
    for trial in (t for t in trials if t.entry.origin == "dense"):
        shape = _reference_shape(trial.entry)
        if shape not in best or trial.val_mse < best[shape].val_mse:
            best[shape] = trial
    return [t for t in trials if t.entry.origin != "dense" or best[_reference_shape(t.entry)] is t]


def _fine_tune_pool(problem: _Problem, run: LatentRun) -> list[_PoolEntry]:
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


def _reference_pool(problem: _Problem) -> list[_PoolEntry]:
    """The candidates from outside the latent space (the linear model, then the dense references): they do not
    depend on the latent search, so they can be fitted while it runs."""
    linear = _linear_entry(problem)
    family = getattr(problem.embedding, "module", problem.embedding).config.family
    return ([linear] if linear is not None else []) + _dense_entries(problem, family)


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


def _trial(problem: _Problem, entry: _PoolEntry, tuned: SparseMLP, val_scaled: float,
           history: tuple[tuple[int, float], ...], out_of_fold: np.ndarray | None = None) -> _Trial:
    """A fitted pool entry with its objective score; history comes in raw units and is kept on the scaled target."""
    score = math.log(max(val_scaled / problem.to_scaled, 1e-30)) + _structure_terms(problem, entry.model, entry.exact)
    scale2 = float(np.mean(problem.prep.y_scale**2))
    return _Trial(entry, score, tuned, val_scaled, tuple((step, val * scale2) for step, val in history), out_of_fold)


def _fine_tune_entry(problem: _Problem, entry: _PoolEntry) -> _Trial:
    tuned, history = fit_candidate(entry.model, problem.x_train, problem.y_train, problem.x_val, problem.y_val,
                                   problem.settings)
    return _trial(problem, entry, tuned, _figures(tuned, problem.x_val, problem.y_val, problem.prep).mse, history)


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


def _cross_validated_entry(problem: _Problem, entry: _PoolEntry) -> _Trial:
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


def _latent_only(problem: _Problem, trials: list[_Trial], chosen: _Trial) -> SparseMLP:
    """What the latent search alone found (the paper's procedure, an ablation figure): the chosen network as
    decoded, before projection and fine-tuning; when a reference network was chosen, the searched network that
    scored best on validation as decoded."""
    searched = [t for t in trials if t.entry.origin == "search"]
    if chosen.entry.origin != "search":
        if not searched:
            return chosen.entry.model
        chosen = min(searched, key=lambda t: (t.entry.snapshot.val_mse, t.entry.snapshot.depth))
    return _build(problem, chosen.entry.snapshot)


def choose(trials: list[_Trial], settings: SearchSettings) -> _Trial:
    """The chosen network among fine-tuned candidates that all meet the budgets (see SearchSettings.choice)."""
    if settings.choice == "weighted":
        return min(trials, key=lambda trial: (trial.score, trial.entry.snapshot.depth))
    best_val = min(trial.val_mse for trial in trials)
    near_best = [trial for trial in trials if trial.val_mse <= best_val * (1.0 + settings.tolerance)]
    return min(near_best, key=lambda trial: (trial.entry.exact.latency_us[0], trial.val_mse,
                                              trial.entry.snapshot.depth))


def _finetune_stage_message(pool: list[_PoolEntry], settings: SearchSettings, train_rows: int,
                            cross_validation_rows: int | None = None) -> str:
    names = ", ".join(f"{e.snapshot.depth}{' (one activation per layer)' if e.projected else ''}" for e in pool
                      if e.origin == "search")
    references = list(dict.fromkeys(  # restarts of one dense reference named once
        "dense {}x{} {}".format(*_reference_shape(e)) if e.origin == "dense"
        else "linear"
        for e in pool if e.origin != "search"))
    if settings.dense_reference_restarts > 1 and any(e.origin == "dense" for e in pool):
        references.append(f"{settings.dense_reference_restarts} starts each")
    if cross_validation_rows is not None:
        how = (f"Levenberg-Marquardt, {settings.cross_validation_folds}-fold cross-validation over all "
               f"{cross_validation_rows} rows, then refitted on all of them")
    elif settings.fitter_for(train_rows) == "lm":
        how = (f"Levenberg-Marquardt, full batch of {train_rows} rows, up to {settings.fit.max_iterations} "
               "iterations each")
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


def _prepare_problem(dataset: Dataset, embedding: Any, target: TargetProfile, budgets: Budgets,
                     settings: SearchSettings, strata: np.ndarray | None = None) -> _Problem:
    prep = split_and_scale(dataset, fraction=settings.validation_fraction, seed=settings.seed, strata=strata)
    family = getattr(embedding, "module", embedding).config.family
    stage, stage_fields = _input_stage(dataset, prep, family.max_inputs, settings, classification=strata is not None)
    return _Problem(
        summary=_summary(prep.y_standard(dataset.y[prep.train])) if dataset.y.shape[1] > 1 else None,
        embedding=embedding, target=target, budgets=budgets, settings=settings, prep=prep,
        x_train=dataset.x[prep.train], y_train=dataset.y[prep.train], x_val=dataset.x[prep.val],
        y_val=dataset.y[prep.val], dtype=_search_dtype(target, settings.int8),
        model_fields=dict(
            input_scale=prep.x_scale, input_offset=prep.x_offset, output_scale=prep.output_scale,
            output_offset=prep.output_offset, feature_names=dataset.feature_names,
            target_names=dataset.target_names, input_fill=dataset.input_fill,
        ),
        to_scaled=float(np.mean(prep.y_std**2)), param_scale=float(family_param_count(family)),
        stage=stage, stage_fields=stage_fields, strata=strata,
    )


def _summary(y_standard: np.ndarray) -> np.ndarray:
    """Weights w with y_standard @ w the standardised targets' first principal component at unit variance."""
    _, singular, vt = np.linalg.svd(y_standard - y_standard.mean(axis=0), full_matrices=False)
    direction = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
    return direction / max(float(singular[0]) / np.sqrt(len(y_standard)), 1e-12)


def input_method(settings: SearchSettings, classification: bool) -> str:
    """The input stage's method: --inputs, or for "auto" select (regression) / project (classification)."""
    if settings.inputs != "auto":
        return settings.inputs
    return "project" if classification else "select"


def _input_stage(dataset: Dataset, prep: _Prepared, max_inputs: int, settings: SearchSettings,
                 classification: bool) -> tuple[InputStage | None, dict[str, Any]]:
    """The input stage when the data has more features than the family takes (fitted on the training rows), and
    the decoded networks' fields on its inputs; (None, {}) otherwise."""
    if dataset.x.shape[1] <= max_inputs:
        return None, {}
    x_train, y_train = dataset.x[prep.train], dataset.y[prep.train]
    stage = input_stage(input_method(settings, classification), x_train, y_train, max_inputs,
                        dataset.feature_names, settings.seed)
    z_scale, z_offset = minmax_scaling(stage.z(x_train))
    return stage, dict(input_scale=z_scale, input_offset=z_offset, output_scale=prep.output_scale,
                       output_offset=prep.output_offset, feature_names=stage.names, target_names=dataset.target_names)


def _search_latents(problem: _Problem, progress: Callable[[int, int, dict[str, Any]], None] | None) -> LatentRun:
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


def _nothing_within_budgets(problem: _Problem, run: LatentRun, data_path: Any, history: tuple[dict[str, Any], ...],
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
    reference networks in jobs - 1 background threads while the latent search runs (the same model for any
    number)."""
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
    problem = _prepare_problem(dataset, embedding, target, budgets, settings, strata)
    timings: dict[str, float] = {}
    cross_validation = uses_cross_validation(settings, dataset.n_rows)
    fit_entry = functools.partial(_cross_validated_entry if cross_validation else _fine_tune_entry, problem)
    split_rows = {"train": len(problem.prep.train), "validation": len(problem.prep.val),
                  "test": 0 if test is None else test.n_rows}
    references = _reference_pool(problem)
    t0 = time.perf_counter()
    # The references are fitted by background threads while the latent search (torch) runs, the searched networks
    # by this thread once it is done; every fit is independent and single-threaded in BLAS (held for the whole
    # section: threadpoolctl's limit is process-wide), so the trials are the same for any number of jobs.
    with threadpool_limits(limits=1, user_api="blas"), \
            ThreadPoolExecutor(max_workers=max(jobs - 1, 1)) as background:
        fitting = [background.submit(fit_entry, entry) for entry in references] if jobs > 1 else []
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
        trials = [fit_entry(entry) for entry in (pool if jobs == 1 else searched)]
        trials += [future.result() for future in fitting]
    trials = _best_restarts(trials)
    best_trial = choose(trials, settings)
    final = best_trial.tuned
    latent_model = _latent_only(problem, trials, best_trial)
    timings["fine_tune_s"] = time.perf_counter() - t0 - timings["search_s"]

    front = pareto_front([(t.val_mse, t.entry.exact.latency_us[0], t.entry.exact.model_bytes) for t in trials])
    candidates = tuple(
        _candidate(problem, t.entry.snapshot, t.entry.model, t.entry.exact, finetuned_val_mse=t.val_mse,
                   projected=t.entry.projected, chosen=t is best_trial, origin=t.entry.origin, on_front=on_front)
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
    notes = problem.prep.notes + ((f"{dataset.x.shape[1]} features, the embedding's networks take "
                                   f"{problem.latent_inputs}: {problem.stage.description}; the model takes all "
                                   "features (--inputs select|project)",) if problem.stage is not None else ())
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
    )


def _cross_validation_figures(problem: _Problem, chosen: _Trial, metrics: dict[str, dict[str, Figures]],
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
