"""Compile: model-to-model passes (one per module) and run_passes(), which checks every pass against forward().

A pass takes a SparseMLP and returns an equivalent, cheaper one plus a PassReport. May import: errors, model.
Never imports torch, onnx or anything downstream (export, measure, runs).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import NumericsError, UsageError
from ..model import SparseMLP, forward, output_tolerance, sample_inputs
from ._report import PassReport
from .dead_neurons import remove_dead_neurons
from .drop_inputs import drop_unused_inputs
from .fold_normalization import fold_normalization, fold_output_normalization
from .fuse_identity import fuse_identity_layers
from .group_activations import group_activations

__all__ = [
    "PassReport",
    "CompileResult",
    "Pass",
    "PIPELINE",
    "PIPELINE_INT8",
    "export_passes",
    "REPORT_COLUMNS",
    "run_passes",
    "format_reports",
    "remove_dead_neurons",
    "fuse_identity_layers",
    "fold_normalization",
    "fold_output_normalization",
    "drop_unused_inputs",
    "group_activations",
]

Pass = Callable[[SparseMLP], tuple[SparseMLP, PassReport]]

# Why this order:
# 1. fold_normalization first: it is exact in any position, and a zero input/output scale turns weight rows
#    or columns into zeros that the structural passes below can then remove in the same run.
# 2. remove_dead_neurons before fusing, so MAC comparisons see the real widths and masks are all on.
# 3. fuse_identity_layers; a product W1 @ W2 can have all-zero columns (constant neurons) or rows (unused
#    neurons upstream), so 4. remove_dead_neurons runs again.
# 5. drop_unused_inputs after every pass that can zero first-layer rows (dead neurons, zero input scale).
# 6. group_activations last: it fixes the neuron order the exporters rely on, so nothing may reorder after it.
PIPELINE: tuple[Pass, ...] = (
    fold_normalization,
    remove_dead_neurons,
    fuse_identity_layers,
    remove_dead_neurons,
    drop_unused_inputs,
    group_activations,
)

# For int8 graphs the input scaling stays a separate fp32 step (see fold_output_normalization).
PIPELINE_INT8: tuple[Pass, ...] = (fold_output_normalization, *PIPELINE[1:])


def export_passes(*, int8: bool = False, drop_unused_inputs: bool = False) -> tuple[Pass, ...]:
    """The passes an export runs. By default the exported model keeps the data's input signature (every feature
    column, in the data's order: an unused one has zero weights, which cost nothing in C and a few zero
    multiply-adds in a GEMM), so a consumer feeding the data's rows never meets a shape error;
    drop_unused_inputs opts in to the smaller signature. The cost model counts only the inputs that are read
    either way."""
    passes = PIPELINE_INT8 if int8 else PIPELINE
    return passes if drop_unused_inputs else tuple(p for p in passes if p is not _DROP_INPUTS_PASS)


_DROP_INPUTS_PASS = drop_unused_inputs  # the pass, under a name export_passes' flag does not shadow

REPORT_COLUMNS: tuple[str, ...] = ("pass", "widths", "nonzero params", "dense MACs", "max error", "what changed")


@dataclass(frozen=True)
class CompileResult:
    """The compiled model, one report per pass run, and which ORIGINAL input columns the model takes."""

    model: SparseMLP
    reports: tuple[PassReport, ...]
    kept_inputs: tuple[int, ...]


def _check_rows(model: SparseMLP, check_rows: int, seed: int) -> np.ndarray:
    # Random rows cover the normalised range a bit beyond training; stored calibration rows add real data.
    x = sample_inputs(model, check_rows, seed)
    if model.calibration is not None and len(model.calibration):
        x = np.vstack([x, model.calibration[:check_rows]])
    return x


def run_passes(
    model: SparseMLP,
    *,
    passes: Sequence[Pass] = PIPELINE,
    check_rows: int = 512,
    seed: int = 0,
) -> CompileResult:
    """Apply `passes` in order, verifying each against the previous model and the original on the same rows.

    Raises NumericsError when a pass moves any output by more than output_tolerance (1e-5 x output scale).
    The returned model's provenance lists the passes applied (appended to any earlier list).
    """
    if check_rows < 1:
        raise UsageError(f"check_rows={check_rows}: must be at least 1 (rows used to verify each pass)")
    x = _check_rows(model, check_rows, seed)
    y_reference = forward(model, x)
    tolerance = output_tolerance(model, y_reference)
    kept = tuple(range(model.n_inputs))
    y_previous = y_reference
    current = model
    reports: list[PassReport] = []
    for pass_fn in passes:
        name = getattr(pass_fn, "__name__", repr(pass_fn))
        new_model, report = pass_fn(current)
        kept = tuple(kept[i] for i in report.kept_inputs)
        y_new = forward(new_model, x[:, list(kept)])
        step_error = np.max(np.abs(y_new - y_previous), axis=0)
        total_error = np.max(np.abs(y_new - y_reference), axis=0)
        # `not <=` so that a NaN error fails the check instead of slipping through a `>` comparison.
        for error in (step_error, total_error):
            bad = ~(error <= tolerance)
            if bad.any():
                j = int(np.argmax(np.where(bad, np.nan_to_num(error / tolerance, nan=np.inf), -np.inf)))
                raise NumericsError(
                    f"pass {name}: max abs error {error[j]:.3g} on output {model.target_names[j]!r} exceeds "
                    f"tolerance {tolerance[j]:.3g} (1e-5 x output scale) on {len(x)} check rows; "
                    f"this pass is wrong for this model, please report it with the model file"
                )
        reports.append(replace(report, max_abs_error=float(np.max(step_error, initial=0.0))))
        current, y_previous = new_model, y_new

    provenance = dict(current.provenance)
    earlier = provenance.get("passes")
    names = [r.name for r in reports]
    provenance["passes"] = (list(earlier) if isinstance(earlier, list) else []) + names
    current = current.replace(provenance=provenance)
    return CompileResult(model=current, reports=tuple(reports), kept_inputs=kept)


def _widths_text(widths: Sequence[int]) -> str:
    return "-".join(str(w) for w in widths)


def format_reports(reports: Sequence[PassReport]) -> list[tuple[str, ...]]:
    """Rows for a table with REPORT_COLUMNS: pass, widths/params/MACs after, max error, what changed."""
    rows = []
    for r in reports:
        error = "-" if r.max_abs_error is None else f"{r.max_abs_error:.2g}"
        rows.append(
            (
                r.name,
                _widths_text(r.widths_after),
                str(r.nonzero_params_after),
                str(r.dense_macs_after),
                error,
                r.summary,
            )
        )
    return rows
