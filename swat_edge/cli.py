"""The `swat-edge` command line: parse, call the library, print. `main()` is the only place that exits."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from typer.exceptions import TyperException

from . import __version__
from .console import print_table, stderr, stdout
from .errors import SwatError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from .model import SparseMLP

__all__ = ["app", "main"]

app = typer.Typer(
    name="swat-edge",
    help="Edge deployment compiler for small sparse MLPs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        stdout.print(f"swat-edge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on internal errors."),
) -> None:
    """Edge deployment compiler for small sparse MLPs."""


# ---------------------------------------------------------------------------------------------------------
# Commands. Each returns an int exit code (0 ok, 1 "ran and found a problem"); errors are raised as SwatError.

# (commands are added below, one function per command)


def _check_onnx_arg(path: Path, flag: str) -> Path:
    from .files import check_input_file
    from .errors import UsageError

    p = check_input_file(path, "model file")
    if p.suffix.lower() != ".onnx":
        raise UsageError(
            f"{flag} {p}: bench measures .onnx models for now (other formats such as .c are not supported yet); "
            "export one with `swat-edge export MODEL -o model.onnx`"
        )
    return p


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fmt_ops(histogram: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in histogram.items())


@app.command("bench")
def bench_command(
    model: Path = typer.Argument(..., metavar="MODEL", help="The .onnx model to time (candidate B with --against)."),
    batch: Optional[list[int]] = typer.Option(None, "--batch", min=1, help="Batch size; repeat for several (default 1)."),
    threads: int = typer.Option(1, "--threads", min=1, help="onnxruntime intra-op threads."),
    runs: Optional[int] = typer.Option(None, "--runs", min=1, help="Timed runs per batch size (default: at least 200 and 0.5 s)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON (a baseline for --baseline)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --json / --github-json outputs."),
    against: Optional[Path] = typer.Option(None, "--against", help="Reference .onnx model A, timed interleaved with MODEL."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A saved `bench --json` result to gate against."),
    max_regression: Optional[str] = typer.Option(None, "--max-regression", help="Allowed slowdown of p50, e.g. 10%."),
    github_json: Optional[Path] = typer.Option(None, "--github-json", help="Write github-action-benchmark entries."),
    io_binding: bool = typer.Option(True, "--io-binding/--no-io-binding", help="Bind inputs/outputs once (default)."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory in a fresh process."),
) -> int:
    """Time an ONNX model on this machine; optionally gate it against a baseline or another model."""
    from . import bench, gate
    from .console import print_table, write_json
    from .errors import UsageError
    from .files import check_output_path

    # Every check that needs no timing runs first, so a wrong flag fails in milliseconds.
    model_path = _check_onnx_arg(model, "MODEL")
    against_path = _check_onnx_arg(against, "--against") if against is not None else None
    if baseline is not None and against is not None:
        raise UsageError("--baseline and --against: use one of them (a saved baseline, or a model timed alongside)")
    if baseline is not None and max_regression is None:
        raise UsageError("--baseline needs --max-regression (e.g. --max-regression 10%)")
    if max_regression is not None and baseline is None and against is None:
        raise UsageError("--max-regression needs --baseline FILE or --against MODEL.onnx to compare with")
    limit_pct = gate.parse_percent(max_regression) if max_regression is not None else None
    sizes = tuple(batch) if batch else (1,)
    baseline_json = gate.load_baseline(baseline) if baseline is not None else None
    if baseline_json is not None:
        have = {entry["batch_size"] for entry in baseline_json["results"]}
        missing = [b for b in sizes if b not in have]
        if missing:
            raise UsageError(
                f"--baseline {baseline}: has no batch size {missing[0]} (it has {', '.join(map(str, sorted(have)))}); "
                "drop that --batch or re-record the baseline"
            )
    for out in (json_out, github_json):
        if out is not None:
            check_output_path(out, force=force)
    if json_out is not None and github_json is not None and json_out.resolve() == github_json.resolve():
        raise UsageError(f"--json and --github-json: both name {json_out}; give two files")

    counts = dict(min_runs=runs, min_time_s=0.0) if runs is not None else {}
    result: bench.BenchResult | bench.PairResult
    if against_path is not None:
        result = bench.measure_pair(
            against_path, model_path, batch_sizes=sizes, threads=threads, io_binding=io_binding, **counts
        )
        stdout.print(
            f"a = {against_path}, b = {model_path}; latencies in us; b/a above 1 means {model_path.name} is slower",
            markup=False,
        )
        print_table(
            None,
            ["batch", "a p50", "a p99", "b p50", "b p99", "b/a", "95% CI", "blocks"],
            [
                (
                    p.batch_size,
                    f"{p.a.p50_us:.2f}",
                    f"{p.a.p99_us:.2f}",
                    f"{p.b.p50_us:.2f}",
                    f"{p.b.p99_us:.2f}",
                    f"{p.ratio:.3f}",
                    f"{p.ratio_ci_low:.3f}-{p.ratio_ci_high:.3f}",
                    p.blocks,
                )
                for p in result.pairs
            ],
        )
        for info in (result.a, result.b):
            stdout.print(
                f"{Path(info.source).name}: {info.size_bytes:,} bytes, {info.node_count} nodes ({_fmt_ops(info.op_histogram)})",
                markup=False,
            )
    else:
        result = bench.measure(
            model_path, batch_sizes=sizes, threads=threads, io_binding=io_binding, measure_memory=memory, **counts
        )
        print_table(
            None,
            ["batch", "runs", "p50 us", "p90 us", "p99 us", "mean us", "throughput rows/s"],
            [
                (
                    s.batch_size,
                    s.runs,
                    f"{s.p50_us:.2f}",
                    f"{s.p90_us:.2f}",
                    f"{s.p99_us:.2f}",
                    f"{s.mean_us:.2f}",
                    f"{s.throughput_rows_per_s:,.0f}",
                )
                for s in result.latencies
            ],
        )
        peak = "not measured" if not memory else f"+{_fmt_bytes(result.peak_memory_bytes)} peak RSS"
        stdout.print(
            f"{model_path.name}: {result.model.size_bytes:,} bytes, {result.model.node_count} nodes "
            f"({_fmt_ops(result.model.op_histogram)}); memory {peak}; {threads} thread(s), onnxruntime "
            f"{result.machine.onnxruntime}",
            markup=False,
        )

    if json_out is not None:
        write_json(json_out, result.to_json(), force=force)
    if github_json is not None:
        write_json(github_json, gate.to_github_benchmark(result), force=force)

    if limit_pct is None:
        return 0
    if isinstance(result, bench.PairResult):
        verdict = gate.compare_pair(result, limit_pct)
    else:
        verdict = gate.compare(result, baseline_json, max_regression_pct=limit_pct, source=str(baseline))
    stderr.print(verdict.message, markup=False)
    return 0 if verdict.passed else 1


@app.command("inspect")
def inspect_command(
    model: Path = typer.Argument(..., metavar="MODEL", help="A .onnx file, or a swat-edge model file (any other suffix)."),
) -> int:
    """Show a model's layers, sizes and costs (swat-edge model) or its graph (ONNX)."""
    from .console import print_table
    from .summary import ModelSummary, summarize_file

    summary = summarize_file(model)
    if isinstance(summary, ModelSummary):
        layer_rows = (*summary.layers, summary.total)
        stdout.print(f"{summary.source}: swat-edge model, sha256 {summary.sha256[:16]}", markup=False)
        print_table(
            None,
            ["layer", "in", "out", "active", "nonzero weights", "dense MACs", "sparse MACs", "fp32 bytes", "int8 bytes"],
            [
                (
                    r.layer,
                    r.n_in,
                    r.n_out,
                    r.n_active,
                    f"{r.nonzero_weights:,}",
                    f"{r.dense_macs:,}",
                    f"{r.sparse_macs:,}",
                    f"{r.bytes_fp32:,}",
                    f"{r.bytes_int8:,}",
                )
                for r in layer_rows
            ],
        )
        # One column per activation in use: a table of counts stays narrow where "relu 3, tanh 2, ..." wraps.
        names = list(summary.total.activations)
        if names:
            print_table(
                "active neurons by activation (the output layer is linear)",
                ["layer", *names],
                [(r.layer, *(r.activations.get(a, 0) for a in names)) for r in layer_rows if r.layer != "output"],
            )
        stdout.print(f"non-zero parameters: {summary.nonzero_params:,}", markup=False)
        stdout.print(f"features ({len(summary.feature_names)}): {', '.join(summary.feature_names)}", markup=False)
        stdout.print(f"targets ({len(summary.target_names)}): {', '.join(summary.target_names)}", markup=False)
        if summary.calibration_rows:
            stdout.print(f"calibration rows: {summary.calibration_rows}", markup=False)
        if summary.provenance:
            import json as _json

            prov = ", ".join(f"{k}={_json.dumps(v, sort_keys=True)}" for k, v in sorted(summary.provenance.items()))
            stdout.print(f"provenance: {prov}", markup=False)
        return 0

    opsets = ", ".join(f"{d} {v}" for d, v in summary.opsets.items())
    stdout.print(
        f"{summary.source}: ONNX, {summary.size_bytes:,} bytes, IR {summary.ir_version}, opset {opsets}"
        + (f", producer {summary.producer}" if summary.producer else "")
        + f", {'int8 (quantized)' if summary.is_int8 else 'float (not quantized)'}",
        markup=False,
    )
    from rich.markup import escape  # names come from the file: a "[...]" in them is text, not rich markup

    print_table(
        None,
        ["tensor", "kind", "dtype", "shape"],
        [(escape(t.name), kind, t.dtype, escape("(" + ", ".join(map(str, t.shape)) + ")"))
         for kind, group in (("input", summary.inputs), ("output", summary.outputs)) for t in group],
    )
    stdout.print(f"{summary.node_count} nodes: {_fmt_ops(summary.op_histogram)}", markup=False)
    if summary.weights:
        print_table(
            None,
            ["node", "op", "weight", "shape", "dtype", "in -> out", "non-zero"],
            [
                (escape(w.node), w.op_type, escape(w.weight), "x".join(map(str, w.weight_shape)), w.weight_dtype,
                 f"{w.n_in} -> {w.n_out}", f"{w.nonzero_weights:,}")
                for w in summary.weights
            ],
        )
    for key, value in sorted(summary.metadata.items()):
        stdout.print(f"metadata {key}: {value}", markup=False)
    return 0


def _rows_from_file(path: Path, model: "SparseMLP") -> tuple["np.ndarray", "np.ndarray | None"]:
    from .data import model_rows, read_table

    return model_rows(read_table(path), model.feature_names, model.target_names)


@app.command("export")
def export_cmd(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A swat-edge model file (.safetensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="model.onnx, model.int8.onnx (static int8) or model.c."),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="none | static | dynamic (default: static for *.int8.onnx, else none)."
    ),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="CSV/NPZ rows for int8 calibration; half of them are held out to measure drift."
    ),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="CSV/NPZ rows (with targets if present) to measure int8 drift on."),
    max_drift: Optional[float] = typer.Option(
        None, "--max-drift", help="Fail (exit 1, nothing written) if int8 relative MSE vs fp32 exceeds this, e.g. 1e-3."
    ),
    quantize_last: bool = typer.Option(False, "--quantize-last", help="Quantize the output layer too (less accurate)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
) -> int:
    """Compile a model (passes), export it to ONNX fp32/int8, verify it against the original, write it."""
    from .build import export_onnx_file, output_kind, split_rows
    from .model import load_model
    from .passes import REPORT_COLUMNS, format_reports

    kind = output_kind(output)
    if quantize is None:
        quantize = "static" if kind == "int8-onnx" else "none"
    if quantize not in ("none", "static", "dynamic"):
        raise UsageError(f"--quantize {quantize!r}: use none, static or dynamic")
    if kind == "c":
        raise UsageError("C export is not available in this version; use model.onnx")
    model = load_model(model_path)
    cal_rows = held_x = held_y = None
    if calibration is not None:
        x, y = _rows_from_file(calibration, model)
        cal_rows, (held_x, held_y) = split_rows(x, y)
    if holdout is not None:
        held_x, held_y = _rows_from_file(holdout, model)
    result = export_onnx_file(
        model,
        output,
        force=force,
        quantization=quantize,  # type: ignore[arg-type]
        calibration_rows=cal_rows,
        heldout_rows=held_x,
        heldout_targets=held_y,
        keep_last_fp32=not quantize_last,
        max_drift=max_drift,
    )
    print_table("compile passes", REPORT_COLUMNS, format_reports(result.compiled.reports))
    if result.dropped_inputs:
        stdout.print(
            f"unused inputs dropped: {', '.join(result.dropped_inputs)}; the exported model takes "
            f"{', '.join(result.compiled.model.feature_names)}",
            markup=False,
        )
    check = result.check
    stdout.print(
        f"verified fp32 graph against the original model: max abs error {check.max_abs_error:.3g} "
        f"<= {check.tolerance:.3g} on {check.rows} rows",
        markup=False,
    )
    if result.drift is not None:
        d = result.drift
        ratio = f", MSE ratio int8/fp32 vs targets {d.mse_ratio:.4f}" if d.mse_ratio is not None else ""
        stdout.print(
            f"int8 ({result.quantization}) drift vs fp32 on {result.drift_rows_source}: relative MSE "
            f"{d.relative_mse:.3g}, max abs error {d.max_abs_error:.3g}{ratio}",
            markup=False,
        )
    if not result.written:
        stderr.print(
            f"FAILED: int8 relative MSE {result.drift.relative_mse:.3g} exceeds --max-drift {max_drift:g}; "  # type: ignore[union-attr]
            f"{output} not written",
            markup=False,
        )
        return 1
    stdout.print(f"wrote {output} ({result.size_bytes} bytes)", markup=False)
    return 0


# ---------------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI and exit: 0 ok, 1 failure/verdict, 2 usage, 3 internal error, 130 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="swat-edge", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        stderr.print("interrupted")
        code = 130
    except TyperException as exc:  # usage errors found by the parser: one line, exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
        else:
            stderr.print(f"error: {exc.format_message()} (see swat-edge --help)", markup=False)
        code = exc.exit_code
    except SwatError as exc:
        if debug:
            raise
        stderr.print(f"error: {exc}", markup=False)
        code = exc.exit_code
    except KeyboardInterrupt:
        stderr.print("interrupted")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # a bug: say so, distinctly from a failure (exit 3, not 1)
        if debug:
            raise
        stderr.print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please report)",
            markup=False,
        )
        code = 3
    sys.exit(code)


if __name__ == "__main__":
    main()
