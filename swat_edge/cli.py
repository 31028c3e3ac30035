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

targets_app = typer.Typer(
    help="List and show target profiles (hardware, runtime, int8 policy, cost coefficients, provenance).",
    no_args_is_help=True,
)
app.add_typer(targets_app, name="targets")


@targets_app.command("list")
def targets_list_command() -> int:
    """List the built-in target profiles."""
    from .device.targets import builtin_targets_dir, list_targets, load_target

    profiles = [load_target(name) for name in list_targets()]
    print_table(
        None,
        ["target", "runtime", "int8", "provenance", "description"],
        [(p.name, p.runtime.name, p.int8_policy, p.provenance.kind, p.description) for p in profiles],
    )
    stdout.print(
        f"{len(profiles)} profiles in {builtin_targets_dir()}; any command taking --target also takes a path to a "
        ".toml profile (swat-edge calibrate writes one for the machine it runs on)",
        markup=False,
    )
    return 0


@targets_app.command("show")
def targets_show_command(
    name: str = typer.Argument(..., metavar="NAME", help="A built-in target (swat-edge targets list) or a .toml path."),
) -> int:
    """Show a target profile: hardware, runtime, int8 policy, cost coefficients and where they come from."""
    from rich.markup import escape

    from .device.targets import load_target, profile_rows, provenance_line

    profile = load_target(name)
    stdout.print(f"{profile.name}: {profile.description} ({profile.source})", markup=False)
    print_table(None, ["field", "value"], [(key, escape(value)) for key, value in profile_rows(profile)])
    stdout.print(f"provenance: {provenance_line(profile)}", markup=False)
    return 0


@app.command("calibrate")
def calibrate_command(
    out: Path = typer.Option(..., "--out", "-o", help="Profile to write, e.g. targets/my-device.toml."),
    name: Optional[str] = typer.Option(None, "--name", help="Target name (default: the file name without .toml)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=3, help="Interleaved timing rounds (default 40)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the probe networks and the timing order."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> int:
    """Time probe networks with onnxruntime here, fit the cost model, write a `measured` target profile."""
    from .device.targets import profile_to_toml
    from .files import atomic_write_text, check_output_path
    from .measure.calibrate import DEFAULT_ROUNDS, calibrate

    if out.suffix.lower() != ".toml":
        raise UsageError(f"--out {out}: a target profile is a .toml file; name it e.g. {out.with_suffix('.toml')}")
    check_output_path(out, force=force)  # refuse before ~30 s of timing, not after
    target_name = name if name is not None else out.stem
    if not target_name.strip():
        raise UsageError("--name: give a non-empty target name")
    stderr.print(
        "calibrating: exporting and timing probe networks with onnxruntime (about 30 s; keep the machine idle)",
        markup=False,
    )
    result = calibrate(name=target_name, rounds=rounds or DEFAULT_ROUNDS, seed=seed)
    profile = result.profile
    comments = [
        f"Target profile written by `swat-edge calibrate` on {profile.provenance.date}.",
        "Measured coefficients; rerun calibrate to refresh them (see `swat-edge targets show PATH`).",
    ]
    atomic_write_text(out, profile_to_toml(profile, comments=comments), force=force)
    print_table(
        None,
        ["term", "coefficient"],
        [(term, f"{value:.4g}") for term, value in vars(profile.cost).items()],
    )
    stdout.print(
        f"fit: relative RMS error {result.fit_rmspe:.1%} over {len(result.measurements)} timings "
        f"({result.rounds} rounds, {result.duration_s:.0f} s); Gemm column block {profile.runtime.gemm_column_block}",
        markup=False,
    )
    stdout.print(f"wrote {out} (target {profile.name!r}, measured)", markup=False)
    return 0

embed_app = typer.Typer(
    help="Train and evaluate the MLP embedding the search runs in (needs torch: pip install 'swat-edge[search]').",
    no_args_is_help=True,
)
app.add_typer(embed_app, name="embed")


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # measured: 1 thread per process is fastest on a shared 2-core machine
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed earlier in this process (tests call the CLI repeatedly)
        pass


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
    import json
    import os

    from .errors import InputError, UsageError
    from .files import check_input_file

    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    overrides = None
    if config is not None:
        path = check_input_file(config, "config file")
        try:
            overrides = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
    from .search.embedding.config import make_config  # imports torch (MissingExtraError without it)
    from .search.embedding.train import train_embedding

    cfg = make_config(preset, overrides=overrides, steps=steps, seed=seed)
    _set_torch_threads(threads)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    bar = Progress(*columns, console=stdout, disable=not rank0)
    task = bar.add_task("train", total=cfg.recipe.steps, info="")

    def report(step: int, total: int, info: dict[str, float]) -> None:
        if not bar.live.is_started:
            bar.start()  # only once training runs: a refused invocation prints just its error line
        if "r2_depth1" in info:  # a checkpoint: print a line that stays
            r2 = " ".join(f"{info[k]:.3f}" for k in sorted(info) if k.startswith("r2_depth"))
            bar.console.print(f"step {step}: checkpoint; median R^2 by depth {r2}; right depth "
                              f"{info['right_depth']:.2f}; {info['mlps_per_s']:.0f} MLPs/s", markup=False)
        else:
            bar.update(task, completed=step, info=f"loss {info['loss']:.4f} ({info['mlps_per_s']:.0f} MLPs/s)")

    try:
        result = train_embedding(cfg, out, resume=resume, until=until, checkpoint_every=checkpoint_every,
                                 device=device, data_workers=data_workers, progress=report)
    finally:
        if bar.live.is_started:
            bar.stop()
    if rank0 and result.start_step == result.step:
        stdout.print(f"{out}: already at step {result.step} of {cfg.recipe.steps}; nothing to train", markup=False)
    elif rank0:
        where = f"{out}/embedding.json" if result.finished else f"{out}/checkpoint (resume with --resume)"
        stdout.print(f"trained steps {result.start_step}-{result.step} of {cfg.recipe.steps} on {result.world_size} "
                     f"process(es), {result.mlps_per_s:.0f} MLPs/s; embedding: {where}", markup=False)
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
    from .console import print_table, write_json
    from .files import check_output_path

    if json_out is not None:
        check_output_path(json_out, force=force)
    from .search.compare_decoders import compare_with_untrained  # imports torch
    from .search.embedding.evaluate import evaluate_embedding
    from .search.embedding.storage import load_embedding

    _set_torch_threads(threads)
    embedding = load_embedding(name)
    report = evaluate_embedding(embedding, n_per_depth=mlps_per_depth, n_points=points, n_pairs=pairs, seed=seed)
    stdout.print(f"{embedding.source}: {embedding.n_parameters:,} parameters, {embedding.steps} training steps; "
                 f"R^2 of the best decoder, hard-decoded, on held-out MLPs (seed {seed})", markup=False)
    print_table(
        None,
        ["depth", "MLPs", "median R^2", "> 0.9", "quadratic R^2", "quad > 0.9", "beats quad", "right depth"],
        [(r.depth, r.n_mlps, f"{r.median_r2:.3f}", f"{r.share_above_0_9:.0%}", f"{r.quadratic_median_r2:.3f}",
          f"{r.quadratic_share_above_0_9:.0%}", f"{r.beats_quadratic_share:.0%}", f"{r.right_depth_share:.0%}")
         for r in report.rows],
    )
    stdout.print(f"best decoder has the true depth for {report.right_depth_share:.0%} of MLPs; Spearman(latent "
                 f"distance, functional distance) over {report.n_pairs} pairs: {report.spearman_latent_vs_function:.3f}",
                 markup=False)
    payload: dict = {"embedding": embedding.source, "steps": embedding.steps, **report.to_dict()}
    if cornn is not None:
        slugs = [t.strip() for t in tasks.split(",") if t.strip()]
        rows = compare_with_untrained(embedding, cornn, slugs, seeds=range(search_seeds), search_steps=search_steps,
                                      finetune_steps=finetune_steps)
        print_table(
            "CORNN test MSE (scaled target): latent search through the trained vs an untrained decoder",
            ["task", "seed", "trained", "untrained", "ratio", "trained+ft", "untrained+ft", "ratio+ft"],
            [(r.task, r.seed, f"{r.trained_mse:.3g}", f"{r.untrained_mse:.3g}",
              f"{r.trained_mse / max(r.untrained_mse, 1e-300):.2f}", f"{r.trained_finetuned_mse:.3g}",
              f"{r.untrained_finetuned_mse:.3g}",
              f"{r.trained_finetuned_mse / max(r.untrained_finetuned_mse, 1e-300):.2f}") for r in rows],
        )
        payload["cornn"] = [r.__dict__ for r in rows]
    if json_out is not None:
        write_json(json_out, payload, force=force)
    return 0


_LATENCY_UNITS = {"us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def _parse_quantity(text: str, units: dict[str, float], flag: str, example: str) -> float:
    """'20us' -> 20.0 (in the first unit); a bare number is in the first unit."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in units) or float(match.group(1)) <= 0:
        raise UsageError(f"{flag} {text!r}: give a positive number with a unit ({', '.join(units)}), e.g. {example}")
    return float(match.group(1)) * units[unit or next(iter(units))]


def _fmt_mse(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3g}"


@app.command("search")
def search_command(
    data: Path = typer.Option(..., "--data", help="Training data: CSV with a header, or NPZ (X, y)."),
    target: str = typer.Option(..., "--target", help="Device to search for: a built-in profile (swat-edge targets list) or a .toml path."),
    target_col: Optional[str] = typer.Option(None, "--target-col", help="Column to predict (default: the last column)."),
    features: Optional[str] = typer.Option(None, "--features", help="Input columns, comma separated (default: every other column)."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test data with the same columns: only evaluated, never used to choose."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<timestamp>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder."),
    embedding: str = typer.Option("default", "--embedding", help="'default' or an embedding / training folder."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="Hard limit on predicted latency per call at batch 1, e.g. 20us."),
    size_budget: Optional[str] = typer.Option(None, "--size-budget", help="Hard limit on model bytes (weights and biases as deployed), e.g. 4KB."),
    latency_weight: float = typer.Option(0.1, "--latency-weight", min=0.0, help="Trade-off: the relative MSE increase worth a 1% relative latency cut, e.g. 0.5: 0.5% more MSE for 1% "
        "less predicted latency (0: accuracy only; budgets still apply)."),
    int8: bool = typer.Option(False, "--int8", help="Deploy int8 (write model.int8.onnx) whatever the target's int8 policy says."),
    steps: int = typer.Option(600, "--steps", min=1, help="Latent-search steps."),
    starts: int = typer.Option(4, "--starts", min=1, help="Random starts per depth (all optimised in one batch)."),
    finetune_steps: int = typer.Option(2000, "--finetune-steps", min=0, help="Weight-space fine-tuning steps of each candidate network (the best depths' best starts)."),
    validation: float = typer.Option(0.2, "--validation", min=0.01, max=0.9, help="Share of the rows held out for validation."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split, the starts and the mini-batches."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (1 is fastest for these tiny networks)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Time model.onnx here for a second (card: measured)."),
) -> int:
    """Search a small sparse MLP for DATA on TARGET in the embedding's latent space; prune, fine-tune, export, report."""
    import time
    from dataclasses import replace as _replace

    from .data import load_dataset
    from .device.targets import load_target
    from .runs.folder import RUNS_DIR, check_run_dir, default_run_dir

    started = time.perf_counter()
    profile = load_target(target)  # an unknown target fails here, before the data or torch is touched
    budget_us = _parse_quantity(latency_budget, _LATENCY_UNITS, "--latency-budget", "20us") if latency_budget else None
    budget_bytes = _parse_quantity(size_budget, _SIZE_UNITS, "--size-budget", "4KB") if size_budget else None
    run_dir = check_run_dir(out, force=force) if out is not None else default_run_dir(RUNS_DIR)
    dataset = load_dataset(data, target_cols=target_col, features=features)
    test_set = None
    if test is not None:
        test_set = load_dataset(test, target_cols=list(dataset.target_names), features=list(dataset.feature_names))

    from .search.embedding.storage import load_embedding
    from .search.latent import LatentSettings  # imports torch (MissingExtraError without it)
    from .search.objective import Budgets, ObjectiveWeights
    from .search.run import SearchSettings, run_search

    _set_torch_threads(threads)
    emb = load_embedding(embedding)
    settings = SearchSettings(
        latent=LatentSettings(steps=steps, starts_per_depth=starts),
        weights=_replace(ObjectiveWeights(), latency=latency_weight),
        validation_fraction=validation, finetune_steps=finetune_steps, int8=int8, seed=seed,
    )
    budgets = Budgets(latency_us=budget_us, size_bytes=budget_bytes)
    family = emb.config.family
    stdout.print(
        f"searching {dataset.n_rows} rows of {data} ({', '.join(dataset.target_names)} from "
        f"{len(dataset.feature_names)} features) for {profile.name}: depths {family.min_depth}-{family.max_depth} x "
        f"{starts} starts, {steps} steps; embedding {emb.source} ({emb.steps} training steps)", markup=False,
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"), console=stdout, transient=False)
    task = bar.add_task("search", total=steps, info="")

    def report(step: int, total: int, info: dict) -> None:
        if not bar.live.is_started:
            bar.start()
        lat = info.get("latency_us")
        bar.update(task, completed=step, info=f"loss {info['train_mse']:.3g}  best val {_fmt_mse(info.get('best_val_mse'))}"
                                              f"  latency {'n/a' if lat is None else f'{lat:.1f} us'}")

    def stage(text: str) -> None:
        if bar.live.is_started:
            bar.stop()
        stdout.print(text, markup=False)

    try:
        result = run_search(dataset, embedding=emb, target=profile, budgets=budgets, settings=settings, test=test_set,
                            embedding_name=str(embedding), progress=report, stage=stage)
    finally:
        if bar.live.is_started:
            bar.stop()
    if not result.met_budgets:
        c = result.closest
        limits = ", ".join(x for x in (f"latency <= {budget_us:g} us" if budget_us else "",
                                       f"size <= {budget_bytes:g} bytes" if budget_bytes else "") if x)
        stderr.print(
            f"FAILED: no candidate met the budgets ({limits}) on {profile.name}; closest: depth {c.depth}, predicted "
            f"{c.latency_us:.1f} us and {c.size_bytes:.0f} bytes, {c.nonzero_params} non-zero parameters, "
            f"{c.active_neurons} active neurons, validation MSE {c.val_mse:.3g} (latent only); relax "
            "--latency-budget/--size-budget or choose another --target; nothing written", markup=False,
        )
        return 1
    from .runs.folder import write_run
    from .search.latent import family_param_count

    files = write_run(
        result, run_dir, dataset=dataset, test=test_set, target=profile,
        embedding={"source": emb.source, "weights_sha256": emb.weights_sha256, "steps": emb.steps,
                   "family": family.to_dict(), "family_max_params": family_param_count(family)},
        settings=settings, budgets=budgets, heldout=(dataset.x[result.validation_rows], dataset.y[result.validation_rows]),
        force=force, measure=measure,
    )
    card = files.card
    splits = [s for s in ("train", "validation", "test") if s in result.metrics["fine_tuned"]]
    print_table(
        "accuracy (MSE on the target scaled to [-1, 1]; R^2)",
        ["split", "rows", "MSE latent only", "MSE fine-tuned", "R^2 fine-tuned"],
        [(s, result.metrics["fine_tuned"][s].rows, f"{result.metrics['latent_only'][s].mse:.3g}",
          f"{result.metrics['fine_tuned'][s].mse:.3g}", f"{result.metrics['fine_tuned'][s].r2:.4f}") for s in splits],
    )
    m, pred = card["model"], card["predicted"]
    acts = ", ".join(f"{k} {v}" for k, v in m["activations"].items()) or "none"
    stdout.print(f"model: widths {'-'.join(map(str, [m['widths'][0], *m['active_widths'], m['widths'][-1]]))} "
                 f"(active), {m['nonzero_params']} non-zero parameters, {m['active_neurons']} active neurons ({acts})",
                 markup=False)
    measured = card.get("measured")
    here = f"; measured here {measured['p50_us']:.1f} us (median)" if measured else ""
    stdout.print(f"predicted on {profile.name} ({pred['provenance']} profile): {pred['latency_us']:.1f} us per call, "
                 f"{pred['model_bytes']} bytes ({pred['dtype']}){here}", markup=False)
    if card["int8"].get("written"):
        d = card["int8"]["drift"]
        stdout.print(f"int8: {card['int8']['file']}, drift vs fp32 relative MSE {d['relative_mse']:.3g} on "
                     f"{d['rows']} validation rows", markup=False)
    for note in result.notes:
        stdout.print(f"note: {note}", markup=False)
    stdout.print(f"wrote {files.run_dir}/ ({', '.join(files.files.values())}) in {time.perf_counter() - started:.1f} s; "
                 f"`swat-edge export model.onnx` exports this run again (runs/latest)", markup=False)
    return 0


def _check_onnx_arg(path: Path, flag: str) -> Path:
    from .errors import UsageError
    from .files import check_input_file

    p = check_input_file(path, "model file")
    if p.suffix.lower() != ".onnx":
        raise UsageError(
            f"{flag} {p}: bench measures .onnx models, and generated C as MODEL (`swat-edge bench model.c "
            "--against model.onnx`); export one with `swat-edge export MODEL -o model.onnx`"
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


def _bench_c(model: Path, *, sizes: tuple[int, ...], runs: Optional[int], against: Optional[Path], threads: int,
             io_binding: bool, json_out: Optional[Path], force: bool) -> int:
    """`bench model.c [--against model.onnx]`: bench_c.measure_c, or measure_c_pair in alternating rounds."""
    from .console import write_json
    from .export.c import read_c
    from .files import check_output_path
    from .measure.bench_c import PAIR_METHOD, measure_c, measure_c_pair

    csrc = read_c(model)
    against_path = _check_onnx_arg(against, "--against") if against is not None else None
    if json_out is not None:
        check_output_path(json_out, force=force)
    what = f"{csrc.dtype}{', fast_math' if csrc.fast_math else ''}, {csrc.macs} multiply-adds per row"
    if against_path is None:
        result = measure_c(csrc, batch_sizes=sizes, **({"n_samples": runs} if runs is not None else {}))
        print_table(
            None,
            ["batch", "samples", "calls/sample", "p50 us/call", "p99 us/call", "p50 ns/row", "p99 ns/row", "throughput rows/s"],
            [(s.batch_size, s.runs, n, f"{s.p50_us:.3f}", f"{s.p99_us:.3f}", f"{s.p50_us * 1e3 / s.batch_size:.1f}",
              f"{s.p99_us * 1e3 / s.batch_size:.1f}", f"{s.throughput_rows_per_s:,.0f}")
             for s, n in zip(result.latencies, result.calls_per_sample)],
        )
        stdout.print(f"{model.name}: {csrc.prefix}_predict (batch > 1: {csrc.prefix}_predict_batch), {what}; built with "
                     f"{result.settings.compiler} {' '.join(result.settings.cflags)}; a sample is the mean of "
                     "back-to-back calls, each waiting for the previous output (latency)", markup=False, soft_wrap=True)
    else:
        counts = {"min_rounds": max(2, runs), "min_time_s": 0.0} if runs is not None else {}
        result = measure_c_pair(csrc, against_path, batch_sizes=sizes, threads=threads, io_binding=io_binding, **counts)
        stdout.print(f"a = {against_path} (onnxruntime, {threads} thread(s)), b = {model} (C: {what}, built with "
                     f"{result.settings.compiler} {' '.join(result.settings.cflags)}); latencies in us per call",
                     markup=False, soft_wrap=True)
        stdout.print(f"interleaved: {PAIR_METHOD}", markup=False, soft_wrap=True)
        print_table(
            None,
            ["batch", "a p50", "b p50", "b ns/row", "b/a", "95% CI", "a/b (speed-up)", "95% CI ", "rounds"],
            [(p.batch_size, f"{p.onnx.p50_us:.2f}", f"{p.c.p50_us:.3f}", f"{p.c.p50_us * 1e3 / p.batch_size:.1f}",
              f"{p.ratio:.4f}", f"{p.ratio_ci_low:.4f}-{p.ratio_ci_high:.4f}", f"{p.speedup:.1f}",
              f"{p.speedup_ci[0]:.1f}-{p.speedup_ci[1]:.1f}", p.rounds) for p in result.pairs],
        )
    if json_out is not None:
        write_json(json_out, result.to_json(), force=force)
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
) -> int:
    """Time an ONNX model on this machine; optionally gate it against a baseline or another model."""
    from .console import print_table, write_json
    from .errors import UsageError
    from .files import check_output_path
    from .measure import bench, gate

    # Every check that needs no timing runs first, so a wrong flag fails in milliseconds.
    if model.suffix.lower() == ".c":
        if baseline is not None or max_regression is not None or github_json is not None:
            raise UsageError("--baseline/--max-regression/--github-json: the CI gate compares ONNX results only; "
                             "gate the model's .onnx export (swat-edge bench model.onnx --baseline ...)")
        return _bench_c(model, sizes=tuple(batch) if batch else (1,), runs=runs, against=against, threads=threads,
                        io_binding=io_binding, json_out=json_out, force=force)
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
    from .measure.summary import ModelSummary, summarize_file

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


def _export_c(model_path: Path, output: Path, *, dtype: str, fast_math: bool, prefix: Optional[str],
              calibration: Optional[Path], holdout: Optional[Path], max_drift: Optional[float], force: bool) -> int:
    """`export -o model.c`: generate, compile and check on held-out rows, write .c and .h (build.export_c_file)."""
    from .export.pipeline import export_c_file, split_rows
    from .model import load_model

    if dtype not in ("float", "int8"):
        raise UsageError(f"--dtype {dtype!r}: use float or int8")
    model = load_model(model_path)
    cal_rows = held_x = None
    held_source = cal_source = None
    if calibration is not None:
        x, y = _rows_from_file(calibration, model)
        cal_rows, (held_x, _) = split_rows(x, y)
        held_source = f"held-out rows (half of {calibration})"
        cal_source = f"{len(cal_rows)} rows of {calibration}"
    if holdout is not None:
        held_x, _ = _rows_from_file(holdout, model)
        held_source = f"held-out rows from {holdout}"
    result = export_c_file(
        model, output, force=force, dtype=dtype, fast_math=fast_math, prefix=prefix,  # type: ignore[arg-type]
        calibration_rows=cal_rows, heldout_rows=held_x, heldout_source=held_source, max_relative_mse=max_drift,
    )
    code, check = result.code, result.check
    acts = ", ".join(f"{name} {n}" for name, n in code.activation_counts.items()) or "none"
    kind = "int8 weights, int32 sums" if code.dtype == "int8" else "float32"
    stdout.print(f"C code: {code.prefix}_predict and {code.prefix}_predict_batch, {kind}"
                 f"{', fast_math' if code.fast_math else ''}; per row {code.macs} multiply-adds, activations {acts}",
                 markup=False, soft_wrap=True)
    for note in code.notes:
        from_name = prefix is None and note.startswith("prefix ")
        stdout.print(f"note: {note}{' (from the output file name; --prefix to choose)' if from_name else ''}",
                     markup=False, soft_wrap=True)
    if check is None:
        stderr.print(f"warning: not verified: {result.not_verified}; the files were written unchecked", markup=False)
    else:
        where = f"with {check.compiler} {' '.join(check.flags)} on {check.rows} {result.check_rows_source}"
        if code.int8 is not None:
            cal = cal_source or f"{code.int8.calibration_rows} {code.int8.calibration_source}"
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
    stdout.print(f"wrote {result.path} and {result.header_path} ({result.size_bytes:,} bytes)", markup=False)
    return 0


@app.command("export")
def export_cmd(
    model_path: Optional[Path] = typer.Argument(
        None, metavar="MODEL",
        help="A swat-edge model file (.safetensors); omit it to export the latest search run (runs/latest) or --run DIR. "
        "`swat-edge export model.onnx` alone writes model.onnx from the latest run.",
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="model.onnx, model.int8.onnx (static int8) or model.c."),
    run: Optional[Path] = typer.Option(None, "--run", help="Export the model of this search run folder instead of the latest."),
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
    dtype: Optional[str] = typer.Option(None, "--dtype", help="C output: float (default) or int8 (int8 weights, int32 sums)."),
    fast_math: bool = typer.Option(False, "--fast-math", help="C output: approximate tanh/sigmoid (max error in the banner)."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="C output: function prefix (default: the file name)."),
) -> int:
    """Compile a model (passes), export it to ONNX fp32/int8 or C99, verify it against the original, write it."""
    from .compile import REPORT_COLUMNS, format_reports
    from .export.pipeline import export_onnx_file, output_kind, split_rows
    from .model import load_model
    from .runs.folder import resolve_export_paths

    model_path, output, run_dir = resolve_export_paths(model_path, output, run)
    if run_dir is not None:
        stdout.print(f"exporting {model_path} (search run {run_dir})", markup=False)
    kind = output_kind(output)
    if kind == "c":
        if quantize is not None or quantize_last:
            raise UsageError("--quantize/--quantize-last: for ONNX output; for C int8 use --dtype int8")
        return _export_c(model_path, output, dtype=dtype or "float", fast_math=fast_math, prefix=prefix,
                         calibration=calibration, holdout=holdout, max_drift=max_drift, force=force)
    if dtype is not None or fast_math or prefix is not None:
        raise UsageError("--dtype/--fast-math/--prefix: for C output (-o model.c); for ONNX int8 use -o model.int8.onnx")
    if quantize is None:
        quantize = "static" if kind == "int8-onnx" else "none"
    if quantize not in ("none", "static", "dynamic"):
        raise UsageError(f"--quantize {quantize!r}: use none, static or dynamic")
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
