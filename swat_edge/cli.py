"""The `swat-edge` command line: parse, call the library, print. `main()` is the only place that exits."""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer
from typer.exceptions import TyperException

from . import __version__, views
from .console import stderr, stdout
from .errors import InputError, SwatError, UsageError

__all__ = ["app", "main"]

app = typer.Typer(name="swat-edge", help="Edge deployment compiler for small sparse MLPs.", add_completion=False,
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


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
# Stages are imported inside the commands: `swat-edge --help` stays fast, and device-side commands never load torch.

targets_app = typer.Typer(help="List and show target profiles (hardware, runtime, int8 policy, cost coefficients, "
                          "provenance).", no_args_is_help=True)
app.add_typer(targets_app, name="targets")


@targets_app.command("list")
def targets_list_command() -> int:
    """List the built-in target profiles."""
    from .device.targets import builtin_targets_dir, list_targets, load_target

    views.print_targets([load_target(name) for name in list_targets()], builtin_targets_dir())
    return 0


@targets_app.command("show")
def targets_show_command(
    name: str = typer.Argument(..., metavar="NAME", help="A built-in target (swat-edge targets list) or a .toml path."),
) -> int:
    """Show a target profile: hardware, runtime, int8 policy, cost coefficients and where they come from."""
    from .device.targets import load_target, profile_rows, provenance_line

    profile = load_target(name)
    views.print_target(profile, profile_rows(profile), provenance_line(profile))
    return 0


@app.command("calibrate")
def calibrate_command(
    out: Path = typer.Option(..., "--out", "-o", help="Profile to write, e.g. targets/my-device.toml."),
    name: Optional[str] = typer.Option(None, "--name", help="Target name (default: the file name without .toml)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=3, help="Interleaved timing rounds (default 40)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the probe networks and the timing order."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
    emulate: bool = typer.Option(False, "--emulate", help="Microcontrollers: fit --target's cost model to emulated cycle counts of generated C (arm-none-eabi-gcc and the mcu extra) instead of timing onnxruntime here."),
    target: Optional[str] = typer.Option(None, "--target", help="With --emulate: the microcontroller profile to re-derive (e.g. cortex-m4)."),
    networks: int = typer.Option(100, "--networks", min=8, help="With --emulate: random networks to fit (200 more check the fit)."),
) -> int:
    """Time probe networks with onnxruntime here, fit the cost model, write a `measured` target profile
    (--emulate: an `emulated` profile of a microcontroller)."""
    from .measure.calibrate import DEFAULT_ROUNDS, calibrate, profile_name_for, write_profile

    if emulate != (target is not None):
        raise UsageError("--emulate and --target go together: swat-edge calibrate --emulate --target cortex-m4 "
                         "--out targets/cortex-m4.toml")
    target_name = profile_name_for(out, name=name, force=force)
    if emulate:
        return _calibrate_emulated(out, target, target_name, networks=networks, seed=seed, force=force)
    stderr.print("calibrating: exporting and timing probe networks with onnxruntime (about 30 s; keep the machine "
                 "idle)", markup=False)
    result = calibrate(name=target_name, rounds=rounds or DEFAULT_ROUNDS, seed=seed)
    write_profile(result, out, force=force)
    views.print_calibration(result, out)
    return 0


def _calibrate_emulated(out: Path, target: str, target_name: str, *, networks: int, seed: int, force: bool) -> int:
    from .device.targets import load_target
    from .measure.calibrate_mcu import DEFAULT_CHECK_NETWORKS, calibrate_emulated, write_emulated_profile

    profile = load_target(target)
    with views.count_progress("emulating", networks + DEFAULT_CHECK_NETWORKS) as report:
        result = calibrate_emulated(profile, n_fit=networks, seed=seed, progress=report)
    result = replace(result, profile=result.profile.replace(name=target_name))
    write_emulated_profile(result, out, force=force)
    views.print_emulated_calibration(result, out)
    return 0


embed_app = typer.Typer(help="Train and evaluate the MLP embedding the search runs in (needs torch: pip install "
                        "'swat-edge[search]').", no_args_is_help=True)
app.add_typer(embed_app, name="embed")


def _read_config_overrides(config: Path) -> Any:
    import json

    from .files import check_input_file

    path = check_input_file(config, "config file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


@embed_app.command("train")
def embed_train_command(
    out: Path = typer.Option(..., "--out", help="Training folder: config.json, checkpoint/, final embedding."),
    preset: str = typer.Option("default", "--preset", help="Config preset: default or tiny."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON overriding preset fields, e.g. {\"recipe\": {\"lr\": 0.0005}}."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Length of the training schedule (recipe.steps)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Training seed (recipe.seed)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint (same config)."),
    until: Optional[int] = typer.Option(None, "--until", help="Stop after this step (train in pieces, then --resume)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between checkpoints."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads per process."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    data_workers: int = typer.Option(0, "--data-workers", min=0, help="Processes drawing training batches ahead (same weights; use on a GPU)."),
) -> int:
    """Train the embedding (runs under `torchrun --nproc_per_node=N -m swat_edge embed train ...` too)."""
    import os

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    overrides = _read_config_overrides(config) if config is not None else None
    from .search import set_torch_threads  # imports torch (MissingExtraError without it)
    from .search.embedding.config import make_config
    from .search.embedding.train import train_embedding

    cfg = make_config(preset, overrides=overrides, steps=steps, seed=seed)
    set_torch_threads(threads)
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only the first process prints
    with views.training_progress(cfg.recipe.steps, show=rank0) as report:
        result = train_embedding(cfg, out, resume=resume, until=until, checkpoint_every=checkpoint_every,
                                 device=device, data_workers=data_workers, progress=report)
    if rank0:
        views.print_training(out, result, cfg.recipe.steps)
    return 0


@embed_app.command("eval")
def embed_eval_command(
    name: str = typer.Argument("default", metavar="NAME", help="'default' or an embedding / training folder."),
    mlps_per_depth: int = typer.Option(250, "--mlps-per-depth", min=1, help="Held-out random MLPs per depth."),
    points: int = typer.Option(256, "--points", min=8, help="Input points each MLP is scored on."),
    pairs: int = typer.Option(5000, "--pairs", min=10, help="Random pairs for the latent-smoothness Spearman."),
    seed: int = typer.Option(0, "--seed", min=0, help="Held-out evaluation seed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures as JSON."),
    force: bool = typer.Option(False, "--force", help="Overwrite --json."),
    cornn: Optional[Path] = typer.Option(None, "--cornn", help="CORNN data folder: also run latent search through this "
                                         "decoder and an untrained one of the same shape."),
    tasks: str = typer.Option("sphere,himmelblau,rastrigin", "--tasks", help="CORNN task slugs, comma separated."),
    search_seeds: int = typer.Option(1, "--search-seeds", min=1, help="Seeds per CORNN task."),
    search_steps: int = typer.Option(600, "--search-steps", min=1, help="Latent-search steps per run."),
    finetune_steps: int = typer.Option(500, "--finetune-steps", min=0, help="Weight-space fine-tuning steps."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads."),
) -> int:
    """Evaluate an embedding on held-out random MLPs (and optionally on CORNN tasks against an untrained decoder)."""
    from .console import write_json
    from .files import check_output_path

    if json_out is not None:
        check_output_path(json_out, force=force)
    from .search import compare_with_untrained, evaluate_embedding, load_embedding, set_torch_threads  # imports torch

    set_torch_threads(threads)
    embedding = load_embedding(name)
    report = evaluate_embedding(embedding, n_per_depth=mlps_per_depth, n_points=points, n_pairs=pairs, seed=seed)
    views.print_embedding_eval(embedding, report, seed)
    payload: dict = {"embedding": embedding.source, "steps": embedding.steps, **report.to_dict()}
    if cornn is not None:
        slugs = [t.strip() for t in tasks.split(",") if t.strip()]
        rows = compare_with_untrained(embedding, cornn, slugs, seeds=range(search_seeds), search_steps=search_steps,
                                      finetune_steps=finetune_steps)
        views.print_decoder_comparison(rows)
        payload["cornn"] = [r.__dict__ for r in rows]
    if json_out is not None:
        write_json(json_out, payload, force=force)
    return 0


@app.command("search")
def search_command(
    data: Path = typer.Option(..., "--data", help="Training data: CSV with a header, or NPZ (X, y)."),
    target: str = typer.Option(..., "--target", help="Device to search for: a built-in profile (swat-edge targets list) or a .toml path."),
    target_col: Optional[str] = typer.Option(None, "--target-col", help="Column to predict (default: the last column)."),
    features: Optional[str] = typer.Option(None, "--features", help="Input columns, comma separated (default: every other column)."),
    task: str = typer.Option("auto", "--task", help="regress, classify, or auto: classify a target of text labels, or of at most 10 integer values with 5+ rows each on average (said in the output)."),
    inputs: str = typer.Option("auto", "--inputs", help="More features than the embedding takes (8): select (forward selection), project (partial least squares), or auto: whichever of the two carries more of the target on the validation rows (a cubic least-squares fit on each); the model takes all features either way."),
    missing: str = typer.Option("error", "--missing", help="Empty cells: error, drop (the rows), or median (fill features with the training median; the exported model does the same)."),
    outliers: str = typer.Option("error", "--outliers", help="A feature or target value more than 100 times the range of its column's middle 98% of rows beyond it (scaling would squeeze the other rows): error (naming the row), drop (the rows), or keep."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test data with the same columns: only evaluated, never used to choose."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<timestamp>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder."),
    embedding: str = typer.Option("default", "--embedding", help="'default' or an embedding / training folder."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="Hard limit on predicted latency per call at batch 1, e.g. 20us."),
    size_budget: Optional[str] = typer.Option(None, "--size-budget", help="Hard limit on model bytes (on a microcontroller profile the generated C's flash, loop layers allowed; else weights and biases as deployed), e.g. 4KB."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Choose the cheapest network on the target whose validation MSE is within this share of the best (0.05: 5%)."),
    latency_weight: Optional[float] = typer.Option(None, "--latency-weight", min=0.0, help="Trade-off instead of --tolerance: the relative MSE increase worth a 1% relative latency cut, e.g. 0.5: "
        "0.5% more MSE for 1% less predicted latency (0: accuracy only; budgets still apply)."),
    int8: bool = typer.Option(False, "--int8", help="Deploy int8 (write model.int8.onnx) whatever the target's int8 policy says."),
    steps: int = typer.Option(600, "--steps", min=1, help="Latent-search steps."),
    starts: int = typer.Option(4, "--starts", min=1, help="Random starts per depth (all optimised in one batch)."),
    fitter: str = typer.Option("auto", "--fitter", help="Fine-tuning: lm (Levenberg-Marquardt on up to 50,000 training rows, a random sample of them beyond), adam (mini-batch, every row), or auto: lm unless a network has more than 1,000 free parameters."),
    fit_rows: int = typer.Option(50_000, "--fit-rows", min=1, help="Levenberg-Marquardt fits on at most this many training rows (and stops early on at most as many validation rows), a random sample of them beyond; more rows cost time in proportion (every row: a number above the file's row count)."),
    finetune_steps: int = typer.Option(2000, "--finetune-steps", min=0, help="Adam fine-tuning steps of each candidate network (with --fitter adam, or auto on networks too large for lm)."),
    validation: float = typer.Option(0.2, "--validation", min=0.01, max=0.9, help="Share of the rows held out for validation."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split, the starts and the mini-batches."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (1 is fastest for these tiny networks)."),
    jobs: int = typer.Option(min(2, os.cpu_count() or 1), "--jobs", min=1, help="Processes fitting candidates (the reference networks fitted while the latent search runs; the same model for any number). Default: 2 where there are 2 CPUs."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Time model.onnx here for a second (card: measured)."),
) -> int:
    """Search a small sparse MLP for DATA on TARGET in the embedding's latent space; prune, fine-tune, export, report."""
    import time

    from .data import load_train_and_test
    from .device.cost import parse_latency_us, parse_size_bytes
    from .device.targets import load_target
    from .runs.folder import RUNS_DIR, check_run_dir, default_run_dir, write_run

    started = time.perf_counter()
    profile = load_target(target)  # an unknown target fails here, before the data or torch is touched
    budget_us = parse_latency_us(latency_budget) if latency_budget else None
    budget_bytes = parse_size_bytes(size_budget) if size_budget else None
    run_dir = check_run_dir(out, force=force) if out is not None else default_run_dir(RUNS_DIR)
    dataset, test_set = load_train_and_test(data, test, target_cols=target_col, features=features, missing=missing,
                                            task=task, outliers=outliers)

    from .search import load_embedding, set_torch_threads  # imports torch (MissingExtraError without it)
    from .search.latent import family_param_count
    from .search.objective import Budgets
    from .search.run import run_search, search_settings

    set_torch_threads(threads)
    emb = load_embedding(embedding)
    settings = search_settings(steps=steps, starts=starts, latency_weight=latency_weight, validation=validation,
                               tolerance=tolerance, fitter=fitter, finetune_steps=finetune_steps, int8=int8, seed=seed,
                               inputs=inputs, fit_rows=fit_rows)
    budgets = Budgets(latency_us=budget_us, size_bytes=budget_bytes)
    views.print_search_start(data, dataset, profile.name, emb, starts=starts, steps=steps)
    with views.search_progress(steps) as (report, stage):
        result = run_search(dataset, embedding=emb, target=profile, budgets=budgets, settings=settings, test=test_set,
                            embedding_name=str(embedding), progress=report, stage=stage, jobs=jobs)
    if not result.met_budgets:
        views.print_budgets_missed(result, profile.name, budget_us, budget_bytes)
        return 1
    family = emb.config.family  # card.json records the embedding the run searched in
    record = {"source": emb.source, "weights_sha256": emb.weights_sha256, "steps": emb.steps,
              "family": family.to_dict(), "family_max_params": family_param_count(family)}
    files = write_run(result, run_dir, dataset=dataset, test=test_set, target=profile, embedding=record, settings=settings,
                      budgets=budgets, heldout=(dataset.x[result.validation_rows], dataset.y[result.validation_rows]),
                      force=force, measure=measure)
    views.print_search_result(result, files, profile.name, time.perf_counter() - started)
    return 0


def _bench_c(model: Path, *, sizes: tuple[int, ...], runs: Optional[int], against: Optional[Path], threads: int,
             io_binding: bool, json_out: Optional[Path], force: bool) -> int:
    """`bench model.c [--against model.onnx]`: bench_c.measure_c, or measure_c_pair in alternating rounds."""
    from .console import write_json
    from .export.c import read_c
    from .measure.bench_c import PAIR_METHOD, measure_c, measure_c_pair
    from .measure.gate import check_bench_outputs, check_onnx_model

    csrc = read_c(model)
    against_path = check_onnx_model(against, "--against") if against is not None else None
    check_bench_outputs(json_out, None, force=force)
    if against_path is None:
        result = measure_c(csrc, batch_sizes=sizes, **({"n_samples": runs} if runs is not None else {}))
        views.print_bench_c(result, model, csrc)
    else:
        counts = {"min_rounds": max(2, runs), "min_time_s": 0.0} if runs is not None else {}
        result = measure_c_pair(csrc, against_path, batch_sizes=sizes, threads=threads, io_binding=io_binding, **counts)
        views.print_bench_c_pair(result, model, csrc, against_path, threads, PAIR_METHOD)
    if json_out is not None:
        write_json(json_out, result.to_json(), force=force)
    return 0


def _bench_mcu(model: Path, target_name: str, reference: Optional[Path], *, json_out: Optional[Path],
               force: bool) -> int:
    """`bench model.c --target MCU`: mcu.emulate_c, with the cost model's prediction beside it when the model is
    given."""
    from .console import write_json
    from .device.cost import estimate
    from .device.targets import load_target
    from .export.c import read_c
    from .measure.gate import check_bench_outputs
    from .measure.mcu import emulate_c
    from .model import load_model

    profile = load_target(target_name)
    csrc = read_c(model)
    check_bench_outputs(json_out, None, force=force)
    sparse = load_model(reference) if reference is not None else None
    result = emulate_c(csrc, profile, reference=sparse)
    predicted = (estimate(sparse, profile, loop_layers=csrc.loop_layers).latency_us[0] if sparse is not None
                 else None)
    views.print_bench_mcu(result, model, csrc, profile, predicted)
    if json_out is not None:
        write_json(json_out, {**result.to_json(), "predicted_latency_us": predicted}, force=force)
    return 0


@app.command("bench")
def bench_command(
    model: Path = typer.Argument(..., metavar="MODEL", help="The .onnx model to time (candidate B with --against)."),
    batch: Optional[list[int]] = typer.Option(None, "--batch", min=1, help="Batch size; repeat for several (default 1)."),
    threads: int = typer.Option(1, "--threads", min=1, help="onnxruntime intra-op threads."),
    runs: Optional[int] = typer.Option(None, "--runs", min=1, help="Timed runs per batch size (default: at least 200 and 0.5 s; for model.c: timing samples, with --against: rounds)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON (a baseline for --baseline)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --json / --github-json outputs."),
    against: Optional[Path] = typer.Option(None, "--against", help="Reference .onnx model A, timed interleaved with MODEL."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A saved `bench --json` result to gate against."),
    max_regression: Optional[str] = typer.Option(None, "--max-regression", help="Allowed slowdown of p50, e.g. 10%."),
    github_json: Optional[Path] = typer.Option(None, "--github-json", help="Write github-action-benchmark entries."),
    io_binding: bool = typer.Option(True, "--io-binding/--no-io-binding", help="Bind inputs/outputs once (default)."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory in a fresh process."),
    target: Optional[str] = typer.Option(None, "--target", help="model.c only: build it for this microcontroller profile (e.g. cortex-m4) with arm-none-eabi-gcc and count its cycles, flash and RAM in an emulator."),
    reference: Optional[Path] = typer.Option(None, "--model", help="With --target: the model the C was generated from (its calibration rows are emulated and its forward pass checks the outputs)."),
) -> int:
    """Time an ONNX model on this machine; optionally gate it against a baseline or another model."""
    from .console import write_json
    from .measure import bench, gate

    sizes = tuple(batch) if batch else (1,)
    # Every check that needs no timing runs first, so a wrong flag fails in milliseconds.
    if target is not None or reference is not None:
        if model.suffix.lower() != ".c" or target is None:
            raise UsageError("--target (and --model) emulate generated C on a microcontroller: "
                             "swat-edge bench model.c --target cortex-m4 [--model model.safetensors]")
        gate.refuse_gate_for_c(baseline=baseline, max_regression=max_regression, github_json=github_json)
        return _bench_mcu(model, target, reference, json_out=json_out, force=force)
    if model.suffix.lower() == ".c":
        gate.refuse_gate_for_c(baseline=baseline, max_regression=max_regression, github_json=github_json)
        return _bench_c(model, sizes=sizes, runs=runs, against=against, threads=threads, io_binding=io_binding,
                        json_out=json_out, force=force)
    model_path = gate.check_onnx_model(model, "MODEL")
    against_path = gate.check_onnx_model(against, "--against") if against is not None else None
    request = gate.check_gate_flags(baseline=baseline, max_regression=max_regression, against=against is not None,
                                    batch_sizes=sizes)
    gate.check_bench_outputs(json_out, github_json, force=force)

    counts = dict(min_runs=runs, min_time_s=0.0) if runs is not None else {}
    result: bench.BenchResult | bench.PairResult
    if against_path is not None:
        result = bench.measure_pair(against_path, model_path, batch_sizes=sizes, threads=threads,
                                    io_binding=io_binding, **counts)
        views.print_bench_pair(result, against_path, model_path)
    else:
        result = bench.measure(model_path, batch_sizes=sizes, threads=threads, io_binding=io_binding,
                               measure_memory=memory, **counts)
        views.print_bench(result, model_path, memory=memory, threads=threads)
    if json_out is not None:
        write_json(json_out, result.to_json(), force=force)
    if github_json is not None:
        write_json(github_json, gate.to_github_benchmark(result), force=force)
    verdict = gate.judge(result, request)
    if verdict is not None:
        stderr.print(verdict.message, markup=False)
    return 0 if verdict is None or verdict.passed else 1


@app.command("inspect")
def inspect_command(
    model: Path = typer.Argument(..., metavar="MODEL", help="A .onnx file, or a swat-edge model file (any other suffix)."),
) -> int:
    """Show a model's layers, sizes and costs (swat-edge model) or its graph (ONNX)."""
    from .measure.summary import summarize_file

    views.print_summary(summarize_file(model))
    return 0


@app.command("export")
def export_cmd(
    model_path: Optional[Path] = typer.Argument(None, metavar="MODEL", help="A swat-edge model file (.safetensors); omit it to export the latest search run (runs/latest) or --run DIR. "
        "`swat-edge export model.onnx` alone writes model.onnx from the latest run."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="model.onnx, model.int8.onnx (static int8) or model.c."),
    run: Optional[Path] = typer.Option(None, "--run", help="Export the model of this search run folder instead of the latest."),
    candidate: Optional[int] = typer.Option(None, "--candidate", help="Export point K of the run's accuracy/latency front (card.json: selection.front) instead of the chosen model."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="none | static | dynamic (default: static for *.int8.onnx, else none)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="CSV/NPZ rows for int8 calibration; half of them are held out to measure drift."),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="CSV/NPZ rows (with targets if present) to measure int8 drift on."),
    max_drift: Optional[float] = typer.Option(None, "--max-drift", help="Fail (exit 1, nothing written) if int8 relative MSE vs fp32 exceeds this, e.g. 1e-3."),
    quantize_last: bool = typer.Option(False, "--quantize-last", help="Quantize the output layer too (less accurate)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="C output: float (default) or int8 (int8 weights, int32 sums)."),
    fast_math: bool = typer.Option(False, "--fast-math", help="C output: approximate tanh/sigmoid (max error in the banner)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="C output: function prefix (default: the file name)."),
    drop_unused_inputs: bool = typer.Option(False, "--drop-unused-inputs", help="Take only the features the model reads (default: every feature column of the data, in its order)."),
    target: Optional[str] = typer.Option(None, "--target", help="C output: the microcontroller profile whose cost model chooses which layers become loops (smaller, slower code)."),
    size_budget: Optional[str] = typer.Option(None, "--size-budget", help="C output with --target: flash budget, e.g. 4KB; layers become loops until the code is predicted to fit."),
    loops: str = typer.Option("auto", "--loops", help="C output: auto (the --target's cost model chooses; without --target none), none, or all (every layer that reads a hidden layer and has one activation)."),
) -> int:
    """Compile a model (passes), export it to ONNX fp32/int8 or C99, verify it against the original, write it."""
    from .device.targets import list_targets
    from .export.pipeline import export_file
    from .runs.folder import resolve_export_paths, run_size_budget

    model_path, output, run_dir = resolve_export_paths(model_path, output, run, candidate=candidate)
    if run_dir is not None:
        stdout.print(f"exporting {model_path} (search run {run_dir})", markup=False)
    searched_for = run_size_budget(run_dir) if run_dir is not None else None
    if (searched_for is not None and output.suffix.lower() == ".c" and loops == "auto" and target is None
            and size_budget is None and searched_for[0] in list_targets()):
        # the C the search priced: its target's loop choice under its size budget
        target, budget_bytes = searched_for
        size_budget = None if budget_bytes is None else f"{budget_bytes:g}"
    loop_layers = _loop_choice(loops, target, size_budget, output)
    export = export_file(model_path, output, force=force, quantize=quantize, quantize_last=quantize_last, dtype=dtype,
                         fast_math=fast_math, prefix=prefix, calibration=calibration, holdout=holdout, max_drift=max_drift,
                         drop_unused_inputs=drop_unused_inputs, loop_layers=loop_layers)
    views.print_export(export, output, prefix_from_name=prefix is None, max_drift=max_drift)
    return 0 if export.written else 1  # 1: the int8 drift gate refused the file


def _loop_choice(loops: str, target: Optional[str], size_budget: Optional[str], output: Optional[Path]):
    """export's --loops / --target / --size-budget as export_file's loop_layers."""
    if loops not in ("auto", "none", "all"):
        raise UsageError(f"--loops {loops!r}: use auto, none or all")
    if (target is not None or size_budget is not None or loops != "auto") and (
            output is None or output.suffix.lower() != ".c"):
        raise UsageError("--loops/--target/--size-budget: for C output (-o model.c)")
    if size_budget is not None and target is None:
        raise UsageError("--size-budget needs --target: its cost model predicts the flash bytes")
    if loops == "none" or (loops == "auto" and target is None):
        return ()
    if loops == "all":
        if target is not None or size_budget is not None:
            raise UsageError("--loops all chooses every layer itself; drop --target/--size-budget or use --loops auto")
        return "all"
    from .device.cost import choose_loop_layers, parse_size_bytes
    from .device.targets import load_target

    profile = load_target(target)
    budget = parse_size_bytes(size_budget) if size_budget else None
    return lambda model: choose_loop_layers(model, profile, budget, compile=True)


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI and exit: 0 ok, 1 failure/verdict, 2 usage, 3 internal error, 130 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="swat-edge", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
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
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # a bug: say so, distinctly from a failure (exit 3, not 1)
        if debug:
            raise
        stderr.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please "
                     "report)", markup=False)
        code = 3
    sys.exit(code)


if __name__ == "__main__":
    main()
