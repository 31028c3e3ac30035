"""quantize_static/quantize_dynamic/measure_drift: QDQ only, what stays fp32, drift, calibration row checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from clirun import python_without_torch

from swat_edge.errors import DataError
from swat_edge.export.onnx import load_onnx, read_metadata, run_onnx, to_onnx
from swat_edge.export.quantize import DriftReport, is_qdq_only, measure_drift, quantize_dynamic, quantize_static
from swat_edge.model import Layer, SparseMLP, random_model, sample_inputs

QOPERATOR_PREFIXES = ("QLinear", "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear")
ACTIVATION_OPS = ("Relu", "LeakyRelu", "Tanh", "Sigmoid")


@pytest.fixture(scope="module")
def mixed_net() -> SparseMLP:
    # 2-7-7-7-1 with all four hidden activations mixed in every layer, for the graph rules. Drift depends on
    # the net, so drift bounds are checked on DRIFT_SEEDS, not on this one.
    return random_model([2, 7, 7, 7, 1], seed=4)


# The first ten 2-7-7-7-1 nets, none chosen: their relative int8 drift spans 4e-4..1e-2 (conditioning: a net
# whose output varies little against its hidden ranges drifts more), geometric mean 2.0e-3, static and dynamic.
DRIFT_SEEDS = tuple(range(10))
MAX_DRIFT = 2e-2  # every net, 2x the worst measured
MAX_GEOMEAN_DRIFT = 4e-3  # the set as a whole, 2x the measured: catches a quantizer that got uniformly worse


def _drifts(quantize) -> list[float]:
    drifts = []
    for seed in DRIFT_SEEDS:
        model = random_model([2, 7, 7, 7, 1], seed=seed)
        fp32 = to_onnx(model)
        drifts.append(measure_drift(fp32, quantize(fp32, model), sample_inputs(model, 2000, seed=2)).relative_mse)
    return drifts


def _assert_small(drifts: list[float]) -> None:
    assert all(0.0 < d < MAX_DRIFT for d in drifts), drifts
    assert float(np.exp(np.mean(np.log(drifts)))) < MAX_GEOMEAN_DRIFT, drifts


@pytest.fixture(scope="module")
def mixed_fp32(mixed_net: SparseMLP) -> onnx.ModelProto:
    return to_onnx(mixed_net)


@pytest.fixture(scope="module")
def mixed_int8(mixed_net: SparseMLP, mixed_fp32: onnx.ModelProto) -> onnx.ModelProto:
    return quantize_static(mixed_fp32, sample_inputs(mixed_net, 1024, seed=1))


def producers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in proto.graph.node for out in node.output}


def gemms(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in proto.graph.node if node.op_type == "Gemm"]


def op_count(proto: onnx.ModelProto, op: str) -> int:
    return sum(node.op_type == op for node in proto.graph.node)


# --- graph rules -----------------------------------------------------------------------------------------


def test_static_is_qdq_only(mixed_int8: onnx.ModelProto) -> None:
    ops = {node.op_type for node in mixed_int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not [op for op in ops if op.startswith(QOPERATOR_PREFIXES)]
    assert is_qdq_only(mixed_int8)
    onnx.checker.check_model(mixed_int8, full_check=True)


def test_only_gemm_inputs_are_quantized(mixed_fp32: onnx.ModelProto, mixed_int8: onnx.ModelProto) -> None:
    consumers = {name: [n for n in mixed_int8.graph.node if name in n.input] for n in mixed_int8.graph.node
                 for name in n.output}
    for node in mixed_int8.graph.node:
        if node.op_type == "DequantizeLinear":
            assert {c.op_type for c in consumers[node.output[0]]} == {"Gemm"}, node.name
    # every activation op survives (onnxruntime may otherwise drop a Relu behind a Split) and runs in float
    for op in ACTIVATION_OPS:
        assert op_count(mixed_int8, op) == op_count(mixed_fp32, op)


def test_last_gemm_stays_fp32(mixed_int8: onnx.ModelProto) -> None:
    made_by = producers(mixed_int8)
    *hidden, last = gemms(mixed_int8)
    assert last.name == "output_gemm"
    assert all(made_by[i].op_type != "DequantizeLinear" for i in last.input if i in made_by)
    weight = next(t for t in mixed_int8.graph.initializer if t.name == last.input[1])
    assert weight.data_type == onnx.TensorProto.FLOAT
    for gemm in hidden:  # the others read int8 weights and int8 activations
        assert made_by[gemm.input[0]].op_type == "DequantizeLinear"
        assert made_by[gemm.input[1]].op_type == "DequantizeLinear"


def test_quantizing_the_last_gemm_too(mixed_net: SparseMLP, mixed_fp32: onnx.ModelProto) -> None:
    int8 = quantize_static(mixed_fp32, sample_inputs(mixed_net, 256, seed=1), keep_last_fp32=False)
    last = gemms(int8)[-1]
    assert producers(int8)[last.input[1]].op_type == "DequantizeLinear"
    # the output scaling stays float: the graph output is not a dequantized tensor
    assert producers(int8)["output"].op_type == "Add"
    assert read_metadata(int8)["quantization"] == "static-qdq-s8s8-reduce-range"


def test_metadata_survives_quantization(tmp_path: Path, mixed_fp32: onnx.ModelProto,
                                        mixed_int8: onnx.ModelProto) -> None:
    fp32_meta = read_metadata(mixed_fp32)
    meta = read_metadata(mixed_int8)
    assert meta["quantization"] == "static-qdq-s8s8-reduce-range-last-fp32"
    assert {k: v for k, v in meta.items() if k != "quantization"} == fp32_meta
    assert mixed_int8.producer_name == "swat-edge"
    path = tmp_path / "model.int8.onnx"
    path.write_bytes(mixed_int8.SerializeToString())
    assert read_metadata(load_onnx(path)) == meta


def test_quantize_writes_and_prints_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    model = random_model([3, 5, 1], seed=0)
    fp32 = to_onnx(model)
    monkeypatch.chdir(tmp_path)
    quantize_static(fp32, sample_inputs(model, 64))
    quantize_dynamic(fp32)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert list(tmp_path.iterdir()) == []


# --- drift -----------------------------------------------------------------------------------------------


def test_static_drift_is_small_on_every_net_of_a_fixed_set() -> None:
    _assert_small(_drifts(lambda fp32, model: quantize_static(fp32, sample_inputs(model, 1024, seed=1))))


def test_drift_report_of_the_mixed_net(mixed_net: SparseMLP, mixed_fp32: onnx.ModelProto,
                                       mixed_int8: onnx.ModelProto) -> None:
    drift = measure_drift(mixed_fp32, mixed_int8, sample_inputs(mixed_net, 2000, seed=2))
    assert drift.rows == 2000 and 0.0 < drift.relative_mse < MAX_DRIFT
    assert not drift.exceeds(MAX_DRIFT) and drift.exceeds(drift.relative_mse / 2)
    assert drift.mse_ratio is None


@pytest.mark.parametrize("keep_last_fp32", [True, False])
def test_split_activations_concat_drift_is_small(keep_last_fp32: bool) -> None:
    # One layer laid out as the grouping pass does: Gemm -> Split -> Relu|Tanh|Sigmoid|LeakyRelu -> Concat.
    rng = np.random.default_rng(0)
    acts = ("relu",) * 4 + ("tanh",) * 4 + ("sigmoid",) * 4 + ("leaky_relu",) * 4
    hidden = Layer.make(rng.normal(0.0, 0.5, (4, 16)), rng.normal(0.0, 0.5, 16), acts)
    model = SparseMLP.make([hidden], Layer.make(rng.normal(0.0, 0.25, (16, 2)), rng.normal(0.0, 0.1, 2)))
    fp32 = to_onnx(model)
    assert [n.op_type for n in fp32.graph.node] == ["Gemm", "Split", "Relu", "Tanh", "Sigmoid", "LeakyRelu",
                                                    "Concat", "Gemm"]
    int8 = quantize_static(fp32, sample_inputs(model, 1024, seed=1), keep_last_fp32=keep_last_fp32)
    assert measure_drift(fp32, int8, sample_inputs(model, 2000, seed=2)).relative_mse < 1e-3


def _run_without_integer_kernels(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The QDQ graph as written (DequantizeLinear in float, no fusion into int8 kernels)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def test_int8_kernels_do_not_saturate() -> None:
    # On x86 without VNNI, 8-bit weights overflow onnxruntime's 16-bit pair sums (VPMADDUBSW) and the fused
    # int8 Gemm drifts ~15x further than the same QDQ graph run in float; 7-bit weights (default) do not.
    model = random_model([8, 64, 64, 1], seed=2)
    fp32 = to_onnx(model)
    int8 = quantize_static(fp32, sample_inputs(model, 1024, seed=1))
    x = sample_inputs(model, 2000, seed=2)
    y = run_onnx(fp32, x).astype(np.float64)
    fused = np.mean((run_onnx(int8, x) - y) ** 2)
    emulated = np.mean((_run_without_integer_kernels(int8, x) - y) ** 2)
    assert fused <= 1.5 * emulated


def test_drift_with_targets_gives_mse_ratio(mixed_net: SparseMLP, mixed_fp32: onnx.ModelProto,
                                            mixed_int8: onnx.ModelProto) -> None:
    x = sample_inputs(mixed_net, 500, seed=3)
    y32 = run_onnx(mixed_fp32, x).astype(np.float64)
    y8 = run_onnx(mixed_int8, x).astype(np.float64)
    targets = y32[:, 0] + np.random.default_rng(0).normal(0.0, 0.05, len(x))
    drift = measure_drift(mixed_fp32, mixed_int8, x, targets=targets)
    expected = np.mean((y8[:, 0] - targets) ** 2) / np.mean((y32[:, 0] - targets) ** 2)
    assert drift.mse_ratio == pytest.approx(expected, rel=1e-9)
    assert drift.max_abs_error == pytest.approx(np.max(np.abs(y8 - y32)), rel=1e-9)
    assert drift.relative_mse == pytest.approx(np.mean((y8 - y32) ** 2) / np.var(y32), rel=1e-9)
    with pytest.raises(DataError, match=r"targets: shape \(3,\), expected \(500, 1\)"):
        measure_drift(mixed_fp32, mixed_int8, x, targets=np.zeros(3))


def test_drift_report_exceeds() -> None:
    assert DriftReport(rows=1, relative_mse=2e-3, max_abs_error=0.1).exceeds(1e-3)
    assert not DriftReport(rows=1, relative_mse=1e-3, max_abs_error=0.1).exceeds(1e-3)
    assert DriftReport(rows=1, relative_mse=float("nan"), max_abs_error=0.1).exceeds(1e-3)


def test_dynamic_quantization(mixed_net: SparseMLP, mixed_fp32: onnx.ModelProto) -> None:
    int8 = quantize_dynamic(mixed_fp32)
    ops = [node.op_type for node in int8.graph.node]
    assert ops.count("MatMulInteger") == 3  # the three hidden layers; the output layer stays fp32
    assert "QuantizeLinear" not in ops
    assert read_metadata(int8)["quantization"] == "dynamic-s8-weights-reduce-range-last-fp32"
    onnx.checker.check_model(int8, full_check=True)
    assert run_onnx(int8, sample_inputs(mixed_net, 1)).shape == (1, 1)
    _assert_small(_drifts(lambda fp32, model: quantize_dynamic(fp32)))


def test_quantized_models_keep_the_dynamic_batch(mixed_net: SparseMLP, mixed_int8: onnx.ModelProto) -> None:
    for rows in (1, 1000):
        assert run_onnx(mixed_int8, sample_inputs(mixed_net, rows)).shape == (rows, 1)


# --- calibration rows ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def named_fp32() -> onnx.ModelProto:
    return to_onnx(random_model([3, 4, 1], seed=0).replace(feature_names=("rpm", "load", "temp")))


def test_calibration_nan_names_row_and_column(named_fp32: onnx.ModelProto) -> None:
    rows = np.zeros((10, 3))
    rows[7, 1] = np.nan
    rows[8, 0] = np.inf
    with pytest.raises(DataError, match=r"^calibration data row 7, column 'load': NaN in column index 1; "
                                        r"rows must be finite \(drop or impute them\)$") as info:
        quantize_static(named_fp32, rows)
    assert isinstance(info.value, ValueError) and info.value.row == 7 and info.value.column == "load"


def test_calibration_inf_is_refused(named_fp32: onnx.ModelProto) -> None:
    rows = np.zeros((4, 3))
    rows[2, 2] = -np.inf
    with pytest.raises(DataError, match=r"row 2, column 'temp': infinite value in column index 2"):
        quantize_static(named_fp32, rows)


def test_calibration_wrong_column_count(named_fp32: onnx.ModelProto) -> None:
    with pytest.raises(DataError, match=r"^calibration data: found 2 columns, expected 3 \(rpm, load, temp\); "):
        quantize_static(named_fp32, np.zeros((5, 2)))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros(3), r"calibration data: expected a 2-D array \(rows, 3\), got shape \(3,\)"),
        (np.zeros((0, 3)), r"calibration data: no rows; at least 1 row is required"),
        (np.array([["a", "b", "c"]]), r"calibration data: values must be numbers, got dtype <U1"),
    ],
)
def test_calibration_shape_errors(named_fp32: onnx.ModelProto, rows: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        quantize_static(named_fp32, rows)


def test_drift_rows_are_checked_too(named_fp32: onnx.ModelProto) -> None:
    with pytest.raises(DataError, match=r"^drift rows row 0, column 'rpm': NaN"):
        measure_drift(named_fp32, named_fp32, np.full((2, 3), np.nan))


def test_a_single_calibration_row_is_enough(named_fp32: onnx.ModelProto) -> None:
    assert is_qdq_only(quantize_static(named_fp32, np.ones((1, 3))))


def test_quantize_does_not_import_torch() -> None:
    done = python_without_torch("""
        from swat_edge.model import random_model, sample_inputs
        from swat_edge.export.onnx import to_onnx
        from swat_edge.export.quantize import quantize_static, quantize_dynamic, measure_drift
        m = random_model([2, 4, 1], seed=0)
        p = to_onnx(m)
        measure_drift(p, quantize_static(p, sample_inputs(m, 32)), sample_inputs(m, 32))
        quantize_dynamic(p)
    """, block=False, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_single_layer_model_has_nothing_to_quantize_when_the_last_layer_stays_fp32():
    from swat_edge.errors import UsageError
    from swat_edge.export.onnx import to_onnx
    from swat_edge.model import Layer, SparseMLP, sample_inputs

    model = SparseMLP.make([], Layer.make(np.array([[1.0], [2.0]]), [0.5]))
    fp32 = to_onnx(model, simplify=False)
    with pytest.raises(UsageError, match="nothing to quantize: the compiled model is a single"):
        quantize_static(fp32, sample_inputs(model, 16))
