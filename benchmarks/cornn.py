"""The CORNN benchmark, v2: swat-edge against baselines trained with the same care, within latency budgets.

    .venv/bin/python benchmarks/cornn.py                           # all 54 tasks, seed 0, 2 processes
    .venv/bin/python benchmarks/cornn.py --tasks sphere,booth      # a subset (written to cornn_subset.*)
    .venv/bin/python benchmarks/cornn.py --seeds 0,1,2             # replication: the 8 REPLICATION_TASKS x 3 seeds
    .venv/bin/python benchmarks/cornn.py --quick                   # smoke run: 2 tasks, short schedules (CI)

The same harness runs real data: benchmarks/real.py (scikit-learn's bundled sets and CSV pairs). One task's
methods (swat-edge once per target, the dense sweep with the search's fitter and restarts, the Adam-trained dense
network, pruning, random search, the ablation, the reference rows) are in benchmarks/compare_task.py; the data in
compare_data.py; the budgeted comparison, tables and plots in compare_tables.py; cache, processes and outputs in
compare_run.py.

Protocol (../shared/cornn/README.md): inputs mapped from the manifest's domain to [-1, 1], the target to [-1, 1] by
the training labels' min and max; test MSE on that scale. Every method sees the search's own train/validation
split of the 3,750 training rows and is scored once on the 1,250 test rows; nothing chooses on them.

Writes <out>/cornn{,_quick,_subset,_seeds}.json and .md, and the plots _fronts.png (test MSE against predicted
latency for a few tasks) and _winrate.png (the share of tasks won per budget level). Rows are cached per task and
seed in --cache (runs/cornn-cache), so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.compare_run import (  # noqa: E402
    TaskSpec,
    add_common_arguments,
    parse_seeds,
    run_suite,
)
from benchmarks.compare_task import Protocol  # noqa: E402

QUICK_TASKS = ("sphere", "himmelblau")
# A mix of smooth, valley and oscillating functions, and one the search reduced to a constant in v1 (egg-holder).
REPLICATION_TASKS = ("sphere", "booth", "himmelblau", "bohachevsky-n-1", "griewank", "rastrigin", "levi-n-13",
                     "egg-holder")


def all_tasks(cornn: Path) -> list[str]:
    import csv

    with (cornn / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return [row["slug"] for row in csv.DictReader(fh)]


def chosen_tasks(args: argparse.Namespace, known: list[str], replication: bool) -> list[str]:
    if args.tasks:
        return [s.strip() for s in args.tasks.split(",") if s.strip()]
    if args.quick:
        return list(QUICK_TASKS)
    return list(REPLICATION_TASKS) if replication else known


def output_name(args: argparse.Namespace, slugs: list[str], known: list[str], replication: bool) -> str:
    if args.quick:
        return "cornn_quick"
    if replication:
        return "cornn_seeds"
    return "cornn" if slugs == known else "cornn_subset"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cornn", default=os.environ.get("SWAT_EDGE_CORNN") or str(ROOT.parent / "shared" / "cornn"),
                        help="CORNN data folder (default: $SWAT_EDGE_CORNN, else ../shared/cornn beside the checkout)")
    parser.add_argument("--tasks", default=None, help="comma-separated task slugs (default: all in the manifest; "
                        f"with --seeds: {', '.join(REPLICATION_TASKS)})")
    add_common_arguments(parser, "cornn-cache")
    args = parser.parse_args(argv)
    cornn = Path(args.cornn)
    if not (cornn / "manifest.csv").exists():
        print(f"CORNN data not found at {cornn} (no manifest.csv); skipping. Pass --cornn DIR.")
        return 0
    seeds = parse_seeds(args, parser)
    replication = len(seeds) > 1
    known = all_tasks(cornn)
    slugs = chosen_tasks(args, known, replication)
    unknown = [s for s in slugs if s not in known]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; the manifest has {len(known)}, e.g. {', '.join(known[:4])}")
    specs = [TaskSpec(slug, "cornn", (str(cornn), slug)) for slug in slugs]
    protocol = Protocol.quick() if args.quick else Protocol()
    run_suite(specs, seeds, protocol, args, name=output_name(args, slugs, known, replication), title="CORNN",
              script="benchmarks/cornn.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
