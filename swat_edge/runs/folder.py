"""Search run directories: naming, overwrite refusal, writing the artefacts, the `runs/latest` pointer, and finding
a run's model again for `swat-edge export` (torch-free: export runs on the device)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import MissingFileError, OutputExistsError, UsageError

if TYPE_CHECKING:  # the search result comes from the torch side; this module never imports it
    from ..data import Dataset
    from ..model import SparseMLP
    from ..search.objective import Budgets
    from ..search.run import SearchResult, SearchSettings
    from ..device.targets import TargetProfile

__all__ = [
    "RUNS_DIR",
    "LATEST",
    "MODEL_FILE",
    "ONNX_FILE",
    "INT8_FILE",
    "CARD_FILE",
    "REPORT_FILE",
    "default_run_dir",
    "check_run_dir",
    "record_latest",
    "latest_run",
    "run_model",
    "resolve_export_paths",
    "RunFiles",
    "write_run",
]

RUNS_DIR = Path("runs")
LATEST = "latest"
MODEL_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
CARD_FILE = "card.json"
REPORT_FILE = "report.html"
_OUTPUT_SUFFIXES = (".onnx", ".c")


def default_run_dir(root: str | os.PathLike = RUNS_DIR, *, now: _dt.datetime | None = None) -> Path:
    """root/<YYYYmmdd-HHMMSS> in local time; -2, -3, ... appended when that name is taken."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / stamp
    candidate, n = base, 2
    while candidate.exists() or candidate.is_symlink():
        candidate = base.with_name(f"{stamp}-{n}")
        n += 1
    return candidate


def check_run_dir(path: str | os.PathLike, *, force: bool) -> Path:
    """Refuse an existing, non-empty run directory without --force (before the search, not after it)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {p}: is a file; give a folder for the run")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise OutputExistsError(p)
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"--out {p}: cannot write to folder {parent} (permission denied)")
    return p


def record_latest(run_dir: str | os.PathLike, root: str | os.PathLike = RUNS_DIR) -> Path:
    """Point root/latest at run_dir: a relative symlink (replaced atomically), or a one-line text file holding the
    path where symlinks are unavailable. Returns the pointer's path."""
    root_p = Path(root)
    root_p.mkdir(parents=True, exist_ok=True)
    run_abs = Path(run_dir).resolve()
    try:
        target = os.path.relpath(run_abs, root_p.resolve())
    except ValueError:  # another drive on Windows
        target = str(run_abs)
    pointer = root_p / LATEST
    tmp = root_p / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(target, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(str(run_abs) + "\n", encoding="utf-8")
    if pointer.is_dir() and not pointer.is_symlink():
        tmp.unlink()
        raise UsageError(f"{pointer}: is a folder, not the latest-run pointer; rename it")
    os.replace(tmp, pointer)
    return pointer


def latest_run(root: str | os.PathLike = RUNS_DIR) -> Path:
    """The run root/latest points at (symlink or text file)."""
    pointer = Path(root) / LATEST
    if pointer.is_symlink():
        run = pointer.resolve()
    elif pointer.is_file():
        run = Path(pointer.read_text(encoding="utf-8").strip())
    else:
        raise UsageError(
            f"no search run found ({pointer} is missing); run `swat-edge search` first, or give the model file "
            "(swat-edge export MODEL -o model.onnx) or a run folder (--run DIR)"
        )
    if not run.is_dir():
        raise UsageError(f"{pointer} points at {run}, which no longer exists; pass --run DIR or MODEL")
    return run


def run_size_budget(run_dir: str | os.PathLike) -> tuple[str, float | None] | None:
    """(target name, size budget in bytes or None) the run searched for, from its card.json; None when the card
    is missing or unreadable (the export then uses its own flags)."""
    import json

    try:
        card = json.loads((Path(run_dir) / CARD_FILE).read_text(encoding="utf-8"))
        name = card["target"]["name"]
        budget = card["budgets"]["size_bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or not (budget is None or isinstance(budget, (int, float))):
        return None
    return name, None if budget is None else float(budget)


def run_model(run_dir: str | os.PathLike, candidate: int | None = None) -> Path:
    """The model file of a search run folder: the chosen one, or front point `candidate` (see card.json's
    selection.front)."""
    from .report import front_file

    p = Path(run_dir)
    if not p.is_dir():
        raise MissingFileError(p, "run folder")
    model = p / MODEL_FILE
    if not model.is_file():
        raise UsageError(f"--run {p}: not a search run (no {MODEL_FILE} in it)")
    if candidate is None:
        return model
    n_front = len(list((p / "candidates").glob("front-*.safetensors")))
    if n_front == 0:
        raise UsageError(f"--candidate {candidate}: run {p} has no front (made by an older swat-edge)")
    if not 0 <= candidate < n_front:
        raise UsageError(f"--candidate {candidate}: run {p} has front points 0-{n_front - 1} (card.json: "
                         "selection.front)")
    return p / front_file(candidate)


def resolve_export_paths(
    model: Path | None, output: Path | None, run: Path | None, *, root: str | os.PathLike = RUNS_DIR,
    candidate: int | None = None,
) -> tuple[Path, Path, Path | None]:
    """(model file, output file, run folder or None) for `swat-edge export`.

    `swat-edge export model.onnx` (one argument that names an output: *.onnx, *.int8.onnx, *.c, and no -o)
    exports the latest search run; `--run DIR` picks another run; `swat-edge export MODEL -o OUT` as before.
    """
    if output is None:
        if model is not None and model.name.lower().endswith(_OUTPUT_SUFFIXES):
            model, output = None, model
        else:
            hint = f" (swat-edge export {model} -o model.onnx)" if model is not None else ""
            raise UsageError(f"-o/--output: name the file to write, e.g. model.onnx, model.int8.onnx or model.c{hint}")
    if model is not None and run is not None:
        raise UsageError(f"give a model file ({model}) or --run {run}, not both")
    if model is not None:
        if candidate is not None:
            raise UsageError(f"--candidate {candidate} picks a point of a search run's front; give --run DIR or no "
                             f"model file, not {model}")
        return model, output, None
    run_dir = Path(run) if run is not None else latest_run(root)
    return run_model(run_dir, candidate), output, run_dir


# ---------------------------------------------------------------------------------------------------------
# Writing a run


@dataclass(frozen=True)
class RunFiles:
    """What write_run produced."""

    run_dir: Path
    files: dict[str, str]  # role -> file name inside run_dir
    card: dict[str, Any]
    latest: Path | None  # the runs/latest pointer, when recorded


def _measure_here(onnx_path: Path) -> dict[str, Any]:
    from ..measure.bench import machine_info, measure

    result = measure(onnx_path, batch_sizes=(1,), warmup_runs=20, min_runs=100, min_time_s=0.2,
                     measure_memory=False)
    stats = result.latencies[0]
    machine = machine_info()
    return {
        "file": onnx_path.name, "batch_size": 1, "threads": 1, "runs": stats.runs,
        "p50_us": stats.p50_us, "p90_us": stats.p90_us, "p99_us": stats.p99_us,
        "processor": machine.processor, "cpu_count": machine.cpu_count, "onnxruntime": machine.onnxruntime,
        "note": "short measurement on the machine that ran the search (not the target); "
                "`swat-edge bench` on the device gives the real figure",
    }


def _staging_dir(dest: Path) -> Path:
    """An empty sibling folder of `dest` to write the run into; renamed onto `dest` once everything is written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a run folder should be readable like any folder
    return tmp


def _write_int8(
    model: "SparseMLP",
    folder: Path,
    *,
    dtype: str,
    target: "TargetProfile",
    settings: "SearchSettings",
    heldout: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Write model.int8.onnx into `folder` when the search chose int8 (`dtype`) and the model has a layer to quantize.

    Returns the card's "int8" entry: written or not, and why (the int8 drift on the held-out rows when written).
    """
    from ..compile import PIPELINE_INT8, run_passes
    from ..export.pipeline import export_onnx_file

    if dtype != "int8":
        return {"written": False,
                "reason": (f"{target.name}'s int8 policy is {target.int8_policy!r}: int8 is predicted not to pay "
                           "there; pass --int8 to write model.int8.onnx anyway")}
    if not run_passes(model, passes=PIPELINE_INT8).model.hidden:
        return {"written": False,
                "reason": ("the compiled model has no hidden layer left to quantize (the output layer stays "
                           "float32); model.onnx is the deployable model")}
    x_held, y_held = heldout
    q = export_onnx_file(model, folder / INT8_FILE, quantization="static", calibration_rows=model.calibration,
                         heldout_rows=x_held, heldout_targets=y_held)
    d = q.drift
    return {
        "written": True, "file": INT8_FILE, "quantization": "static QDQ, per-channel weights, last layer fp32",
        "reason": "--int8" if settings.int8 else f"{target.name}'s int8 policy ({target.int8_policy}) picks int8",
        "drift": None if d is None else {
            "rows": d.rows, "relative_mse": d.relative_mse, "max_abs_error": d.max_abs_error,
            "mse_ratio": d.mse_ratio, "rows_source": "validation rows (held out of training)",
        },
        "size_bytes": q.size_bytes,
    }


def _estimates_by_target(
    model: "SparseMLP", target: "TargetProfile", names: Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    """The cost model's prediction for `model` on every named target (all built-in ones when names is None)."""
    from ..device.cost import estimate
    from ..device.targets import list_targets, load_target

    by_target = {}
    for name in (names if names is not None else list_targets()):
        profile = target if name == target.name else load_target(name)
        e = estimate(model, profile)
        by_target[name] = {"dtype": e.dtype, "latency_us": e.latency_us[0], "model_bytes": e.model_bytes,
                           "provenance": e.provenance}
    return by_target


def _save_front(result: "SearchResult", run_dir: Path) -> None:
    """Every point of the front as its own model file, so `export --candidate K` can deploy any of them."""
    from ..model import save_model
    from .report import front_file, front_indices

    for k, index in enumerate(front_indices(result.candidates)):
        path = run_dir / front_file(k)
        path.parent.mkdir(exist_ok=True)
        save_model(result.candidate_models[index], path)


def write_run(
    result: "SearchResult",
    run_dir: str | os.PathLike,
    *,
    dataset: "Dataset",
    test: "Dataset | None",
    target: "TargetProfile",
    embedding: dict[str, Any],
    settings: "SearchSettings",
    budgets: "Budgets",
    heldout: tuple[np.ndarray, np.ndarray],
    force: bool = False,
    measure: bool = True,
    latest_root: str | os.PathLike | None = RUNS_DIR,
    all_targets: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
) -> RunFiles:
    """Write model.safetensors, model.onnx (+ model.int8.onnx), card.json and report.html into run_dir.

    Everything is written into a temporary sibling folder first and renamed into place at the end, so a failed
    export leaves no half run behind (and an existing run is only replaced with force=True).
    heldout: (x, y) validation rows in raw units, for the int8 drift figure.
    """
    from ..console import write_json
    from ..export.pipeline import export_onnx_file
    from ..model import save_model
    from .report import build_card, render_report

    if result.model is None:
        raise UsageError("bug: write_run needs a result that met its budgets")
    dest = check_run_dir(run_dir, force=force)
    tmp = _staging_dir(dest)
    t0 = time.perf_counter()
    try:
        model = result.model
        files = {"model": MODEL_FILE, "onnx": ONNX_FILE}
        save_model(model, tmp / MODEL_FILE)
        _save_front(result, tmp)
        fp32 = export_onnx_file(model, tmp / ONNX_FILE)
        int8_info = _write_int8(model, tmp, dtype=result.dtype, target=target, settings=settings, heldout=heldout)
        if int8_info["written"]:
            files["int8_onnx"] = INT8_FILE
        measured = _measure_here(tmp / ONNX_FILE) if measure else None
        by_target = _estimates_by_target(model, target, all_targets)
        files["card"] = CARD_FILE
        files["report"] = REPORT_FILE
        timings = dict(result.timings_s)
        timings["export_s"] = time.perf_counter() - t0
        card = build_card(
            result, dataset=dataset, test=test, target=target, embedding=embedding, settings=settings,
            budgets=budgets, compiled_widths=fp32.compiled.model.widths, onnx_bytes=fp32.size_bytes,
            int8=int8_info, measured=measured, by_target=by_target, files=files, timings_s=timings,
            command=command,
        )
        write_json(tmp / CARD_FILE, card, force=True)
        (tmp / REPORT_FILE).write_text(render_report(card, result), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)  # check_run_dir allowed it: force, or an empty folder
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest = record_latest(dest, latest_root) if latest_root is not None else None
    return RunFiles(run_dir=dest, files=files, card=card, latest=latest)
