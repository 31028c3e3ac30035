"""Re-run only swat-edge's search on CORNN tasks and score it against baselines cached by an earlier full run.

    .venv/bin/python benchmarks/rescore_search.py [--tasks a,b] [--target raspi4] \
        [--set dense_reference_depths=1,2,3,4] [--rows benchmarks/results/cornn.json | --cache DIR]

The cached rows are those of the committed full run (benchmarks/results/cornn.json, --rows) by default, so this
runs from a fresh clone; --cache reads a cornn.py cache folder instead.

For iterating on the search: a full benchmark row costs minutes of baselines per task, the search seconds. The
baselines (dense sweep, pruning, random search) come from the cached rows as they are: their points, their
predicted latencies and their budget levels were computed by the code of the cached run, so only a target whose
profile has not changed since then gives a fair comparison (the script prints each row's cache fingerprint and
the profile's date). --reprice re-prices the dense baselines (the sweep and the Adam network) with today's
profile of the target instead: exact for them, as each is dense at the widths its compiled network kept (checked)
with one activation, so a target whose profile changed can be re-scored against the sweep (not against pruning
or random search, whose sparsity patterns the cache does not keep). The search runs with the cached row's seed and the protocol's settings, plus --set
overrides of SearchSettings fields, and must use the same validation split (checked). Nothing is written: the
budgeted wins/ties/losses and median ratios against the dense sweep are printed next to the cached search's.

--polish-sweep LEVELS also rebuilds the dense sweep's best network at those budget levels from its best restart and
polishes it as the search polishes its chosen network (search/polish.py), and scores the search against that too:
the search's answer is polished and the cached sweep's is not, so this is the comparison where both are.

--budgeted also runs the search once per budget level (the sweep's latency quartiles, as the tables use) with
that budget given, as `swat-edge search --latency-budget` does, and scores those searches' best networks within
the budget (chosen on validation, like every method) against the sweep's: what a user who states the budget gets.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import compare_tables  # noqa: E402
from benchmarks.compare_data import load_cornn  # noqa: E402
from benchmarks.compare_task import (Protocol, fit_like_the_search, mse_on_test, restart_seed,  # noqa: E402
                                     run_searches, search, search_split, start_network, swat_points,
                                     validation_mse)
from benchmarks.cornn import REPLICATION_TASKS  # noqa: E402


def overrides(pairs: list[str], settings) -> dict:
    """--set name=value for SearchSettings fields, or part.name=value for a field of a nested settings object
    (latent.steps=500, fit.patience=50): tuples as comma-separated integers, numbers, strings."""
    out: dict = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        part, _, field = name.rpartition(".")
        owner = getattr(settings, part) if part else settings
        if part and not dataclasses.is_dataclass(owner) or not hasattr(owner, field):
            raise SystemExit(f"--set {pair}: SearchSettings has no field {name!r}")
        current = getattr(owner, field)
        if isinstance(current, tuple):
            value = tuple(int(v) for v in text.split(",") if v)
        elif isinstance(current, bool):
            value = text.lower() in ("1", "true", "yes")
        elif isinstance(current, (int, float)):
            value = type(current)(text)
        else:
            value = text
        if part:
            out[part] = dataclasses.replace(out.get(part, owner), **{field: value})
        else:
            out[name] = value
    return out


def repriced(points: list[dict], target) -> list[dict]:
    """Dense baseline points with their latency on `target` predicted by today's profile: a dense network of
    their compiled widths and activation (what the cached row measured, checked by its non-zero count)."""
    from swat_edge.device.cost import estimate
    from swat_edge.model import random_model

    out = []
    for p in points:
        widths = tuple(p["widths"])
        dense = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        if dense != p["nonzero"]:
            raise SystemExit(f"{p['label']}: {p['nonzero']} non-zero parameters, not dense at {widths}: cannot re-price")
        model = random_model(widths, activations=p["label"].split()[1], per_layer=True, seed=0, normalization=False)
        out.append({**p, "latency_us": {**p["latency_us"], target.name: float(estimate(model, target).latency_us[0])}})
    return out


def cached_entry(args: argparse.Namespace, slug: str) -> dict | None:
    """{"fingerprint", "row"} of the task's first cached seed: from the --cache folder, or from the --rows report
    (its rows carry no fingerprint of their own: the report's)."""
    if args.cache:
        cached = sorted(Path(args.cache).glob(f"{slug}.seed*.json"))
        return json.loads(cached[0].read_text()) if cached else None
    report = _report(args.rows)
    rows = sorted((row for row in report["rows"] if row["task"] == slug), key=lambda row: row["seed"])
    return {"fingerprint": report["fingerprint"], "row": rows[0]} if rows else None


@functools.lru_cache(maxsize=None)
def _report(path: str) -> dict:
    return json.loads(Path(path).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--rows", default=str(ROOT / "benchmarks" / "results" / "cornn.json"),
                        help="a report of benchmarks/cornn.py with its rows (default: the committed full run)")
    source.add_argument("--cache", help="a cornn.py cache folder with finished rows, instead of --rows")
    parser.add_argument("--tasks", default=",".join(REPLICATION_TASKS))
    parser.add_argument("--target", default="raspi4")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="threads per search, as `swat-edge search --jobs` (default: its default)")
    parser.add_argument("--reprice", action="store_true", help="re-price the dense baselines on today's profile")
    parser.add_argument("--set", action="append", default=[], help="SearchSettings field=value (repeatable)")
    parser.add_argument("--budgeted", action="store_true",
                        help="also search with each budget level given (--latency-budget) and score those searches")
    parser.add_argument("--budgeted-only", action="store_true",
                        help="only the searches with each budget level given (not the unbounded one)")
    parser.add_argument("--polish-sweep", default="",
                        help="budget levels (e.g. q3,unbounded) at which the sweep's best network is rebuilt from "
                             "its best restart and polished as the search polishes its chosen one, and the search "
                             "also scored against that")
    parser.add_argument("--points", help="with --budgeted-only: write each budgeted comparison (task, level, the "
                                         "search's and the sweep's chosen points) to this JSON file, for analysis")
    args = parser.parse_args()
    if args.points and not args.budgeted_only:
        parser.error("--points needs --budgeted-only (it writes the budgeted searches' chosen points)")
    polish_levels = [level for level in args.polish_sweep.split(",") if level]
    if unknown := sorted(set(polish_levels) - set(compare_tables.LEVELS)):
        parser.error(f"--polish-sweep {','.join(unknown)}: use levels of {','.join(compare_tables.LEVELS)}")
    from swat_edge.device.targets import load_target
    from swat_edge.search import set_torch_threads
    from swat_edge.search.embedding.storage import load_embedding

    # as `swat-edge search` runs (--threads 1): torch's default of one thread per core, next to the reference
    # thread of --jobs 2 or another process, oversubscribes the cores (two such processes side by side took
    # 290 s for a search that takes 11 s with one thread each)
    set_torch_threads(1)

    cornn = Path(os.environ.get("SWAT_EDGE_CORNN", ROOT.parent / "shared" / "cornn"))
    embedding = load_embedding("default")
    target = load_target(args.target)
    print(f"target {target.name}: profile {target.provenance.kind} of {target.provenance.date}")
    old_rows, new_rows, walls = [], [], []
    budgeted: dict[str, list] = {level: [] for level in compare_tables.LEVELS[:-1]}
    against_polished: dict[str, list] = {level: [] for level in polish_levels}
    # with --budgeted-only, the budgeted searches against the sweep's best polished, at the polished levels
    budgeted_polished: dict[str, list] = {level: [] for level in polish_levels if level in budgeted}
    chosen_points: list[dict] = []  # --points
    for slug in [s.strip() for s in args.tasks.split(",") if s.strip()]:
        entry = cached_entry(args, slug)
        if entry is None:
            print(f"{slug}: not in {args.cache or args.rows}, skipped")
            continue
        row = entry["row"]
        if args.reprice:
            row = {**row, "methods": {**row["methods"], **{m: repriced(row["methods"][m], target)
                                                          for m in ("dense_sweep", "dense_adam")}}}
        task = load_cornn(str(cornn), slug, embedding.config.family.max_inputs)
        settings = Protocol().search_settings(row["seed"])
        settings = dataclasses.replace(settings, **overrides(args.set, settings))
        split = search_split(task, settings)
        if split.validation_sha256 != row["validation_sha256"]:
            raise SystemExit(f"{slug}: the split differs from the cached row's; not comparable")
        if args.budgeted_only:
            print(slug, end=":", flush=True)
            score_budgeted(task, split, settings, embedding, target, row, args.jobs, budgeted,
                           budgeted_polished, chosen_points)
            if args.points:  # after every task, so an interrupted run keeps what it finished
                Path(args.points).write_text(json.dumps(chosen_points, indent=1))
            continue
        methods, wall = {}, {}
        t0 = time.perf_counter()
        run_searches(task, split, settings, embedding, {target.name: target}, methods, wall, args.jobs)
        walls.append(time.perf_counter() - t0)
        fresh = {**row, "methods": {**row["methods"], **methods}}
        old_rows.append(row)
        new_rows.append(fresh)
        ratios = []
        for r in (row, fresh)[1 if args.reprice else 0:]:
            swat = compare_tables.choose_within(compare_tables.points_for(r, "swat", target.name), target.name,
                                                float("inf"))
            sweep = compare_tables.choose_within(r["methods"]["dense_sweep"], target.name, float("inf"))
            ratios.append(swat["test_mse"] / sweep["test_mse"])
        chosen, largest = compare_tables.chosen_point(fresh, target.name), compare_tables.dense_8x4(fresh)
        size = "" if largest is None else f" ({largest['nonzero'] / chosen['nonzero']:.1f}x fewer than 2-8-8-8-8-1)"
        print(f"{slug} (cache {entry['fingerprint']}): search {walls[-1]:.1f} s; unbounded test MSE / the sweep's: "
              + ("" if args.reprice else f"cached {ratios[0]:.2f}, ") + f"now {ratios[-1]:.2f}; chosen: "
              f"{chosen['nonzero']} non-zero parameters{size}", flush=True)
        if args.budgeted:
            score_budgeted(task, split, settings, embedding, target, fresh, args.jobs, budgeted)
        if polish_levels:
            score_against_polished(task, split, settings, target, fresh, against_polished)
    if args.budgeted_only:
        print(f"\n{len(budgeted['q1'])} tasks; against the dense sweep (wins/ties/losses, median ratio of test MSE):")
        print("| search | " + " | ".join(budgeted) + " |")
        print_budgeted(budgeted)
        if budgeted_polished:
            _print_row("searched with the budget given, against the sweep's best polished too", budgeted_polished,
                       budgeted)
        return
    print(f"\n{len(new_rows)} tasks; median search {np.median(walls):.1f} s (--jobs {args.jobs}); against the dense sweep "
          "(wins/ties/losses, median ratio of test MSE):")
    print("| search | " + " | ".join(compare_tables.LEVELS) + " |")
    compared = (("now", new_rows),) if args.reprice else (("cached", old_rows), ("now", new_rows))
    for name, rows in compared:
        table = compare_tables.budgeted(rows, target.name)
        cells = []
        for level in compare_tables.LEVELS:
            s = table[level]["vs"].get("dense_sweep")
            cells.append("-" if s is None else _cell(s))
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.budgeted:
        print_budgeted(budgeted, "| (as above) |")
    if polish_levels:
        _print_row("against the sweep's best polished too", against_polished, compare_tables.LEVELS)
    print("\nThe search's own choice (unbounded) against the 2-8-8-8-8-1 tanh: median test MSE ratio (wins/ties/losses)"
          " and that network's non-zero parameters / the chosen one's:")
    for name, rows in compared:
        head = compare_tables.headline(rows, target.name)
        cells = [f"{label} {h['median_ratio']:.2f} ({h['wins']}/{h['ties']}/{h['losses']}), size x{h['median_size_ratio']:.1f}"
                 for label, h in (("same fitter", head["dense_8x4"]), ("Adam", head["dense_adam"]))]
        print(f"- {name}: " + "; ".join(cells))


def _cell(summary: dict) -> str:
    """wins/ties/losses and the median ratio of one compare_tables.summarise result."""
    return f"{summary['wins']}/{summary['ties']}/{summary['losses']}, {summary['median_ratio']:.2f}"


def _print_row(label: str, results: dict[str, list], levels) -> None:
    """One Markdown row: each level's summary of results[level] ("-" for a level not scored)."""
    print(f"| {label} | " + " | ".join(
        _cell(compare_tables.summarise([r for r in results[level] if r is not None])) if level in results else "-"
        for level in levels) + " |")


def print_budgeted(budgeted: dict[str, list], end: str = "|") -> None:
    cells = [_cell(compare_tables.summarise([r for r in results if r is not None])) for results in budgeted.values()]
    print("| searched with the budget given | " + " | ".join(cells) + f" {end}")


def score_budgeted(task, split, settings, embedding, target, row: dict, jobs: int, out: dict[str, list],
                   against_polished: dict[str, list] | None = None, chosen: list[dict] | None = None) -> None:
    """One search per budget level with that latency budget given; each level's comparison with the sweep (the
    best of each within the budget, chosen on validation) appended to out[level], and at the levels of
    against_polished the comparison with that sweep network polished (polished_sweep_point); each level's chosen
    points appended to `chosen` when given."""
    levels = compare_tables.budget_levels(row, target.name)
    sweep = row["methods"]["dense_sweep"]
    against_polished = against_polished or {}
    polished: dict[str, dict] = {}
    cells = []
    for level in out:
        t0 = time.perf_counter()
        try:
            result, _ = search(task, split, settings, embedding, target, jobs, latency_budget_us=levels[level])
            points = swat_points(result, task, split, {target.name: target})
        except RuntimeError:  # nothing the search found meets the budget (the split was checked unbounded)
            points = []
        wall = time.perf_counter() - t0
        ours = compare_tables.choose_within(points, target.name, levels[level])
        best_sweep = compare_tables.choose_within(sweep, target.name, levels[level])
        comparison = compare_tables.compare(ours, best_sweep)
        out[level].append(comparison)
        cells.append(f"{level} {levels[level]:.1f} us: " + ("-" if comparison is None or comparison[1] is None
                                                           else f"{comparison[1]:.2f}") + f" ({wall:.1f} s)")
        if level in against_polished:
            comparison = compare_tables.compare(ours, _polished_once(polished, task, split, settings, best_sweep))
            against_polished[level].append(comparison)
            cells[-1] += (", polished sweep " + ("-" if comparison is None or comparison[1] is None
                                                  else f"{comparison[1]:.2f}"))
        if chosen is not None:
            chosen.append({"task": row["task"], "level": level, "budget_us": levels[level], "search_s": wall,
                           "search": ours, "sweep": best_sweep, "polished_sweep": polished.get(
                               best_sweep["label"]) if best_sweep is not None else None})
    print("  searched with the budget: test MSE / the sweep's: " + "; ".join(cells), flush=True)


def polished_sweep_point(task, split, settings, point: dict) -> dict:
    """The sweep's network `point` rebuilt from its best restart (the seeds best_of_restarts draws) and polished by
    the search's own neuron resampling (its rounds, width, patience and seed), every refit fitted as the sweep's
    networks are: the point with the polished network's validation and test MSE, or the cached point where that is
    better on validation (the rebuild does not always reproduce the cached fit: ReLU networks often end elsewhere).
    The sweep then gets what the search's chosen network gets, and never less than it had."""
    from swat_edge.search.polish import polish

    widths = tuple(point["widths"])
    activation = point["label"].split()[1]
    best = int(np.argmin(point["restart_val_mse"]))
    model = fit_like_the_search(start_network(widths, activation, restart_seed(settings.seed, best), split), split,
                                settings)
    val = validation_mse(model, split)
    if not np.isclose(val, point["val_mse"], rtol=0.5):
        print(f"  (rebuilt {point['label']}: validation {val:.3g} against the cached {point['val_mse']:.3g})")

    def refit(starts):
        fitted = [fit_like_the_search(start, split, settings) for start in starts]
        return [(m, validation_mse(m, split), None) for m in fitted]

    result = polish(model, val, refit, split.x_train, split.y_train, rounds=settings.polish_rounds,
                    seed=settings.seed, among=settings.polish_among, width=settings.polish_width,
                    patience=settings.polish_patience)
    if result.val_mse >= point["val_mse"]:
        return point  # a rebuild that ends worse than the cached network (ReLU networks often do) takes nothing away
    return {**point, "val_mse": result.val_mse, "test_mse": mse_on_test(result.model, task)}


def _polished_once(polished: dict[str, dict], task, split, settings, point: dict | None) -> dict | None:
    """polished_sweep_point of the sweep's `point`, each network polished once per task (memo: polished, by
    label); None for no point."""
    if point is not None and point["label"] not in polished:
        polished[point["label"]] = polished_sweep_point(task, split, settings, point)
    return None if point is None else polished[point["label"]]


def score_against_polished(task, split, settings, target, row: dict, out: dict[str, list]) -> None:
    """At each level of `out`, the search's best network within the budget (row's swat points) against the sweep's
    best there polished (polished_sweep_point); the comparison appended to out[level]."""
    levels = compare_tables.budget_levels(row, target.name)
    polished: dict[str, dict] = {}
    cells = []
    for level in out:
        sweep = compare_tables.choose_within(row["methods"]["dense_sweep"], target.name, levels[level])
        ours = compare_tables.choose_within(compare_tables.points_for(row, "swat", target.name), target.name,
                                            levels[level])
        comparison = compare_tables.compare(ours, _polished_once(polished, task, split, settings, sweep))
        out[level].append(comparison)
        cells.append(f"{level}: " + ("-" if comparison is None or comparison[1] is None else f"{comparison[1]:.2f}"))
    print("  against the sweep's best polished: test MSE / its: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
