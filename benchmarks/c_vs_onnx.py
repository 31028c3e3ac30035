"""Issue 5 benchmark: generated C (float, fast_math, int8) vs onnxruntime, and the arithmetic limit of the C.

    .venv/bin/python benchmarks/c_vs_onnx.py [--quick]

Model: random_model((2, 7, 7, 7, 1), seed=0), the golden files' model (per-neuron mixed activations, no zeros:
119 multiply-adds, 21 activations per row). It goes through `swat-edge export` twice, in one process:
build.export_onnx_file (fp32 ONNX, the fastest ONNX path here) and build.export_c_file (each C variant,
compiled and checked against the reference forward pass before it is timed).

Ratios: bench_c.measure_c_pair, C vs the ONNX file in alternating rounds (C harness process, onnxruntime,
order flipped each round), batch 1 and 1024, 1 intra-op thread, io binding; ratio of round medians with a
bootstrap 95% CI over rounds.

Arithmetic limit (per row): what the C code's operations cost at this core's scalar *throughput*, with no
dependency between them:  MACs x t_mac + sum over activation types of count x t_act (+ for int8: each
quantized value x (t_q8 + t_mac), each neuron's dequantizing multiply-add x t_mac). The per-operation times
come from micro-kernels compiled with the same compiler and -O2 (vectorisation off: the limit is scalar):
t_mac from 8 independent multiply-add chains, t_act by calling the generated file's own activation helpers
(the kernel #includes the generated .c) on the model's actual pre-activation values for the benchmark rows,
in call order, minus the same loop doing a plain copy. Kernels run in rounds across all variants (median
over rounds), so machine noise spreads over all of them. The C is also timed unchained (calls independent):
the measured figure closest to a throughput limit. Writes benchmarks/results/c_vs_onnx.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swat_edge.export.c import CSource  # noqa: E402
from swat_edge.export.cc import compile_c, find_c_compiler, run_program  # noqa: E402
from swat_edge.export.pipeline import export_c_file, export_onnx_file  # noqa: E402
from swat_edge.measure.bench import machine_info  # noqa: E402
from swat_edge.measure.bench_c import BENCH_CFLAGS, measure_c, measure_c_pair  # noqa: E402
from swat_edge.model import SparseMLP, apply_activation, random_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BATCHES = (1, 1024)
VARIANTS = {
    "float": {"dtype": "float"},
    "float fast_math": {"dtype": "float", "fast_math": True},
    "int8": {"dtype": "int8"},
}
KERNEL_ELEMENTS = 4096
KERNEL_FLAGS = (*BENCH_CFLAGS, "-fno-tree-vectorize")

_KERNELS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "@SOURCE@" /* the generated code: its static activation helpers are callable here */

#define N @N@
static float xs[N];
static float ys[N];
static int qs[N];
static volatile float fsink;
static volatile int isink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* 8 independent chains: the core's multiply-add throughput, not a chain's latency. */
static void k_mac(void)
{
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f, a7 = 0.0f;
    int i;
    for (i = 0; i < N; i += 8) {
        a0 += 0.713f * xs[i];
        a1 += -0.377f * xs[i + 1];
        a2 += 1.291f * xs[i + 2];
        a3 += -0.052f * xs[i + 3];
        a4 += 0.618f * xs[i + 4];
        a5 += -1.414f * xs[i + 5];
        a6 += 0.271f * xs[i + 6];
        a7 += -0.999f * xs[i + 7];
    }
    fsink = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

static void k_imac(void)
{
    int a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int i;
    for (i = 0; i < N; i += 8) {
        a0 += 71 * qs[i];
        a1 -= 37 * qs[i + 1];
        a2 += 127 * qs[i + 2];
        a3 -= 5 * qs[i + 3];
        a4 += 61 * qs[i + 4];
        a5 -= 114 * qs[i + 5];
        a6 += 27 * qs[i + 6];
        a7 -= 99 * qs[i + 7];
    }
    isink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

static void k_copy(void)
{
    int i;
    for (i = 0; i < N; ++i) {
        ys[i] = xs[i];
    }
    fsink = ys[N - 1];
}

@ACT_KERNELS@

/* argv: kernel values_file repetitions -> prints the median ns per element */
int main(int argc, char **argv)
{
    FILE *f;
    long r, reps;
    double *t, median;
    void (*kernel)(void) = NULL;
    if (argc != 4) {
        return 2;
    }
    f = fopen(argv[2], "rb");
    if (f == NULL || fread(xs, sizeof(float), N, f) != N) {
        return 4;
    }
    fclose(f);
    for (r = 0; r < N; ++r) {
        qs[r] = (int)xs[r];
    }
    reps = strtol(argv[3], NULL, 10);
    if (strcmp(argv[1], "mac") == 0) kernel = k_mac;
    if (strcmp(argv[1], "imac") == 0) kernel = k_imac;
    if (strcmp(argv[1], "copy") == 0) kernel = k_copy;
@ACT_DISPATCH@
    if (kernel == NULL || reps < 3) {
        return 2;
    }
    t = (double *)malloc((size_t)reps * sizeof(double));
    if (t == NULL) {
        return 3;
    }
    for (r = 0; r < 20; ++r) {
        kernel(); /* warm-up */
    }
    for (r = 0; r < reps; ++r) {
        double t0 = now_ns();
        kernel();
        t[r] = (now_ns() - t0) / N;
    }
    /* median by insertion sort: reps is small */
    for (r = 1; r < reps; ++r) {
        double v = t[r];
        long k = r - 1;
        while (k >= 0 && t[k] > v) {
            t[k + 1] = t[k];
            --k;
        }
        t[k + 1] = v;
    }
    median = t[reps / 2];
    printf("%.6f\n", median);
    return 0;
}
"""


def preactivations(model: SparseMLP, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each activation type's arguments in call order: row by row, that type's neurons layer by layer.

    The order matters for libm's tanhf, whose branches depend on |z|: one neuron's values stay in a narrow
    range, so a branch predictor does better on this sequence than on the same values shuffled.
    """
    h = np.asarray(x, dtype=np.float64) * model.input_scale + model.input_offset
    blocks: dict[str, list[np.ndarray]] = {}
    for layer in model.hidden:
        z = h @ layer.weight + layer.bias
        for name in dict.fromkeys(layer.activations):
            cols = [j for j, a in enumerate(layer.activations) if a == name and layer.mask[j]]
            if cols and name != "identity":
                blocks.setdefault(name, []).append(z[:, cols])
        h = np.column_stack([apply_activation(n, z[:, j]) * layer.mask[j] for j, n in enumerate(layer.activations)])
    return {name: np.hstack(parts).ravel() for name, parts in blocks.items()}


def _kernel_source(csrc: CSource) -> tuple[str, list[str]]:
    """The micro-kernel program for one generated file, and the kernels it has."""
    names = list(csrc.activation_counts) + (["q8"] if csrc.dtype == "int8" else [])
    act_kernels, dispatch = [], []
    for name in names:
        if name == "q8":  # int results go to an int array: no float conversion is timed
            body = f"qs[i] = (int){csrc.prefix}_q8(xs[i]);"
        else:
            body = f"ys[i] = {csrc.prefix}_{name}(xs[i]);"
        act_kernels.append(f"static void k_{name}(void)\n{{\n    int i;\n    for (i = 0; i < N; ++i) {{\n        {body}\n"
                           f"    }}\n    fsink = ys[N - 1];\n    isink = qs[N - 1];\n}}\n")
        dispatch.append(f'    if (strcmp(argv[1], "{name}") == 0) kernel = k_{name};')
    text = (_KERNELS.replace("@N@", str(KERNEL_ELEMENTS)).replace("@ACT_KERNELS@", "\n".join(act_kernels))
            .replace("@ACT_DISPATCH@", "\n".join(dispatch)).replace("@SOURCE@", "model.c"))
    base = ["mac", "copy"] + (["imac"] if csrc.dtype == "int8" else [])
    return text, base + names


def op_times_ns(
    sources: dict[str, CSource], values: dict[str, np.ndarray], *, reps: int, rounds: int, seed: int
) -> dict[str, dict[str, float]]:
    """Scalar throughput per operation (ns) on this core, per variant, timed with the generated files' own helpers.

    Every (variant, kernel) runs once per round, rounds repeated: machine noise spreads over all of them, and
    each figure is the median over rounds. Activation and q8 figures have the plain-copy loop subtracted.
    """
    cc = find_c_compiler()
    rng = np.random.default_rng(seed)
    samples = {name: np.resize(np.asarray(v, dtype=np.float32), KERNEL_ELEMENTS) for name, v in values.items()}
    samples["mac"] = samples["copy"] = rng.standard_normal(KERNEL_ELEMENTS).astype(np.float32)
    samples["imac"] = rng.integers(-128, 128, KERNEL_ELEMENTS).astype(np.float32)
    samples["q8"] = rng.uniform(-140.0, 140.0, KERNEL_ELEMENTS).astype(np.float32)
    timings: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        programs = {}
        for label, csrc in sources.items():
            d = Path(tmp) / f"v{len(programs)}"
            d.mkdir()
            text, kernels = _kernel_source(csrc)
            (d / "model.c").write_text(csrc.source)
            (d / csrc.header_name).write_text(csrc.header)
            (d / "kernels.c").write_text(text)
            compile_c(cc, [d / "kernels.c"], d / "kernels", flags=KERNEL_FLAGS, what="the micro-kernels")
            for name in kernels:
                samples[name].tofile(d / f"{name}.f32")
            programs[label] = (d, kernels)
            timings[label] = {name: [] for name in kernels}
        for _ in range(rounds):
            for label, (d, kernels) in programs.items():
                for name in kernels:
                    out = run_program([str(d / "kernels"), name, str(d / f"{name}.f32"), str(reps)], what=name,
                                      timeout_s=120)
                    timings[label][name].append(float(out.strip()))
    result = {}
    for label, per_kernel in timings.items():
        t = {name: float(np.median(v)) for name, v in per_kernel.items()}
        for name in t:
            if name not in ("mac", "imac", "copy"):
                t[name] = max(t[name] - t["copy"], 0.0)
        result[label] = t
    return result


def counts(csrc: CSource) -> dict[str, int]:
    """Operations per row in the generated code (int8: quantized values and dequantizing multiply-adds too)."""
    out = {"macs": csrc.macs, **csrc.activation_counts}
    if csrc.dtype == "int8":
        out["quantized_values"] = len(re.findall(rf"{csrc.prefix}_q8\(", csrc.source)) - 1  # minus the definition
        out["neurons"] = len(re.findall(r"const float h\d+_\d+ =|out\[\d+\] =", csrc.source))
    return out


def limit_ns(csrc: CSource, n: dict[str, int], t: dict[str, float]) -> float:
    if csrc.dtype == "int8":
        total = n["macs"] * t["imac"] + n["quantized_values"] * (t["q8"] + t["mac"]) + n["neurons"] * t["mac"]
    else:
        total = n["macs"] * t["mac"]
    return total + sum(n[a] * t[a] for a in csrc.activation_counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short timings (a smoke run, not for figures)")
    args = parser.parse_args()
    pair_timing = dict(min_rounds=8, min_time_s=0.3) if args.quick else dict(min_rounds=40, min_time_s=3.0)
    reps, kernel_rounds = (21, 5) if args.quick else (31, 25)
    seed = 0

    model = random_model((2, 7, 7, 7, 1), seed=0)
    rows = np.random.default_rng(seed).standard_normal((4096, model.n_inputs))  # what the C harness is fed
    values = preactivations(model, rows)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "mlp.onnx"
        export_onnx_file(model, onnx_path)
        exported = {label: export_c_file(model, Path(tmp) / f"mlp_{label.replace(' ', '_')}.c", **options)
                    for label, options in VARIANTS.items()}
        assert all(e.check is not None for e in exported.values()), "bug: the benchmark needs a C compiler"
        sources = {label: e.code for label, e in exported.items()}
        op_times = op_times_ns(sources, values, reps=reps, rounds=kernel_rounds, seed=seed)
        for label, csrc in sources.items():
            pair = measure_c_pair(csrc, onnx_path, batch_sizes=BATCHES, seed=seed, **pair_timing)
            unchained = measure_c(csrc, batch_sizes=(1,), chained=False, n_samples=200 if args.quick else 1000, seed=seed)
            t = op_times[label]
            n = counts(csrc)
            limit = limit_ns(csrc, n, t)
            row_chained_ns = pair.pair(1).c.p50_us * 1e3
            row_unchained_ns = unchained.latency(1).p50_us * 1e3
            check = exported[label].check
            results.append({
                "variant": label,
                "verified": {"rows": check.rows, "max_abs_error": max(check.max_abs_error),
                             "relative_mse": check.relative_mse, "max_relative_mse": check.max_relative_mse},
                "counts_per_row": n,
                "op_times_ns": t,
                "arithmetic_limit_ns": limit,
                "batch1_chained_p50_ns": row_chained_ns,
                "batch1_unchained_p50_ns": row_unchained_ns,
                "chained_over_limit": row_chained_ns / limit,
                "unchained_over_limit": row_unchained_ns / limit,
                "pairs": [p.to_json() for p in pair.pairs],
            })
            print(f"{label}: batch 1 C {row_chained_ns:.0f} ns vs ONNX {pair.pair(1).onnx.p50_us:.2f} us "
                  f"(speed-up {pair.pair(1).speedup:.1f}x), limit {limit:.0f} ns", flush=True)

    payload = {
        "benchmark": "c_vs_onnx",
        "model": "random_model((2, 7, 7, 7, 1), seed=0)",
        "batches": list(BATCHES),
        "settings": {**pair_timing, "kernel_reps": reps, "kernel_rounds": kernel_rounds, "bench_cflags": list(BENCH_CFLAGS),
                     "kernel_cflags": list(KERNEL_FLAGS), "compiler": " ".join(find_c_compiler()), "quick": args.quick},
        "machine": vars(machine_info()),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "c_vs_onnx.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    (RESULTS / "c_vs_onnx.md").write_text(markdown(payload))
    print(f"wrote {RESULTS / 'c_vs_onnx.json'} and {RESULTS / 'c_vs_onnx.md'}")


def markdown(payload: dict) -> str:
    m = payload["machine"]
    lines = [
        "# Generated C vs onnxruntime (issue 5)",
        "",
        f"Model {payload['model']}; {m['processor']}, {m['cpu_count']} vCPU, onnxruntime {m['onnxruntime']} "
        f"(1 intra-op thread, io binding), C built with `{payload['settings']['compiler']} "
        f"{' '.join(payload['settings']['bench_cflags'])}`. One run on a shared, noisy machine; each ratio comes "
        "from one run with C and ONNX rounds interleaved.",
        "",
        "| C variant | batch | ONNX p50 us | C p50 us | C ns/row | speed-up ONNX/C (95% CI) | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in payload["results"]:
        for p in r["pairs"]:
            lo, hi = p["speedup_ci"]
            lines.append(f"| {r['variant']} | {p['batch_size']} | {p['onnx']['p50_us']:.2f} | {p['c']['p50_us']:.3f} | "
                         f"{p['c']['p50_us'] * 1e3 / p['batch_size']:.0f} | {p['speedup']:.1f} ({lo:.1f}-{hi:.1f}) | "
                         f"{p['rounds']} |")
    lines += [
        "",
        "Arithmetic limit per row (scalar throughput of each operation on this core, no dependencies):",
        "",
        "| C variant | MACs | activations | t_mac ns | t_tanh ns | t_sigmoid ns | limit ns | batch 1 chained ns (x limit) "
        "| unchained ns (x limit) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in payload["results"]:
        n, t = r["counts_per_row"], r["op_times_ns"]
        acts = ", ".join(f"{k} {v}" for k, v in n.items() if k in ("relu", "leaky_relu", "tanh", "sigmoid"))
        mac = f"{t['imac']:.2f} (int)" if "imac" in t else f"{t['mac']:.2f}"
        lines.append(
            f"| {r['variant']} | {n['macs']} | {acts} | {mac} | {t.get('tanh', 0):.1f} | {t.get('sigmoid', 0):.1f} | "
            f"{r['arithmetic_limit_ns']:.0f} | {r['batch1_chained_p50_ns']:.0f} ({r['chained_over_limit']:.2f}x) | "
            f"{r['batch1_unchained_p50_ns']:.0f} ({r['unchained_over_limit']:.2f}x) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
