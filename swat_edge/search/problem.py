"""The data one search shares, and how it is prepared: the split and [-1, 1] scaling (Prepared), the Problem that
stays fixed through a run_search call, the pool entries and trials that candidates become, the accuracy Figures
that score them, and the helpers that turn a decoded network into a deployed, costed SparseMLP. Kept apart from
the orchestration (run.py) so that the reference candidates (references.py) and the fitting and cross-validation
(validation.py) build on it without a circular import.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compile import PIPELINE, PIPELINE_INT8
from ..data import Dataset, holdout_split, minmax_scaling
from ..device.cost import Estimate, choose_loop_layers, count_for, deployed_bytes, estimate, latency_us
from ..device.targets import TargetProfile
from ..errors import DataError
from ..model import Layer, SparseMLP, forward, hidden_activations, model_stats
from .classify import stratified_split
from .embedding.decode import SoftNetwork, to_sparse_mlp
from .inputs import InputStage, best_stage, expand_inputs, input_stage
from .latent import Assessment, Snapshot, family_param_count, snapshot_network
from .objective import Budgets

if TYPE_CHECKING:
    from .run import SearchSettings


MIN_TRAIN_ROWS = 16
MIN_VALIDATION_ROWS = 4


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
class Prepared:
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


def split_and_scale(dataset: Dataset, *, fraction: float, seed: int, strata: np.ndarray | None = None) -> Prepared:
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
    return Prepared(train, val, x_scale, x_offset, y_scale, y_offset, y_scaled.mean(axis=0),
                    y_scaled.std(axis=0), notes)


def _figures(model: SparseMLP, x: np.ndarray, y: np.ndarray, prep: Prepared) -> Figures:
    return _figures_of(forward(model, x), y, prep)


def _figures_of(pred: np.ndarray, y: np.ndarray, prep: Prepared) -> Figures:
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
class Problem:
    """What stays fixed through one run_search call: the split and scaled data, the target and the settings."""

    embedding: Any
    target: TargetProfile
    budgets: Budgets
    settings: SearchSettings
    prep: Prepared
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
class PoolEntry:
    """A network chosen for fine-tuning, with its latent-only score and its verified estimate on the target."""

    score: float  # orders the pool before its cut (single-activation variants, added after it: inf)
    snapshot: Snapshot
    model: SparseMLP
    exact: Estimate
    projected: bool  # activations projected onto one per layer
    origin: str = "search"  # or "linear" / "dense": a reference network from outside the latent space; "pruned"


@dataclass(frozen=True)
class Trial:
    """A pool entry after fine-tuning: its score decides the chosen network."""

    entry: PoolEntry
    score: float
    tuned: SparseMLP
    val_mse: float  # of the tuned model, scaled target (out-of-fold with cross-validation)
    finetune_history: tuple[tuple[int, float], ...]  # (step, validation MSE on the scaled target)
    out_of_fold: np.ndarray | None = None  # cross-validation: each row's prediction by the fold that held it out


def _hard_model(problem: Problem, net: SoftNetwork, threshold: float, **extra: Any) -> SparseMLP:
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


def _widen_outputs(problem: Problem, model: SparseMLP) -> SparseMLP:
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


def _assess(problem: Problem, net: SoftNetwork, threshold: float) -> Assessment:
    """A hard candidate's deployed figures on the target (optimise_latents' `assess`)."""
    model = _hard_model(problem, net, threshold)
    compiled = _compile_unverified(model, problem.dtype)
    loops = choose_loop_layers(compiled, problem.target, problem.budgets.size_bytes) if problem.dtype == "fp32" \
        else frozenset()
    counts = count_for(compiled, problem.target, problem.dtype, loops)
    return Assessment(latency_us=float(latency_us(counts, problem.target.cost, 1)),
                      size_bytes=float(deployed_bytes(counts, problem.target)),
                      nonzero_params=model_stats(compiled).nonzero_params)


def _build(problem: Problem, snap: Snapshot) -> SparseMLP:
    """The snapshot's network as a pruned SparseMLP in raw units, with calibration rows and provenance."""
    settings = problem.settings
    provenance = {
        "generator": "swat-edge search", "embedding_sha256": str(getattr(problem.embedding, "weights_sha256", "")),
        "target": problem.target.name, "seed": settings.seed, "depth": snap.depth, "start": snap.start,
        "step": snap.step, "weight_threshold": snap.threshold,
    }
    net = snapshot_network(problem.embedding, snap)
    return _hard_model(problem, net, snap.threshold, provenance=provenance, calibration=_calibration_rows(problem))


def _structure_terms(problem: Problem, model: SparseMLP, exact: Estimate) -> float:
    """The objective's size and latency terms of a hard model (what the score adds to log MSE)."""
    w = problem.settings.weights
    terms = w.sparsity * model_stats(model).nonzero_params / problem.param_scale
    if w.latency or w.size or problem.budgets.any:
        terms += w.latency * math.log(exact.latency_us[0]) + w.size * math.log(max(exact.model_bytes, 1))
    return terms


def _estimate(problem: Problem, model: SparseMLP) -> Estimate:
    """The model's estimate on the target in the problem's dtype, generated C's loop layers chosen for the size
    budget as `swat-edge export --size-budget` chooses them."""
    return estimate(model, problem.target, dtype=problem.dtype, size_budget_bytes=problem.budgets.size_bytes)


def _within_budgets(problem: Problem, model: SparseMLP) -> Estimate | None:
    """The model's verified estimate on the target, or None when it breaks a budget."""
    exact = _estimate(problem, model)
    return exact if problem.budgets.violation(exact.latency_us[0], exact.model_bytes) == 0.0 else None


def _calibration_rows(problem: Problem) -> np.ndarray:
    rows = np.random.default_rng(problem.settings.seed).permutation(len(problem.x_train))
    return problem.x_train[np.sort(rows[: problem.settings.calibration_rows])]


def _prepare_problem(dataset: Dataset, embedding: Any, target: TargetProfile, budgets: Budgets,
                     settings: SearchSettings, strata: np.ndarray | None = None) -> Problem:
    prep = split_and_scale(dataset, fraction=settings.validation_fraction, seed=settings.seed, strata=strata)
    family = getattr(embedding, "module", embedding).config.family
    stage, stage_fields = _input_stage(dataset, prep, family.max_inputs, settings)
    return Problem(
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


def _input_stage(dataset: Dataset, prep: Prepared, max_inputs: int,
                 settings: SearchSettings) -> tuple[InputStage | None, dict[str, Any]]:
    """The input stage when the data has more features than the family takes (fitted on the training rows; with
    --inputs auto the better of the two on the validation rows, inputs.best_stage), and the decoded networks'
    fields on its inputs; (None, {}) otherwise."""
    if dataset.x.shape[1] <= max_inputs:
        return None, {}
    x_train, y_train = dataset.x[prep.train], dataset.y[prep.train]
    if settings.inputs == "auto":
        stage, scores = best_stage(x_train, y_train, dataset.x[prep.val], dataset.y[prep.val], max_inputs,
                                   dataset.feature_names, settings.seed)
        said = ", ".join(f"{method} {score:.3g}" for method, score in scores.items())
        stage = replace(stage, description=f"{stage.description} (--inputs auto: validation MSE of a cubic "
                                           f"least-squares fit on each method's inputs, {said})")
    else:
        stage = input_stage(settings.inputs, x_train, y_train, max_inputs, dataset.feature_names, settings.seed)
    z_scale, z_offset = minmax_scaling(stage.z(x_train))
    return stage, dict(input_scale=z_scale, input_offset=z_offset, output_scale=prep.output_scale,
                       output_offset=prep.output_offset, feature_names=stage.names, target_names=dataset.target_names)
