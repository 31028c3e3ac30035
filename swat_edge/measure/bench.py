"""On-device latency benchmark of ONNX models with onnxruntime: percentiles, interleaved A/B ratios, peak memory."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import onnxruntime as ort

from ..errors import InputError, ModelFileError, ToolchainError
from ..export.onnx import input_dtype, session_options
from .summary import summarize_onnx

__all__ = [
    "BENCH_FORMAT",
    "BENCH_SCHEMA_VERSION",
    "PEAK_MEMORY_METHOD",
    "DEFAULT_WARMUP_RUNS",
    "DEFAULT_MIN_RUNS",
    "DEFAULT_MIN_TIME_S",
    "DEFAULT_BLOCK_RUNS",
    "DEFAULT_MIN_BLOCKS",
    "BenchSettings",
    "MachineInfo",
    "ModelInfo",
    "LatencyStats",
    "PairStats",
    "BenchResult",
    "PairResult",
    "BenchModel",
    "at_batch",
    "bench_envelope",
    "latency_stats",
    "ratio_ci",
    "time_calls",
    "time_blocks",
    "machine_info",
    "make_session",
    "measure",
    "measure_pair",
    "measure_peak_memory",
]

BENCH_FORMAT = "swat-edge.bench"
BENCH_SCHEMA_VERSION = 1
PEAK_MEMORY_METHOD = (
    "peak RSS growth of a fresh Python process (that already imported numpy and onnxruntime and read the model) "
    "while it creates the session, including onnxruntime's one-time setup, and runs each batch size 3 times; "
    "Linux: VmHWM after resetting it via clear_refs, elsewhere: ru_maxrss growth"
)
# Defaults keep `swat-edge bench` at about a second per batch size for a tiny model.
DEFAULT_WARMUP_RUNS = 50
DEFAULT_MIN_RUNS = 200
DEFAULT_MIN_TIME_S = 0.5
DEFAULT_BLOCK_RUNS = 10
DEFAULT_MIN_BLOCKS = 20
DEFAULT_RESAMPLES = 2000

Clock = Callable[[], int]


# ---------------------------------------------------------------------------------------------------------
# Plain data


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...]
    warmup_runs: int
    min_runs: int
    min_time_s: float
    threads: int  # intra-op threads; inter-op is always 1 (sequential execution)
    seed: int
    io_binding: bool  # True: input and outputs bound once, so a call times the model, not Python conversions
    block_runs: int | None = None  # interleaved pairs only: calls per block
    min_blocks: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch_sizes"] = list(self.batch_sizes)
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class MachineInfo:
    platform: str
    machine: str
    processor: str
    cpu_count: int
    python: str
    onnxruntime: str


@dataclass(frozen=True)
class ModelInfo:
    source: str
    size_bytes: int
    sha256: str
    node_count: int
    op_histogram: dict[str, int]
    n_inputs: int  # width of the model's single input


def bench_envelope(
    kind: str,
    *,
    subjects: dict[str, Any],
    results: list[dict[str, Any]],
    settings: dict[str, Any],
    machine: MachineInfo,
    threads: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON every bench result is written as, in this key order: format, schema_version, kind, `subjects`
    (what was timed, and how where a method needs saying), results (one per batch size), `extra` (figures beside
    the latencies), settings, machine.

    `threads`: onnxruntime's intra-op threads, recorded with the machine where onnxruntime ran (None: it did not).
    """
    return {
        "format": BENCH_FORMAT,
        "schema_version": BENCH_SCHEMA_VERSION,
        "kind": kind,
        **subjects,
        "results": results,
        **(extra or {}),
        "settings": settings,
        "machine": asdict(machine) if threads is None else {**asdict(machine), "threads": threads},
    }


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one call at one batch size, over `runs` timed calls."""

    batch_size: int
    runs: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    min_us: float

    @property
    def throughput_rows_per_s(self) -> float:
        return self.batch_size / (self.p50_us * 1e-6) if self.p50_us > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "throughput_rows_per_s": self.throughput_rows_per_s}


@dataclass(frozen=True)
class PairStats:
    """Models A and B at one batch size, timed in alternating blocks. ratio = B/A (above 1: B is slower)."""

    batch_size: int
    a: LatencyStats
    b: LatencyStats
    ratio: float  # median over blocks of (B block median / A block median)
    ratio_ci_low: float  # bootstrap 95% confidence interval of that median
    ratio_ci_high: float
    blocks: int

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "ratio": self.ratio,
            "ratio_ci_low": self.ratio_ci_low,
            "ratio_ci_high": self.ratio_ci_high,
            "blocks": self.blocks,
        }


@dataclass(frozen=True)
class BenchResult:
    model: ModelInfo
    latencies: tuple[LatencyStats, ...]  # one per batch size, in the order asked
    peak_memory_bytes: int | None  # see PEAK_MEMORY_METHOD; None when not measured or not measurable here
    settings: BenchSettings
    machine: MachineInfo

    def latency(self, batch_size: int) -> LatencyStats:
        return at_batch(self.latencies, batch_size)

    def to_json(self) -> dict[str, Any]:
        return bench_envelope(
            "single",
            subjects={"model": asdict(self.model)},
            results=[s.to_json() for s in self.latencies],
            extra={"peak_memory_bytes": self.peak_memory_bytes, "peak_memory_method": PEAK_MEMORY_METHOD},
            settings=self.settings.to_json(),
            machine=self.machine,
            threads=self.settings.threads,
        )


@dataclass(frozen=True)
class PairResult:
    a: ModelInfo
    b: ModelInfo
    pairs: tuple[PairStats, ...]  # one per batch size, in the order asked
    settings: BenchSettings
    machine: MachineInfo

    def pair(self, batch_size: int) -> PairStats:
        return at_batch(self.pairs, batch_size)

    def to_json(self) -> dict[str, Any]:
        return bench_envelope(
            "pair",
            subjects={"a": asdict(self.a), "b": asdict(self.b)},
            results=[p.to_json() for p in self.pairs],
            settings=self.settings.to_json(),
            machine=self.machine,
            threads=self.settings.threads,
        )


# ---------------------------------------------------------------------------------------------------------
# Statistics (pure)


def at_batch(results: Sequence[Any], batch_size: int) -> Any:
    """The entry of a per-batch-size result tuple for `batch_size` (KeyError if it was not measured)."""
    for stats in results:
        if stats.batch_size == batch_size:
            return stats
    raise KeyError(batch_size)


def latency_stats(batch_size: int, times_ns: np.ndarray) -> LatencyStats:
    """Percentiles of per-call times (nanoseconds) -> microseconds."""
    t = np.asarray(times_ns, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("bug: no timed runs")
    p50, p90, p99 = np.percentile(t, [50.0, 90.0, 99.0]) / 1e3
    return LatencyStats(
        batch_size=int(batch_size),
        runs=int(t.size),
        p50_us=float(p50),
        p90_us=float(p90),
        p99_us=float(p99),
        mean_us=float(t.mean() / 1e3),
        min_us=float(t.min() / 1e3),
    )


def ratio_ci(
    block_medians_a: np.ndarray,
    block_medians_b: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Median of per-block ratios B/A and its bootstrap confidence interval -> (ratio, low, high).

    Blocks are paired (block i of A ran right next to block i of B), so the ratio of a pair cancels slow
    machine drift that hits both; resampling whole pairs keeps that pairing in the interval.
    """
    a = np.asarray(block_medians_a, dtype=np.float64).reshape(-1)
    b = np.asarray(block_medians_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"bug: need the same non-zero number of blocks, got {a.size} and {b.size}")
    ratios = b / np.maximum(a, 1e-12)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ratios.size, size=(n_resamples, ratios.size))
    medians = np.median(ratios[idx], axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(np.median(ratios)), float(low), float(high)


# ---------------------------------------------------------------------------------------------------------
# Timing loops (the clock is injectable so the loop logic is tested without wall-clock time)


def time_calls(
    call: Callable[[], object],
    *,
    min_runs: int,
    min_time_s: float,
    clock: Clock = time.perf_counter_ns,
) -> np.ndarray:
    """Time `call` until it ran at least min_runs times and min_time_s passed -> per-call ns."""
    times: list[int] = []
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        times.append(t1 - t0)
        if len(times) >= min_runs and (t1 - start) >= min_time_s * 1e9:
            return np.asarray(times, dtype=np.int64)


def time_blocks(
    calls: Sequence[Callable[[], object]],
    *,
    block_runs: int,
    min_blocks: int,
    min_runs: int,
    min_time_s: float,
    clock: Clock = time.perf_counter_ns,
) -> list[np.ndarray]:
    """Time several calls in alternating blocks (A B, B A, A B, ...) -> per call an array (blocks, block_runs) of ns.

    Alternating blocks spread machine noise over every call; flipping the order each round stops a fixed
    "B always runs right after A" from biasing one side (cache state, frequency ramps).
    """
    per_call: list[list[list[int]]] = [[] for _ in calls]
    order = list(range(len(calls)))
    start = clock()
    n_blocks = 0
    while True:
        for i in order:
            call = calls[i]
            block = []
            for _ in range(block_runs):
                t0 = clock()
                call()
                block.append(clock() - t0)
            per_call[i].append(block)
        order.reverse()
        n_blocks += 1
        if (
            n_blocks >= min_blocks
            and n_blocks * block_runs >= min_runs
            and (clock() - start) >= min_time_s * 1e9
        ):
            return [np.asarray(blocks, dtype=np.int64) for blocks in per_call]


# ---------------------------------------------------------------------------------------------------------
# onnxruntime


def machine_info() -> MachineInfo:
    processor = platform.processor()
    if not processor and os.path.exists("/proc/cpuinfo"):
        # platform.processor() is empty on most Linux systems; the model name is what identifies the CPU.
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.lower().startswith(("model name", "hardware", "cpu model")):
                        processor = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
    return MachineInfo(
        platform=platform.platform(),
        machine=platform.machine(),
        processor=processor or "unknown",
        cpu_count=os.cpu_count() or 0,
        python=platform.python_version(),
        onnxruntime=ort.__version__,
    )


def make_session(
    model: str | os.PathLike | bytes, *, threads: int = 1, source: str | None = None
) -> ort.InferenceSession:
    """A CPU-only onnxruntime session with the benchmark's settings (1 inter-op thread, sequential, opt ALL)."""
    where = source or ("<bytes>" if isinstance(model, (bytes, bytearray)) else str(model))
    arg = bytes(model) if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    try:
        # Providers named explicitly: the wheel also lists an Azure provider we must not pick up.
        return ort.InferenceSession(arg, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors are not a common class; each is a load failure here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{where}: onnxruntime cannot load it ({first})") from None


def _input_spec(sess: ort.InferenceSession, source: str) -> tuple[str, int, int | None, type]:
    """-> (input name, width, fixed batch size or None, numpy dtype). The benchmark feeds one (batch, width)
    input of float32 rows, or float64 for a model that takes wide inputs such as timestamps."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise InputError(f"{source}: has {len(inputs)} inputs ({names}); bench measures models with one input")
    inp = inputs[0]
    if inp.type not in ("tensor(float)", "tensor(double)"):
        raise InputError(f"{source}: input {inp.name!r} is {inp.type}; bench feeds float32 or float64 rows "
                         "(tensor(float), tensor(double))")
    shape = list(inp.shape)
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] <= 0:
        raise InputError(
            f"{source}: input {inp.name!r} has shape {shape}; bench needs (batch, n_inputs) with a fixed n_inputs"
        )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return inp.name, int(shape[1]), batch, input_dtype(inp)


def _make_call(
    sess: ort.InferenceSession, source: str, input_name: str, x: np.ndarray, *, io_binding: bool
) -> Callable[[], object]:
    output_names = [o.name for o in sess.get_outputs()]
    try:
        first = sess.run(output_names, {input_name: x})
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{source}: onnxruntime failed to run it at batch {len(x)} ({first_line})") from None
    if not io_binding:
        feed = {input_name: x}
        return lambda: sess.run(output_names, feed)
    # Bind the input and preallocated outputs once: a call then skips the dict -> OrtValue -> numpy
    # conversions (measured on a 2-vCPU x86: 14.0 -> 4.6 us median at batch 1 for an 8-64-1 MLP).
    binding = sess.io_binding()
    x_value = ort.OrtValue.ortvalue_from_numpy(x)
    binding.bind_ortvalue_input(input_name, x_value)
    outs = [ort.OrtValue.ortvalue_from_shape_and_type(list(y.shape), y.dtype.type) for y in first]
    for name, value in zip(output_names, outs):
        binding.bind_ortvalue_output(name, value)
    keep_alive = (x, x_value, outs)  # OrtValues view these buffers; they must outlive the binding

    def call() -> object:
        sess.run_with_iobinding(binding)
        return keep_alive

    return call


def _rows(n_rows: int, width: int, seed: int, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_rows, width)).astype(dtype)


def _check_settings(
    batch_sizes: Sequence[int], warmup_runs: int, min_runs: int, min_time_s: float, threads: int
) -> tuple[int, ...]:
    sizes = tuple(dict.fromkeys(int(b) for b in batch_sizes))  # drop repeats, keep order
    if not sizes:
        raise InputError("batch_sizes is empty; give at least one batch size (e.g. 1)")
    if any(b < 1 for b in sizes):
        raise InputError(f"batch sizes must be >= 1, got {list(sizes)}")
    if threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    if min_runs < 1 or warmup_runs < 0:
        raise InputError(f"need min_runs >= 1 and warmup_runs >= 0, got {min_runs} and {warmup_runs}")
    if not (min_time_s >= 0.0 and np.isfinite(min_time_s)):
        raise InputError(f"min_time_s must be a finite number >= 0, got {min_time_s}")
    return sizes


class BenchModel:
    """An ONNX model opened for timing: its info, session and input spec; `call` gives a callable to time.

    One definition of how bench opens, binds and feeds a model, shared with bench_c's C-vs-ONNX pairs.
    """

    def __init__(self, model: str | os.PathLike | bytes, threads: int) -> None:
        summary = summarize_onnx(model)  # parses and rejects non-ONNX input with a one-line error
        self.source = summary.source
        self.sess = make_session(model, threads=threads, source=summary.source)
        self.input_name, self.width, self.fixed_batch, self.dtype = _input_spec(self.sess, summary.source)
        self.info = ModelInfo(
            source=summary.source,
            size_bytes=summary.size_bytes,
            sha256=summary.sha256,
            node_count=summary.node_count,
            op_histogram=dict(summary.op_histogram),
            n_inputs=self.width,
        )

    def call(self, batch_size: int, *, seed: int, io_binding: bool) -> Callable[[], object]:
        """One inference on seeded rows of `batch_size`, run once here so a model that cannot run fails early."""
        if self.fixed_batch is not None and self.fixed_batch != batch_size:
            raise InputError(
                f"{self.source}: input has a fixed batch size of {self.fixed_batch}; bench it with batch "
                f"{self.fixed_batch} or export it with a dynamic batch dimension"
            )
        x = _rows(batch_size, self.width, seed, self.dtype)
        return _make_call(self.sess, self.source, self.input_name, x, io_binding=io_binding)


def _warm(call: Callable[[], object], runs: int) -> None:
    for _ in range(runs):
        call()


def measure(
    model: str | os.PathLike | bytes,
    *,
    batch_sizes: Sequence[int] = (1,),
    warmup_runs: int = DEFAULT_WARMUP_RUNS,
    min_runs: int = DEFAULT_MIN_RUNS,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    threads: int = 1,
    seed: int = 0,
    io_binding: bool = True,
    measure_memory: bool = True,
) -> BenchResult:
    """Latency percentiles of one ONNX model per batch size, on the CPU execution provider.

    Each batch size: `warmup_runs` untimed calls, then timed calls (time.perf_counter_ns around each run)
    until at least `min_runs` calls and `min_time_s` seconds. Inputs are seeded standard-normal float32 rows.
    """
    sizes = _check_settings(batch_sizes, warmup_runs, min_runs, min_time_s, threads)
    loaded = BenchModel(model, threads)
    stats = []
    for bs in sizes:
        call = loaded.call(bs, seed=seed, io_binding=io_binding)
        _warm(call, warmup_runs)
        stats.append(latency_stats(bs, time_calls(call, min_runs=min_runs, min_time_s=min_time_s)))
    peak = None
    if measure_memory:
        peak = measure_peak_memory(model, batch_sizes=sizes, threads=threads, seed=seed)
    settings = BenchSettings(
        batch_sizes=sizes,
        warmup_runs=warmup_runs,
        min_runs=min_runs,
        min_time_s=float(min_time_s),
        threads=threads,
        seed=seed,
        io_binding=io_binding,
    )
    return BenchResult(
        model=loaded.info, latencies=tuple(stats), peak_memory_bytes=peak, settings=settings, machine=machine_info()
    )


def measure_pair(
    a: str | os.PathLike | bytes,
    b: str | os.PathLike | bytes,
    *,
    batch_sizes: Sequence[int] = (1,),
    warmup_runs: int = DEFAULT_WARMUP_RUNS,
    min_runs: int = DEFAULT_MIN_RUNS,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    threads: int = 1,
    seed: int = 0,
    io_binding: bool = True,
    block_runs: int = DEFAULT_BLOCK_RUNS,
    min_blocks: int = DEFAULT_MIN_BLOCKS,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> PairResult:
    """Models A and B timed interleaved (blocks of `block_runs` calls, A B B A A B ...) per batch size.

    Reports each side's percentiles and the ratio B/A with a seeded bootstrap 95% CI over block pairs.
    `min_runs` and `min_time_s` apply per batch size (runs per side, time for both); at least `min_blocks`.
    """
    sizes = _check_settings(batch_sizes, warmup_runs, min_runs, min_time_s, threads)
    if block_runs < 1 or min_blocks < 2:
        raise InputError(f"need block_runs >= 1 and min_blocks >= 2, got {block_runs} and {min_blocks}")
    model_a, model_b = BenchModel(a, threads), BenchModel(b, threads)
    pairs = []
    for bs in sizes:
        call_a = model_a.call(bs, seed=seed, io_binding=io_binding)
        call_b = model_b.call(bs, seed=seed, io_binding=io_binding)
        _warm(call_a, warmup_runs)
        _warm(call_b, warmup_runs)
        blocks_a, blocks_b = time_blocks(
            [call_a, call_b], block_runs=block_runs, min_blocks=min_blocks, min_runs=min_runs, min_time_s=min_time_s
        )
        ratio, low, high = ratio_ci(
            np.median(blocks_a, axis=1), np.median(blocks_b, axis=1), n_resamples=n_resamples, seed=seed
        )
        pairs.append(
            PairStats(
                batch_size=bs,
                a=latency_stats(bs, blocks_a),
                b=latency_stats(bs, blocks_b),
                ratio=ratio,
                ratio_ci_low=low,
                ratio_ci_high=high,
                blocks=int(blocks_a.shape[0]),
            )
        )
    settings = BenchSettings(
        batch_sizes=sizes,
        warmup_runs=warmup_runs,
        min_runs=min_runs,
        min_time_s=float(min_time_s),
        threads=threads,
        seed=seed,
        io_binding=io_binding,
        block_runs=block_runs,
        min_blocks=min_blocks,
    )
    return PairResult(a=model_a.info, b=model_b.info, pairs=tuple(pairs), settings=settings, machine=machine_info())


# ---------------------------------------------------------------------------------------------------------
# Peak memory: a fresh process, so the number does not depend on what this process loaded before.

_MEMORY_PROBE = r"""
import json, sys
try:
    import resource
except ImportError:  # no getrusage (Windows)
    print(json.dumps(None)); sys.exit(0)
import numpy as np
import onnxruntime as ort

cfg = json.loads(sys.argv[1])
model = cfg["path"] if cfg["path"] is not None else sys.stdin.buffer.read()

def status_bytes(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(key)

def reset_peak():
    # Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status_bytes("VmRSS")
    except OSError:
        return None

def lifetime_peak_bytes():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024  # bytes on macOS, KiB elsewhere

rss_at_reset = reset_peak()
before = lifetime_peak_bytes()
opts = ort.SessionOptions()
opts.intra_op_num_threads = cfg["threads"]
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
opts.log_severity_level = 3
sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
width = sess.get_inputs()[0].shape[1]
outs = [o.name for o in sess.get_outputs()]
for bs in cfg["batch_sizes"]:
    x = np.random.default_rng(cfg["seed"]).standard_normal((bs, width)).astype(
        np.float64 if sess.get_inputs()[0].type == "tensor(double)" else np.float32)
    for _ in range(3):
        sess.run(outs, {name: x})
if rss_at_reset is not None:
    print(json.dumps(status_bytes("VmHWM") - rss_at_reset))
else:  # no resettable peak: growth of the lifetime peak (misses growth that stays below an earlier peak)
    print(json.dumps(lifetime_peak_bytes() - before))
"""


def measure_peak_memory(
    model: str | os.PathLike | bytes, *, batch_sizes: Sequence[int] = (1,), threads: int = 1, seed: int = 0
) -> int | None:
    """Bytes the model adds to a process's peak RSS (see PEAK_MEMORY_METHOD); None where getrusage is missing.

    Page-granular and includes onnxruntime's arena growth, so it is an upper bound on what the model needs.
    """
    is_bytes = isinstance(model, (bytes, bytearray))
    cfg = {
        "path": None if is_bytes else os.fspath(model),
        "threads": int(threads),
        "batch_sizes": [int(b) for b in batch_sizes],
        "seed": int(seed),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, json.dumps(cfg)],
            input=bytes(model) if is_bytes else b"",
            capture_output=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"peak-memory probe could not run ({exc}); skip it with measure_memory=False") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise ToolchainError(f"peak-memory probe failed: {last}; skip it with measure_memory=False")
    value = json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])
    return None if value is None else max(int(value), 0)
