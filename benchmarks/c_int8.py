"""int8 C against float C on the emulated microcontrollers: cycles, flash and drift, same weights.

    .venv/bin/python benchmarks/c_int8.py

Networks: random_model, compiled as `swat-edge export` compiles them, one activation per layer; int8 calibrated on
512 rows (sample_inputs), emulated (mcu.emulate_c) on 16 others. Drift: the relative MSE of the int8 code's
outputs against the float model (to_c's declared figure, a float32 simulation of the generated arithmetic).
Writes benchmarks/results/c_int8.{json,md}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swat_edge.device.targets import load_target  # noqa: E402
from swat_edge.export.c import to_c  # noqa: E402
from swat_edge.measure.calibrate import _compiled  # noqa: E402
from swat_edge.measure.mcu import emulate_c  # noqa: E402
from swat_edge.model import random_model, sample_inputs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NETWORKS = {
    "relu 3-8-8-1": ((3, 8, 8, 1), "relu"),
    "relu 2-8-8-8-8-1": ((2, 8, 8, 8, 8, 1), "relu"),
    "relu 12-16-16-1 (40% zeros)": ((12, 16, 16, 1), "relu"),
    "tanh 3-8-8-1": ((3, 8, 8, 1), "tanh"),
}
TARGETS = ("cortex-m4", "cortex-m0plus")


def run() -> list[dict]:
    out = []
    for label, (widths, activation) in NETWORKS.items():
        sparsity = 0.4 if "zeros" in label else 0.0
        model = _compiled(random_model(widths, activations=activation, per_layer=True, sparsity=sparsity, seed=3),
                          "fp32")
        calibration, rows = sample_inputs(model, 512, seed=3), sample_inputs(model, 16, seed=1)
        code = {"float": to_c(model, prefix="net"),
                "int8": to_c(model, prefix="net", dtype="int8", calibration_rows=calibration,
                             max_relative_mse=1.0)}
        row = {"network": label, "drift_relative_mse": code["int8"].int8.relative_mse, "targets": {}}
        for target_name in TARGETS:
            target = load_target(target_name)
            row["targets"][target_name] = {
                dtype: {"median_cycles": r.median_cycles, "flash_bytes": r.flash_bytes}
                for dtype, r in ((d, emulate_c(c, target, rows=rows, reference=model, rel_tolerance=1.0))
                                 for d, c in code.items())}
        out.append(row)
        print(label, json.dumps(row["targets"]), flush=True)
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["# int8 C vs float C on emulated microcontrollers (same weights)", "",
             "`.venv/bin/python benchmarks/c_int8.py`; cycles: median over 16 rows; flash: what the model adds to "
             "the image; drift: relative MSE of int8 against the float model. Ratios < 1: int8 faster / smaller.", "",
             "| network | drift | target | float cycles | int8 cycles | ratio | float flash B | int8 flash B | ratio |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        for target, pair in row["targets"].items():
            f, q = pair["float"], pair["int8"]
            lines.append(f"| {row['network']} | {row['drift_relative_mse']:.2g} | {target} | {f['median_cycles']:,.0f} | "
                         f"{q['median_cycles']:,.0f} | {q['median_cycles'] / f['median_cycles']:.2f} | "
                         f"{f['flash_bytes']:,} | {q['flash_bytes']:,} | {q['flash_bytes'] / f['flash_bytes']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "c_int8.json").write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    (RESULTS / "c_int8.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
