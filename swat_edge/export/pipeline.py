"""The export pipeline: compile passes -> emit -> verify against the original model -> (quantize, drift) -> write.

This is what `swat-edge export` runs. Every artefact is checked against the *uncompiled* model's reference
forward pass before it is written, so a wrong pass, emitter or quantizer cannot produce a file.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Literal, Sequence, Union

import numpy as np

from ..compile import CompileResult, export_passes, run_passes
from ..compile.fold_normalization import wide_inputs
from ..data import model_rows, read_table
from ..errors import InputError, UsageError
from ..files import atomic_write_bytes, check_output_path
from ..model import SparseMLP, fill_missing, load_model, sample_inputs, with_missing_rows
from .c import CCheckReport, CSource, loop_layers_allowed, to_c, verify_c, write_c
from .cc import NO_COMPILER_HINT, which_c_compiler
from .onnx import CheckReport, to_onnx, verify_onnx
from .quantize import DriftReport, measure_drift, quantize_dynamic, quantize_static

__all__ = [
    "Quantization",
    "OnnxExport",
    "CExport",
    "ExportRows",
    "split_rows",
    "FileExport",
    "read_export_rows",
    "export_file",
    "export_onnx_file",
    "export_c_file",
    "output_kind",
]

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


@dataclass(frozen=True)
class ExportRows:
    """Rows from `export --calibration/--holdout` (raw inputs, model column order), and how reports name them."""

    calibration: np.ndarray | None  # int8 calibration rows
    heldout: np.ndarray | None  # rows to check the export / measure int8 drift on
    heldout_targets: np.ndarray | None  # their targets, when the file has the target columns
    calibration_source: str | None  # e.g. "750 rows of motor.csv"
    heldout_source: str | None  # e.g. "held-out rows from motor_holdout.csv"

    def columns(self, kept: list[int]) -> "ExportRows":
        """The same rows restricted to the input columns `kept` (for a model whose unused inputs were dropped)."""
        def pick(rows: np.ndarray | None) -> np.ndarray | None:
            return None if rows is None else rows[:, kept]

        return replace(self, calibration=pick(self.calibration), heldout=pick(self.heldout))


def read_export_rows(
    model: SparseMLP, *, calibration: str | os.PathLike | None = None, holdout: str | os.PathLike | None = None
) -> ExportRows:
    """Read the calibration and holdout files for `model`; either may be None (then its rows are None).

    A calibration file alone is split in half (split_rows): calibrate on one half, check on the other. A holdout
    file replaces that held-out half, so the check then runs on rows the calibration never saw.
    """
    cal_rows = held_x = held_y = None
    cal_source = held_source = None
    gaps = model.input_fill is not None  # a model that fills missing inputs takes rows with gaps
    if calibration is not None:
        x, y = model_rows(read_table(calibration, text=True), model.feature_names, model.target_names,
                          allow_missing=gaps)
        cal_rows, (held_x, held_y) = split_rows(x, y)
        cal_source = f"{len(cal_rows)} rows of {calibration}"
        held_source = f"held-out rows (half of {calibration})"
    if holdout is not None:
        held_x, held_y = model_rows(read_table(holdout, text=True), model.feature_names, model.target_names,
                                    allow_missing=gaps)
        held_source = f"held-out rows from {holdout}"
    return ExportRows(cal_rows, held_x, held_y, cal_source, held_source)


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
    drop_unused_inputs: bool = False,
) -> OnnxExport:
    """Compile, export, verify and write `model` as ONNX (fp32 or int8). Rows are in the model's raw columns.

    int8 weights are per output channel: on the bundled example per-tensor scales gave 15x the relative drift
    (measured 4.7e-3 vs 3.2e-4, both with reduce_range, which keeps U8S8 kernels on AVX2 from saturating).
    int8 calibration rows default to the rows stored in the model; drift is measured on `heldout_rows`
    (default: sampled rows over the model's input range, which is said in drift_rows_source).
    The graph takes every feature column of the model unless drop_unused_inputs (compile.export_passes).
    """
    dest = check_output_path(path, force=force)  # fail before the work, not after
    compiled = run_passes(model, passes=export_passes(int8=quantization != "none",
                                                       drop_unused_inputs=drop_unused_inputs))
    kept = list(compiled.kept_inputs)
    # decided on the model as trained: the compiled one has folded away the ranges wide_inputs needs
    fp32 = to_onnx(compiled.model, simplify=simplify, double_input=bool(wide_inputs(model)[kept].any()))
    check_x = sample_inputs(model, CHECK_ROWS, seed=1)
    if model.calibration is not None:
        check_x = np.vstack([check_x, model.calibration])
    check_x = with_missing_rows(model, check_x)
    check = verify_onnx(fp32, model, x=check_x, input_columns=kept)

    drift = None
    source = ""
    artefact = fp32
    if quantization != "none":
        # rows with gaps are filled as the graph fills them (IsNaN + Where), so calibration sees what Gemm sees
        calibration_rows = None if calibration_rows is None else fill_missing(model, np.asarray(calibration_rows))
        if heldout_rows is not None:
            heldout_rows = fill_missing(model, np.asarray(heldout_rows, dtype=np.float64))
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


# Which layers a C export emits as loops: indices, "all" that can be, or a function of the model that chooses.
LoopLayers = Union[Sequence[int], Literal["all"], Callable[[SparseMLP], Sequence[int]]]


def _loops(model: SparseMLP, loop_layers: LoopLayers) -> list[int]:
    allowed = loop_layers_allowed(model)
    if isinstance(loop_layers, str):
        if loop_layers != "all":
            raise UsageError(f"loop layers {loop_layers!r}: give layer indices, 'all' or a function")
        return list(allowed)
    chosen = loop_layers(model) if callable(loop_layers) else loop_layers
    return [li for li in chosen if li in allowed]


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
    loop_layers: LoopLayers = (),
) -> CExport:
    """Generate C99 for `model` (export_c.to_c), compile and check it against forward(), then write the .c and .h.

    prefix defaults to the file stem, sanitised into a C identifier (the change is in `code.notes`).
    The check runs on `heldout_rows` (raw inputs; `heldout_source` names them in the report), else on
    export_c.verify_c's default rows. int8 calibrates on `calibration_rows`, else the model's stored rows.
    With no C compiler at all the files are written unchecked and `not_verified` says why; a compiler that
    was asked for (cc, $CC) but is missing, a compile error (ToolchainError) or a numerical mismatch
    (NumericsError) raises, and nothing is written.
    loop_layers: layers to emit as loops (to_c), "all" for every layer that can be, or a function of the model
    that chooses them (the CLI passes the target's cost model: device.cost.choose_loop_layers); layers the code
    cannot emit as loops are left straight-line.
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
        loop_layers=_loops(model, loop_layers) if dtype == "float" else (),
        **options,
    )
    compiler = which_c_compiler(cc)
    check = None
    not_verified = None
    rows_source = ""
    if compiler is None:
        not_verified = NO_COMPILER_HINT
    else:
        rows = None if heldout_rows is None else fill_missing(model, np.asarray(heldout_rows, dtype=np.float64))
        check = verify_c(code, model, rows=rows, cc=shlex.join(compiler))  # the check adds rows with gaps itself
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


@dataclass(frozen=True)
class FileExport:
    """What `swat-edge export` did: the model it read, the rows it was handed, and the ONNX or C export."""

    model: SparseMLP
    rows: ExportRows
    result: OnnxExport | CExport

    @property
    def written(self) -> bool:
        """False only when the int8 drift gate (max_drift) refused an ONNX file."""
        return not isinstance(self.result, OnnxExport) or self.result.written


def _c_dtype(dtype: str | None, *, quantize: str | None, quantize_last: bool) -> Literal["float", "int8"]:
    """The C output's number type from `export`'s flags (default float); UsageError for ONNX-only flags."""
    if quantize is not None or quantize_last:
        raise UsageError("--quantize/--quantize-last: for ONNX output; for C int8 use --dtype int8")
    dtype = dtype or "float"
    if dtype not in ("float", "int8"):
        raise UsageError(f"--dtype {dtype!r}: use float or int8")
    return dtype  # type: ignore[return-value]


def _onnx_quantization(
    kind: Literal["onnx", "int8-onnx"], quantize: str | None, *, dtype: str | None, fast_math: bool, prefix: str | None
) -> Quantization:
    """An ONNX output's quantization from `export`'s flags: --quantize, else static for *.int8.onnx and none
    otherwise. UsageError for C-only flags or an unknown --quantize."""
    if dtype is not None or fast_math or prefix is not None:
        raise UsageError("--dtype/--fast-math/--prefix: for C output (-o model.c); for ONNX int8 use -o model.int8.onnx")
    if quantize is None:
        quantize = "static" if kind == "int8-onnx" else "none"
    if quantize not in ("none", "static", "dynamic"):
        raise UsageError(f"--quantize {quantize!r}: use none, static or dynamic")
    return quantize  # type: ignore[return-value]


def export_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    force: bool = False,
    quantize: str | None = None,
    quantize_last: bool = False,
    dtype: str | None = None,
    fast_math: bool = False,
    prefix: str | None = None,
    calibration: str | os.PathLike | None = None,
    holdout: str | os.PathLike | None = None,
    max_drift: float | None = None,
    drop_unused_inputs: bool = False,
    loop_layers: LoopLayers = (),
) -> FileExport:
    """`swat-edge export`: the output's name picks ONNX fp32, ONNX int8 or C (output_kind), then export_onnx_file
    or export_c_file on the model file, with rows from the calibration and holdout files (read_export_rows).

    The flags are checked before the model is read: UsageError for a flag of the other output kind (quantize,
    quantize_last for ONNX; dtype, fast_math, prefix for C) or an unknown quantize / dtype.
    """
    kind = output_kind(output)
    if kind == "c":
        c_dtype = _c_dtype(dtype, quantize=quantize, quantize_last=quantize_last)
    else:
        quantization = _onnx_quantization(kind, quantize, dtype=dtype, fast_math=fast_math, prefix=prefix)
    model = load_model(model_path)
    rows = read_export_rows(model, calibration=calibration, holdout=holdout)
    result: OnnxExport | CExport
    if kind == "c":
        if drop_unused_inputs:  # the C reads its inputs by index: drop them from the model it is generated from
            from ..compile import drop_unused_inputs as drop

            dropped = run_passes(model, passes=(drop,))
            model, rows = dropped.model, rows.columns(list(dropped.kept_inputs))
        result = export_c_file(
            model, output, force=force, dtype=c_dtype, fast_math=fast_math, prefix=prefix,
            calibration_rows=rows.calibration, heldout_rows=rows.heldout, heldout_source=rows.heldout_source,
            max_relative_mse=max_drift, loop_layers=loop_layers,
        )
    else:
        result = export_onnx_file(
            model, output, force=force, quantization=quantization, calibration_rows=rows.calibration,
            heldout_rows=rows.heldout, heldout_targets=rows.heldout_targets, keep_last_fp32=not quantize_last,
            max_drift=max_drift, drop_unused_inputs=drop_unused_inputs,
        )
    return FileExport(model=model, rows=rows, result=result)
