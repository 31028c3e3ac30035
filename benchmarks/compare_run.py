"""The benchmark's run: per-task cache, worker processes, and the outputs (JSON, Markdown, plots); shared by
benchmarks/cornn.py and benchmarks/real.py.

Each finished (task, seed) row is cached as JSON under --cache, keyed by a fingerprint of the embedding, the
protocol and the code that computes a row (the swat_edge package and benchmarks/compare_task.py and
compare_data.py; not the tables or plots), so an interrupted run continues where it stopped and a finished one
only rebuilds the tables. A damaged cache entry is recomputed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks import compare_tables
from benchmarks.compare_task import SCHEMA, Protocol

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TaskSpec:
    """How a worker loads one task: compare_data.LOADERS[loader](*args, max_inputs)."""

    name: str
    loader: str
    args: tuple[str, ...]


def add_common_arguments(parser: argparse.ArgumentParser, cache_name: str) -> None:
    parser.add_argument("--quick", action="store_true", help="smoke run: short schedules, a small sweep (CI)")
    parser.add_argument("--seed", type=int, default=0, help="the search's and every baseline's seed (default 0)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2: replication with the spread")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--embedding", default="default")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for json/md/png")
    parser.add_argument("--cache", default=str(ROOT / "runs" / cache_name), help="per-task result cache")


def parse_seeds(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[int]:
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.seeds is None:
        return [args.seed]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds {args.seeds!r}: give distinct integers, e.g. 0,1,2")
    return seeds


# ---------------------------------------------------------------------------------------------------------
# Cache

def code_sha256() -> str:
    """Of the code that computes a row: the package's Python sources and the benchmark's task and data modules."""
    digest = hashlib.sha256()
    files = sorted((ROOT / "swat_edge").rglob("*.py")) + [ROOT / "benchmarks" / "compare_task.py",
                                                         ROOT / "benchmarks" / "compare_data.py"]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(embedding_sha: str, protocol: Protocol, code_sha: str = "") -> str:
    text = json.dumps({"schema": SCHEMA, "embedding": embedding_sha, "protocol": asdict(protocol), "code": code_sha},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_path(cache: Path, name: str, seed: int) -> Path:
    return cache / f"{name}.seed{seed}.json"


def cached_row(cache: Path, name: str, seed: int, key: str) -> dict[str, Any] | None:
    path = _cache_path(cache, name, seed)
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache entry is recomputed, never trusted
    return stored.get("row") if isinstance(stored, dict) and stored.get("fingerprint") == key else None


def store_row(cache: Path, row: dict[str, Any], key: str) -> None:
    from swat_edge.files import atomic_path

    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(_cache_path(cache, row["task"], row["seed"]), force=True) as tmp:
        Path(tmp).write_text(json.dumps({"fingerprint": key, "row": row}, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Workers

_WORKER: dict[Any, Any] = {}


def init_worker(embedding: str) -> None:
    import torch

    from swat_edge.search.embedding.storage import load_embedding

    torch.set_num_threads(1)
    _WORKER["embedding"] = load_embedding(embedding)


def run_in_worker(item: tuple[TaskSpec, int, Protocol]) -> dict[str, Any]:
    from benchmarks.compare_data import LOADERS
    from benchmarks.compare_task import run_task, untrained_embedding

    spec, seed, protocol = item
    embedding = _WORKER["embedding"]
    key = ("untrained", protocol.untrained_decoder_seed)
    if key not in _WORKER:
        _WORKER[key] = untrained_embedding(embedding, protocol.untrained_decoder_seed)
    task = LOADERS[spec.loader](*spec.args, embedding.config.family.max_inputs)
    return run_task(task, seed, protocol, embedding, _WORKER[key])


# ---------------------------------------------------------------------------------------------------------
# The run

def compute_rows(specs: Sequence[TaskSpec], seeds: Sequence[int], protocol: Protocol, *, jobs: int, embedding: str,
                 cache: Path, key: str, label: str) -> tuple[list[dict[str, Any]], int]:
    """Every (task, seed) row, from the cache where it holds one; returns the rows in order and the cached count."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for spec in specs:
        for seed in seeds:
            row = cached_row(cache, spec.name, seed, key)
            if row is not None:
                rows[(spec.name, seed)] = row
    cached = len(rows)
    work = [(spec, seed, protocol) for spec in specs for seed in seeds if (spec.name, seed) not in rows]
    print(f"{len(specs) * len(seeds)} row(s): {cached} cached, {len(work)} to run on {jobs} process(es)", flush=True)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}")) as bar:
        job = bar.add_task(label, total=len(specs) * len(seeds), completed=cached, info="")

        def done(row: dict[str, Any]) -> None:
            store_row(cache, row, key)
            rows[(row["task"], row["seed"])] = row
            line = _progress_line(row, protocol.targets)
            bar.console.print(line, markup=False, highlight=False)  # a line per task stays (and reaches logs)
            bar.update(job, advance=1, info=line)

        if work and jobs == 1:
            init_worker(embedding)
            for item in work:
                done(run_in_worker(item))
        elif work:
            with multiprocessing.get_context("spawn").Pool(jobs, init_worker, (embedding,)) as pool:
                for row in pool.imap_unordered(run_in_worker, work):
                    done(row)
    return [rows[(spec.name, seed)] for seed in seeds for spec in specs], cached


def _progress_line(row: dict[str, Any], targets: Sequence[str]) -> str:
    parts = []
    for target in targets:
        swat = compare_tables.choose_within(compare_tables.points_for(row, "swat", target), target, float("inf"))
        dense = compare_tables.choose_within(row["methods"]["dense_sweep"], target, float("inf"))
        parts.append(f"{target} swat {swat['test_mse']:.2e} / sweep {dense['test_mse']:.2e}")
    return f"{row['task']} seed {row['seed']}: " + ", ".join(parts) + f" ({row['task_wall_s']:.0f} s)"


def _rounded(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def report_json(report: dict[str, Any]) -> str:
    """The report as JSON, floats to 6 significant digits and one line per point (a full run stays a few MB)."""
    lines: list[str] = []
    rows = []
    for row in _rounded(report["rows"]):
        methods = {}
        for method, points in row["methods"].items():
            methods[method] = [f"@@{len(lines) + i}@@" for i in range(len(points))]
            lines += [json.dumps(p, separators=(",", ":")) for p in points]
        rows.append({**row, "methods": methods})
    text = json.dumps({**_rounded({k: v for k, v in report.items() if k != "rows"}), "rows": rows}, indent=1)
    return re.sub(r'"@@(\d+)@@"', lambda match: lines[int(match.group(1))], text) + "\n"


def write_outputs(report: dict[str, Any], out: Path, name: str) -> str:
    """<out>/<name>.json, .md, _fronts.png and _winrate.png; returns the Markdown."""
    from swat_edge.files import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{name}.json", force=True) as tmp:
        Path(tmp).write_text(report_json(report), encoding="utf-8")
    text = compare_tables.markdown(report)
    with atomic_path(out / f"{name}.md", force=True) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    targets = report["protocol"]["targets"]
    compare_tables.fronts_plot(report["rows"], targets, out / f"{name}_fronts.png",
                               f"{report['title']}: test MSE vs predicted latency (lines: the validation choice)")
    compare_tables.winrate_plot(report["aggregate"], targets, out / f"{name}_winrate.png",
                                f"{report['title']}, {report['aggregate']['tasks']} rows: swat-edge against each baseline")
    return text


def run_suite(specs: Sequence[TaskSpec], seeds: Sequence[int], protocol: Protocol, args: argparse.Namespace, *,
              name: str, title: str, script: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """Compute (or read from the cache) every row, then write the tables and plots."""
    from swat_edge.measure.bench import machine_info
    from swat_edge.search.embedding.storage import load_embedding

    embedding = load_embedding(args.embedding)
    key = fingerprint(embedding.weights_sha256, protocol, code_sha256())
    cache = Path(args.cache) / ("quick" if args.quick else "full")
    t0 = time.perf_counter()
    rows, cached = compute_rows(specs, seeds, protocol, jobs=args.jobs, embedding=args.embedding, cache=cache,
                                key=key, label=name)
    machine = machine_info()
    report: dict[str, Any] = {
        "format": SCHEMA, "title": title, "seeds": list(seeds), "jobs": args.jobs, "wall_s": time.perf_counter() - t0,
        "cached_rows": cached,
        "command": f"python {script}" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "machine": f"{machine.processor}, {machine.cpu_count} CPUs, onnxruntime {machine.onnxruntime}",
        "embedding": {"source": str(embedding.source), "steps": embedding.steps,
                      "weights_sha256": embedding.weights_sha256},
        "protocol": asdict(protocol), "fingerprint": key, "aggregate": compare_tables.aggregate(rows, protocol.targets),
        "rows": rows,
    }
    if len(seeds) > 1:
        report["replication"] = compare_tables.replication(rows, protocol.targets)
    text = write_outputs(report, Path(args.out), name)
    print(text.split("## Per task")[0], flush=True)
    print(f"wrote {Path(args.out) / name}.json, .md, _fronts.png, _winrate.png", flush=True)
    return report


# ---------------------------------------------------------------------------------------------------------
# Small single-run benchmarks (benchmarks/wide.py, classify.py): one row per data set, no cache


def run_datasets(script: str, argv: Sequence[str] | None, names: Sequence[str], quick_names: Sequence[str],
                 run_one: Callable[[str, bool, Any], dict[str, Any]], markdown: Callable[[dict[str, Any]], str],
                 stem: str, metric: str) -> int:
    """Parse --quick/--out/--only, run `run_one(name, quick, embedding)` per data set (printing `metric` per
    method), and write <out>/<stem>{,_quick}.json and .md (markdown(report)). --only re-runs the named data sets
    and keeps the other rows of the report already in --out, named in the report's "reused" (a change that only
    some data sets' path through the search sees need not re-run the others: 80 of classify.py's 87 min are
    digits)."""
    import platform

    parser = argparse.ArgumentParser(description=f"benchmarks/{script}")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--only", default="", help="comma-separated data sets to re-run; the report's other rows "
                                                   "are kept from the one in --out")
    args = parser.parse_args(argv)
    everything = quick_names if args.quick else names
    path = Path(args.out) / (f"{stem}_quick" if args.quick else stem)
    only = [name for name in args.only.split(",") if name]
    if unknown := sorted(set(only) - set(everything)):
        parser.error(f"--only {','.join(unknown)}: not among {','.join(everything)}")
    earlier = _earlier_rows(path.with_suffix(".json"), everything, only) if only else None
    import torch

    torch.set_num_threads(1)
    from swat_edge.search.embedding.storage import load_embedding

    embedding = load_embedding("default")
    t0 = time.perf_counter()
    rows = []
    for name in everything:
        if earlier is not None and name not in only:
            rows.append(earlier["rows"][name])
            continue
        rows.append(run_one(name, args.quick, embedding))
        print(name, {k: f"{v[metric]:.3g}" for k, v in rows[-1]["methods"].items()}, flush=True)
    report = {"command": f"python benchmarks/{script}" + (" --quick" if args.quick else "")
              + (f" --only {','.join(only)}" if only else ""),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "minutes": (time.perf_counter() - t0) / 60, "datasets": rows}
    if earlier is not None:
        report["reused"] = {name: earlier["made_by"][name] for name in everything if name not in only}
    write_report(path, report, markdown)
    return 0


def _earlier_rows(path: Path, names: Sequence[str], only: Sequence[str]) -> dict[str, Any]:
    """The rows of the report at `path` for the data sets --only does not re-run (SystemExit naming what is
    missing), and the command that made each row (a row that report kept itself: the command it names)."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--only: no earlier report to keep the other rows from ({path}: {exc})") from None
    rows = {row["name"]: row for row in report["datasets"]}
    if missing := [name for name in names if name not in only and name not in rows]:
        raise SystemExit(f"--only: {path} has no row for {', '.join(missing)}; run them too")
    made_by = {name: report.get("reused", {}).get(name, report["command"]) for name in rows}
    return {"rows": rows, "made_by": made_by}


def stage_taken(result: Any) -> str:
    """Which input stage a search ran on: "select", "project", or "-" (no stage: few enough features)."""
    return result.input_stage or "-"


def write_report(stem: Path, report: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """A benchmark's report as <stem>.json and its table as <stem>.md (each written whole, then renamed), the table
    also printed."""
    from swat_edge.files import atomic_write_bytes

    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stem.with_suffix(".json"), (json.dumps(report, indent=1) + "\n").encode(), force=True)
    atomic_write_bytes(stem.with_suffix(".md"), markdown(report).encode(), force=True)
    print(markdown(report))


def provenance_lines(report: dict[str, Any]) -> list[str]:
    """The Markdown header lines saying which command made the report (and which made the rows it kept)."""
    lines = [f"Command: `{report['command']}`  ", f"Machine: {report['machine']}; {report['minutes']:.1f} min."]
    by_command: dict[str, list[str]] = {}
    for name, command in report.get("reused", {}).items():
        by_command.setdefault(command, []).append(name)
    for command, kept in by_command.items():
        lines[-1] += "  "
        lines.append(f"Rows of {', '.join(kept)}: kept from an earlier run of `{command}`.")
    return lines


def size_latency_rows(datasets: Sequence[dict[str, Any]], targets: Sequence[str]) -> list[str]:
    """Markdown rows of the chosen models' non-zero parameters and predicted latency per target (the `<target>_us`
    fields, in `targets` order) for swat-edge's two input methods and the best dense network (wide.py,
    classify.py)."""
    rows = ["| data | swat-edge select | swat-edge project | dense (best) |", "|---|---|---|---|"]
    for row in datasets:
        m = row["methods"]

        def cell(key: str) -> str:
            return f"{m[key]['nonzero']:.0f}; " + " / ".join(f"{m[key][f'{t}_us']:.1f}" for t in targets)

        rows.append(f"| {row['name']} | {cell('swat (select)')} | {cell('swat (project)')} | "
                    f"{cell('dense (best on validation)')} |")
    return rows
