"""What the CLI prints: tables and one-line summaries for every stage's results.

Each function takes a stage's result and prints it (tables and reports on stdout, warnings and failures on
stderr); none decides an exit code or raises. Stage modules are imported for type annotations, or inside the
function that needs them, so that `import swat_edge.cli` stays fast and torch-free.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

from rich.markup import escape

from .console import print_table, stderr, stdout
from .data import column_list

if TYPE_CHECKING:
    from .data import Dataset
    from .device.targets import TargetProfile
    from .export.c import CSource
    from .export.pipeline import CExport, FileExport, OnnxExport
    from .measure.bench import BenchResult, PairResult
    from .measure.bench_c import CBenchResult, CPairResult
    from .measure.calibrate import CalibrationResult
    from .measure.calibrate_mcu import EmulatedCalibration
    from .measure.mcu import McuResult
    from .measure.summary import ModelSummary, OnnxSummary
    from .model import SparseMLP
    from .runs.folder import RunFiles
    from .search.compare_decoders import DecoderComparisonRow
    from .search.embedding.evaluate import EvalReport
    from .search.embedding.autoencoder import Embedding
    from .search.embedding.train import TrainResult
    from .search.run import SearchResult

ProgressCallback = Callable[[int, int, dict], None]  # (step, total, figures) from a long-running library call


def _fmt_mse(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fmt_ops(histogram: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in histogram.items())


def _counted(count: int, noun: str) -> str:
    """'1 feature', '3 features'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _say(text: str) -> None:
    # markup=False: paths and names from files may hold "[...]", which is text here, not rich markup
    stdout.print(text, markup=False)


# ---------------------------------------------------------------------------------------------------------
# targets, calibrate


def print_targets(profiles: Sequence[TargetProfile], builtin_dir: Path) -> None:
    print_table(
        None,
        ["target", "runtime", "int8", "provenance", "description"],
        [(p.name, p.runtime.name, p.int8_policy, p.provenance.kind, p.description) for p in profiles],
    )
    _say(f"{len(profiles)} profiles in {builtin_dir}; any command taking --target also takes a path to a "
         ".toml profile (swat-edge calibrate writes one for the machine it runs on)")


def print_target(profile: TargetProfile, rows: Sequence[tuple[str, str]], provenance: str) -> None:
    _say(f"{profile.name}: {profile.description} ({profile.source})")
    print_table(None, ["field", "value"], [(key, escape(value)) for key, value in rows])
    _say(f"provenance: {provenance}")


def print_calibration(result: CalibrationResult, out: Path) -> None:
    profile = result.profile
    print_table(None, ["term", "coefficient"], [(term, f"{value:.4g}") for term, value in vars(profile.cost).items()])
    _say(f"fit: relative RMS error {result.fit_rmspe:.1%} over {len(result.measurements)} timings "
         f"({result.rounds} rounds, {result.duration_s:.0f} s); Gemm column block {profile.runtime.gemm_column_block}")
    _say(f"wrote {out} (target {profile.name!r}, measured)")


@contextmanager
def count_progress(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar for a library call that reports (done, total); stopped on exit."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=stderr)
    task = bar.add_task(label, total=total)

    def report(done: int, of: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=of)

    try:
        yield report
    finally:
        bar.stop()


def print_emulated_calibration(result: EmulatedCalibration, out: Path) -> None:
    profile = result.profile
    print_table(None, ["term", "coefficient"],
                [(term, f"{value:.4g}") for term, value in vars(profile.cost).items() if value])
    errors = [abs(n.relative_error) for n in result.checked]
    _say(f"fit: relative RMS error {result.fit_rmspe:.1%} over {len(result.fitted)} emulated networks; on "
         f"{len(result.checked)} other networks {result.within_share:.0%} within +-10% (median error "
         f"{sorted(errors)[len(errors) // 2]:.1%}, worst {max(errors):.1%}); flash bytes {result.size_within_share:.0%} "
         "within +-10%")
    if profile.code_size is not None:
        _say("flash bytes: " + ", ".join(f"{k} {v:.4g}" for k, v in vars(profile.code_size).items()))
    _say(f"wrote {out} (target {profile.name!r}, emulated)")


# ---------------------------------------------------------------------------------------------------------
# embed train, embed eval


@contextmanager
def training_progress(total_steps: int, *, show: bool) -> Iterator[ProgressCallback]:
    """A progress bar for train_embedding's `progress`; checkpoints print a line that stays. Stopped on exit."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    bar = Progress(*columns, console=stdout, disable=not show)
    task = bar.add_task("train", total=total_steps, info="")

    def report(step: int, total: int, info: dict[str, float]) -> None:
        if not bar.live.is_started:
            bar.start()  # only once training runs: a refused invocation prints just its error line
        if "r2_depth1" in info:  # a checkpoint
            r2 = " ".join(f"{info[k]:.3f}" for k in sorted(info) if k.startswith("r2_depth"))
            bar.console.print(f"step {step}: checkpoint; median R^2 by depth {r2}; right depth "
                              f"{info['right_depth']:.2f}; {info['mlps_per_s']:.0f} MLPs/s", markup=False)
        else:
            bar.update(task, completed=step, info=f"loss {info['loss']:.4f} ({info['mlps_per_s']:.0f} MLPs/s)")

    try:
        yield report
    finally:
        if bar.live.is_started:
            bar.stop()


def print_training(out: Path, result: TrainResult, total_steps: int) -> None:
    """One line for a train_embedding result: what was trained, or that nothing was."""
    if result.start_step == result.step:
        _say(f"{out}: already at step {result.step} of {total_steps}; nothing to train")
        return
    where = f"{out}/embedding.json" if result.finished else f"{out}/checkpoint (resume with --resume)"
    _say(f"trained steps {result.start_step}-{result.step} of {total_steps} on {result.world_size} "
         f"process(es), {result.mlps_per_s:.0f} MLPs/s; embedding: {where}")


def print_embedding_eval(embedding: Embedding, report: EvalReport, seed: int) -> None:
    _say(f"{embedding.source}: {embedding.n_parameters:,} parameters, {embedding.steps} training steps; "
         f"R^2 of the best decoder, hard-decoded, on held-out MLPs (seed {seed})")
    print_table(
        None,
        ["depth", "MLPs", "median R^2", "> 0.9", "quadratic R^2", "quad > 0.9", "beats quad", "right depth"],
        [(r.depth, r.n_mlps, f"{r.median_r2:.3f}", f"{r.share_above_0_9:.0%}", f"{r.quadratic_median_r2:.3f}",
          f"{r.quadratic_share_above_0_9:.0%}", f"{r.beats_quadratic_share:.0%}", f"{r.right_depth_share:.0%}")
         for r in report.rows],
    )
    _say(f"best decoder has the true depth for {report.right_depth_share:.0%} of MLPs; Spearman(latent "
         f"distance, functional distance) over {report.n_pairs} pairs: {report.spearman_latent_vs_function:.3f}")


def print_decoder_comparison(rows: Sequence[DecoderComparisonRow]) -> None:
    print_table(
        "CORNN test MSE (scaled target): latent search through the trained vs an untrained decoder",
        ["task", "seed", "trained", "untrained", "ratio", "trained+ft", "untrained+ft", "ratio+ft"],
        [(r.task, r.seed, f"{r.trained_mse:.3g}", f"{r.untrained_mse:.3g}",
          f"{r.trained_mse / max(r.untrained_mse, 1e-300):.2f}", f"{r.trained_finetuned_mse:.3g}",
          f"{r.untrained_finetuned_mse:.3g}",
          f"{r.trained_finetuned_mse / max(r.untrained_finetuned_mse, 1e-300):.2f}") for r in rows],
    )


# ---------------------------------------------------------------------------------------------------------
# search


def print_search_start(data: Path, dataset: Dataset, target: str, embedding: Embedding, *, starts: int, steps: int) -> None:
    family = embedding.config.family
    _say(f"searching {dataset.n_rows} rows of {data} ({', '.join(dataset.target_names)} from "
         f"{_counted(len(dataset.feature_names), 'feature')}) for {target}: depths {family.min_depth}-{family.max_depth} x "
         f"{starts} starts, {steps} steps; embedding {embedding.source} ({embedding.steps} training steps)")
    if dataset.missing_note:
        stdout.print(f"missing values: {dataset.missing_note}", markup=False, soft_wrap=True)
    if dataset.outlier_note:
        stdout.print(f"outliers: {dataset.outlier_note}", markup=False, soft_wrap=True)
    if dataset.is_classification:
        counts = [int((dataset.y[:, 0] == k).sum()) for k in range(len(dataset.classes))]
        how = f" ({dataset.task_note})" if dataset.task_note else ""
        stdout.print(f"classification{how}: {len(dataset.classes)} classes, rows per class "
                     + ", ".join(f"{c} {n}" for c, n in zip(dataset.classes, counts)), markup=False, soft_wrap=True)


@contextmanager
def search_progress(steps: int) -> Iterator[tuple[ProgressCallback, Callable[[str], None]]]:
    """(progress, stage) callbacks for run_search: a bar over the latent steps with the loss, one line per later
    stage, and under the fine-tuning and polishing lines a bar over their fits (rounds) with the best validation MSE
    so far."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def new_bar(label: str, total: int) -> tuple[Progress, Any, str]:
        bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.fields[info]}"), console=stdout, transient=False)
        return bar, bar.add_task(label, total=total, info=""), label

    at_hand: tuple[Progress, Any, str] | None = new_bar("search", steps)  # None after a stage line

    def report(step: int, total: int, info: dict) -> None:
        nonlocal at_hand
        if info.get("stage") in ("fine-tune", "polish", "prune"):
            label, text = info["stage"], f"best val {_fmt_mse(info.get('best_val_mse'))}"
        else:
            lat = info.get("latency_us")
            label = "search"
            text = (f"loss {info['train_mse']:.3g}  best val {_fmt_mse(info.get('best_val_mse'))}"
                    f"  latency {'n/a' if lat is None else f'{lat:.1f} us'}")
        if at_hand is None or at_hand[2] != label:
            stage_over()
            at_hand = new_bar(label, total)
        bar, task, _ = at_hand
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=step, total=total, info=text)

    def stage_over() -> None:
        nonlocal at_hand
        if at_hand is not None and at_hand[0].live.is_started:
            at_hand[0].stop()
        at_hand = None  # what reports next starts a bar of its own

    def stage(text: str) -> None:
        stage_over()
        _say(text)

    try:
        yield report, stage
    finally:
        stage_over()


def print_budgets_missed(result: SearchResult, target: str, budget_us: float | None, budget_bytes: float | None) -> None:
    """The one stderr line of a search that found nothing within its budgets: the closest candidate."""
    c = result.closest
    limits = ", ".join(x for x in (f"latency <= {budget_us:g} us" if budget_us else "",
                                   f"size <= {budget_bytes:g} bytes" if budget_bytes else "") if x)
    stderr.print(
        f"FAILED: no candidate met the budgets ({limits}) on {target}; closest: depth {c.depth}, predicted "
        f"{c.latency_us:.1f} us and {c.size_bytes:.0f} bytes, {_counted(c.nonzero_params, 'non-zero parameter')}, "
        f"{_counted(c.active_neurons, 'active neuron')}, validation MSE {c.val_mse:.3g} (latent only); relax "
        "--latency-budget/--size-budget or choose another --target; nothing written", markup=False,
    )
    if result.candidates:  # what the target can reach, so the user sees which budget would be met
        print_table(
            f"reachable on {target} (not fine-tuned; cheapest first)",
            ["network", "validation MSE", f"predicted us on {target}", "bytes", "non-zero params"],
            [(cand.origin if cand.origin == "linear" else f"{cand.origin}, depth {cand.depth}", f"{cand.val_mse:.3g}",
              f"{cand.latency_us:.1f}", f"{cand.size_bytes:.0f}", cand.nonzero_params) for cand in result.candidates],
        )


def print_front(card: dict[str, Any]) -> None:
    """The accuracy/latency trade-off: every front point, exportable with `export --candidate K`."""
    front = card["selection"]["front"]
    target = card["target"]["name"]
    print_table(
        f"front on {target} (export any point: swat-edge export model.onnx --candidate K)",
        ["K", "network", "validation MSE", f"predicted us on {target}", "bytes", "non-zero params", "chosen"],
        [(p["k"], (p["origin"] if p["origin"] == "linear" else f"{p['origin']}, depth {p['depth']}")
          + (", polished" if p.get("polished") else ""),
          f"{p['val_mse']:.3g}", f"{p['latency_us']:.1f}", f"{p['size_bytes']:.0f}", p["nonzero_params"],
          "<-" if p["chosen"] else "") for p in front],
    )


def print_classification(figures: dict, classes: tuple[str, ...]) -> None:
    """Accuracy, balanced accuracy, log-loss per split; F1 per class and the confusion matrix of the last split."""
    print_table("classifier (validation rows chose the model, test rows never did)",
                ["split", "rows", "accuracy", "balanced accuracy", "log-loss"],
                [(name, f.rows, f"{f.accuracy:.4f}", f"{f.balanced_accuracy:.4f}", f"{f.log_loss:.4f}")
                 for name, f in figures.items()])
    last = list(figures)[-1]
    f = figures[last]
    print_table(f"{last} rows: confusion (true class by row, predicted by column) and F1",
                ["true \\ predicted", *classes, "F1"],
                [(name, *map(str, row), f"{score:.3f}") for name, row, score in zip(classes, f.confusion, f.f1)])


def print_search_result(result: SearchResult, files: RunFiles, target: str, seconds: float) -> None:
    """Accuracy by split, the chosen model, its predicted (and measured) cost, and the run folder written."""
    card = files.card
    splits = [s for s in ("train", "validation", "test") if s in result.metrics["fine_tuned"]]
    print_table(
        "accuracy (MSE on the target scaled to [-1, 1]; R^2; validation rows chose the model, test rows never did)",
        ["split", "rows", "MSE latent only", "MSE fine-tuned", "R^2 fine-tuned"],
        [(s, result.metrics["fine_tuned"][s].rows, f"{result.metrics['latent_only'][s].mse:.3g}",
          f"{result.metrics['fine_tuned'][s].mse:.3g}", f"{result.metrics['fine_tuned'][s].r2:.4f}") for s in splits],
    )
    if result.classification is not None:
        print_classification(result.classification, result.model.classes)
    tuned = result.metrics["fine_tuned"]
    if result.classification is None and len(tuned[splits[-1]].mse_per_target) > 1:
        names = card["data"]["targets"]
        print_table(f"per target, fine-tuned ({', '.join(splits)}: MSE on the scaled target / R^2)",
                    ["target", *splits],
                    [(name, *(f"{tuned[s].mse_per_target[k]:.3g} / {tuned[s].r2_per_target[k]:.4f}" for s in splits))
                     for k, name in enumerate(names)])
    print_front(card)
    m, pred = card["model"], card["predicted"]
    acts = ", ".join(f"{k} {v}" for k, v in m["activations"].items()) or "none"
    _say(f"model: widths {'-'.join(map(str, [m['widths'][0], *m['active_widths'], m['widths'][-1]]))} "
         f"(active), {_counted(m['nonzero_params'], 'non-zero parameter')}, "
         f"{_counted(m['active_neurons'], 'active neuron')} ({acts})")
    measured = card.get("measured")
    here = f"; measured here {measured['p50_us']:.1f} us (median)" if measured else ""
    _say(f"predicted on {target} ({pred['provenance']} profile): {pred['latency_us']:.1f} us per call, "
         f"{pred['model_bytes']} bytes ({pred['dtype']}; {pred.get('bytes_are', 'weights and biases')}){here}")
    if card["int8"].get("written"):
        d = card["int8"]["drift"]
        _say(f"int8: {card['int8']['file']}, drift vs fp32 relative MSE {d['relative_mse']:.3g} on "
             f"{d['rows']} validation rows")
    for note in result.notes:
        _say(f"note: {note}")
    _say(f"wrote {files.run_dir}/ ({', '.join(files.files.values())}) in {seconds:.1f} s; "
         f"`swat-edge export model.onnx` exports this run again (runs/latest)")


# ---------------------------------------------------------------------------------------------------------
# bench


def print_bench(result: BenchResult, model_path: Path, *, memory: bool, threads: int) -> None:
    print_table(
        None,
        ["batch", "runs", "p50 us", "p90 us", "p99 us", "mean us", "throughput rows/s"],
        [(s.batch_size, s.runs, f"{s.p50_us:.2f}", f"{s.p90_us:.2f}", f"{s.p99_us:.2f}", f"{s.mean_us:.2f}",
          f"{s.throughput_rows_per_s:,.0f}") for s in result.latencies],
    )
    peak = "not measured" if not memory else f"+{_fmt_bytes(result.peak_memory_bytes)} peak RSS"
    _say(f"{model_path.name}: {result.model.size_bytes:,} bytes, {result.model.node_count} nodes "
         f"({_fmt_ops(result.model.op_histogram)}); memory {peak}; {threads} thread(s), onnxruntime "
         f"{result.machine.onnxruntime}")


def print_bench_pair(result: PairResult, a_path: Path, b_path: Path) -> None:
    _say(f"a = {a_path}, b = {b_path}; latencies in us; b/a above 1 means {b_path.name} is slower")
    print_table(
        None,
        ["batch", "a p50", "a p99", "b p50", "b p99", "b/a", "95% CI", "blocks"],
        [(p.batch_size, f"{p.a.p50_us:.2f}", f"{p.a.p99_us:.2f}", f"{p.b.p50_us:.2f}", f"{p.b.p99_us:.2f}",
          f"{p.ratio:.3f}", f"{p.ratio_ci_low:.3f}-{p.ratio_ci_high:.3f}", p.blocks) for p in result.pairs],
    )
    for info in (result.a, result.b):
        _say(f"{Path(info.source).name}: {info.size_bytes:,} bytes, {info.node_count} nodes ({_fmt_ops(info.op_histogram)})")


def _c_what(csrc: CSource) -> str:
    return f"{csrc.dtype}{', fast_math' if csrc.fast_math else ''}, {csrc.macs} multiply-adds per row"


def print_bench_c(result: CBenchResult, model: Path, csrc: CSource) -> None:
    print_table(
        None,
        ["batch", "samples", "calls/sample", "p50 us/call", "p99 us/call", "p50 ns/row", "p99 ns/row", "throughput rows/s"],
        [(s.batch_size, s.runs, n, f"{s.p50_us:.3f}", f"{s.p99_us:.3f}", f"{s.p50_us * 1e3 / s.batch_size:.1f}",
          f"{s.p99_us * 1e3 / s.batch_size:.1f}", f"{s.throughput_rows_per_s:,.0f}")
         for s, n in zip(result.latencies, result.calls_per_sample)],
    )
    stdout.print(f"{model.name}: {csrc.prefix}_predict (batch > 1: {csrc.prefix}_predict_batch), {_c_what(csrc)}; "
                 f"built with {result.settings.compiler} {' '.join(result.settings.cflags)}; a sample is the mean of "
                 "back-to-back calls, each waiting for the previous output (latency)", markup=False, soft_wrap=True)


def print_bench_mcu(result: McuResult, model: Path, csrc: CSource, target: TargetProfile,
                    predicted_us: float | None) -> None:
    cycles = result.cycles
    stdout.print(f"{model.name} on {target.name} ({target.hardware.cpu} @ {result.clock_mhz:g} MHz, "
                 f"{result.flash_wait_states} flash wait states), emulated: built with {result.compiler} "
                 f"{result.cflags}; {result.rows_source}", markup=False, soft_wrap=True)
    print_table(
        None,
        ["cycles/inference p50", "min", "max", "us at clock", "instructions", "flash stalls", "flash B",
         "model code+const B", "static RAM B", "stack B"],
        [(f"{result.median_cycles:,.0f}", f"{min(cycles):,}", f"{max(cycles):,}", f"{result.latency_us:.2f}",
          f"{result.instructions_per_inference:,.0f}", f"{result.fetch_stall_cycles:,.0f}", f"{result.flash_bytes:,}",
          f"{result.model_object_bytes:,}", f"{result.static_ram_bytes:,}", f"{result.stack_bytes:,}")],
    )
    print_table(
        "executed per inference (mean over rows; cycles before flash stalls)",
        ["class", "instructions", "cycles"],
        [(k, f"{v:,.1f}", f"{result.cycles_by_class[k]:,.1f}") for k, v in
         sorted(result.by_class.items(), key=lambda kv: -result.cycles_by_class[kv[0]])],
    )
    stdout.print(f"outputs checked against {result.reference}: max abs error {result.max_abs_error:.3g}; "
                 "flash: what the model adds to the image (its code and constants, libm); cycles: the core's "
                 "timing table and a flash wait-state model over the emulated instructions (swat_edge/measure/mcu.py)",
                 markup=False, soft_wrap=True)
    if predicted_us is not None:
        stdout.print(f"the {target.name} profile's cost model predicts {predicted_us:.2f} us "
                     f"({predicted_us / result.latency_us:.2f}x the emulated figure; profile "
                     f"{target.provenance.kind})", markup=False, soft_wrap=True)


def print_bench_c_pair(result: CPairResult, model: Path, csrc: CSource, against: Path, threads: int, method: str) -> None:
    stdout.print(f"a = {against} (onnxruntime, {threads} thread(s)), b = {model} (C: {_c_what(csrc)}, built with "
                 f"{result.settings.compiler} {' '.join(result.settings.cflags)}); latencies in us per call",
                 markup=False, soft_wrap=True)
    stdout.print(f"interleaved: {method}", markup=False, soft_wrap=True)
    print_table(
        None,
        ["batch", "a p50", "b p50", "b ns/row", "b/a", "95% CI", "a/b (speed-up)", "95% CI ", "rounds"],
        [(p.batch_size, f"{p.onnx.p50_us:.2f}", f"{p.c.p50_us:.3f}", f"{p.c.p50_us * 1e3 / p.batch_size:.1f}",
          f"{p.ratio:.4f}", f"{p.ratio_ci_low:.4f}-{p.ratio_ci_high:.4f}", f"{p.speedup:.1f}",
          f"{p.speedup_ci[0]:.1f}-{p.speedup_ci[1]:.1f}", p.rounds) for p in result.pairs],
    )


# ---------------------------------------------------------------------------------------------------------
# inspect


def print_summary(summary: ModelSummary | OnnxSummary) -> None:
    """`inspect`: a swat-edge model's layer tables, or an ONNX file's tensors, ops and weights."""
    from .measure.summary import ModelSummary

    if isinstance(summary, ModelSummary):
        _print_model_summary(summary)
    else:
        _print_onnx_summary(summary)


def _print_model_summary(summary: ModelSummary) -> None:
    layer_rows = (*summary.layers, summary.total)
    _say(f"{summary.source}: swat-edge model, sha256 {summary.sha256[:16]}")
    print_table(
        None,
        ["layer", "in", "out", "active", "nonzero weights", "dense MACs", "sparse MACs", "fp32 bytes", "int8 bytes"],
        [(r.layer, r.n_in, r.n_out, r.n_active, f"{r.nonzero_weights:,}", f"{r.dense_macs:,}", f"{r.sparse_macs:,}",
          f"{r.bytes_fp32:,}", f"{r.bytes_int8:,}") for r in layer_rows],
    )
    # One column per activation in use: a table of counts stays narrow where "relu 3, tanh 2, ..." wraps.
    names = list(summary.total.activations)
    if names:
        print_table(
            "active neurons by activation (the output layer is linear)",
            ["layer", *names],
            [(r.layer, *(r.activations.get(a, 0) for a in names)) for r in layer_rows if r.layer != "output"],
        )
    _say(f"non-zero parameters: {summary.nonzero_params:,}")
    _say(f"features ({len(summary.feature_names)}): {column_list(summary.feature_names)}")
    _say(f"targets ({len(summary.target_names)}): {', '.join(summary.target_names)}")
    if summary.calibration_rows:
        _say(f"calibration rows: {summary.calibration_rows}")
    if summary.provenance:
        prov = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(summary.provenance.items()))
        _say(f"provenance: {prov}")


def _print_onnx_summary(summary: OnnxSummary) -> None:
    opsets = ", ".join(f"{d} {v}" for d, v in summary.opsets.items())
    _say(f"{summary.source}: ONNX, {summary.size_bytes:,} bytes, IR {summary.ir_version}, opset {opsets}"
         + (f", producer {summary.producer}" if summary.producer else "")
         + f", {'int8 (quantized)' if summary.is_int8 else 'float (not quantized)'}")
    # names come from the file: a "[...]" in them is text, not rich markup
    print_table(
        None,
        ["tensor", "kind", "dtype", "shape"],
        [(escape(t.name), kind, t.dtype, escape("(" + ", ".join(map(str, t.shape)) + ")"))
         for kind, group in (("input", summary.inputs), ("output", summary.outputs)) for t in group],
    )
    _say(f"{summary.node_count} nodes: {_fmt_ops(summary.op_histogram)}")
    if summary.weights:
        print_table(
            None,
            ["node", "op", "weight", "shape", "dtype", "in -> out", "non-zero"],
            [(escape(w.node), w.op_type, escape(w.weight), "x".join(map(str, w.weight_shape)), w.weight_dtype,
              f"{w.n_in} -> {w.n_out}", f"{w.nonzero_weights:,}") for w in summary.weights],
        )
    for key, value in sorted(summary.metadata.items()):
        _say(f"metadata {key}: {value}")


# ---------------------------------------------------------------------------------------------------------
# export


def print_export(export: FileExport, output: Path, *, prefix_from_name: bool, max_drift: float | None) -> None:
    """`export`: a C export's code and check, or an ONNX export's passes, check and drift (see the two below)."""
    from .export.pipeline import CExport

    if isinstance(export.result, CExport):
        _print_c_export(export.result, export.model, prefix_from_name=prefix_from_name,
                        calibration_source=export.rows.calibration_source)
    else:
        _print_onnx_export(export.result, output, max_drift)


def _print_c_export(result: CExport, model: SparseMLP, *, prefix_from_name: bool, calibration_source: str | None) -> None:
    """What the C code is, how it was verified (or a warning that it was not), and the files written."""
    code, check = result.code, result.check
    acts = ", ".join(f"{name} {n}" for name, n in code.activation_counts.items()) or "none"
    kind = "int8 weights, int32 sums" if code.dtype == "int8" else "float32"
    stdout.print(f"C code: {code.prefix}_predict and {code.prefix}_predict_batch, {kind}"
                 f"{', fast_math' if code.fast_math else ''}; per row {code.macs} multiply-adds, activations {acts}",
                 markup=False, soft_wrap=True)
    if code.loop_layers:
        layers = ", ".join(str(li + 1) for li in code.loop_layers)
        stdout.print(f"layers {layers} (1 = first hidden) are loops over weight tables: smaller code, slower; the "
                     "rest is straight-line", markup=False, soft_wrap=True)
    stdout.print(f"inputs: {model.n_inputs} columns in this order: {column_list(model.feature_names)}", markup=False,
                 soft_wrap=True)
    for note in code.notes:
        from_name = prefix_from_name and note.startswith("prefix ")
        stdout.print(f"note: {note}{' (from the output file name; --prefix to choose)' if from_name else ''}",
                     markup=False, soft_wrap=True)
    if check is None:
        stderr.print(f"warning: not verified: {result.not_verified}; the files were written unchecked", markup=False)
    else:
        where = f"with {check.compiler} {' '.join(check.flags)} on {check.rows} {result.check_rows_source}"
        if code.int8 is not None:
            cal = calibration_source or f"{code.int8.calibration_rows} {code.int8.calibration_source}"
            stdout.print(f"verified {where}: int8 drift vs the float model, relative MSE {check.relative_mse:.3g} "
                         f"<= {check.max_relative_mse:g} (calibrated on {cal})", markup=False, soft_wrap=True)
        else:
            ratios = [e / t for e, t in zip(check.max_abs_error, check.tolerance)]
            k = max(range(len(ratios)), key=ratios.__getitem__) if ratios else 0
            which = f" (output {model.target_names[k]!r}, the nearest to its tolerance)" if len(ratios) > 1 else ""
            bound = "; tolerance includes the fast_math bound" if code.activation_max_abs_error else ""
            stdout.print(f"verified {where}: max abs error {check.max_abs_error[k]:.3g} <= tolerance "
                         f"{check.tolerance[k]:.3g}{which}{bound}" if ratios else f"verified {where}", markup=False,
                         soft_wrap=True)
    _say(f"wrote {result.path} and {result.header_path} ({result.size_bytes:,} bytes)")


def _print_onnx_export(result: OnnxExport, output: Path, max_drift: float | None) -> None:
    """The compile passes, dropped inputs, the fp32 check, the int8 drift, then `wrote ...` or the one stderr line
    saying the drift gate refused the file."""
    from .compile import REPORT_COLUMNS, format_reports

    print_table("compile passes", REPORT_COLUMNS, format_reports(result.compiled.reports))
    if result.dropped_inputs:
        _say(f"unused inputs dropped (--drop-unused-inputs): {', '.join(result.dropped_inputs)}")
    stdout.print(f"inputs: the graph takes {result.compiled.model.n_inputs} columns in this order: "
                 f"{column_list(result.compiled.model.feature_names)}", markup=False, soft_wrap=True)
    check = result.check
    _say(f"verified fp32 graph against the original model: max abs error {check.max_abs_error:.3g} "
         f"<= {check.tolerance:.3g} on {check.rows} rows")
    if result.drift is not None:
        d = result.drift
        ratio = f", MSE ratio int8/fp32 vs targets {d.mse_ratio:.4f}" if d.mse_ratio is not None else ""
        _say(f"int8 ({result.quantization}) drift vs fp32 on {result.drift_rows_source}: relative MSE "
             f"{d.relative_mse:.3g}, max abs error {d.max_abs_error:.3g}{ratio}")
    if not result.written:
        stderr.print(
            f"FAILED: int8 relative MSE {result.drift.relative_mse:.3g} exceeds --max-drift {max_drift:g}; "  # type: ignore[union-attr]
            f"{output} not written",
            markup=False,
        )
        return
    _say(f"wrote {output} ({result.size_bytes} bytes)")
