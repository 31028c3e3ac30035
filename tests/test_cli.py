"""`swat-edge export` end to end, its bad inputs (one line, exit code), and the device commands without torch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli, run_without_torch

from swat_edge.export.onnx import check_onnx, load_onnx, run_onnx
from swat_edge.model import forward, model_to_bytes, random_model, save_model

REPO = Path(__file__).resolve().parent.parent  # not imported from conftest: tests/search has one too
EXAMPLES = REPO / "examples"




def test_export_fp32_takes_raw_features_and_matches_the_model(example_model, example_model_path, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli(["export", example_model_path, "-o", out], capsys)
    assert (code, err) == (0, "")
    assert "verified fp32 graph against the original model" in stdout and f"wrote {out}" in stdout
    rows = np.loadtxt(EXAMPLES / "motor_holdout.csv", delimiter=",", skiprows=1)
    y = run_onnx(load_onnx(out).SerializeToString(), rows[:, :4].astype(np.float32))
    np.testing.assert_allclose(y, forward(example_model, rows[:, :4]), atol=1e-5 * 65, rtol=0)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_export_int8_reports_drift_against_heldout_rows(example_model_path, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    code, stdout, err = run_cli(
        ["export", example_model_path, "-o", out, "--calibration", EXAMPLES / "motor.csv",
         "--holdout", EXAMPLES / "motor_holdout.csv", "--max-drift", "1e-2"],
        capsys,
    )
    assert (code, err) == (0, "")
    assert "int8 (static) drift vs fp32 on 500 held-out data rows: relative MSE" in stdout
    ops = {n.op_type for n in load_onnx(out).graph.node}
    assert "QuantizeLinear" in ops and not any(op.startswith("QLinear") for op in ops)


def test_export_int8_drift_gate_fails_and_writes_nothing(example_model_path, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    code, stdout, err = run_cli(["export", example_model_path, "-o", out, "--max-drift", "1e-12"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "exceeds --max-drift 1e-12" in err and "not written" in err
    assert not out.exists() and os.listdir(tmp_path) == []


def _model_with_an_unused_input():
    from swat_edge.model import Layer, SparseMLP

    w = np.array([[1.0, -1.0], [0.0, 0.0], [0.5, 2.0]])
    return SparseMLP.make(
        [Layer.make(w, [0.1, -0.2], ("tanh", "relu"))],
        Layer.make(np.array([[1.0], [1.0]]), [0.0]),
        feature_names=("a", "unused", "c"),
    )


def test_export_keeps_the_data_signature_by_default(tmp_path, capsys):
    import onnxruntime as ort

    model = _model_with_an_unused_input()
    src = save_model(model, tmp_path / "m.safetensors")
    code, stdout, _ = run_cli(["export", src, "-o", tmp_path / "m.onnx"], capsys)
    assert code == 0 and "the graph takes 3 columns in this order: a, unused, c" in stdout
    assert "dropped" not in stdout
    # a consumer feeding the data's rows (all three columns) gets the reference forward's answer
    x = np.random.default_rng(0).uniform(-2, 2, size=(16, 3))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert session.get_inputs()[0].shape[1] == 3
    got = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, forward(model, x), atol=1e-5)
    meta = {p.key: p.value for p in load_onnx(tmp_path / "m.onnx").metadata_props}
    assert json.loads(meta["feature_names"]) == ["a", "unused", "c"]
    code, stdout, _ = run_cli(["export", src, "-o", tmp_path / "m.c"], capsys)
    assert code == 0 and "inputs: 3 columns in this order: a, unused, c" in stdout
    assert "#define M_N_INPUTS 3" in (tmp_path / "m.h").read_text()


def test_export_drops_unused_inputs_when_asked_and_says_which(tmp_path, capsys):
    model = _model_with_an_unused_input()
    src = save_model(model, tmp_path / "m.safetensors")
    code, stdout, _ = run_cli(["export", src, "-o", tmp_path / "m.onnx", "--drop-unused-inputs"], capsys)
    assert code == 0 and "unused inputs dropped (--drop-unused-inputs): unused" in stdout
    assert "the graph takes 2 columns in this order: a, c" in stdout
    report = check_onnx(load_onnx(tmp_path / "m.onnx").SerializeToString(), model, input_columns=[0, 2])
    assert report.passed
    code, stdout, _ = run_cli(["export", src, "-o", tmp_path / "m.c", "--drop-unused-inputs"], capsys)
    assert code == 0 and "inputs: 2 columns in this order: a, c" in stdout
    assert "#define M_N_INPUTS 2" in (tmp_path / "m.h").read_text()


def test_many_input_columns_are_summarised_on_one_line_and_kept_whole_in_the_metadata(tmp_path, capsys):
    names = tuple(f"sensor_{i}" for i in range(40))
    model = random_model((40, 3, 1), seed=0).replace(feature_names=names)
    src = save_model(model, tmp_path / "m.safetensors")
    code, stdout, _ = run_cli(["export", src, "-o", tmp_path / "m.onnx"], capsys)
    assert code == 0
    line = next(line for line in stdout.splitlines() if "columns in this order" in line)
    assert line.endswith("sensor_0, sensor_1, sensor_2, sensor_3, sensor_4, sensor_5, sensor_6, sensor_7, sensor_8, "
                         "sensor_9, ... (27 more), sensor_37, sensor_38, sensor_39")
    meta = {p.key: p.value for p in load_onnx(tmp_path / "m.onnx").metadata_props}
    assert json.loads(meta["feature_names"]) == list(names)


def _write(path: Path, data) -> Path:
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


@pytest.mark.parametrize(
    "setup, code, message",
    [
        (lambda d, m: ["export", d / "nope.safetensors", "-o", d / "o.onnx"], 2, "nope.safetensors: no such model file"),
        (lambda d, m: ["export", _write(d / "x.safetensors", "hello"), "-o", d / "o.onnx"], 1, "not a swat-edge model"),
        (
            lambda d, m: ["export", _write(d / "t.safetensors", model_to_bytes(m)[:-7]), "-o", d / "o.onnx"],
            1,
            "truncated",
        ),
        (lambda d, m: ["export", m.path, "-o", _write(d / "o.onnx", "old")], 2, "o.onnx: already exists; pass --force"),
        (lambda d, m: ["export", m.path, "-o", d / "o.tflite"], 2, "unknown output format"),
        (lambda d, m: ["export", m.path, "-o", d / "o.onnx", "--quantize", "int4"], 2, "--quantize 'int4'"),
        (
            lambda d, m: ["export", m.path, "-o", d / "o.int8.onnx", "--calibration", _write(d / "c.csv", "a,b,c\n1,2,3\n")],
            1,
            "c.csv: has 3 columns (a, b, c); the model takes 4 inputs",
        ),
        (
            lambda d, m: [
                "export", m.path, "-o", d / "o.int8.onnx", "--calibration",
                _write(d / "n.csv", "rpm,load_pct,ambient_c,supply_v\n1,2,3,4\n5,nan,7,8\n"),
            ],
            1,
            "n.csv row 2, column 'load_pct': empty cell or NaN; values must be finite",
        ),
        (lambda d, m: ["export", m.path, "-o", d / "f" / "o.onnx"], 2, "not a folder"),
    ],
)
def test_export_bad_inputs_are_one_line_errors(example_model, example_model_path, tmp_path, capsys, setup, code, message):
    (tmp_path / "f").write_text("a file where a folder should be")
    args = setup(tmp_path, _Model(example_model, example_model_path))
    before = sorted(os.listdir(tmp_path))
    got, out, err = run_cli(args, capsys)
    assert got == code, err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # nothing half-written


class _Model:
    """The example model with its file path, so a parameter lambda can use both."""

    def __init__(self, model, path):
        self._model, self.path = model, path

    def __getattr__(self, name):
        return getattr(self._model, name)


def test_unknown_schema_version_exits_1_with_one_line(example_model_path, tmp_path, capsys):
    data = example_model_path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["swat_edge"])
    meta["schema_version"] = 7
    header["__metadata__"]["swat_edge"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    src = _write(tmp_path / "v7.safetensors", len(raw).to_bytes(8, "little") + raw + data[8 + n :])
    code, _, err = run_cli(["inspect", src], capsys)
    assert code == 1 and "schema version 7 is not supported" in err and err.count("\n") == 1


def test_device_commands_run_without_torch(example_model_path, tmp_path):
    """export, bench and inspect through the real console script, with torch made unimportable."""
    out = tmp_path / "m.onnx"
    proc = run_without_torch([
        ["export", example_model_path, "-o", out],
        ["export", example_model_path, "-o", tmp_path / "m.int8.onnx"],
        ["bench", out, "--runs", "20", "--no-memory"],
        ["inspect", out],
        ["inspect", example_model_path],
    ])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.exists() and (tmp_path / "m.int8.onnx").exists()


def test_cli_module_imports_fast_modules_only():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, swat_edge.cli; print(sorted(m for m in ('torch', 'onnxsim', 'onnxruntime') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
