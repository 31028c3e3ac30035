"""gate.py: verdicts on synthetic timings, baseline validation, github-action-benchmark JSON, and the CLI gate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from swat_edge.cli import main
from swat_edge.errors import InputError, MissingFileError, UsageError
from swat_edge.measure import gate
from swat_edge.measure.bench import (
    BENCH_FORMAT,
    BENCH_SCHEMA_VERSION,
    BenchResult,
    BenchSettings,
    LatencyStats,
    MachineInfo,
    ModelInfo,
    PairResult,
    PairStats,
)

MACHINE = MachineInfo(
    platform="Linux-test", machine="x86_64", processor="Test CPU", cpu_count=2, python="3.11.7", onnxruntime="1.32.0"
)


def stats(batch: int, p50: float, *, p90: float | None = None, p99: float | None = None) -> LatencyStats:
    p90 = p50 * 1.2 if p90 is None else p90
    p99 = p50 * 2.0 if p99 is None else p99
    return LatencyStats(batch_size=batch, runs=1000, p50_us=p50, p90_us=p90, p99_us=p99, mean_us=p50 * 1.1, min_us=p50 * 0.8)


def info(source: str = "models/model.onnx") -> ModelInfo:
    return ModelInfo(source=source, size_bytes=1234, sha256="0" * 64, node_count=3, op_histogram={"Gemm": 2}, n_inputs=8)


def settings(batches: tuple[int, ...], threads: int = 1, io_binding: bool = True) -> BenchSettings:
    return BenchSettings(
        batch_sizes=batches, warmup_runs=50, min_runs=200, min_time_s=0.5, threads=threads, seed=0, io_binding=io_binding
    )


def result(*latencies: LatencyStats, threads: int = 1, machine: MachineInfo = MACHINE, source: str = "models/model.onnx") -> BenchResult:
    return BenchResult(
        model=info(source),
        latencies=latencies,
        peak_memory_bytes=1 << 20,
        settings=settings(tuple(s.batch_size for s in latencies), threads=threads),
        machine=machine,
    )


def baseline(*latencies: LatencyStats, **kwargs) -> dict:
    return json.loads(json.dumps(result(*latencies, **kwargs).to_json()))


def pair_stats(batch: int, ratio: float, low: float, high: float) -> PairStats:
    return PairStats(
        batch_size=batch, a=stats(batch, 10.0), b=stats(batch, 10.0 * ratio), ratio=ratio, ratio_ci_low=low,
        ratio_ci_high=high, blocks=40,
    )


def pair(*pairs: PairStats, a: str = "base/model.onnx", b: str = "pr/new.onnx") -> PairResult:
    return PairResult(
        a=info(a), b=info(b), pairs=pairs, settings=settings(tuple(p.batch_size for p in pairs)), machine=MACHINE
    )


# ---------------------------------------------------------------------------------------------------------
# compare (saved baseline)


def test_regression_message_names_batch_metric_values_and_limit():
    verdict = gate.compare(result(stats(1, 14.2)), baseline(stats(1, 11.0)), max_regression_pct=10.0)
    assert not verdict.passed
    assert verdict.message == "REGRESSION: batch 1 p50 14.2 us vs baseline 11.0 us (+29.1% > 10.0%)"
    assert verdict.worst_change_pct == pytest.approx(29.0909, abs=1e-3)


def test_within_limit_passes_and_lists_every_batch():
    verdict = gate.compare(
        result(stats(1, 11.3), stats(256, 90.0)), baseline(stats(1, 11.0), stats(256, 100.0)), max_regression_pct=10.0
    )
    assert verdict.passed
    assert verdict.message == (
        "ok: batch 1 p50 11.3 us vs baseline 11.0 us (+2.7% <= 10.0%); "
        "batch 256 p50 90.0 us vs baseline 100.0 us (-10.0% <= 10.0%)"
    )


def test_exactly_at_the_limit_passes():
    assert gate.compare(result(stats(1, 11.0 * 1.1)), baseline(stats(1, 11.0)), max_regression_pct=10.0).passed
    assert not gate.compare(result(stats(1, 11.0 * 1.1 + 0.01)), baseline(stats(1, 11.0)), max_regression_pct=10.0).passed


def test_only_failing_batches_are_listed_on_regression():
    verdict = gate.compare(
        result(stats(1, 10.0), stats(64, 30.0), stats(256, 150.0)),
        baseline(stats(1, 10.0), stats(64, 20.0), stats(256, 100.0)),
        max_regression_pct=25.0,
    )
    assert not verdict.passed
    assert "batch 1 " not in verdict.message
    assert "batch 64 p50 30.0 us vs baseline 20.0 us (+50.0% > 25.0%)" in verdict.message
    assert "batch 256 p50 150.0 us vs baseline 100.0 us (+50.0% > 25.0%)" in verdict.message
    assert "\n" not in verdict.message


def test_metric_selects_the_percentile():
    current = result(stats(1, 10.0, p99=50.0))
    base = baseline(stats(1, 10.0, p99=20.0))
    assert gate.compare(current, base, max_regression_pct=10.0).passed
    verdict = gate.compare(current, base, max_regression_pct=10.0, metric="p99")
    assert not verdict.passed and "batch 1 p99 50.0 us vs baseline 20.0 us" in verdict.message
    with pytest.raises(UsageError, match="metric must be one of p50, p90, p99, mean"):
        gate.compare(current, base, max_regression_pct=10.0, metric="p75")


def test_batch_size_absent_from_baseline():
    with pytest.raises(InputError, match=r"saved\.json: has no batch size 256 \(it has 1, 64\); re-record"):
        gate.compare(
            result(stats(256, 1.0)), baseline(stats(1, 1.0), stats(64, 2.0)), max_regression_pct=10.0, source="saved.json"
        )


def test_settings_that_differ_from_the_baseline_are_named():
    other_cpu = MachineInfo(**{**MACHINE.__dict__, "processor": "Other CPU", "onnxruntime": "1.31.0"})
    verdict = gate.compare(
        result(stats(1, 10.0)), baseline(stats(1, 10.0), threads=2, machine=other_cpu), max_regression_pct=10.0
    )
    assert verdict.passed
    assert verdict.message.endswith(
        "[baseline differs: onnxruntime 1.31.0 vs 1.32.0, processor Other CPU vs Test CPU, threads 2 vs 1]"
    )


def test_negative_threshold_is_refused():
    with pytest.raises(UsageError, match="max_regression_pct must be a finite number >= 0"):
        gate.compare(result(stats(1, 1.0)), baseline(stats(1, 1.0)), max_regression_pct=-1.0)


# ---------------------------------------------------------------------------------------------------------
# Baseline validation


def _valid() -> dict:
    return baseline(stats(1, 10.0))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: [p], "baseline must be a JSON object"),
        (lambda p: {**p, "format": "other"}, "not a swat-edge benchmark"),
        (lambda p: {**p, "schema_version": 99}, "schema version 99 is not supported"),
        (lambda p: {**p, "kind": "pair"}, "is a 'pair' benchmark"),
        (lambda p: {**p, "results": []}, "'results' must be a non-empty list"),
        (lambda p: {**p, "results": [1]}, r"results\[0\]: must be an object"),
        (lambda p: {**p, "results": [{**p["results"][0], "batch_size": True}]}, "'batch_size' must be an integer"),
        (lambda p: {**p, "results": [{**p["results"][0], "p50_us": -3.0}]}, "'p50_us' must be a positive number"),
        (lambda p: {**p, "results": [{k: v for k, v in p["results"][0].items() if k != "p99_us"}]}, "'p99_us'"),
    ],
)
def test_check_baseline_rejects(mutate, match):
    with pytest.raises(InputError, match=match):
        gate.check_baseline(mutate(_valid()), source="b.json")


def test_check_baseline_returns_values_by_batch():
    table = gate.check_baseline(baseline(stats(1, 10.0), stats(8, 20.0)))
    assert sorted(table) == [1, 8] and table[8]["p50_us"] == 20.0
    assert _valid()["format"] == BENCH_FORMAT and _valid()["schema_version"] == BENCH_SCHEMA_VERSION


def test_load_baseline_file_errors(tmp_path):
    with pytest.raises(MissingFileError, match="no such baseline file"):
        gate.load_baseline(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    with pytest.raises(InputError, match=r"broken\.json: not valid JSON \(line 1"):
        gate.load_baseline(broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputError, match="not a JSON file"):
        gate.load_baseline(binary)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_valid()))
    assert gate.load_baseline(good)["kind"] == "single"


# ---------------------------------------------------------------------------------------------------------
# compare_pair (interleaved A/B): fail only when the whole CI is above the limit


def test_pair_fails_when_the_ci_lies_above_the_limit():
    verdict = gate.compare_pair(pair(pair_stats(1, 1.30, 1.25, 1.36)), 10.0)
    assert not verdict.passed
    assert verdict.message == (
        "REGRESSION: batch 1 new.onnx/model.onnx = 1.300x (95% CI 1.250x-1.360x, all above 1.100x = +10.0%)"
    )
    assert verdict.worst_change_pct == pytest.approx(30.0)


def test_pair_with_a_ci_reaching_below_the_limit_is_inconclusive_not_failed():
    verdict = gate.compare_pair(pair(pair_stats(1, 1.12, 1.05, 1.20)), 10.0)
    assert verdict.passed
    assert verdict.message.startswith("ok (inconclusive): batch 1 new.onnx/model.onnx = 1.120x")
    assert "rerun with more --runs" in verdict.message


def test_pair_within_limit_is_ok():
    verdict = gate.compare_pair(pair(pair_stats(1, 1.02, 0.98, 1.06), pair_stats(64, 0.9, 0.85, 0.95)), 10.0)
    assert verdict.passed and verdict.message.startswith("ok: batch 1 ")
    assert "batch 64 new.onnx/model.onnx = 0.900x" in verdict.message


# ---------------------------------------------------------------------------------------------------------
# --max-regression parsing and github-action-benchmark JSON


@pytest.mark.parametrize("text, value", [("10%", 10.0), ("10", 10.0), (" 7.5 % ", 7.5), (0, 0.0), ("1e9%", 1e9)])
def test_parse_percent(text, value):
    assert gate.parse_percent(text) == value


@pytest.mark.parametrize("text", ["abc", "-5%", "nan", "inf%", "%", ""])
def test_parse_percent_rejects(text):
    with pytest.raises(UsageError, match="--max-regression: "):
        gate.parse_percent(text)


def test_github_benchmark_entries_for_a_single_model():
    entries = gate.to_github_benchmark(result(stats(1, 12.3456), stats(256, 100.0)))
    assert [e["name"] for e in entries] == ["model.onnx batch 1 p50", "model.onnx batch 256 p50"]
    assert all(e["unit"] == "us" for e in entries)
    assert entries[0]["value"] == 12.346
    assert "p99 24.69 us" in entries[0]["extra"] and "runs 1000" in entries[0]["extra"]
    assert json.loads(json.dumps(entries)) == entries


def test_github_benchmark_entries_for_a_pair_keep_names_distinct():
    entries = gate.to_github_benchmark(pair(pair_stats(1, 1.2, 1.1, 1.3), a="base/model.onnx", b="pr/model.onnx"))
    names = [e["name"] for e in entries]
    assert len(names) == 2 and len(set(names)) == 2
    assert names == ["base/model.onnx batch 1 p50", "pr/model.onnx batch 1 p50"]
    assert "ratio vs base/model.onnx 1.200x" in entries[1]["extra"]


# ---------------------------------------------------------------------------------------------------------
# The gate through the CLI: a real run against crafted baselines, so the outcome does not depend on speed


def _identity_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code), out, err


@pytest.mark.parametrize(
    "baseline_p50_us, code, prefix",
    [(1e-6, 1, "REGRESSION: batch 1 p50 "), (1e9, 0, "ok: batch 1 p50 ")],
)
def test_cli_gate_verdict_and_exit_code(tmp_path, capsys, baseline_p50_us, code, prefix):
    model = _identity_onnx(tmp_path / "m.onnx")
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(baseline(stats(1, baseline_p50_us))))
    got, out, err = _run(
        ["bench", str(model), "--runs", "20", "--no-memory", "--baseline", str(saved), "--max-regression", "10%"], capsys
    )
    assert got == code
    assert err.count("\n") == 1 and err.startswith(prefix)
    assert "p50 us" in out


def test_cli_gate_checks_the_baseline_before_measuring(tmp_path, capsys):
    model = _identity_onnx(tmp_path / "m.onnx")
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(baseline(stats(1, 10.0))))
    args = ["bench", str(model), "--batch", "64", "--baseline", str(saved), "--max-regression", "10"]
    code, out, err = _run(args, capsys)
    assert code == 2 and out == ""
    assert err.strip() == (
        f"error: --baseline {saved}: has no batch size 64 (it has 1); drop that --batch or re-record the baseline"
    )
    saved.write_text("not json")
    code, out, err = _run(args, capsys)
    assert code == 1 and out == "" and "not valid JSON" in err and err.count("\n") == 1
    code, out, err = _run(["bench", str(model), "--baseline", str(tmp_path / "none.json"), "--max-regression", "10"], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'none.json'}: no such baseline file"
    code, out, err = _run(["bench", str(model), "--baseline", str(saved), "--max-regression", "ten"], capsys)
    assert code == 2 and "--max-regression: expected a percentage such as 10% or 10, got 'ten'" in err


def test_cli_json_round_trips_as_a_baseline(tmp_path, capsys):
    model = _identity_onnx(tmp_path / "m.onnx")
    saved = tmp_path / "baselines" / "cpu" / "ort.json"  # folders are created
    code, _, _ = _run(["bench", str(model), "--runs", "10", "--no-memory", "--json", str(saved)], capsys)
    assert code == 0
    table = gate.check_baseline(json.loads(saved.read_text()))
    assert list(table) == [1]
    code, _, err = _run(
        ["bench", str(model), "--runs", "10", "--no-memory", "--baseline", str(saved), "--max-regression", "1e9"], capsys
    )
    assert code == 0 and err.startswith("ok: ")


# ---------------------------------------------------------------------------------------------------------
# examples/github-actions-latency-gate.yml


WORKFLOW = Path(__file__).resolve().parent.parent / "examples" / "github-actions-latency-gate.yml"


def _swat_edge_commands(text: str) -> list[list[str]]:
    import shlex

    joined = text.replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in joined.splitlines() if line.strip().startswith("swat-edge ")]


def test_workflow_uses_only_flags_the_cli_has():
    import typer

    from swat_edge.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    text = WORKFLOW.read_text()
    found = _swat_edge_commands(text)
    assert {"bench", "export"} <= {cmd[1] for cmd in found}
    assert any("--baseline" in cmd and "--max-regression" in cmd for cmd in found)
    assert any("--against" in cmd for cmd in found)
    for cmd in found:
        assert cmd[1] in commands, cmd
        known = {opt for p in commands[cmd[1]].params for opt in (*p.opts, *p.secondary_opts)}
        flags = {tok for tok in cmd[2:] if tok.startswith("-")}
        assert flags <= known, (cmd, flags - known)
    assert "tool: customSmallerIsBetter" in text and "benchmark-action/github-action-benchmark@v1" in text


def test_workflow_is_valid_yaml():
    import yaml  # PyYAML is in the `test` extra (pyproject.toml), so this runs wherever the tests run

    doc = yaml.safe_load(WORKFLOW.read_text())
    assert set(doc["jobs"]) == {"baseline-gate", "ab-gate"}
    steps = doc["jobs"]["baseline-gate"]["steps"]
    bench_step = next(s for s in steps if s.get("uses", "").startswith("benchmark-action/github-action-benchmark"))
    assert bench_step["with"]["tool"] == "customSmallerIsBetter"
