"""Large data: how many training rows Levenberg-Marquardt needs (SearchSettings.lm_max_rows), against fitting on
all of them and against mini-batch Adam on all of them.

    .venv/bin/python benchmarks/large_data.py            # 2 data sets x 250,000 rows, 5 variants each (~30 min)
    .venv/bin/python benchmarks/large_data.py --quick    # smooth4, 25,000 rows, caps 2,000 and all (~1 min)

Data (drawn by the seed; a separate test draw of 50,000 rows, only evaluated):
- smooth4: 4 standard-normal features, y = x0 x1 + tanh(x2), noiseless (x3 carries nothing);
- friedman1: scikit-learn's make_friedman1, 10 features (5 carry the target), noise sd 1.
Variants, each a full `swat-edge search --target raspi4` (run_search, jobs 2) with the defaults but: Levenberg-
Marquardt on at most N training rows (`lm_max_rows`; "all": every training row), or Adam (`fitter=adam`, its
default steps and mini-batches, on every row). Figures: the chosen model's test MSE (raw units) and validation MSE
(scaled target, what chose it), its structure, and the search's wall time. Writes
benchmarks/results/large_data{,_quick}.{json,md}.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEST_ROWS = 50_000
NOISE_VARIANCE = {"smooth4": 0.0, "friedman1": 1.0}  # the test MSE no model can go below


def make(name: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of `rows` rows of data set `name`."""
    rng = np.random.default_rng(seed)
    if name == "smooth4":
        x = rng.standard_normal((rows, 4))
        return x, x[:, 0] * x[:, 1] + np.tanh(x[:, 2])
    if name == "friedman1":
        from sklearn.datasets import make_friedman1

        return make_friedman1(n_samples=rows, n_features=10, noise=1.0, random_state=seed)
    raise ValueError(name)


def datasets(name: str, rows: int, seed: int) -> tuple[Any, Any]:
    from swat_edge.data import Dataset

    x, y = make(name, rows, seed)
    x_test, y_test = make(name, TEST_ROWS, seed + 1000)
    names = tuple(f"x{k}" for k in range(x.shape[1]))
    return (Dataset(f"{name}:train", x, y[:, None], names, ("y",), "-"),
            Dataset(f"{name}:test", x_test, y_test[:, None], names, ("y",), "-"))


def variant_settings(variant: str, seed: int) -> Any:
    from swat_edge.search.run import SearchSettings

    settings = SearchSettings(seed=seed)
    if variant == "adam":
        return replace(settings, fitter="adam")
    rows = 10**9 if variant == "all" else int(variant)
    return replace(settings, fitter="lm", lm_max_rows=rows)


def run_one(name: str, rows: int, variant: str, seed: int, embedding: Any) -> dict[str, Any]:
    from swat_edge.device.targets import load_target
    from swat_edge.model import forward
    from swat_edge.search.run import run_search

    train, test = datasets(name, rows, seed)
    t0 = time.perf_counter()
    result = run_search(train, embedding=embedding, target=load_target("raspi4"),
                        settings=variant_settings(variant, seed), jobs=2)
    wall = time.perf_counter() - t0
    chosen = result.chosen
    return {"data": name, "rows": rows, "variant": variant, "seed": seed,
            "test_mse": float(np.mean((forward(result.model, test.x) - test.y) ** 2)),
            "val_mse_scaled": float(chosen.finetuned_val_mse), "origin": chosen.origin, "depth": chosen.depth,
            "nonzero_params": chosen.nonzero_params, "latency_us": chosen.latency_us, "wall_s": wall}


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.compare_run import provenance_lines

    lines = ["# Large data: Levenberg-Marquardt on a row sample, on all rows, and Adam", "",
             *provenance_lines(report), "",
             "Test MSE in raw units (50,000 test rows); excess: over the noise's variance (what no model can go "
             "below; friedman1 1.0, smooth4 0); `/ all`: the variant's excess over Levenberg-Marquardt on every "
             "training row's; validation MSE on the scaled target (what chose the model).", "",
             "| data | training rows | variant | test MSE | excess | / all | validation MSE | chosen | "
             "non-zero params | search s |", "|---|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for row in report["rows"]:
        every = next((r for r in report["rows"] if r["data"] == row["data"] and r["variant"] == "all"), None)
        noise = NOISE_VARIANCE[row["data"]]
        ratio = f"{(row['test_mse'] - noise) / (every['test_mse'] - noise):.2f}" if every else "-"
        variant = "Adam, all rows" if row["variant"] == "adam" else (
            "LM, all rows" if row["variant"] == "all" else f"LM, {int(row['variant']):,} rows")
        lines.append(f"| {row['data']} | {int(row['rows'] * 0.8):,} | {variant} | {row['test_mse']:.4g} | "
                     f"{row['test_mse'] - noise:.3g} | {ratio} | "
                     f"{row['val_mse_scaled']:.3g} | {row['origin']}, depth {row['depth']} | "
                     f"{row['nonzero_params']} | {row['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from benchmarks.compare_run import write_report
    from swat_edge.search.embedding.storage import load_embedding

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smooth4, 25,000 rows, caps 2,000 and all")
    parser.add_argument("--data", default="smooth4,friedman1")
    parser.add_argument("--rows", type=int, default=250_000, help="rows of the training file (20%% validation)")
    parser.add_argument("--variants", default="10000,20000,50000,all,adam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.rows, args.variants = "smooth4", 25_000, "2000,all"
    torch.set_num_threads(1)  # as the CLI runs a search
    embedding = load_embedding("default")
    t0 = time.perf_counter()
    rows = []
    for name in args.data.split(","):
        for variant in args.variants.split(","):
            rows.append(run_one(name, args.rows, variant, args.seed, embedding))
            r = rows[-1]
            print(f"{name} {variant}: test MSE {r['test_mse']:.4g}, validation {r['val_mse_scaled']:.3g} "
                  f"({r['origin']}, depth {r['depth']}, {r['nonzero_params']} params), {r['wall_s']:.0f} s", flush=True)
    command = "python benchmarks/large_data.py" + (" --quick" if args.quick else "")
    report = {"command": command, "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
              "minutes": (time.perf_counter() - t0) / 60, "rows": rows}
    write_report(Path(args.out) / ("large_data_quick" if args.quick else "large_data"), report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
