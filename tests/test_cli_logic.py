"""What used to live in cli.py, tested where it lives now: bench's gate flags (measure.gate), export's flags and
calibration/holdout rows (export.pipeline), budget quantities (device.cost), the calibrated profile file
(measure.calibrate) and torch's thread setup (search)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_gate import baseline, pair, pair_stats, result, stats

from swat_edge.data import model_rows, read_table
from swat_edge.device.cost import parse_latency_us, parse_size_bytes
from swat_edge.device.targets import load_target
from swat_edge.errors import InputError, MissingFileError, OutputExistsError, UsageError
from swat_edge.export.pipeline import MAX_CALIBRATION_ROWS, CExport, OnnxExport, export_file, read_export_rows
from swat_edge.measure import gate
from swat_edge.measure.calibrate import CalibrationResult, profile_name_for, write_profile

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CALIBRATION = EXAMPLES / "motor.csv"  # 1500 rows
HOLDOUT = EXAMPLES / "motor_holdout.csv"  # 500 rows


def _write_baseline(path: Path, *batches: int) -> Path:
    path.write_text(json.dumps(baseline(*(stats(b, 10.0) for b in batches))), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# bench's gate flags (measure.gate)


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(baseline="b.json", against=True, max_regression=None), "--baseline and --against: use one of them"),
        (dict(baseline="b.json", against=False, max_regression=None), "--baseline needs --max-regression"),
        (dict(baseline=None, against=False, max_regression="10%"), "--max-regression needs --baseline FILE or --against"),
        (dict(baseline=None, against=True, max_regression="ten"), "--max-regression: expected a percentage"),
    ],
)
def test_gate_flag_combinations_that_cannot_gate_are_refused(flags, message):
    # None of these reads the baseline file: a flag error comes before any file is opened.
    with pytest.raises(UsageError, match=message):
        gate.check_gate_flags(batch_sizes=(1,), **flags)


def test_no_gate_flags_is_a_plain_benchmark():
    request = gate.check_gate_flags(baseline=None, max_regression=None, against=False, batch_sizes=(1,))
    assert request.max_regression_pct is None and request.baseline is None
    assert gate.judge(result(stats(1, 1000.0)), request) is None  # no verdict, however slow


def test_a_baseline_without_a_requested_batch_size_is_refused_before_timing(tmp_path):
    path = _write_baseline(tmp_path / "b.json", 1, 4)
    with pytest.raises(UsageError, match=r"b\.json: has no batch size 8 \(it has 1, 4\); drop that --batch"):
        gate.check_gate_flags(baseline=path, max_regression="10%", against=False, batch_sizes=(1, 8))


def test_a_baseline_gate_loads_the_baseline_and_judges_against_it(tmp_path):
    path = _write_baseline(tmp_path / "b.json", 1, 4)
    request = gate.check_gate_flags(baseline=path, max_regression="10%", against=False, batch_sizes=(4,))
    assert request.max_regression_pct == 10.0 and request.baseline_source == str(path)
    assert request.baseline["results"][0]["batch_size"] == 1
    slower = gate.judge(result(stats(4, 12.0)), request)
    assert not slower.passed and slower.message.startswith("REGRESSION: batch 4 p50 12.0 us vs baseline 10.0 us")
    assert gate.judge(result(stats(4, 10.5)), request).passed


def test_a_baseline_file_that_is_not_a_baseline_is_an_input_error(tmp_path):
    (tmp_path / "b.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputError, match="baseline must be a JSON object"):
        gate.check_gate_flags(baseline=tmp_path / "b.json", max_regression="10%", against=False, batch_sizes=(1,))


def test_an_against_gate_judges_the_pair_on_its_confidence_interval():
    request = gate.check_gate_flags(baseline=None, max_regression="10%", against=True, batch_sizes=(1,))
    assert request.baseline is None
    assert not gate.judge(pair(pair_stats(1, 1.3, 1.2, 1.4)), request).passed
    assert gate.judge(pair(pair_stats(1, 1.3, 1.05, 1.5)), request).message.startswith("ok (inconclusive)")


@pytest.mark.parametrize("flag", ["baseline", "max_regression", "github_json"])
def test_gate_flags_are_refused_for_generated_c(flag):
    flags = {"baseline": None, "max_regression": None, "github_json": None, flag: "x"}
    with pytest.raises(UsageError, match="the CI gate compares ONNX results only"):
        gate.refuse_gate_for_c(**flags)
    gate.refuse_gate_for_c(baseline=None, max_regression=None, github_json=None)  # no gate: nothing to refuse


def test_bench_times_onnx_files_only(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert gate.check_onnx_model(model, "MODEL") == model
    with pytest.raises(MissingFileError, match="no such model file"):
        gate.check_onnx_model(tmp_path / "absent.onnx", "MODEL")
    (tmp_path / "m.safetensors").write_bytes(b"")
    with pytest.raises(UsageError, match=r"--against .*m\.safetensors: bench measures \.onnx models"):
        gate.check_onnx_model(tmp_path / "m.safetensors", "--against")


def test_bench_outputs_are_checked_before_timing(tmp_path):
    existing = tmp_path / "b.json"
    existing.write_text("{}", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        gate.check_bench_outputs(existing, None, force=False)
    gate.check_bench_outputs(existing, tmp_path / "gh.json", force=True)
    with pytest.raises(UsageError, match="--json and --github-json: both name"):
        gate.check_bench_outputs(tmp_path / "x.json", tmp_path / "." / "x.json", force=False)


# ---------------------------------------------------------------------------------------------------------
# export's rows and flags (export.pipeline)


def test_no_row_files_give_no_rows(example_model):
    rows = read_export_rows(example_model)
    assert rows == type(rows)(None, None, None, None, None)


def test_a_calibration_file_alone_is_split_into_calibration_and_heldout_halves(example_model):
    rows = read_export_rows(example_model, calibration=CALIBRATION)
    x, y = model_rows(read_table(CALIBRATION), example_model.feature_names, example_model.target_names)
    assert len(rows.calibration) == MAX_CALIBRATION_ROWS and len(rows.heldout) == len(x) - len(x) // 2
    assert rows.heldout_targets.shape == (len(rows.heldout), 1)
    # Calibrating and measuring drift on the same rows would flatter int8: the halves share no row.
    calibration, heldout = {r.tobytes() for r in rows.calibration}, {r.tobytes() for r in rows.heldout}
    assert not calibration & heldout and calibration | heldout <= {r.tobytes() for r in x}
    assert rows.calibration_source == f"{MAX_CALIBRATION_ROWS} rows of {CALIBRATION}"
    assert rows.heldout_source == f"held-out rows (half of {CALIBRATION})"


def test_a_holdout_file_replaces_the_heldout_half(example_model):
    rows = read_export_rows(example_model, calibration=CALIBRATION, holdout=HOLDOUT)
    x, y = model_rows(read_table(HOLDOUT), example_model.feature_names, example_model.target_names)
    np.testing.assert_array_equal(rows.heldout, x)
    np.testing.assert_array_equal(rows.heldout_targets, y)
    assert len(rows.calibration) == MAX_CALIBRATION_ROWS
    assert rows.heldout_source == f"held-out rows from {HOLDOUT}"
    alone = read_export_rows(example_model, holdout=HOLDOUT)
    assert alone.calibration is None and alone.calibration_source is None and len(alone.heldout) == 500


@pytest.mark.parametrize(
    "output, flags, message",
    [
        ("m.c", dict(quantize="static"), "--quantize/--quantize-last: for ONNX output"),
        ("m.c", dict(quantize_last=True), "--quantize/--quantize-last: for ONNX output"),
        ("m.c", dict(dtype="int4"), "--dtype 'int4': use float or int8"),
        ("m.onnx", dict(dtype="int8"), "--dtype/--fast-math/--prefix: for C output"),
        ("m.onnx", dict(fast_math=True), "--dtype/--fast-math/--prefix: for C output"),
        ("m.int8.onnx", dict(prefix="net"), "--dtype/--fast-math/--prefix: for C output"),
        ("m.onnx", dict(quantize="int4"), "--quantize 'int4': use none, static or dynamic"),
        ("m.tflite", {}, "unknown output format"),
    ],
)
def test_export_flags_are_checked_before_the_model_is_read(tmp_path, output, flags, message):
    # The model file does not exist: a flag error must come first, not "no such model file".
    with pytest.raises(UsageError, match=message):
        export_file(tmp_path / "absent.safetensors", tmp_path / output, **flags)


def test_an_int8_onnx_name_exports_static_int8(example_model_path, tmp_path):
    export = export_file(example_model_path, tmp_path / "m.int8.onnx", calibration=CALIBRATION, holdout=HOLDOUT)
    assert isinstance(export.result, OnnxExport) and export.result.quantization == "static"
    assert export.written and (tmp_path / "m.int8.onnx").exists()
    assert export.rows.heldout_source == f"held-out rows from {HOLDOUT}"
    assert export.result.drift is not None and export.result.drift.rows == 500


def test_a_refused_drift_gate_is_not_written(example_model_path, tmp_path):
    export = export_file(example_model_path, tmp_path / "m.int8.onnx", max_drift=1e-12)
    assert not export.written and not (tmp_path / "m.int8.onnx").exists()


def test_a_c_name_exports_c_with_the_heldout_rows(example_model_path, tmp_path):
    export = export_file(example_model_path, tmp_path / "m.c", holdout=HOLDOUT)
    assert isinstance(export.result, CExport) and export.result.code.dtype == "float" and export.written
    if export.result.check is not None:  # None only where no C compiler is installed
        assert export.result.check.rows == 500 and export.result.check_rows_source == f"held-out rows from {HOLDOUT}"


# ---------------------------------------------------------------------------------------------------------
# budgets (device.cost)


@pytest.mark.parametrize("text, us", [("20us", 20.0), ("20", 20.0), ("0.5 ms", 500.0), ("2s", 2e6), ("15µs", 15.0),
                                      ("1e1US", 10.0)])
def test_latency_budgets_are_read_in_microseconds(text, us):
    assert parse_latency_us(text) == pytest.approx(us)


@pytest.mark.parametrize("text, size", [("4KB", 4000), ("4kib", 4096), ("512", 512), ("1MiB", 1 << 20), ("2 mb", 2e6)])
def test_size_budgets_are_read_in_bytes(text, size):
    assert parse_size_bytes(text) == size


@pytest.mark.parametrize("text", ["", "us", "0us", "-5us", "20 parsecs", "20kb"])
def test_a_latency_that_is_not_one_names_the_flag(text):
    with pytest.raises(UsageError, match=r"--latency-budget .*: give a positive number with a unit \(us, µs, ms, s\)"):
        parse_latency_us(text)
    with pytest.raises(UsageError, match=r"^--size-budget '20us': .*e\.g\. 4KB$"):
        parse_size_bytes("20us")


# ---------------------------------------------------------------------------------------------------------
# the calibrated profile file (measure.calibrate)


def test_the_profile_path_is_checked_before_calibrating(tmp_path):
    assert profile_name_for(tmp_path / "my-board.toml", name=None, force=False) == "my-board"
    assert profile_name_for(tmp_path / "my-board.toml", name="lab", force=False) == "lab"
    with pytest.raises(UsageError, match=r"a target profile is a \.toml file; name it e\.g\. .*board\.toml"):
        profile_name_for(tmp_path / "board.txt", name=None, force=False)
    with pytest.raises(UsageError, match="--name: give a non-empty target name"):
        profile_name_for(tmp_path / "b.toml", name="  ", force=False)
    (tmp_path / "old.toml").write_text("", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        profile_name_for(tmp_path / "old.toml", name=None, force=False)
    assert profile_name_for(tmp_path / "old.toml", name=None, force=True) == "old"


def test_the_written_profile_loads_back_with_its_coefficients(tmp_path):
    base = load_target("raspi4")
    measured = dataclasses.replace(
        base, name="lab", provenance=dataclasses.replace(base.provenance, kind="measured", date="2030-01-02T03:04:05+00:00",
                                                         machine="test machine", fit_rmspe=0.05, measurements=12),
    )
    calibration = CalibrationResult(profile=measured, fit_rmspe=0.05, measurements=(), rounds=3, duration_s=1.0)
    path = write_profile(calibration, tmp_path / "lab.toml", force=False)
    assert "written by `swat-edge calibrate` on 2030-01-02T03:04:05+00:00" in path.read_text(encoding="utf-8")
    loaded = load_target(path)
    assert loaded.name == "lab" and loaded.cost == base.cost and loaded.provenance.kind == "measured"
    with pytest.raises(OutputExistsError):
        write_profile(calibration, path, force=False)


# ---------------------------------------------------------------------------------------------------------
# torch threads (search)


def test_torch_threads_are_set_and_can_be_set_again():
    torch = pytest.importorskip("torch")
    from swat_edge.search import set_torch_threads

    before = torch.get_num_threads()
    try:
        set_torch_threads(2)
        assert torch.get_num_threads() == 2
        set_torch_threads(1)  # again in one process: torch fixes inter-op threads once, and that must not raise
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
