"""swat-edge's generated C against emlearn's on the same weights: cycles, flash and RAM on an emulated Cortex-M4F
and Cortex-M0+, and latency on this host.

    .venv/bin/pip install emlearn==0.23.2   # the peer, in the benchmark's environment only
    .venv/bin/python benchmarks/c_peers.py [--quick]

Networks: one per kind (dense / sparse x tanh / ReLU), random_model with one activation per layer (emlearn takes
one per layer), compiled as `swat-edge export` compiles them (input and output scaling folded into the weights),
so both generators get exactly the same float weights; emlearn gets the dense matrices (zeros included: it has
no sparse form). swat-edge's C: `to_c` (libm tanhf, as emlearn's eml_net_tanh). emlearn's C: its "loadable"
strategy (emlearn.net.c_generate_net_loadable, what emlearn.convert uses by default: constant weight arrays and
eml_net.h's layer loops; the "inline" strategy fails to generate float code in 0.23.2, a ValueError in
cgen.constant_declare), called through `net_predict(in, out)` = eml_net_regress.

MCU: mcu.emulate_c on the same 16 calibration-like rows (sample_inputs), -O2, both checked against the model's
forward pass; figures: median cycles per inference, flash the model adds to the image (code + constants + libm),
static RAM, stack. Then swat-edge again with a size budget of emlearn's flash bytes (the loop layers the target's
cost model chooses, as `swat-edge export --target T --size-budget B` does). Host: bench_c.measure_c in
alternating rounds (ours, emlearn, ours, ...; gcc -O2, batch 1, chained calls), ratio of the medians of round
medians. onnx2c is not in this comparison: it is not installable here (no package; it builds from source with
CMake and protobuf).
Writes benchmarks/results/c_peers.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swat_edge.device.cost import choose_loop_layers  # noqa: E402
from swat_edge.device.targets import load_target  # noqa: E402
from swat_edge.export.c import CSource, to_c  # noqa: E402
from swat_edge.measure.bench import machine_info  # noqa: E402
from swat_edge.measure.bench_c import BENCH_CFLAGS, measure_c  # noqa: E402
from swat_edge.measure.calibrate import _compiled  # noqa: E402
from swat_edge.measure.mcu import emulate_c  # noqa: E402
from swat_edge.model import SparseMLP, random_model, sample_inputs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NETWORKS = {
    "dense tanh 2-8-8-8-8-1": dict(widths=(2, 8, 8, 8, 8, 1), activations="tanh", sparsity=0.0),
    "dense relu 2-8-8-8-8-1": dict(widths=(2, 8, 8, 8, 8, 1), activations="relu", sparsity=0.0),
    "sparse tanh 4-8-8-1 (40% zeros)": dict(widths=(4, 8, 8, 1), activations="tanh", sparsity=0.4),
    "sparse relu 4-8-8-1 (40% zeros)": dict(widths=(4, 8, 8, 1), activations="relu", sparsity=0.4),
}
TARGETS = ("cortex-m4", "cortex-m0plus")
ROWS = 16


def network(spec: dict) -> SparseMLP:
    model = random_model(spec["widths"], activations=spec["activations"], per_layer=True,
                         sparsity=spec["sparsity"], seed=7)
    return _compiled(model, "fp32")


def emlearn_c(model: SparseMLP, ours: CSource) -> tuple[CSource, Path]:
    """emlearn's inline C for the model's weights, behind ours's header (same prefix, macros and signatures)."""
    import emlearn
    from emlearn.net import c_generate_net_loadable

    acts = {"tanh": "tanh", "relu": "relu", "identity": "identity", "sigmoid": "logistic"}
    layers = model.layers
    activations = [acts[layer.activations[0]] for layer in layers]
    assert all(len(set(layer.activations)) == 1 for layer in layers), "emlearn takes one activation per layer"
    code = c_generate_net_loadable(activations, [np.asarray(l.weight, np.float32) for l in layers],
                                   [np.asarray(l.bias, np.float32) for l in layers], "peer")
    n_in, n_out = model.n_inputs, model.n_outputs
    wrapper = f"""
#include "{ours.header_name}"
{code}
void {ours.prefix}_predict(const float *in, float *out)
{{
    eml_net_regress(&peer, in, {n_in}, out, {n_out});
}}

void {ours.prefix}_predict_batch(const float *in, float *out, int n_rows)
{{
    int r;
    for (r = 0; r < n_rows; ++r) {{
        {ours.prefix}_predict(in + r * {n_in}, out + r * {n_out});
    }}
}}
"""
    return dataclasses.replace(ours, source=wrapper), Path(emlearn.includedir)


def host_ratio(ours: CSource, peer: CSource, include: Path, rows: np.ndarray, rounds: int) -> dict:
    """Alternating rounds of measure_c: median p50 per call of each, and their ratio (ours / emlearn)."""
    ours_us, peer_us = [], []
    both = [(ours, BENCH_CFLAGS, ours_us), (peer, (*BENCH_CFLAGS, f"-I{include}"), peer_us)]
    for r in range(rounds):
        for csrc, flags, out in both if r % 2 == 0 else both[::-1]:  # the order flips every round
            res = measure_c(csrc, rows=rows.astype(np.float32), n_samples=15, cflags=flags)
            out.append(res.latencies[0].p50_us)
    return {"ours_p50_us": float(np.median(ours_us)), "emlearn_p50_us": float(np.median(peer_us)),
            "ratio_ours_over_emlearn": float(np.median(np.array(ours_us) / np.array(peer_us))), "rounds": rounds}


def run(quick: bool, targets: tuple[str, ...] = TARGETS) -> dict:
    rows_out = []
    networks = dict(list(NETWORKS.items())[:1]) if quick else NETWORKS
    for label, spec in networks.items():
        model = network(spec)
        ours = to_c(model, prefix="net")
        peer, include = emlearn_c(model, ours)
        rows = sample_inputs(model, ROWS, seed=1)
        row = {"network": label, "macs_nonzero": int(sum(np.count_nonzero(l.weight) for l in model.layers)),
               "macs_dense": int(sum(l.weight.size for l in model.layers)), "mcu": {}}
        for target_name in targets:
            target = load_target(target_name)
            a = emulate_c(ours, target, rows=rows, reference=model)
            # emlearn sums in another order: checked at 1e-4 x the output scale (its error is reported)
            b = emulate_c(peer, target, rows=rows, reference=model, include_dirs=(include,), rel_tolerance=1e-4)
            # `swat-edge export --target T --size-budget <emlearn's flash bytes>`: the cost model picks loop layers
            loops = choose_loop_layers(model, target, b.flash_bytes)
            c = emulate_c(to_c(model, prefix="net", loop_layers=sorted(loops)), target, rows=rows, reference=model)
            row["mcu"][target_name] = {
                who: {"median_cycles": r.median_cycles, "latency_us": r.latency_us, "flash_bytes": r.flash_bytes,
                      "static_ram_bytes": r.static_ram_bytes, "stack_bytes": r.stack_bytes,
                      "max_abs_error": r.max_abs_error}
                for who, r in (("swat-edge", a), ("emlearn", b), ("swat-edge budget", c))}
            row["mcu"][target_name]["swat-edge budget"]["loop_layers"] = sorted(loops)
        row["host"] = host_ratio(ours, peer, include, rows, rounds=3 if quick else 7)
        rows_out.append(row)
        m4 = row["mcu"]["cortex-m4"]
        print(f"{label}: cortex-m4 cycles {m4['swat-edge']['median_cycles']:.0f} vs {m4['emlearn']['median_cycles']:.0f}, "
              f"flash {m4['swat-edge']['flash_bytes']} vs {m4['emlearn']['flash_bytes']}; host ratio "
              f"{row['host']['ratio_ours_over_emlearn']:.2f}", flush=True)
    import emlearn

    m = machine_info()
    return {"emlearn": emlearn.__version__, "machine": f"{m.processor}, {m.cpu_count} CPUs", "rows": ROWS,
            "networks": rows_out}


def markdown(payload: dict) -> str:
    lines = [
        "# swat-edge's generated C vs emlearn's (same weights)",
        "",
        f"`.venv/bin/python benchmarks/c_peers.py`; emlearn {payload['emlearn']}; host {payload['machine']}. "
        "Cycles: emulated (swat_edge/measure/mcu.py), median over "
        f"{payload['rows']} rows; flash: what the model adds to the linked image (code, constants, libm); ratio < 1: "
        "swat-edge faster / smaller.",
        "",
        "| network | target | cycles swat-edge | cycles emlearn | ratio | flash B swat-edge | flash B emlearn | ratio | "
        "RAM (static + stack) swat-edge | emlearn |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in payload["networks"]:
        for target, pair in row["mcu"].items():
            a, b = pair["swat-edge"], pair["emlearn"]
            lines.append(
                f"| {row['network']} | {target} | {a['median_cycles']:,.0f} | {b['median_cycles']:,.0f} | "
                f"{a['median_cycles'] / b['median_cycles']:.2f} | {a['flash_bytes']:,} | {b['flash_bytes']:,} | "
                f"{a['flash_bytes'] / b['flash_bytes']:.2f} | {a['static_ram_bytes'] + a['stack_bytes']:,} | "
                f"{b['static_ram_bytes'] + b['stack_bytes']:,} |")
    lines += ["", "With a size budget: `swat-edge export --target T --size-budget B`, B = emlearn's flash bytes above; the "
              "target's cost model chooses which layers become loops over weight tables (smaller, slower code):", "",
              "| network | target | loop layers | cycles | ratio to emlearn | flash B | ratio to emlearn |",
              "|---|---|---|---:|---:|---:|---:|"]
    for row in payload["networks"]:
        for target, pair in row["mcu"].items():
            c, b = pair["swat-edge budget"], pair["emlearn"]
            layers = ", ".join(str(li + 1) for li in c["loop_layers"]) or "none"
            lines.append(f"| {row['network']} | {target} | {layers} | {c['median_cycles']:,.0f} | "
                         f"{c['median_cycles'] / b['median_cycles']:.2f} | {c['flash_bytes']:,} | "
                         f"{c['flash_bytes'] / b['flash_bytes']:.2f} |")
    lines += ["", "Host (gcc -O2, batch 1, chained calls; medians over alternating rounds):", "",
              "| network | swat-edge us | emlearn us | ratio |", "|---|---:|---:|---:|"]
    for row in payload["networks"]:
        h = row["host"]
        lines.append(f"| {row['network']} | {h['ours_p50_us']:.3f} | {h['emlearn_p50_us']:.3f} | "
                     f"{h['ratio_ours_over_emlearn']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one network, 3 host rounds (a smoke run)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="MCU profiles to emulate")
    args = parser.parse_args()
    payload = run(args.quick, tuple(args.targets.split(",")))
    if args.quick:
        print(markdown(payload))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "c_peers.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    (RESULTS / "c_peers.md").write_text(markdown(payload))
    print(f"wrote {RESULTS / 'c_peers.json'} and {RESULTS / 'c_peers.md'}")


if __name__ == "__main__":
    main()
