"""The real-data benchmark: the CORNN benchmark's harness (benchmarks/cornn.py) on scikit-learn's bundled regression
sets and on CSV train/test pairs.

    .venv/bin/python benchmarks/real.py                          # diabetes, friedman1/2/3, seed 0, 2 processes
    .venv/bin/python benchmarks/real.py --data-dir DIR           # also every DIR/<name>.train.csv + .test.csv pair
    .venv/bin/python benchmarks/real.py --datasets diabetes      # a subset (written to real_subset.*)
    .venv/bin/python benchmarks/real.py --quick                  # smoke run: diabetes and friedman3, short schedules

Data (benchmarks/compare_data.py): load_diabetes; make_friedman1 (10 features, 5 of them noise), make_friedman2,
make_friedman3, each with a fixed data seed and a fixed 75/25 train/test split whatever --seed is; CSV pairs with a
header line, target last. The target is scaled to [-1, 1] by the training rows (test MSE on that scale, R^2 beside
it). The default embedding takes at most 8 inputs: diabetes and friedman1 (10 features) keep the 8 with the highest
mutual information with the target on the training rows, for every method alike; the output names the dropped ones.

Methods and protocol as for CORNN (benchmarks/compare_task.py), plus reference rows that are not deployable in this
toolchain: scikit-learn's LinearRegression and HistGradientBoostingRegressor on the same training rows.
Writes <out>/real{,_quick,_subset}.json and .md, _fronts.png and _winrate.png; rows cached in runs/real-cache.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.compare_data import BUNDLED, csv_pairs  # noqa: E402
from benchmarks.compare_run import (  # noqa: E402
    TaskSpec,
    add_common_arguments,
    parse_seeds,
    run_suite,
)
from benchmarks.compare_task import Protocol  # noqa: E402

QUICK_DATASETS = ("diabetes", "friedman3")


def available(data_dir: str | None) -> list[TaskSpec]:
    specs = [TaskSpec(name, "bundled", (name,)) for name in BUNDLED]
    if data_dir is not None:
        specs += [TaskSpec(name, "csv", (str(data_dir), name)) for name in csv_pairs(Path(data_dir))]
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder of <name>.train.csv / <name>.test.csv pairs (target last)")
    parser.add_argument("--datasets", default=None, help="comma-separated data set names (default: all: "
                        f"{', '.join(BUNDLED)} and the --data-dir pairs)")
    add_common_arguments(parser, "real-cache")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args, parser)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir}: not a folder")
    try:
        specs = available(args.data_dir)
    except ValueError as exc:
        parser.error(str(exc))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        parser.error(f"--data-dir: a pair is named like a bundled set ({', '.join(BUNDLED)}); rename it")
    wanted = ([s.strip() for s in args.datasets.split(",") if s.strip()] if args.datasets
              else list(QUICK_DATASETS) if args.quick else names)
    unknown = [w for w in wanted if w not in names]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; known: {', '.join(names)}")
    chosen = [next(s for s in specs if s.name == w) for w in wanted]
    name = "real_quick" if args.quick else ("real_custom" if args.data_dir is not None else
                                            "real" if wanted == names else "real_subset")
    if len(seeds) > 1 and not args.quick:
        name = f"{name}_seeds"
    protocol = Protocol.quick() if args.quick else Protocol()
    run_suite(chosen, seeds, protocol, args, name=name, title="real data", script="benchmarks/real.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
