"""Latency of generated C: compile a timing harness with the host compiler and report percentiles like bench.py.

The harness (C99 + POSIX clock_gettime(CLOCK_MONOTONIC)) links the generated file as a separate translation
unit, so the compiler cannot inline the model into the loop or drop the calls; outputs also flow into a
volatile sink. One call takes tens of nanoseconds, far below what a clock read resolves well, so each timing
sample is the mean of `calls_per_sample` back-to-back calls, with calls_per_sample doubled during warm-up
until one sample lasts at least `target_sample_us`. Percentiles are over samples (per-call means), so they
show drift and interference between samples, not the spread of single calls.

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
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..export.c import CSource
from ..export.cc import compile_c, find_c_compiler, run_program
from .bench import (
    BENCH_FORMAT,
    BENCH_SCHEMA_VERSION,
    DEFAULT_BLOCK_RUNS,
    DEFAULT_RESAMPLES,
    DEFAULT_WARMUP_RUNS,
    LatencyStats,
    MachineInfo,
    ModelInfo,
    at_batch,
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
    "PAIR_METHOD",
    "CBenchSettings",
    "CSourceInfo",
    "CBenchResult",
    "CPairSettings",
    "CPairStats",
    "CPairResult",
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
        return {
            "format": BENCH_FORMAT,
            "schema_version": BENCH_SCHEMA_VERSION,
            "kind": "c",
            "source": asdict(self.source),
            "results": [
                {**s.to_json(), "calls_per_sample": n} for s, n in zip(self.latencies, self.calls_per_sample)
            ],
            "settings": self.settings.to_json(),
            "machine": asdict(self.machine),
        }


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
        return {
            "format": BENCH_FORMAT,
            "schema_version": BENCH_SCHEMA_VERSION,
            "kind": "c-pair",
            "method": PAIR_METHOD,
            "source": asdict(self.source),
            "onnx": asdict(self.onnx),
            "results": [p.to_json() for p in self.pairs],
            "settings": self.settings.to_json(),
            "machine": {**asdict(self.machine), "threads": self.settings.threads},
        }


# ---------------------------------------------------------------------------------------------------------
# The harness


def _harness(csrc: CSource) -> str:
    p, up = csrc.prefix, csrc.prefix.upper()
    return f"""/* swat-edge timing harness for {p}_predict / {p}_predict_batch */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "{csrc.header_name}"

static volatile float sink;

static double now_ns(void)
{{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}}

/* `calls` calls over a pool of n_pool input batches; returns nanoseconds. */
static double run(float *pool, long n_pool, int batch, long calls, int chained, float *out)
{{
    long i, k = 0;
    float carry = 0.0f;
    double t0, t1;
    const size_t stride = (size_t)batch * {up}_N_INPUTS;
    t0 = now_ns();
    for (i = 0; i < calls; ++i) {{
        float *x = pool + (size_t)k * stride;
        if (chained) {{
            x[0] += carry; /* adds +-0: the next call waits for this one's output */
        }}
        if (batch == 1) {{
            {p}_predict(x, out);
        }} else {{
            {p}_predict_batch(x, out, batch);
        }}
        carry = out[0] * 0.0f;
        if (++k == n_pool) {{
            k = 0;
        }}
    }}
    t1 = now_ns();
    sink = out[0] + carry;
    return t1 - t0;
}}

/* argv: rows_file n_pool batch n_samples target_ns chained warmup_samples calls times_file
 * calls = 0: double calls per sample from 1 until a sample lasts target_ns; else use `calls` as given.
 * Prints the calls per sample used. */
int main(int argc, char **argv)
{{
    FILE *f;
    long n_pool, n_samples, warmup, s, calls;
    int batch, chained;
    double target_ns, *times;
    float *pool, *out;
    size_t n_values;
    if (argc != 10) {{
        return 2;
    }}
    n_pool = strtol(argv[2], NULL, 10);
    batch = (int)strtol(argv[3], NULL, 10);
    n_samples = strtol(argv[4], NULL, 10);
    target_ns = strtod(argv[5], NULL);
    chained = (int)strtol(argv[6], NULL, 10);
    warmup = strtol(argv[7], NULL, 10);
    calls = strtol(argv[8], NULL, 10);
    if (n_pool < 1 || batch < 1 || n_samples < 1 || calls < 0) {{
        return 2;
    }}
    n_values = (size_t)n_pool * (size_t)batch * {up}_N_INPUTS;
    pool = (float *)malloc(n_values * sizeof(float) + 1);
    out = (float *)malloc((size_t)batch * {up}_N_OUTPUTS * sizeof(float) + sizeof(float));
    times = (double *)malloc((size_t)n_samples * sizeof(double));
    if (pool == NULL || out == NULL || times == NULL) {{
        return 3;
    }}
    f = fopen(argv[1], "rb");
    if (f == NULL || fread(pool, sizeof(float), n_values, f) != n_values) {{
        return 4;
    }}
    fclose(f);
    out[0] = 0.0f;
    if (calls == 0) {{
        calls = 1;
        while (run(pool, n_pool, batch, calls, chained, out) < target_ns && calls < (1L << 30)) {{
            calls *= 2;
        }}
    }}
    for (s = 0; s < warmup; ++s) {{
        run(pool, n_pool, batch, calls, chained, out);
    }}
    for (s = 0; s < n_samples; ++s) {{
        times[s] = run(pool, n_pool, batch, calls, chained, out) / (double)calls;
    }}
    f = fopen(argv[9], "wb");
    if (f == NULL || fwrite(times, sizeof(double), (size_t)n_samples, f) != (size_t)n_samples) {{
        return 5;
    }}
    fclose(f);
    printf("%ld\\n", calls);
    return 0;
}}
"""


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
        self.target_ns = float(target_sample_us) * 1e3
        self.chained = chained
        self._tmp = tempfile.TemporaryDirectory(prefix="swat-edge-cbench-")
        d = self.dir = Path(self._tmp.name)
        try:
            (d / f"{csrc.prefix}.c").write_bytes(csrc.source.encode("utf-8"))
            (d / csrc.header_name).write_bytes(csrc.header.encode("utf-8"))
            (d / "swat_edge_bench.c").write_bytes(_harness(csrc).encode("utf-8"))
            self.exe = d / "bench"
            compile_c(self.cmd, [d / f"{csrc.prefix}.c", d / "swat_edge_bench.c"], self.exe, flags=self.cflags,
                      what="the timing harness")
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
        np.ascontiguousarray(x, dtype=np.float32).tofile(self.dir / "rows.f32")

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
    # bench's model loader: one definition of how an ONNX model is opened, bound and fed for timing.
    from .bench import _Loaded

    if min_rounds < 2 or samples_per_round < 1 or not (min_time_s >= 0.0 and np.isfinite(min_time_s)):
        raise InputError(
            f"need min_rounds >= 2, samples_per_round >= 1 and min_time_s >= 0, got {min_rounds}, "
            f"{samples_per_round} and {min_time_s}"
        )
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    sizes, x, _ = _check_common(batch_sizes, csrc.n_inputs, None, seed, target_sample_us)
    loaded = _Loaded(onnx_model, threads)
    pairs = []
    with _Harness(csrc, cc=cc, cflags=cflags, target_sample_us=target_sample_us, chained=chained) as harness:
        for bs in sizes:
            harness.write_rows(x, bs)
            _, calls = harness.run(bs, samples_per_round)  # warm-up round: fixes calls per sample
            call = loaded.call(bs, seed=seed, io_binding=io_binding)
            for _ in range(DEFAULT_WARMUP_RUNS):
                call()
            c_rounds: list[np.ndarray] = []
            onnx_rounds: list[np.ndarray] = []
            order = ("c", "onnx")
            start = time.perf_counter()
            while True:
                for side in order:
                    if side == "c":
                        times_ns, _ = harness.run(bs, samples_per_round, calls=calls, warmup=_ROUND_WARMUP_SAMPLES)
                        c_rounds.append(times_ns)
                    else:
                        # About as long as the C round's timed part, and never fewer than a block of calls.
                        round_s = samples_per_round * calls * float(np.median(c_rounds[-1] if c_rounds else [0.0])) / 1e9
                        onnx_rounds.append(time_calls(call, min_runs=DEFAULT_BLOCK_RUNS, min_time_s=round_s))
                order = order[::-1]
                if len(c_rounds) >= min_rounds and time.perf_counter() - start >= min_time_s:
                    break
            ratio, low, high = ratio_ci(
                [np.median(r) for r in onnx_rounds], [np.median(r) for r in c_rounds], n_resamples=n_resamples, seed=seed
            )
            pairs.append(
                CPairStats(
                    batch_size=bs,
                    c=latency_stats(bs, np.concatenate(c_rounds)),
                    onnx=latency_stats(bs, np.concatenate(onnx_rounds)),
                    ratio=ratio,
                    ratio_ci_low=low,
                    ratio_ci_high=high,
                    rounds=len(c_rounds),
                    calls_per_sample=calls,
                )
            )
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
