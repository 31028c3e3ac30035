"""Every bench result file shares one envelope (bench.bench_envelope): these pin each kind's keys, in order,
so a consumer reading `bench --json` output sees the same document whichever result wrote it."""
from __future__ import annotations

from dataclasses import asdict

from swat_edge.measure.bench import (
    BENCH_FORMAT,
    BENCH_SCHEMA_VERSION,
    PEAK_MEMORY_METHOD,
    BenchResult,
    BenchSettings,
    LatencyStats,
    MachineInfo,
    ModelInfo,
    PairResult,
    PairStats,
    bench_envelope,
)
from swat_edge.measure.bench_c import (
    PAIR_METHOD,
    CBenchResult,
    CBenchSettings,
    CPairResult,
    CPairSettings,
    CPairStats,
    CSourceInfo,
)

STATS = LatencyStats(batch_size=1, runs=10, p50_us=1.0, p90_us=2.0, p99_us=3.0, mean_us=1.5, min_us=0.5)
MACHINE = MachineInfo("Linux", "x86_64", "cpu", 2, "3.11", "1.0")
MODEL = ModelInfo("m.onnx", 100, "ab" * 32, 3, {"Gemm": 2}, 2)
SOURCE = CSourceInfo("model", "float", False, 2, 1, "cd" * 32, 10)
ONNX_SETTINGS = BenchSettings((1,), 5, 10, 0.5, 3, 0, True)
C_SETTINGS = CBenchSettings((1,), 20, 100.0, True, "cc", ("-std=c99", "-O2"), 0, "seeded")
MACHINE_WITH_THREADS = [*asdict(MACHINE), "threads"]


def test_single_model_result_keys_in_order() -> None:
    doc = BenchResult(MODEL, (STATS,), 4096, ONNX_SETTINGS, MACHINE).to_json()
    assert list(doc) == ["format", "schema_version", "kind", "model", "results", "peak_memory_bytes",
                         "peak_memory_method", "settings", "machine"]
    assert (doc["format"], doc["schema_version"], doc["kind"]) == (BENCH_FORMAT, BENCH_SCHEMA_VERSION, "single")
    assert doc["peak_memory_bytes"] == 4096 and doc["peak_memory_method"] == PEAK_MEMORY_METHOD
    assert list(doc["machine"]) == MACHINE_WITH_THREADS and doc["machine"]["threads"] == 3


def test_pair_result_keys_in_order() -> None:
    settings = BenchSettings((1,), 5, 10, 0.5, 2, 0, True, block_runs=10, min_blocks=20)
    doc = PairResult(MODEL, MODEL, (PairStats(1, STATS, STATS, 1.0, 0.9, 1.1, 20),), settings, MACHINE).to_json()
    assert list(doc) == ["format", "schema_version", "kind", "a", "b", "results", "settings", "machine"]
    assert doc["kind"] == "pair" and doc["machine"]["threads"] == 2
    assert doc["settings"]["block_runs"] == 10


def test_c_result_keys_in_order_and_no_thread_count() -> None:
    doc = CBenchResult(SOURCE, (STATS,), (16,), C_SETTINGS, MACHINE).to_json()
    assert list(doc) == ["format", "schema_version", "kind", "source", "results", "settings", "machine"]
    assert doc["kind"] == "c" and doc["results"][0]["calls_per_sample"] == 16
    assert doc["machine"] == asdict(MACHINE)  # onnxruntime does not run: no threads beside the machine


def test_c_pair_result_keys_in_order() -> None:
    settings = CPairSettings((1,), 20, 0.5, 20, 100.0, True, "cc", ("-O2",), 4, True, 0)
    pair = CPairStats(1, STATS, STATS, 0.5, 0.4, 0.6, 20, 16)
    doc = CPairResult(SOURCE, MODEL, (pair,), settings, MACHINE).to_json()
    assert list(doc) == ["format", "schema_version", "kind", "method", "source", "onnx", "results", "settings",
                         "machine"]
    assert doc["kind"] == "c-pair" and doc["method"] == PAIR_METHOD and doc["machine"]["threads"] == 4


def test_envelope_puts_extra_figures_between_results_and_settings() -> None:
    doc = bench_envelope("x", subjects={"what": 1}, results=[], extra={"figure": 2}, settings={}, machine=MACHINE,
                         threads=None)
    assert list(doc) == ["format", "schema_version", "kind", "what", "results", "figure", "settings", "machine"]
