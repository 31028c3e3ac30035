"""Back-end latency benchmark (issue 2): swat-edge's grouped export vs a naive export and onnxruntime's call floor.

    .venv/bin/python benchmarks/backend_latency.py [--quick]

For a 2-7-7-7-1 mixed-activation model and the same shape with one activation per layer, measured in one run,
interleaved pairs (swat_edge.measure.bench.measure_pair), batch 1 and batch 1024, 1 intra-op thread:
  - call floor: an Identity model of the same input width (onnxruntime's fixed cost per call);
  - naive: the model exported as a naive exporter would (every activation type on the whole layer, mixed with
    0/1 masks; input scaling as separate ops), not simplified;
  - naive + onnxsim: the same naive graph simplified by onnxsim, as `swat-edge export` simplifies its own graph:
    the ratio against it is what the compile passes and grouped slices buy beyond onnxsim's work;
  - swat-edge: `swat-edge export` (compile passes + grouped activation slices + onnxsim).
Writes <out>/backend_latency.{json,md} (default benchmarks/results). Ratios are B/A of medians with a bootstrap
95% CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swat_edge.export.onnx import to_onnx  # noqa: E402
from swat_edge.export.pipeline import export_onnx_file  # noqa: E402
from swat_edge.measure.bench import machine_info, measure_pair  # noqa: E402
from swat_edge.model import random_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BATCHES = (1, 1024)


def identity_model(n_inputs: int) -> bytes:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_inputs])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_inputs])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "floor", [x], [y])
    return helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short timings (a smoke run, not for figures)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for backend_latency.json/.md")
    args = parser.parse_args()
    timing = dict(min_time_s=0.3, min_blocks=10) if args.quick else dict(min_time_s=4.0, min_blocks=40)

    models = {
        "mixed 2-7-7-7-1": random_model((2, 7, 7, 7, 1), sparsity=0.3, seed=11),
        "per-layer 2-7-7-7-1": random_model((2, 7, 7, 7, 1), sparsity=0.3, per_layer=True, seed=12),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models.items():
            grouped = Path(tmp) / "grouped.onnx"
            export_onnx_file(model, grouped, force=True)
            naive = to_onnx(model, naive=True, simplify=False).SerializeToString()
            naive_sim = to_onnx(model, naive=True, simplify=True).SerializeToString()
            grouped_bytes = grouped.read_bytes()
            floor = identity_model(model.n_inputs)
            vs_floor = measure_pair(floor, grouped_bytes, batch_sizes=BATCHES, **timing)
            vs_naive = measure_pair(naive, grouped_bytes, batch_sizes=BATCHES, **timing)
            vs_naive_sim = measure_pair(naive_sim, grouped_bytes, batch_sizes=BATCHES, **timing)
            nodes = {
                "grouped": len(onnx.load_from_string(grouped_bytes).graph.node),
                "naive": len(onnx.load_from_string(naive).graph.node),
                "naive_onnxsim": len(onnx.load_from_string(naive_sim).graph.node),
            }
            for batch in BATCHES:
                f, n, ns = vs_floor.pair(batch), vs_naive.pair(batch), vs_naive_sim.pair(batch)
                rows.append(
                    {
                        "model": label,
                        "batch": batch,
                        "floor_p50_us": f.a.p50_us,
                        "swat_edge_p50_us": f.b.p50_us,
                        "naive_p50_us": n.a.p50_us,
                        "naive_onnxsim_p50_us": ns.a.p50_us,
                        "swat_edge_vs_floor": [f.ratio, f.ratio_ci_low, f.ratio_ci_high],
                        "swat_edge_vs_naive": [n.ratio, n.ratio_ci_low, n.ratio_ci_high],
                        "swat_edge_vs_naive_onnxsim": [ns.ratio, ns.ratio_ci_low, ns.ratio_ci_high],
                        "nodes": nodes,
                    }
                )
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info().__dict__, "quick": args.quick, "rows": rows}
    (args.out / "backend_latency.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "| model | batch | call floor p50 us | naive p50 us | naive + onnxsim p50 us | swat-edge p50 us | "
        "swat-edge / naive (95% CI) | swat-edge / naive + onnxsim (95% CI) | swat-edge / floor (95% CI) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ci = lambda v: f"{v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})"  # noqa: E731
    for r in rows:
        nodes = r["nodes"]
        lines.append(
            f"| {r['model']} (nodes {nodes['grouped']} vs naive {nodes['naive']}, {nodes['naive_onnxsim']} after "
            f"onnxsim) | {r['batch']} | {r['floor_p50_us']:.2f} | {r['naive_p50_us']:.2f} | "
            f"{r['naive_onnxsim_p50_us']:.2f} | {r['swat_edge_p50_us']:.2f} | {ci(r['swat_edge_vs_naive'])} | "
            f"{ci(r['swat_edge_vs_naive_onnxsim'])} | {ci(r['swat_edge_vs_floor'])} |"
        )
    (args.out / "backend_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
