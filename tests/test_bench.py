"""bench.py: statistics, timing loops (fake clock), onnxruntime sessions, JSON, errors, and `swat-edge bench`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from clirun import python_without_torch, run_cli
from onnx import TensorProto, helper, numpy_helper

from swat_edge.errors import InputError, MissingFileError, ModelFileError
from swat_edge.measure import bench

FAST = dict(warmup_runs=2, min_runs=30, min_time_s=0.0, measure_memory=False)


# ---------------------------------------------------------------------------------------------------------
# Tiny ONNX models built here (no dependency on export_onnx)


def identity_model(n_inputs: int = 4, batch: int | str = "N") -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n_inputs])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gemm_relu_model(n_in: int = 3, hidden: int = 8, n_out: int = 2, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(size=(n_in, hidden)).astype(np.float32), "w0"),
        numpy_helper.from_array(rng.normal(size=hidden).astype(np.float32), "b0"),
        numpy_helper.from_array(rng.normal(size=(hidden, n_out)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=n_out).astype(np.float32), "b1"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["h"], name="gemm0"),
        helper.make_node("Relu", ["h"], ["r"], name="relu0"),
        helper.make_node("Gemm", ["r", "w1", "b1"], ["y"], name="gemm1"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# ---------------------------------------------------------------------------------------------------------
# Pure statistics


def test_latency_stats_percentiles_in_microseconds():
    times_ns = np.arange(1, 101) * 1000  # 1..100 us
    s = bench.latency_stats(4, times_ns)
    assert s.runs == 100 and s.batch_size == 4
    assert s.p50_us == pytest.approx(50.5)
    assert s.p90_us == pytest.approx(90.1)
    assert s.p99_us == pytest.approx(99.01)
    assert s.mean_us == pytest.approx(50.5)
    assert s.min_us == pytest.approx(1.0)
    assert s.throughput_rows_per_s == pytest.approx(4 / 50.5e-6)


def test_ratio_ci_exact_ratio_gives_a_point_interval():
    a = np.array([10.0, 12.0, 30.0, 11.0])  # machine noise moves both sides of a pair together
    ratio, low, high = bench.ratio_ci(a, 2.0 * a, seed=1)
    assert (ratio, low, high) == pytest.approx((2.0, 2.0, 2.0))


def test_ratio_ci_is_seeded_and_brackets_the_median():
    rng = np.random.default_rng(0)
    a = rng.uniform(9.0, 11.0, 60)
    b = 1.3 * a * rng.uniform(0.95, 1.05, 60)
    first = bench.ratio_ci(a, b, seed=7)
    assert first == bench.ratio_ci(a, b, seed=7)
    ratio, low, high = first
    assert low <= ratio <= high
    assert 1.2 < low and high < 1.4


def test_ratio_ci_rejects_unpaired_blocks():
    with pytest.raises(ValueError, match="same non-zero number of blocks"):
        bench.ratio_ci(np.ones(3), np.ones(4))


# ---------------------------------------------------------------------------------------------------------
# Timing loops with a fake clock: the loop logic, without wall-clock time


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def test_time_calls_runs_exactly_min_runs_without_min_time():
    clock = FakeClock()

    def call() -> None:
        clock.now += 250

    times = bench.time_calls(call, min_runs=17, min_time_s=0.0, clock=clock)
    assert times.tolist() == [250] * 17


def test_time_calls_keeps_going_until_min_time():
    clock = FakeClock()

    def call() -> None:
        clock.now += 1_000_000  # 1 ms per call

    times = bench.time_calls(call, min_runs=3, min_time_s=0.01, clock=clock)
    assert len(times) == 10


def test_time_blocks_alternates_order_and_separates_calls():
    clock = FakeClock()
    order: list[str] = []

    def make(name: str, cost_ns: int):
        def call() -> None:
            order.append(name)
            clock.now += cost_ns

        return call

    blocks_a, blocks_b = bench.time_blocks(
        [make("a", 100), make("b", 300)], block_runs=2, min_blocks=4, min_runs=1, min_time_s=0.0, clock=clock
    )
    assert blocks_a.shape == (4, 2) and blocks_b.shape == (4, 2)
    assert set(blocks_a.ravel()) == {100} and set(blocks_b.ravel()) == {300}
    # A B | B A | A B | B A, two calls per block
    assert "".join(order) == "aabb" "bbaa" "aabb" "bbaa"


def test_time_blocks_needs_min_runs_too():
    clock = FakeClock()

    def call() -> None:
        clock.now += 10

    (blocks,) = bench.time_blocks([call], block_runs=5, min_blocks=2, min_runs=23, min_time_s=0.0, clock=clock)
    assert blocks.shape == (5, 5)


# ---------------------------------------------------------------------------------------------------------
# measure / measure_pair on real sessions (no assertion on any time value)


def test_measure_identity_from_bytes():
    data = identity_model(4).SerializeToString()
    result = bench.measure(data, batch_sizes=(1, 8, 1), seed=3, **FAST)
    assert [s.batch_size for s in result.latencies] == [1, 8]  # repeats dropped, order kept
    for s in result.latencies:
        assert s.runs == 30
        assert 0 < s.min_us <= s.p50_us <= s.p90_us <= s.p99_us
    assert result.model.source == "<bytes>"
    assert result.model.node_count == 1 and result.model.op_histogram == {"Identity": 1}
    assert result.model.size_bytes == len(data) and result.model.n_inputs == 4
    assert result.peak_memory_bytes is None
    assert result.settings.io_binding is True and result.settings.threads == 1
    assert result.latency(8).batch_size == 8


def test_measure_gemm_file_with_plain_run_and_json(tmp_path):
    path = save(gemm_relu_model(), tmp_path / "mlp.onnx")
    result = bench.measure(path, batch_sizes=(2,), io_binding=False, threads=1, **FAST)
    payload = json.loads(json.dumps(result.to_json()))  # JSON-serialisable as is
    assert payload["format"] == bench.BENCH_FORMAT and payload["schema_version"] == bench.BENCH_SCHEMA_VERSION
    assert payload["kind"] == "single"
    assert payload["model"]["source"] == str(path)
    assert payload["model"]["op_histogram"] == {"Gemm": 2, "Relu": 1}
    (entry,) = payload["results"]
    assert entry["batch_size"] == 2 and entry["runs"] == 30
    assert entry["throughput_rows_per_s"] == pytest.approx(2 / (entry["p50_us"] * 1e-6))
    assert payload["settings"]["io_binding"] is False and payload["settings"]["batch_sizes"] == [2]
    for key in ("platform", "processor", "cpu_count", "onnxruntime", "threads"):
        assert key in payload["machine"]
    assert payload["machine"]["threads"] == 1


def weights_model(mib: int) -> onnx.ModelProto:
    """x (N, 64) @ W: a model whose only weight holds `mib` MiB of float32."""
    n_out = mib * 1024 * 1024 // 4 // 64
    weight = np.random.default_rng(0).normal(size=(64, n_out)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# Only Linux resets the peak (clear_refs); the ru_maxrss fallback elsewhere read 0 even for the 16 MiB model
# below when forced on Linux (the imports' earlier peak hides the session's growth).
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a resettable peak RSS is Linux-only")
def test_peak_memory_is_measured_in_a_fresh_process(tmp_path):
    path = save(gemm_relu_model(), tmp_path / "mlp.onnx")
    small = bench.measure_peak_memory(path, batch_sizes=(1, 16))
    assert isinstance(small, int) and small > 0  # a real session always grows the process (13 MiB measured)
    # A session must hold its weights: 16 MiB more weights read as at least 16 MiB more peak (measured 31 MiB
    # more: the parsed model and the session's copy). Bytes in: the probe reads the model from stdin.
    big = bench.measure_peak_memory(weights_model(16).SerializeToString())
    assert big - small >= 16 * 2**20, (small, big)


def test_measure_pair_interleaved_ratio_and_json(tmp_path):
    a = save(identity_model(3), tmp_path / "a.onnx")
    b = save(gemm_relu_model(n_in=3), tmp_path / "b.onnx")
    pair = bench.measure_pair(a, b, batch_sizes=(1, 4), warmup_runs=2, min_runs=40, min_time_s=0.0, block_runs=5, min_blocks=10)
    assert [p.batch_size for p in pair.pairs] == [1, 4]
    for p in pair.pairs:
        assert p.blocks == 10 and p.a.runs == 50 and p.b.runs == 50
        assert 0 < p.ratio_ci_low <= p.ratio <= p.ratio_ci_high
    payload = json.loads(json.dumps(pair.to_json()))
    assert payload["kind"] == "pair" and payload["settings"]["block_runs"] == 5
    assert payload["a"]["op_histogram"] == {"Identity": 1} and payload["b"]["node_count"] == 3
    assert set(payload["results"][0]) >= {"a", "b", "ratio", "ratio_ci_low", "ratio_ci_high", "blocks"}


def test_measure_pair_accepts_models_of_different_widths():
    pair = bench.measure_pair(
        identity_model(3).SerializeToString(), identity_model(5).SerializeToString(), warmup_runs=0, min_runs=1, min_time_s=0.0
    )
    assert pair.a.n_inputs == 3 and pair.b.n_inputs == 5


# ---------------------------------------------------------------------------------------------------------
# Errors


def test_not_onnx_is_a_model_file_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("int main(void) { return 0; }\n")
    with pytest.raises(ModelFileError, match=r"bad\.onnx: not an ONNX model"):
        bench.measure(bad, **FAST)


def test_missing_model_is_a_missing_file_error(tmp_path):
    with pytest.raises(MissingFileError, match="no such ONNX file"):
        bench.measure(tmp_path / "nope.onnx", **FAST)


def test_two_inputs_are_refused():
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"])],
        "add",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(InputError, match=r"has 2 inputs \(x, z\); bench measures models with one input"):
        bench.measure(data, **FAST)


def test_non_float_input_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "ints",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 2])],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(InputError, match=r"is tensor\(int64\); bench feeds float32"):
        bench.measure(data, **FAST)


def test_fixed_batch_dimension_must_match():
    data = identity_model(2, batch=1).SerializeToString()
    assert bench.measure(data, batch_sizes=(1,), **FAST).latencies[0].runs == 30
    with pytest.raises(InputError, match="fixed batch size of 1; bench it with batch 1"):
        bench.measure(data, batch_sizes=(4,), **FAST)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_sizes=()), "batch_sizes is empty"),
        (dict(batch_sizes=(0,)), "batch sizes must be >= 1"),
        (dict(threads=0), "threads must be >= 1"),
        (dict(min_runs=0), "min_runs >= 1"),
        (dict(min_time_s=float("nan")), "min_time_s must be a finite number"),
    ],
)
def test_bad_settings(kwargs, match):
    settings = {**FAST, **kwargs}
    with pytest.raises(InputError, match=match):
        bench.measure(identity_model().SerializeToString(), **settings)


def test_bench_modules_do_not_import_torch(tmp_path):
    path = save(identity_model(), tmp_path / "m.onnx")
    proc = python_without_torch(
        "from swat_edge.measure import bench, gate, summary\n"
        f"bench.measure({str(path)!r}, warmup_runs=1, min_runs=2, min_time_s=0.0, measure_memory=False)\n"
        f"summary.summarize_file({str(path)!r})\n", block=False, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------------------
# `swat-edge bench`




def test_cli_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    model = save(gemm_relu_model(), tmp_path / "mlp.onnx")
    out_json, gh_json = tmp_path / "r.json", tmp_path / "gh.json"
    code, out, err = run_cli(
        [
            "bench", str(model), "--batch", "1", "--batch", "16", "--runs", "20", "--no-memory",
            "--json", str(out_json), "--github-json", str(gh_json),
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    assert "p50 us" in out and "throughput rows/s" in out and "3 nodes (Gemm 2, Relu 1)" in out
    payload = json.loads(out_json.read_text())
    assert [r["batch_size"] for r in payload["results"]] == [1, 16]
    assert [r["runs"] for r in payload["results"]] == [20, 20]
    entries = json.loads(gh_json.read_text())
    assert [e["name"] for e in entries] == ["mlp.onnx batch 1 p50", "mlp.onnx batch 16 p50"]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_cli_bench_refuses_to_overwrite_before_measuring(tmp_path, capsys):
    model = save(identity_model(), tmp_path / "m.onnx")
    existing = tmp_path / "r.json"
    existing.write_text("keep me")
    code, out, err = run_cli(["bench", str(model), "--runs", "5", "--json", str(existing)], capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"error: {existing}: already exists; pass --force to overwrite it"
    assert existing.read_text() == "keep me"
    code, _, err = run_cli(["bench", str(model), "--runs", "5", "--no-memory", "--json", str(existing), "--force"], capsys)
    assert code == 0 and json.loads(existing.read_text())["kind"] == "single"


def test_cli_bench_against_prints_ratio_table(tmp_path, capsys):
    a = save(identity_model(3), tmp_path / "a.onnx")
    b = save(gemm_relu_model(n_in=3), tmp_path / "b.onnx")
    code, out, err = run_cli(["bench", str(b), "--against", str(a), "--runs", "20", "--max-regression", "1e9%"], capsys)
    assert code == 0
    assert "b/a" in out and "95% CI" in out
    assert err.count("\n") == 1 and err.startswith("ok: batch 1 b.onnx/a.onnx = ")


@pytest.mark.parametrize(
    "make_args, code, message",
    [
        (lambda d: ["bench", str(d / "missing.onnx")], 2, "missing.onnx: no such model file"),
        (lambda d: ["bench", str(d / "model.c")], 1, "model.c: not a C file generated by swat-edge"),
        (lambda d: ["bench", str(d / "bad.onnx")], 1, "bad.onnx: not an ONNX model"),
        (lambda d: ["bench", str(d / "m.onnx"), "--batch", "0"], 2, "Invalid value for '--batch'"),
        (lambda d: ["bench", str(d / "m.onnx"), "--against", str(d / "model.c")], 2, "--against"),
        (lambda d: ["bench", str(d / "m.onnx"), "--max-regression", "10%"], 2, "--max-regression needs --baseline"),
        (lambda d: ["bench", str(d / "m.onnx"), "--baseline", str(d / "base.json")], 2, "--baseline needs --max-regression"),
        (
            lambda d: ["bench", str(d / "m.onnx"), "--baseline", str(d / "base.json"), "--against", str(d / "m.onnx")],
            2,
            "use one of them",
        ),
    ],
)
def test_cli_bench_errors_are_one_line(tmp_path, capsys, make_args, code, message):
    save(identity_model(), tmp_path / "m.onnx")
    (tmp_path / "model.c").write_text("int main(void) { return 0; }\n")
    (tmp_path / "bad.onnx").write_text("not a model\n")
    (tmp_path / "base.json").write_text("{}")
    got_code, out, err = run_cli(make_args(tmp_path), capsys)
    assert got_code == code
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert out == ""
