"""The export pipeline: compile passes -> emit -> verify against the original model -> (quantize, drift) -> write.

This is what `swat-edge export` runs. Every artefact is checked against the *uncompiled* model's reference
forward pass before it is written, so a wrong pass, emitter or quantizer cannot produce a file.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..compile import PIPELINE, PIPELINE_INT8, CompileResult, run_passes
from ..errors import InputError, UsageError
from ..files import atomic_write_bytes, check_output_path
from ..model import SparseMLP, sample_inputs
from .c import CCheckReport, CSource, to_c, verify_c, write_c
from .cc import NO_COMPILER_HINT, which_c_compiler
from .onnx import CheckReport, to_onnx, verify_onnx
from .quantize import DriftReport, measure_drift, quantize_dynamic, quantize_static

__all__ = ["Quantization", "OnnxExport", "CExport", "split_rows", "export_onnx_file", "export_c_file", "output_kind"]

Quantization = Literal["none", "static", "dynamic"]
# Rows used to check an export when the caller gives none; stored calibration rows are added to them.
CHECK_ROWS = 1024
MAX_CALIBRATION_ROWS = 512


@dataclass(frozen=True)
class OnnxExport:
    """What an ONNX export did; `written` is False only when an int8 drift gate refused the file."""

    path: Path
    quantization: Quantization
    compiled: CompileResult
    check: CheckReport  # fp32 graph vs the original model
    drift: DriftReport | None  # int8 vs fp32, on held-out rows
    drift_rows_source: str  # where the held-out rows came from, for the report
    size_bytes: int
    written: bool

    @property
    def dropped_inputs(self) -> tuple[str, ...]:
        return tuple(name for report in self.compiled.reports for name in report.dropped_inputs)


def output_kind(path: str | os.PathLike) -> Literal["onnx", "int8-onnx", "c"]:
    """What to produce, from the output file name: .onnx, .int8.onnx (static int8 by default) or .c."""
    name = Path(path).name.lower()
    if name.endswith(".int8.onnx"):
        return "int8-onnx"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(".c"):
        return "c"
    raise UsageError(f"{path}: unknown output format; name it *.onnx, *.int8.onnx or *.c")


def split_rows(
    x: np.ndarray, y: np.ndarray | None, *, seed: int = 0
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]:
    """Shuffle and split rows in half: calibration rows, and held-out rows (with targets) to measure drift on.

    Calibrating and measuring drift on the same rows would flatter int8; a single row serves both.
    """
    if len(x) < 2:
        return x, (x, y)
    order = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    cal, held = order[:half], order[half:]
    return x[cal][:MAX_CALIBRATION_ROWS], (x[held], None if y is None else y[held])


def export_onnx_file(
    model: SparseMLP,
    path: str | os.PathLike,
    *,
    force: bool = False,
    quantization: Quantization = "none",
    calibration_rows: np.ndarray | None = None,
    heldout_rows: np.ndarray | None = None,
    heldout_targets: np.ndarray | None = None,
    keep_last_fp32: bool = True,
    max_drift: float | None = None,
    simplify: bool = True,
) -> OnnxExport:
    """Compile, export, verify and write `model` as ONNX (fp32 or int8). Rows are in the model's raw columns.

    int8 weights are per output channel: on the bundled example per-tensor scales gave 15x the relative drift
    (measured 4.7e-3 vs 3.2e-4, both with reduce_range, which keeps U8S8 kernels on AVX2 from saturating).
    int8 calibration rows default to the rows stored in the model; drift is measured on `heldout_rows`
    (default: sampled rows over the model's input range, which is said in drift_rows_source).
    """
    dest = check_output_path(path, force=force)  # fail before the work, not after
    compiled = run_passes(model, passes=PIPELINE if quantization == "none" else PIPELINE_INT8)
    kept = list(compiled.kept_inputs)
    fp32 = to_onnx(compiled.model, simplify=simplify)
    check_x = sample_inputs(model, CHECK_ROWS, seed=1)
    if model.calibration is not None:
        check_x = np.vstack([check_x, model.calibration])
    check = verify_onnx(fp32, model, x=check_x, input_columns=kept)

    drift = None
    source = ""
    artefact = fp32
    if quantization != "none":
        if heldout_rows is None:
            heldout_rows, heldout_targets = sample_inputs(model, CHECK_ROWS, seed=2), None
            source = "rows sampled over the model's input range (pass held-out data for a real figure)"
        else:
            source = f"{len(heldout_rows)} held-out data rows"
        if quantization == "static":
            rows = calibration_rows if calibration_rows is not None else model.calibration
            if rows is None or len(rows) == 0:
                raise InputError(
                    "static int8 needs calibration rows and the model stores none: pass --calibration FILE "
                    "(rows of the model's input columns) or use --quantize dynamic"
                )
            artefact = quantize_static(
                fp32, np.asarray(rows)[:, kept], keep_last_fp32=keep_last_fp32, per_channel=True
            )
        else:
            artefact = quantize_dynamic(fp32, keep_last_fp32=keep_last_fp32, per_channel=True)
        targets = None if heldout_targets is None else np.asarray(heldout_targets, dtype=np.float64)
        drift = measure_drift(fp32, artefact, np.asarray(heldout_rows)[:, kept], targets=targets)

    data = artefact.SerializeToString()
    written = drift is None or max_drift is None or not drift.exceeds(max_drift)
    if written:
        atomic_write_bytes(dest, data, force=force)
    return OnnxExport(
        path=dest,
        quantization=quantization,
        compiled=compiled,
        check=check,
        drift=drift,
        drift_rows_source=source,
        size_bytes=len(data),
        written=written,
    )


@dataclass(frozen=True)
class CExport:
    """What a C export did. `check` is None only when no C compiler was found (`not_verified` says so)."""

    path: Path  # the .c file
    header_path: Path  # the .h file next to it
    code: CSource  # prefix, dtype, MACs, activation counts, notes (sanitised names, calibration)
    check: CCheckReport | None
    check_rows_source: str  # where the rows the code was checked on came from
    not_verified: str | None  # why the code was not compiled and checked; None when it was
    size_bytes: int  # .c and .h together


def export_c_file(
    model: SparseMLP,
    path: str | os.PathLike,
    *,
    force: bool = False,
    dtype: Literal["float", "int8"] = "float",
    fast_math: bool = False,
    prefix: str | None = None,
    calibration_rows: np.ndarray | None = None,
    heldout_rows: np.ndarray | None = None,
    heldout_source: str | None = None,
    max_relative_mse: float | None = None,
    cc: str | None = None,
) -> CExport:
    """Generate C99 for `model` (export_c.to_c), compile and check it against forward(), then write the .c and .h.

    prefix defaults to the file stem, sanitised into a C identifier (the change is in `code.notes`).
    The check runs on `heldout_rows` (raw inputs; `heldout_source` names them in the report), else on
    export_c.verify_c's default rows. int8 calibrates on `calibration_rows`, else the model's stored rows.
    With no C compiler at all the files are written unchecked and `not_verified` says why; a compiler that
    was asked for (cc, $CC) but is missing, a compile error (ToolchainError) or a numerical mismatch
    (NumericsError) raises, and nothing is written.
    """
    dest = Path(path)
    if dest.suffix != ".c":
        raise UsageError(f"{dest}: the C output must end in .c (its header is written next to it as .h)")
    header = dest.with_suffix(".h")
    check_output_path(dest, force=force)  # fail before the work, not after
    check_output_path(header, force=force)
    options = {} if max_relative_mse is None else {"max_relative_mse": float(max_relative_mse)}
    code = to_c(
        model,
        prefix=dest.stem if prefix is None else prefix,
        dtype=dtype,
        fast_math=fast_math,
        calibration_rows=calibration_rows,
        header_name=header.name,
        **options,
    )
    compiler = which_c_compiler(cc)
    check = None
    not_verified = None
    rows_source = ""
    if compiler is None:
        not_verified = NO_COMPILER_HINT
    else:
        check = verify_c(code, model, rows=heldout_rows, cc=shlex.join(compiler))
        rows_source = heldout_source if heldout_rows is not None and heldout_source else check.rows_source
    path_c, path_h = write_c(code, dest, force=force)
    return CExport(
        path=path_c,
        header_path=path_h,
        code=code,
        check=check,
        check_rows_source=rows_source,
        not_verified=not_verified,
        size_bytes=len(code.source.encode("utf-8")) + len(code.header.encode("utf-8")),
    )
