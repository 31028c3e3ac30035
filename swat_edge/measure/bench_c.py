"""Latency of generated C: compile a timing harness with the host compiler and report percentiles like bench.py.

The harness (harness.c beside this module; C99 + POSIX clock_gettime(CLOCK_MONOTONIC)) links the generated
file as a separate translation unit, so the compiler cannot inline the model into the loop or drop the calls;
outputs also flow into a volatile sink. One call takes tens of nanoseconds, far below what a clock read
resolves well, so each timing sample is the mean of `calls_per_sample` back-to-back calls, with
calls_per_sample doubled during warm-up until one sample lasts at least `target_sample_us`. Percentiles are
over samples (per-call means), so they show drift and interference between samples, not the spread of single
calls.

chained=True (the default) makes each call's input depend on the previous call's output (in[0] += 0 * out[0]),
so calls cannot overlap in the CPU's out-of-order window: the figure is a latency, a little pessimistic
(the store-to-load chain adds a few cycles). chained=False times independent calls: a throughput figure.
Inputs are seeded standard-normal float32 rows, as in bench.py, unless `rows` are given (tanh and sigmoid
cost can depend on the input range; pass real rows for representative figures).

measure_c_pair times the C code against an ONNX model in one run. The harness is a separate process, so the
two cannot alternate call by call as bench.measure_pair does; they alternate in *rounds* instead: one harness
run (`samples_per_round` samples), then onnxruntime for about as long, with the order flipped every round
(C ONNX, ONNX C, ...). The ratio is the median over rounds of (C round median / ONNX round median), with
bench.ratio_ci's bootstrap interval over round pairs, so slow drift of a shared machine cancels in each pair.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..export.c import CSource
from ..export.cc import compile_c, find_c_compiler, run_program
from .bench import (
    DEFAULT_BLOCK_RUNS,
    DEFAULT_RESAMPLES,
    DEFAULT_WARMUP_RUNS,
    BenchModel,
    LatencyStats,
    MachineInfo,
    ModelInfo,
    at_batch,
    bench_envelope,
    latency_stats,
    machine_info,
    ratio_ci,
    time_calls,
)

__all__ = [
    "DEFAULT_N_SAMPLES",
    "DEFAULT_TARGET_SAMPLE_US",
    "DEFAULT_MIN_ROUNDS",
    "DEFAULT_MIN_TIME_S",
    "DEFAULT_SAMPLES_PER_ROUND",
    "BENCH_CFLAGS",
    "HARNESS_FILE",
    "PAIR_METHOD",
    "CBenchSettings",
    "CSourceInfo",
    "CBenchResult",
    "CPairSettings",
    "CPairStats",
    "CPairResult",
    "harness_source",
    "harness_defines",
    "measure_c",
    "measure_c_pair",
]

DEFAULT_N_SAMPLES = 1000
DEFAULT_TARGET_SAMPLE_US = 100.0
# Pairs: at least this many rounds and this long per batch size (about bench.py's default time per batch size).
DEFAULT_MIN_ROUNDS = 20
DEFAULT_MIN_TIME_S = 0.5
DEFAULT_SAMPLES_PER_ROUND = 20
# What a user building the file would typically write; no -march=native, so the figure is portable x86-64.
BENCH_CFLAGS: tuple[str, ...] = ("-std=c99", "-O2")
# The C timing harness, a source file beside this module; harness_defines says which model it times.
HARNESS_FILE = "harness.c"
PAIR_METHOD = (
    "rounds alternate between the C timing harness (a separate process) and onnxruntime for about as long, "
    "order flipped every round; ratio = median over rounds of C/ONNX round medians, bootstrap 95% CI over rounds; "
    "C samples are means of back-to-back calls, ONNX samples single calls (compare medians, not p99s)"
)
_WARMUP_SAMPLES = 50
# A pair round starts a fresh harness process with calls_per_sample already known: a short warm-up suffices.
_ROUND_WARMUP_SAMPLES = 5
_RUN_TIMEOUT_S = 300


@dataclass(frozen=True)
class CBenchSettings:
    batch_sizes: tuple[int, ...]
    n_samples: int
    target_sample_us: float
    chained: bool
    compiler: str
    cflags: tuple[str, ...]
    seed: int
    rows_source: str

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch_sizes"] = list(self.batch_sizes)
        out["cflags"] = list(self.cflags)
        return out


@dataclass(frozen=True)
class CSourceInfo:
    prefix: str
    dtype: str
    fast_math: bool
    n_inputs: int
    n_outputs: int
    model_sha256: str
    macs: int

    @classmethod
    def of(cls, csrc: CSource) -> "CSourceInfo":
        return cls(
            prefix=csrc.prefix,
            dtype=csrc.dtype,
            fast_math=csrc.fast_math,
            n_inputs=csrc.n_inputs,
            n_outputs=csrc.n_outputs,
            model_sha256=csrc.model_hash,
            macs=csrc.macs,
        )


@dataclass(frozen=True)
class CBenchResult:
    """Per batch size: LatencyStats of one call (batch_size rows); runs = timing samples (see module doc)."""

    source: CSourceInfo
    latencies: tuple[LatencyStats, ...]
    calls_per_sample: tuple[int, ...]  # aligned with latencies
    settings: CBenchSettings
    machine: MachineInfo

    def latency(self, batch_size: int) -> LatencyStats:
        return at_batch(self.latencies, batch_size)

    def row_latency_us(self, batch_size: int) -> tuple[float, float, float]:
        """(p50, p90, p99) per row in microseconds: call latency / batch size."""
        s = self.latency(batch_size)
        return s.p50_us / batch_size, s.p90_us / batch_size, s.p99_us / batch_size

    def to_json(self) -> dict[str, Any]:
        # No threads beside the machine: onnxruntime does not run here.
        return bench_envelope(
            "c",
            subjects={"source": asdict(self.source)},
            results=[{**s.to_json(), "calls_per_sample": n} for s, n in zip(self.latencies, self.calls_per_sample)],
            settings=self.settings.to_json(),
            machine=self.machine,
        )


@dataclass(frozen=True)
class CPairSettings:
    batch_sizes: tuple[int, ...]
    min_rounds: int
    min_time_s: float
    samples_per_round: int
    target_sample_us: float
    chained: bool
    compiler: str
    cflags: tuple[str, ...]
    threads: int  # onnxruntime intra-op threads
    io_binding: bool
    seed: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch_sizes"] = list(self.batch_sizes)
        out["cflags"] = list(self.cflags)
        return out


@dataclass(frozen=True)
class CPairStats:
    """C code and an ONNX model at one batch size, timed in alternating rounds. ratio = C / ONNX (below 1: C faster)."""

    batch_size: int
    c: LatencyStats  # per call, over every round's samples
    onnx: LatencyStats  # per call, over every round's calls
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    rounds: int
    calls_per_sample: int

    @property
    def speedup(self) -> float:
        """ONNX / C: how many times faster the C code is (1 / ratio)."""
        return 1.0 / self.ratio

    @property
    def speedup_ci(self) -> tuple[float, float]:
        return 1.0 / self.ratio_ci_high, 1.0 / self.ratio_ci_low

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "c": self.c.to_json(),
            "onnx": self.onnx.to_json(),
            "ratio_c_over_onnx": self.ratio,
            "ratio_ci_low": self.ratio_ci_low,
            "ratio_ci_high": self.ratio_ci_high,
            "speedup": self.speedup,
            "speedup_ci": list(self.speedup_ci),
            "rounds": self.rounds,
            "calls_per_sample": self.calls_per_sample,
        }


@dataclass(frozen=True)
class CPairResult:
    source: CSourceInfo
    onnx: ModelInfo
    pairs: tuple[CPairStats, ...]  # one per batch size, in the order asked
    settings: CPairSettings
    machine: MachineInfo

    def pair(self, batch_size: int) -> CPairStats:
        return at_batch(self.pairs, batch_size)

    def to_json(self) -> dict[str, Any]:
        return bench_envelope(
            "c-pair",
            subjects={"method": PAIR_METHOD, "source": asdict(self.source), "onnx": asdict(self.onnx)},
            results=[p.to_json() for p in self.pairs],
            settings=self.settings.to_json(),
            machine=self.machine,
            threads=self.settings.threads,
        )


# ---------------------------------------------------------------------------------------------------------
# The harness


def harness_source() -> str:
    """The timing harness's C text: harness.c beside this module (package data in a wheel)."""
    return Path(__file__).with_name(HARNESS_FILE).read_text(encoding="utf-8")


def harness_defines(csrc: CSource) -> tuple[str, ...]:
    """The -D flags that point harness.c at one generated model (its header, functions and row widths)."""
    prefix, upper = csrc.prefix, csrc.prefix.upper()
    return (
        f'-DSWAT_EDGE_MODEL_HEADER="{csrc.header_name}"',  # one argv entry, no shell: the quotes reach cpp
        f"-DSWAT_EDGE_PREDICT={prefix}_predict",
        f"-DSWAT_EDGE_PREDICT_BATCH={prefix}_predict_batch",
        f"-DSWAT_EDGE_N_INPUTS={upper}_N_INPUTS",
        f"-DSWAT_EDGE_N_OUTPUTS={upper}_N_OUTPUTS",
        *([f"-DSWAT_EDGE_INPUT_T={csrc.input_type}"] if csrc.input_type != "float" else []),
    )


def _pool_batches(batch_size: int) -> int:
    # Several distinct input batches so branch predictors and the cache see varying data, capped at ~4k rows.
    return max(2, min(64, 4096 // batch_size))


class _Harness:
    """The harness built once in a temporary folder; `run` executes it (one process per call)."""

    def __init__(self, csrc: CSource, *, cc: str | None, cflags: Sequence[str], target_sample_us: float,
                 chained: bool) -> None:
        self.cmd = find_c_compiler(cc)
        self.cflags = tuple(cflags)
        self.n_inputs = csrc.n_inputs
        self.input_dtype = csrc.input_dtype
        self.target_ns = float(target_sample_us) * 1e3
        self.chained = chained
        self._tmp = tempfile.TemporaryDirectory(prefix="swat-edge-cbench-")
        d = self.dir = Path(self._tmp.name)
        try:
            (d / f"{csrc.prefix}.c").write_bytes(csrc.source.encode("utf-8"))
            (d / csrc.header_name).write_bytes(csrc.header.encode("utf-8"))
            (d / "swat_edge_bench.c").write_bytes(harness_source().encode("utf-8"))
            self.exe = d / "bench"
            compile_c(self.cmd, [d / f"{csrc.prefix}.c", d / "swat_edge_bench.c"], self.exe,
                      flags=(*self.cflags, *harness_defines(csrc)), what="the timing harness")
        except BaseException:
            self._tmp.cleanup()
            raise

    def __enter__(self) -> "_Harness":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._tmp.cleanup()

    def write_rows(self, rows: np.ndarray, batch_size: int) -> None:
        """The input pool for `batch_size`: _pool_batches(batch_size) batches cut from `rows` (repeated as needed)."""
        n_rows = _pool_batches(batch_size) * batch_size
        x = rows[np.arange(n_rows) % len(rows)]
        np.ascontiguousarray(x, dtype=self.input_dtype).tofile(self.dir / "rows.f32")

    def run(
        self, batch_size: int, n_samples: int, *, calls: int = 0, warmup: int = _WARMUP_SAMPLES
    ) -> tuple[np.ndarray, int]:
        """Per-call nanoseconds of n_samples samples, and calls per sample (calls=0: calibrate; see module doc)."""
        args = [
            str(self.exe), str(self.dir / "rows.f32"), str(_pool_batches(batch_size)), str(batch_size),
            str(n_samples), repr(self.target_ns), "1" if self.chained else "0", str(warmup), str(calls),
            str(self.dir / "times.f64"),
        ]
        out = run_program(args, what=f"the timing harness (batch {batch_size})", timeout_s=_RUN_TIMEOUT_S)
        return np.fromfile(self.dir / "times.f64", dtype=np.float64), int(out.strip().splitlines()[-1])


def _check_common(
    batch_sizes: Sequence[int], n_inputs: int, rows: np.ndarray | None, seed: int, target_sample_us: float
) -> tuple[tuple[int, ...], np.ndarray, str]:
    """Batch sizes without repeats, the input rows to cut batches from, and where they came from."""
    sizes = tuple(dict.fromkeys(int(b) for b in batch_sizes))
    if not sizes or any(b < 1 for b in sizes):
        raise InputError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    if not (target_sample_us > 0 and np.isfinite(target_sample_us)):
        raise InputError(f"need target_sample_us > 0, got {target_sample_us}")
    if rows is not None:
        given = np.asarray(rows, dtype=np.float64)
        if given.ndim != 2 or given.shape[1] != n_inputs or len(given) < 1 or not np.all(np.isfinite(given)):
            raise InputError(f"bench rows: shape {given.shape}, expected finite rows of shape (rows, {n_inputs})")
        return sizes, given, f"{len(given)} given rows"
    n_rows = max(_pool_batches(b) * b for b in sizes)
    x = np.random.default_rng(seed).standard_normal((n_rows, n_inputs))
    return sizes, x, f"seeded standard-normal rows (seed {seed})"


def measure_c(
    csrc: CSource,
    *,
    batch_sizes: Sequence[int] = (1,),
    rows: np.ndarray | None = None,
    n_samples: int = DEFAULT_N_SAMPLES,
    target_sample_us: float = DEFAULT_TARGET_SAMPLE_US,
    chained: bool = True,
    cc: str | None = None,
    cflags: Sequence[str] = BENCH_CFLAGS,
    seed: int = 0,
) -> CBenchResult:
    """Compile `csrc` with a timing harness and time `<prefix>_predict` (batch 1) / `_predict_batch` per batch size.

    Raises ToolchainError when no compiler is found or the build fails; see the module doc for the method.
    """
    if n_samples < 1:
        raise InputError(f"need n_samples >= 1, got {n_samples}")
    sizes, x, rows_source = _check_common(batch_sizes, csrc.n_inputs, rows, seed, target_sample_us)
    latencies, calls = [], []
    with _Harness(csrc, cc=cc, cflags=cflags, target_sample_us=target_sample_us, chained=chained) as harness:
        for bs in sizes:
            harness.write_rows(x, bs)
            times_ns, n_calls = harness.run(bs, n_samples)
            latencies.append(latency_stats(bs, times_ns))
            calls.append(n_calls)
    settings = CBenchSettings(
        batch_sizes=sizes,
        n_samples=int(n_samples),
        target_sample_us=float(target_sample_us),
        chained=bool(chained),
        compiler=" ".join(harness.cmd),
        cflags=harness.cflags,
        seed=int(seed),
        rows_source=rows_source,
    )
    return CBenchResult(
        source=CSourceInfo.of(csrc), latencies=tuple(latencies), calls_per_sample=tuple(calls), settings=settings,
        machine=machine_info(),
    )


def _alternate_rounds(
    harness: _Harness,
    call: Callable[[], object],
    batch_size: int,
    *,
    calls: int,
    samples_per_round: int,
    min_rounds: int,
    min_time_s: float,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-call ns of C rounds and ONNX rounds, alternating (C ONNX, ONNX C, ...) until min_rounds and min_time_s."""
    c_rounds: list[np.ndarray] = []
    onnx_rounds: list[np.ndarray] = []
    order = ("c", "onnx")
    start = time.perf_counter()
    while True:
        for side in order:
            if side == "c":
                times_ns, _ = harness.run(batch_size, samples_per_round, calls=calls, warmup=_ROUND_WARMUP_SAMPLES)
                c_rounds.append(times_ns)
            else:
                # About as long as the C round's timed part, and never fewer than a block of calls.
                round_s = samples_per_round * calls * float(np.median(c_rounds[-1] if c_rounds else [0.0])) / 1e9
                onnx_rounds.append(time_calls(call, min_runs=DEFAULT_BLOCK_RUNS, min_time_s=round_s))
        order = order[::-1]
        if len(c_rounds) >= min_rounds and time.perf_counter() - start >= min_time_s:
            return c_rounds, onnx_rounds


def _pair_stats(
    batch_size: int,
    c_rounds: list[np.ndarray],
    onnx_rounds: list[np.ndarray],
    *,
    calls: int,
    n_resamples: int,
    seed: int,
) -> CPairStats:
    """Both sides' percentiles over every round, and C/ONNX as the median of round-median ratios with its CI."""
    ratio, low, high = ratio_ci(
        [np.median(r) for r in onnx_rounds], [np.median(r) for r in c_rounds], n_resamples=n_resamples, seed=seed
    )
    return CPairStats(
        batch_size=batch_size,
        c=latency_stats(batch_size, np.concatenate(c_rounds)),
        onnx=latency_stats(batch_size, np.concatenate(onnx_rounds)),
        ratio=ratio,
        ratio_ci_low=low,
        ratio_ci_high=high,
        rounds=len(c_rounds),
        calls_per_sample=calls,
    )


def measure_c_pair(
    csrc: CSource,
    onnx_model: str | Path | bytes,
    *,
    batch_sizes: Sequence[int] = (1,),
    min_rounds: int = DEFAULT_MIN_ROUNDS,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    samples_per_round: int = DEFAULT_SAMPLES_PER_ROUND,
    target_sample_us: float = DEFAULT_TARGET_SAMPLE_US,
    chained: bool = True,
    threads: int = 1,
    io_binding: bool = True,
    seed: int = 0,
    cc: str | None = None,
    cflags: Sequence[str] = BENCH_CFLAGS,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> CPairResult:
    """The C code and an ONNX model timed in alternating rounds per batch size (see the module doc).

    Each side gets seeded standard-normal float32 rows of its own width (an ONNX export may drop unused
    inputs). Per batch size: at least `min_rounds` rounds and `min_time_s` seconds. Raises ToolchainError
    (no compiler / build failure), ModelFileError or InputError (an ONNX model bench cannot time).
    """
    if min_rounds < 2 or samples_per_round < 1 or not (min_time_s >= 0.0 and np.isfinite(min_time_s)):
        raise InputError(
            f"need min_rounds >= 2, samples_per_round >= 1 and min_time_s >= 0, got {min_rounds}, "
            f"{samples_per_round} and {min_time_s}"
        )
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    sizes, x, _ = _check_common(batch_sizes, csrc.n_inputs, None, seed, target_sample_us)
    loaded = BenchModel(onnx_model, threads)
    pairs = []
    with _Harness(csrc, cc=cc, cflags=cflags, target_sample_us=target_sample_us, chained=chained) as harness:
        for bs in sizes:
            harness.write_rows(x, bs)
            _, calls = harness.run(bs, samples_per_round)  # warm-up round: fixes calls per sample
            call = loaded.call(bs, seed=seed, io_binding=io_binding)
            for _ in range(DEFAULT_WARMUP_RUNS):
                call()
            c_rounds, onnx_rounds = _alternate_rounds(
                harness, call, bs, calls=calls, samples_per_round=samples_per_round, min_rounds=min_rounds,
                min_time_s=min_time_s,
            )
            pairs.append(_pair_stats(bs, c_rounds, onnx_rounds, calls=calls, n_resamples=n_resamples, seed=seed))
    settings = CPairSettings(
        batch_sizes=sizes,
        min_rounds=int(min_rounds),
        min_time_s=float(min_time_s),
        samples_per_round=int(samples_per_round),
        target_sample_us=float(target_sample_us),
        chained=bool(chained),
        compiler=" ".join(harness.cmd),
        cflags=harness.cflags,
        threads=int(threads),
        io_binding=bool(io_binding),
        seed=int(seed),
    )
    return CPairResult(
        source=CSourceInfo.of(csrc), onnx=loaded.info, pairs=tuple(pairs), settings=settings,
        machine=machine_info(),
    )
