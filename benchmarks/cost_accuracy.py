"""Cost-model accuracy (issue 3): predicted vs measured latency of random networks, host profile calibrated in this run.

    .venv/bin/python benchmarks/cost_accuracy.py [--networks 240] [--passes 8] [--quick]

1. Calibrate this machine (swat_edge.measure.calibrate.calibrate, default settings) -> a `measured` host profile,
   written to benchmarks/results/cost_accuracy_host.toml (the committed targets/host.toml is left alone).
2. Draw --networks random networks of the search family (depth 1-4, widths 1-64, 1-8 inputs, 1-4 outputs,
   mixed or per-layer activations, 0/30/60% zero weights, 0/20% gated-off neurons; seeds disjoint from the
   calibration's random probes) and export each as `swat-edge export` does (compile passes, onnxsim, checked
   against the reference forward pass), in fp32 and in static int8 (networks with a hidden layer).
3. Measure each with swat_edge.measure.bench.measure (io-binding, 1 thread, p50) at batch 1 and 256, in --passes
   separate sweeps over all networks. On a shared machine, whenever another process runs on the other vCPU
   (an SMT sibling here) every timing is ~1.6x slow, for seconds to minutes; so the reference is the lowest
   p50 of the sweeps, the first sweep's p50 alone is reported too, and /proc/stat is sampled around every
   measurement: figures over "quiet" measurements only (other processes using < 0.25 CPU meanwhile) show
   the model's error apart from that noise.
4. Predict with swat_edge.device.cost.estimate(model, host profile, dtype) and report RMSPE and the share within
   +-10% per dtype and batch size, where the misses are, and which coefficients a refit on these networks
   moves (a diagnostic of which terms miss; the headline figures use the calibration only). The refit's accuracy
   is scored out of sample: the coefficients are fitted on half of the networks (even indices) and scored on the
   other half, then the reverse (each model of a network, fp32 and int8, both batch sizes, in the same half); the
   in-sample figure (fitted and scored on all networks) is reported beside it.
Writes benchmarks/results/cost_accuracy.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swat_edge.compile import run_passes  # noqa: E402
from swat_edge.device.cost import TERMS, coefficient_vector, count_for, estimate, feature_vector  # noqa: E402
from swat_edge.device.targets import profile_to_toml  # noqa: E402
from swat_edge.export.pipeline import export_onnx_file  # noqa: E402
from swat_edge.files import atomic_write_text  # noqa: E402
from swat_edge.measure.bench import machine_info, measure  # noqa: E402
from swat_edge.measure.calibrate import calibrate, nnls, random_family_model  # noqa: E402
from swat_edge.model import sample_inputs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BATCHES = (1, 256)
SEED = 1  # random_family_model seeds 1_000_000 + k: disjoint from calibration's 20_000 + k


QUIET_LOAD = 0.25  # CPUs used by other processes during a measurement, below which it counts as quiet


def _busy_seconds() -> float:
    """CPU seconds all processes have used (all CPUs), from /proc/stat; NaN where it does not exist."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclasses.dataclass
class Case:
    index: int
    dtype: str
    widths: tuple[int, ...]  # after compilation
    activation_sets: list[list[str]]  # per compiled hidden layer
    path: Path
    model: object  # compiled SparseMLP
    p50_us: dict[int, list[float]] = dataclasses.field(default_factory=dict)  # batch -> p50 per sweep
    other_load: list[float] = dataclasses.field(default_factory=list)  # CPUs others used, per sweep


def make_cases(n_networks: int, folder: Path) -> list[Case]:
    rng = np.random.default_rng(SEED)
    cases = []
    for k in range(n_networks):
        model = random_family_model(rng, seed=1_000_000 + k)
        rows = sample_inputs(model, 256, seed=k)
        has_hidden = bool(run_passes(model, check_rows=32).model.hidden)  # compiling may fuse them all away
        for dtype in ("fp32", "int8"):
            if dtype == "int8" and not has_hidden:
                continue  # nothing to quantize (the last layer stays float)
            path = folder / f"net{k}.{'int8.onnx' if dtype == 'int8' else 'onnx'}"
            result = export_onnx_file(
                model, path, quantization="static" if dtype == "int8" else "none", calibration_rows=rows
            )
            compiled = result.compiled.model
            cases.append(
                Case(
                    index=k,
                    dtype=dtype,
                    widths=compiled.widths,
                    activation_sets=[sorted(set(layer.activations)) for layer in compiled.hidden],
                    path=path,
                    model=compiled,
                )
            )
    return cases


def measure_all(cases: list[Case], passes: int, min_runs: int, min_time_s: float) -> None:
    for sweep in range(passes):
        start = time.perf_counter()
        order = cases if sweep % 2 == 0 else cases[::-1]  # alternate the order: no case always runs first
        for case in order:
            busy0, own0, wall0 = _busy_seconds(), _own_seconds(), time.perf_counter()
            result = measure(case.path, batch_sizes=BATCHES, warmup_runs=20, min_runs=min_runs,
                             min_time_s=min_time_s, measure_memory=False)
            wall = time.perf_counter() - wall0
            others = (_busy_seconds() - busy0) - (_own_seconds() - own0)
            case.other_load.append(max(others, 0.0) / wall)
            for stats in result.latencies:
                case.p50_us.setdefault(stats.batch_size, []).append(stats.p50_us)
        print(f"sweep {sweep + 1}/{passes}: {len(cases)} models in {time.perf_counter() - start:.0f} s", flush=True)


def summarize(errors: np.ndarray) -> dict[str, float]:
    e = np.asarray(errors, dtype=np.float64)
    return {
        "n": int(e.size),
        "rmspe": float(np.sqrt(np.mean(e**2))),
        "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
        "within_20pct": float(np.mean(np.abs(e) <= 0.20)),
        "median_error": float(np.median(e)),
        "p90_abs_error": float(np.percentile(np.abs(e), 90)),
    }


def structure_tags(case: Case) -> list[str]:
    tags = [f"depth {len(case.widths) - 2}"]
    if any(len(s) > 1 for s in case.activation_sets):
        tags.append("mixed layer (Split/Concat)")
    else:
        tags.append("one activation per layer")
    if case.dtype == "int8" and any(s == ["relu"] for s in case.activation_sets):
        tags.append("int8 ReLU-only layer")
    if max(case.widths[1:-1], default=0) <= 8:
        tags.append("all hidden widths <= 8")
    return tags


def refit_errors(feats: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Relative errors of a non-negative least-squares refit of every coefficient (relative error minimised)."""
    coef = nnls(feats / lat[:, None], np.ones_like(lat))
    return feats @ coef / lat - 1.0


def refit_out_of_sample(feats: np.ndarray, lat: np.ndarray, networks: np.ndarray) -> np.ndarray:
    """Two-fold by network: fit on the even-indexed networks, score the odd ones, and the reverse; the errors of
    every row, each scored by the coefficients fitted on the other half."""
    errors = np.empty_like(lat)
    for held in (0, 1):
        fit, score = networks % 2 != held, networks % 2 == held
        coef = nnls(feats[fit] / lat[fit, None], np.ones(int(fit.sum())))
        errors[score] = feats[score] @ coef / lat[score] - 1.0
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=240)
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--min-runs", type=int, default=100)
    parser.add_argument("--min-time", type=float, default=0.025, help="seconds per model and batch size per sweep")
    parser.add_argument("--quick", action="store_true", help="20 networks, 1 sweep, short calibration (smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.networks, args.passes, args.min_runs, args.min_time = 20, 1, 50, 0.01

    t0 = time.perf_counter()
    calibration = calibrate(name="host", rounds=16 if args.quick else 40)
    profile = calibration.profile
    print(f"calibrated in {calibration.duration_s:.0f} s: fit error {calibration.fit_rmspe:.1%}", flush=True)

    with tempfile.TemporaryDirectory(prefix="swat-edge-cost-accuracy-") as tmp:
        cases = make_cases(args.networks, Path(tmp))
        print(f"exported {len(cases)} models from {args.networks} networks", flush=True)
        measure_all(cases, args.passes, args.min_runs, args.min_time)

    rows = []
    for case in cases:
        est = estimate(case.model, profile, dtype=case.dtype, batch_sizes=BATCHES, compile=False)
        for b, predicted in zip(BATCHES, est.latency_us):
            sweeps = case.p50_us[b]
            quiet = [t for t, load in zip(sweeps, case.other_load) if load < QUIET_LOAD]
            rows.append(
                {
                    "network": case.index,
                    "dtype": case.dtype,
                    "batch": b,
                    "widths": list(case.widths),
                    "activations": case.activation_sets,
                    "tags": structure_tags(case),
                    "predicted_us": predicted,
                    "measured_us": min(sweeps),
                    "first_sweep_us": sweeps[0],
                    "sweeps_us": sweeps,
                    "other_load": case.other_load,
                    "quiet_us": min(quiet) if quiet else None,
                    "error": predicted / min(sweeps) - 1.0,
                    "error_quiet": predicted / min(quiet) - 1.0 if quiet else None,
                    "error_first_sweep": predicted / sweeps[0] - 1.0,
                }
            )

    groups = {}
    for dtype in ("fp32", "int8", "all"):
        for b in BATCHES:
            sel = [r for r in rows if r["batch"] == b and (dtype == "all" or r["dtype"] == dtype)]
            quiet = [r["error_quiet"] for r in sel if r["error_quiet"] is not None]
            groups[f"{dtype} batch {b}"] = {
                "best_of_sweeps": summarize(np.array([r["error"] for r in sel])),
                "first_sweep": summarize(np.array([r["error_first_sweep"] for r in sel])),
                "quiet_only": summarize(np.array(quiet)) if quiet else None,
            }
    tag_names = sorted({t for r in rows for t in r["tags"]})
    by_tag = {}
    for tag in tag_names:
        for b in BATCHES:
            sel = [r["error"] for r in rows if r["batch"] == b and tag in r["tags"]]
            if sel:
                by_tag[f"{tag}, batch {b}"] = summarize(np.array(sel))

    # Diagnostic: refit every coefficient on the measured networks (out of sample: two halves of the networks;
    # and in sample) and compare the coefficients with the calibration's.
    feats, lat, networks = [], [], []
    for case in cases:
        counts = count_for(case.model, profile, case.dtype)
        for b in BATCHES:
            feats.append(feature_vector(counts, b))
            lat.append(min(case.p50_us[b]))
            networks.append(case.index)
    feats_a, lat_a = np.array(feats), np.array(lat)
    refit = nnls(feats_a / lat_a[:, None], np.ones_like(lat_a))
    refit_err = refit_errors(feats_a, lat_a)
    held_out_err = refit_out_of_sample(feats_a, lat_a, np.array(networks))
    calibrated = coefficient_vector(profile.cost)
    term_table = [
        {"term": t, "calibrated": float(c), "refit_on_benchmark": float(r),
         "share_of_predicted_latency": float(np.mean((feats_a[:, i] * c) / (feats_a @ calibrated)))}
        for i, (t, c, r) in enumerate(zip(TERMS, calibrated, refit))
    ]

    payload = {
        "command": "python benchmarks/cost_accuracy.py" + (" --quick" if args.quick else ""),
        "machine": dataclasses.asdict(machine_info()),
        "note": "2 vCPUs shared with other engineers' work while this ran: a timing taken while another process "
                "runs is ~1.6x slow; the reference latency is the lowest bench p50 of the sweeps, and 'quiet' "
                f"figures use only sweeps during which other processes used < {QUIET_LOAD} CPU",
        "quiet_measurements": float(np.mean([load < QUIET_LOAD for c in cases for load in c.other_load])),
        "settings": {"networks": args.networks, "models": len(cases), "sweeps": args.passes,
                     "batch_sizes": list(BATCHES), "min_runs": args.min_runs, "min_time_s": args.min_time},
        "calibration": {"fit_rmspe": calibration.fit_rmspe, "duration_s": calibration.duration_s,
                        "timings": len(calibration.measurements),
                        "gemm_column_block": profile.runtime.gemm_column_block},
        "groups": groups,
        "by_structure": by_tag,
        "refit_in_sample": {"within_10pct": float(np.mean(np.abs(refit_err) <= 0.1)),
                            "rmspe": float(np.sqrt(np.mean(refit_err**2)))},
        "refit_out_of_sample": {"within_10pct": float(np.mean(np.abs(held_out_err) <= 0.1)),
                                "rmspe": float(np.sqrt(np.mean(held_out_err**2))),
                                "halves": "fitted on the even-indexed networks, scored on the odd ones, and the reverse"},
        "terms": term_table,
        "rows": rows,
        "duration_s": time.perf_counter() - t0,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    atomic_write_text(args.out / f"cost_accuracy_host{suffix}.toml",
                      profile_to_toml(profile, comments=["Host profile calibrated by benchmarks/cost_accuracy.py."]),
                      force=True)
    # One row per line, 5 significant digits: the file stays reviewable and a few hundred KB.
    rows_text = ",\n".join(json.dumps(_round(r), separators=(",", ":")) for r in payload.pop("rows"))
    head = json.dumps(_round(payload), indent=1)
    atomic_write_text(args.out / f"cost_accuracy{suffix}.json", head[:-2] + ',\n "rows": [\n' + rows_text + "\n]}\n",
                      force=True)
    atomic_write_text(args.out / f"cost_accuracy{suffix}.md", markdown(payload), force=True)
    print(markdown(payload))


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _out_of_sample(p: dict) -> str:
    held = p.get("refit_out_of_sample")
    if held is None:  # results written before the out-of-sample figure existed
        return "no figure (rerun this benchmark)"
    return f"{held['within_10pct']:.1%} within +-10% (RMSPE {held['rmspe']:.1%})"


def markdown(p: dict) -> str:
    s = p["settings"]
    lines = [
        "# Cost model accuracy on this machine (host profile calibrated in the same run)",
        "",
        f"`{p['command']}`: {s['networks']} random networks, {s['models']} exported models (fp32 + int8), "
        f"measured with `swat_edge.measure.bench.measure` (p50, io-binding, 1 thread) in {s['sweeps']} sweeps; "
        f"machine: {p['machine']['processor']}, {p['machine']['cpu_count']} vCPUs, onnxruntime "
        f"{p['machine']['onnxruntime']}. {p['note']}.",
        f"Calibration: fit error {p['calibration']['fit_rmspe']:.1%} over {p['calibration']['timings']} timings "
        f"in {p['calibration']['duration_s']:.0f} s.",
        "",
        f"{p['quiet_measurements']:.0%} of the measurements were quiet.",
        "",
        "| models | batch | n | RMSPE | within +-10% | within +-20% | median error | within +-10% (first sweep only) "
        "| quiet only: n | quiet only: RMSPE | quiet only: within +-10% |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in p["groups"].items():
        dtype, _, batch = name.split(" ")
        b, f, q = g["best_of_sweeps"], g["first_sweep"], g["quiet_only"]
        quiet = f"{q['n']} | {q['rmspe']:.1%} | {q['within_10pct']:.1%}" if q else "0 | - | -"
        lines.append(
            f"| {dtype} | {batch} | {b['n']} | {b['rmspe']:.1%} | {b['within_10pct']:.1%} | {b['within_20pct']:.1%} | "
            f"{b['median_error']:+.1%} | {f['within_10pct']:.1%} | {quiet} |"
        )
    lines += ["", "Misses by structure (best of sweeps):", "", "| structure | n | RMSPE | within +-10% | median error |",
              "|---|---|---|---|---|"]
    for name, g in p["by_structure"].items():
        lines.append(f"| {name} | {g['n']} | {g['rmspe']:.1%} | {g['within_10pct']:.1%} | {g['median_error']:+.1%} |")
    lines += [
        "",
        "Diagnostic: refitting all coefficients on measured networks, scored out of sample (fitted on half of the "
        f"networks, scored on the other half, both ways), puts {_out_of_sample(p)}; fitted and scored on the same "
        f"networks (in sample) {p['refit_in_sample']['within_10pct']:.1%} (RMSPE {p['refit_in_sample']['rmspe']:.1%}). "
        "Terms whose refit (on all networks) differs most from the calibration are where the calibration misses:",
        "",
        "| term | calibrated | refit on benchmark | share of predicted latency |",
        "|---|---|---|---|",
    ]
    for t in p["terms"]:
        lines.append(f"| {t['term']} | {t['calibrated']:.4g} | {t['refit_on_benchmark']:.4g} | "
                     f"{t['share_of_predicted_latency']:.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
