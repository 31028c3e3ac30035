"""Calibration: time probe networks with onnxruntime on this machine and fit the cost model's coefficients.

Probes are small MLPs exported exactly as `swat-edge export` does: targeted ones, each exposing one or two
terms (call floor, node cost, MACs at several shapes and both dtypes, each activation, Split/Concat), plus
random members of the search family so that the terms also add up on odd widths and mixed layers. Each runs
at several batch sizes in interleaved rounds; the statistic is the best round's median, because on a shared
machine whole rounds slow down together (another process on the core) while the fastest repeatable median
is stable from run to run. The fit is non-negative least squares on relative error. No torch.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import __version__
from ..device.cost import (
    TERMS,
    Counts,
    coefficient_vector,
    coefficients_from_vector,
    count_model,
    feature_vector,
)
from ..device.targets import CostCoefficients, Hardware, Provenance, Runtime, TargetProfile, profile_to_toml
from ..errors import SwatError, ToolchainError, UnstableTimingError, UsageError
from ..files import atomic_write_text, check_output_path
from ..model import ACTIVATIONS, SparseMLP, random_model, sample_inputs

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ROUNDS",
    "Probe",
    "Measurement",
    "CalibrationResult",
    "probe_suite",
    "random_family_model",
    "nnls",
    "fit_coefficients",
    "measure_probes",
    "host_hardware",
    "calibrate",
    "profile_name_for",
    "write_profile",
]

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 16, 256)
DEFAULT_ROUNDS = 40
DEFAULT_CALLS_PER_ROUND = 9
DEFAULT_WARMUP_CALLS = 1
DEFAULT_PAUSE_S = 0.2  # between rounds: spreads them over ~10 s so one busy spell cannot cover all of them
REPEAT_TOLERANCE = 0.10  # a round "repeats" the best one when its median is within 10% of it
# A timing is stable when at least this share of rounds (and at least MIN_REPEATS) come within REPEAT_TOLERANCE
# of its best round: the best is then a level the machine returns to, not a fluke. On a shared 2-vCPU machine
# under load only 1 round in 6 was that fast, so the share is low on purpose.
MIN_REPEAT_SHARE = 0.1
MIN_REPEATS = 2
MAX_UNSTABLE_SHARE = 0.25  # more unstable timings than this: the whole calibration is refused
MAX_FIT_RMSPE = 0.20  # a fit worse than this (relative RMS error) is refused
COLUMN_BLOCKS: tuple[int, ...] = (1, 4, 8, 16, 32)  # Gemm column blocks tried (see Runtime.gemm_column_block)
N_RANDOM_PROBES = 30  # random networks from the search family, each in both dtypes

# measure(probes, batch_sizes, rounds) -> (n_probes, n_batch_sizes, rounds) round medians in microseconds
Measure = Callable[[Sequence["Probe"], Sequence[int], int], np.ndarray]


@dataclass(frozen=True)
class Probe:
    """A network timed by calibration; `model` is already compiled (run_passes), `dtype` how it is exported."""

    name: str
    model: SparseMLP
    dtype: str


@dataclass(frozen=True)
class Measurement:
    probe: str
    dtype: str
    batch_size: int
    measured_us: float  # best round median
    predicted_us: float  # by the fitted coefficients
    repeat_share: float  # share of rounds within REPEAT_TOLERANCE of the best


@dataclass(frozen=True)
class CalibrationResult:
    profile: TargetProfile
    fit_rmspe: float
    measurements: tuple[Measurement, ...]
    rounds: int
    duration_s: float


# ---------------------------------------------------------------------------------------------------------
# Probes


def _compiled(model: SparseMLP, dtype: str) -> SparseMLP:
    """The model as `swat-edge export` compiles it for dtype (int8 keeps the input scaling in float)."""
    from ..compile import PIPELINE, PIPELINE_INT8, run_passes

    return run_passes(model, passes=PIPELINE_INT8 if dtype == "int8" else PIPELINE, check_rows=64).model


def probe_suite(*, seed: int = 0, n_random: int = N_RANDOM_PROBES) -> tuple[Probe, ...]:
    """The probe networks: which term each one exposes is in its name."""
    mixed = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")
    specs: list[tuple[str, tuple[int, ...], object, str]] = [
        ("floor 1-1", (1, 1), "identity", "fp32"),
        ("gemm 8-8", (8, 8), "identity", "fp32"),
        ("gemm 32-32", (32, 32), "identity", "fp32"),
        ("gemm 64-64", (64, 64), "identity", "fp32"),
        ("gemm 16-64", (16, 64), "identity", "fp32"),
        ("gemm 64-16", (64, 16), "identity", "fp32"),
        ("gemm 64-1", (64, 1), "identity", "fp32"),
        ("nodes 2x8 relu", (2, 2, 2, 2, 2, 2, 2, 2, 2, 1), "relu", "fp32"),
        ("nodes 4x4 sigmoid", (4, 4, 4, 4, 4, 1), "sigmoid", "fp32"),
        ("mac 8-64-64-1 relu", (8, 64, 64, 1), "relu", "fp32"),
        ("act 8-64-64-1 leaky_relu", (8, 64, 64, 1), "leaky_relu", "fp32"),
        ("act 8-64-64-1 tanh", (8, 64, 64, 1), "tanh", "fp32"),
        ("act 8-64-64-1 sigmoid", (8, 64, 64, 1), "sigmoid", "fp32"),
        ("act 4-32-1 tanh", (4, 32, 1), "tanh", "fp32"),
        ("split 8-64-1 relu+tanh", (8, 64, 1), ("relu", "tanh"), "fp32"),
        ("split 8-64-1 identity+sigmoid", (8, 64, 1), ("identity", "sigmoid"), "fp32"),
        ("split 8-64-1 all", (8, 64, 1), mixed, "fp32"),
        ("split 4-16-1 all", (4, 16, 1), mixed, "fp32"),
        ("split 4-32-32-32-2 all", (4, 32, 32, 32, 2), mixed, "fp32"),
        ("split 2-8-8-8-8-1 relu+leaky_relu", (2, 8, 8, 8, 8, 1), ("relu", "leaky_relu"), "fp32"),
        ("int8 8-64-64-1 sigmoid", (8, 64, 64, 1), "sigmoid", "int8"),
        ("int8 16-64-64-64-1 leaky_relu", (16, 64, 64, 64, 1), "leaky_relu", "int8"),
        ("int8 4-8-8-8-1 tanh", (4, 8, 8, 8, 1), "tanh", "int8"),
        ("int8 8-32-32-1 relu", (8, 32, 32, 1), "relu", "int8"),
        ("int8 8-64-1 relu", (8, 64, 1), "relu", "int8"),
        ("int8 8-64-1 all", (8, 64, 1), mixed, "int8"),
        ("int8 4-32-32-32-2 all", (4, 32, 32, 32, 2), mixed, "int8"),
    ]
    probes = []
    for i, (name, widths, acts, dtype) in enumerate(specs):
        model = random_model(widths, activations=acts, seed=seed + i, normalization=False)  # type: ignore[arg-type]
        probes.append(Probe(name=name, model=_compiled(model, dtype), dtype=dtype))
    # Random members of the family the search explores: the targeted probes pin each term, these make sure the
    # terms add up on networks with odd widths and mixed layers (seeded apart from the accuracy benchmark's).
    rng = np.random.default_rng(10_000 + seed)
    for k in range(n_random):
        model = random_family_model(rng, seed=20_000 + seed + k)
        for dtype in ("fp32", "int8"):
            compiled = _compiled(model, dtype)
            if dtype == "int8" and not compiled.hidden:
                continue  # nothing to quantize: the last layer stays float
            widths = "-".join(map(str, compiled.widths))
            probes.append(Probe(name=f"random {widths} {dtype}", model=compiled, dtype=dtype))
    return tuple(probes)


def random_family_model(rng: np.random.Generator, *, seed: int, max_depth: int = 4, max_width: int = 64) -> SparseMLP:
    """A random network like those the search produces: depth 1..max_depth, widths 1..max_width, 1-8 inputs,
    1-4 outputs, a random subset of activations per neuron (or one per layer), weight sparsity, gated-off neurons."""
    depth = int(rng.integers(1, max_depth + 1))
    widths = [int(rng.integers(1, 9))] + [int(rng.integers(1, max_width + 1)) for _ in range(depth)]
    widths.append(int(rng.integers(1, 5)))
    acts = tuple(str(a) for a in rng.choice(list(ACTIVATIONS), size=int(rng.integers(1, 6)), replace=False))
    return random_model(
        widths,
        activations=acts,
        per_layer=bool(rng.random() < 0.3),
        sparsity=float(rng.choice([0.0, 0.3, 0.6])),
        dead_fraction=float(rng.choice([0.0, 0.2])),
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------------------
# Fit


def nnls(a: np.ndarray, b: np.ndarray, *, max_iter: int | None = None) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0 (Lawson-Hanson active set). Columns of zeros get 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m, n = a.shape
    norms = np.linalg.norm(a, axis=0)
    usable = norms > 0
    scaled = np.where(usable, a / np.where(usable, norms, 1.0), 0.0)  # unit columns: better conditioning
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 1e-12 * max(1.0, float(np.abs(b).max(initial=0.0))) * max(m, n)
    for _ in range(max_iter or 3 * n + 10):
        w = scaled.T @ (b - scaled @ x)
        candidates = ~passive & usable
        if not candidates.any() or w[candidates].max() <= tol:
            break
        passive[int(np.argmax(np.where(candidates, w, -np.inf)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(scaled[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            blocked = passive & (z <= 0)
            alpha = float(np.min(x[blocked] / (x[blocked] - z[blocked])))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return np.where(usable, x / np.where(usable, norms, 1.0), 0.0)


def fit_coefficients(features: np.ndarray, latencies_us: np.ndarray) -> tuple[CostCoefficients, np.ndarray]:
    """Non-negative coefficients minimising the relative error of features @ coefficients vs latencies.

    features: (m, len(TERMS)) rows of cost.feature_vector; returns (coefficients, relative residuals (m,)).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(latencies_us, dtype=np.float64)
    if x.ndim != 2 or x.shape != (len(y), len(TERMS)):
        raise ValueError(f"bug: features {x.shape} do not match {len(y)} latencies x {len(TERMS)} terms")
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise UnstableTimingError("calibration timings contain non-positive or non-finite values; nothing written")
    coef = nnls(x / y[:, None], np.ones_like(y))  # relative error: each timing counts the same
    return coefficients_from_vector(coef), x @ coef / y - 1.0


# ---------------------------------------------------------------------------------------------------------
# Timing with onnxruntime (what `swat-edge bench` does by default: 1 thread, io-binding)


def _export(probe: Probe) -> bytes:
    """The ONNX bytes `swat-edge export` writes for the probe (compile, onnxsim, verify, int8 quantization)."""
    import tempfile

    from ..export.pipeline import export_onnx_file

    with tempfile.TemporaryDirectory(prefix="swat-edge-calibrate-") as tmp:
        path = Path(tmp) / ("probe.int8.onnx" if probe.dtype == "int8" else "probe.onnx")
        export_onnx_file(
            probe.model,
            path,
            quantization="static" if probe.dtype == "int8" else "none",
            calibration_rows=sample_inputs(probe.model, 256, seed=0),
        )
        return path.read_bytes()


def _make_session(data: bytes):
    from .bench import make_session

    return make_session(data)


def _bound_call(session, x: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    name = session.get_inputs()[0].name
    first = session.run(None, {name: x})
    binding = session.io_binding()
    x_value = ort.OrtValue.ortvalue_from_numpy(x)
    binding.bind_ortvalue_input(name, x_value)
    outs = [ort.OrtValue.ortvalue_from_shape_and_type(list(y.shape), y.dtype.type) for y in first]
    for out, value in zip(session.get_outputs(), outs):
        binding.bind_ortvalue_output(out.name, value)
    keep_alive = (x, x_value, outs)

    def call() -> object:
        session.run_with_iobinding(binding)
        return keep_alive

    return call


def measure_probes(
    probes: Sequence[Probe],
    batch_sizes: Sequence[int],
    rounds: int,
    *,
    calls_per_round: int = DEFAULT_CALLS_PER_ROUND,
    warmup_calls: int = DEFAULT_WARMUP_CALLS,
    pause_s: float = DEFAULT_PAUSE_S,
    seed: int = 0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> np.ndarray:
    """Round medians in microseconds, shape (probes, batch sizes, rounds); every probe runs in every round."""
    calls = []
    for probe in probes:
        try:
            data = _export(probe)
            session = _make_session(data)
        except SwatError as exc:
            raise ToolchainError(f"calibration cannot create an onnxruntime session for probe {probe.name!r}: {exc}") from None
        for j, batch in enumerate(batch_sizes):
            x = np.random.default_rng(seed).standard_normal((batch, probe.model.n_inputs)).astype(np.float32)
            try:
                calls.append((len(calls) // len(batch_sizes), j, _bound_call(session, x)))
            except Exception as exc:  # onnxruntime raises its own error types
                raise ToolchainError(
                    f"calibration cannot run probe {probe.name!r} at batch {batch} with onnxruntime ({exc})"
                ) from None
    out = np.zeros((len(probes), len(batch_sizes), rounds))
    order = np.random.default_rng(seed).permutation(len(calls))
    times = np.zeros(calls_per_round, dtype=np.int64)
    for r in range(rounds):
        if r and pause_s > 0:
            time.sleep(pause_s)
        for k in order if r % 2 == 0 else order[::-1]:
            i, j, call = calls[k]
            for _ in range(warmup_calls):  # re-warm caches after the other probes ran
                call()
            for t in range(calls_per_round):
                t0 = clock()
                call()
                times[t] = clock() - t0
            out[i, j, r] = np.median(times) / 1e3
    return out


# ---------------------------------------------------------------------------------------------------------
# The machine


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if ":" in line:
                    key, value = (s.strip() for s in line.split(":", 1))
                    info.setdefault(key.lower(), value)
    except OSError:
        pass
    return info


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cache_kib() -> dict[int, int]:
    """Data/unified cache sizes by level from sysfs (per instance seen by cpu0)."""
    sizes: dict[int, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text().strip())
            size = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        factor = 1024 if size.endswith("M") else 1
        try:
            sizes[level] = int(size.rstrip("KM")) * factor
        except ValueError:
            continue
    return sizes


def host_hardware() -> Hardware:
    """What this machine is, from /proc/cpuinfo, sysfs and the platform module (unknowns left out)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    machine = platform.machine() or "unknown"
    if "avx512f" in flags:
        simd = 512
    elif "avx2" in flags or "avx" in flags:
        simd = 256
    elif flags & {"sse2", "asimd", "neon"}:
        simd = 128
    else:
        simd = 0
    if flags & {"avx512_vnni", "avx_vnni", "avx512vnni"}:
        fast = "vnni"
    elif "avx2" in flags:
        fast = "u8s8"
    elif "asimddp" in flags:
        fast = "dotprod"
    else:
        fast = "none"
    max_khz = _read_int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
    clock = max_khz / 1000.0 if max_khz else None
    if clock is None and "cpu mhz" in info:
        try:
            clock = float(info["cpu mhz"])
        except ValueError:
            clock = None
    caches = _cache_kib()
    ram_kib = None
    try:
        ram_kib = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024)
    except (ValueError, OSError, AttributeError):
        pass
    cpu = info.get("model name") or info.get("hardware") or platform.processor() or "unknown"
    return Hardware(
        isa=machine,
        cpu=cpu,
        cores=os.cpu_count() or 1,
        simd_bits=simd,
        int8_fast_path=fast,
        clock_mhz=None if clock is None else round(clock, 1),
        l1d_kib=caches.get(1),
        l2_kib=caches.get(2),
        l3_kib=caches.get(3),
        ram_kib=ram_kib,
    )


# ---------------------------------------------------------------------------------------------------------
# Calibration


def _check_stability(rounds_us: np.ndarray) -> np.ndarray:
    """Per timing: the share of rounds whose median is within REPEAT_TOLERANCE of the best round's."""
    best = rounds_us.min(axis=-1, keepdims=True)
    return np.mean(rounds_us <= best * (1.0 + REPEAT_TOLERANCE), axis=-1)


def calibrate(
    *,
    name: str = "host",
    description: str | None = None,
    rounds: int = DEFAULT_ROUNDS,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    seed: int = 0,
    measure: Measure | None = None,
    probes: Sequence[Probe] | None = None,
    max_fit_rmspe: float = MAX_FIT_RMSPE,
) -> CalibrationResult:
    """Time the probe suite here, fit the coefficients, and return a `measured` profile (nothing is written).

    Raises ToolchainError when onnxruntime cannot create or run a session, UnstableTimingError when more
    than MAX_UNSTABLE_SHARE of the timings never repeat or the fit's relative RMS error exceeds max_fit_rmspe.
    `measure` replaces the onnxruntime timing (tests inject synthetic timings through it).
    """
    if rounds < 3:
        raise UsageError(f"rounds={rounds}: need at least 3 rounds to tell a stable timing from a fluke")
    sizes = tuple(dict.fromkeys(int(b) for b in batch_sizes))
    if not sizes or any(b < 1 for b in sizes):
        raise UsageError(f"batch sizes must be integers >= 1, got {list(batch_sizes)}")
    start = time.perf_counter()
    suite = tuple(probes) if probes is not None else probe_suite(seed=seed)
    runner = measure or (lambda p, b, r: measure_probes(p, b, r, seed=seed))
    rounds_us = np.asarray(runner(suite, sizes, rounds), dtype=np.float64)
    if rounds_us.shape != (len(suite), len(sizes), rounds):
        raise ValueError(f"bug: timings of shape {rounds_us.shape}, expected {(len(suite), len(sizes), rounds)}")
    if not (np.all(np.isfinite(rounds_us)) and np.all(rounds_us > 0)):
        raise UnstableTimingError("calibration got non-positive or non-finite timings; nothing written")

    repeat = _check_stability(rounds_us)
    unstable = int(np.sum((repeat < MIN_REPEAT_SHARE) | (repeat * rounds < MIN_REPEATS)))
    if unstable > MAX_UNSTABLE_SHARE * repeat.size:
        raise UnstableTimingError(
            f"timings too unstable to calibrate: {unstable} of {repeat.size} probe timings never came within "
            f"{REPEAT_TOLERANCE:.0%} of their best in {MIN_REPEAT_SHARE:.0%} of {rounds} rounds (is the machine "
            "busy or throttling?); nothing written; rerun on an idle machine or with more --rounds"
        )

    best = rounds_us.min(axis=-1)
    latencies = best.reshape(-1)
    fits = []
    for block in COLUMN_BLOCKS:  # the kernel's column block is discrete: fit each, keep the best
        counts: list[Counts] = [count_model(p.model, dtype=p.dtype, gemm_column_block=block) for p in suite]
        features = np.array([feature_vector(counts[i], b) for i in range(len(suite)) for b in sizes])
        cost, residuals = fit_coefficients(features, latencies)
        fits.append((float(np.sqrt(np.mean(residuals**2))), block, cost, features))
    rmspe, block, cost, features = min(fits, key=lambda fit: fit[0])
    # Four significant digits: the fit is not more precise than that, and the profile stays readable.
    cost = coefficients_from_vector([float(f"{v:.4g}") for v in coefficient_vector(cost)])
    if not rmspe <= max_fit_rmspe:
        raise UnstableTimingError(
            f"calibration fit too poor: relative RMS error {rmspe:.1%} over {len(latencies)} timings exceeds "
            f"{max_fit_rmspe:.0%} (noisy timings, or a runtime that behaves unlike the cost model); nothing written"
        )

    predicted = features @ coefficient_vector(cost)
    measurements = tuple(
        Measurement(
            probe=suite[i].name,
            dtype=suite[i].dtype,
            batch_size=b,
            measured_us=float(best[i, j]),
            predicted_us=float(predicted[i * len(sizes) + j]),
            repeat_share=float(repeat[i, j]),
        )
        for i in range(len(suite))
        for j, b in enumerate(sizes)
    )
    profile = _measured_profile(name, description, cost, block, rmspe, len(latencies), rounds, sizes, len(suite))
    return CalibrationResult(
        profile=profile,
        fit_rmspe=rmspe,
        measurements=measurements,
        rounds=rounds,
        duration_s=time.perf_counter() - start,
    )


def _measured_profile(
    name: str,
    description: str | None,
    cost: CostCoefficients,
    column_block: int,
    rmspe: float,
    n_measurements: int,
    rounds: int,
    sizes: tuple[int, ...],
    n_probes: int,
) -> TargetProfile:
    import onnxruntime as ort

    hardware = host_hardware()
    machine = f"{hardware.cpu}, {hardware.cores} logical cores, {platform.system()} {platform.release()} ({platform.node() or 'unknown host'})"
    return TargetProfile(
        name=name,
        description=description or f"this machine ({hardware.cpu}), onnxruntime {ort.__version__}, 1 thread",
        hardware=hardware,
        runtime=Runtime(
            name="onnxruntime",
            version=ort.__version__,
            intra_op_threads=1,
            inter_op_threads=1,
            gemm_column_block=column_block,
        ),
        # Measured coefficients compare both dtypes on this machine, so the cost model can decide per network.
        int8_policy="when_faster",
        cost=cost,
        provenance=Provenance(
            kind="measured",
            method=(
                f"swat-edge {__version__} calibrate: {n_probes} probe networks x batch sizes "
                f"{', '.join(map(str, sizes))}, {rounds} interleaved rounds, best round median, "
                "non-negative least squares on relative error"
            ),
            date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            machine=machine,
            fit_rmspe=round(rmspe, 4),
            measurements=n_measurements,
        ),
    )


# ---------------------------------------------------------------------------------------------------------
# The profile file


def profile_name_for(out: str | os.PathLike, *, name: str | None, force: bool) -> str:
    """The target name of a profile to be written to `out` (default: the file name without .toml).

    Checks `out` first (a .toml file, not clobbered without force): refuse before ~30 s of timing, not after.
    """
    out = Path(out)
    if out.suffix.lower() != ".toml":
        raise UsageError(f"--out {out}: a target profile is a .toml file; name it e.g. {out.with_suffix('.toml')}")
    check_output_path(out, force=force)
    target_name = name if name is not None else out.stem
    if not target_name.strip():
        raise UsageError("--name: give a non-empty target name")
    return target_name


def write_profile(result: CalibrationResult, out: str | os.PathLike, *, force: bool) -> Path:
    """Write the calibrated profile as TOML, headed by comments that say where it came from."""
    comments = [
        f"Target profile written by `swat-edge calibrate` on {result.profile.provenance.date}.",
        "Measured coefficients; rerun calibrate to refresh them (see `swat-edge targets show PATH`).",
    ]
    return atomic_write_text(out, profile_to_toml(result.profile, comments=comments), force=force)
