"""int8 quantization of exported ONNX models with onnxruntime.quantization (static QDQ or dynamic) and drift checks.

Choices, and why (measured with onnxruntime 1.32 on a 2-vCPU AMD EPYC with AVX2 and no VNNI):
- Static quantization is QDQ only. The QOperator format folded a Relu behind a Split into a shared output
  range and gave wrong results (relative MSE 0.30, runtime-notes.md).
- Only the Gemms are quantized: their input activations and weights go to int8, their outputs stay float
  (OpTypesToExcludeOutputQuantization), so Split/activations/Concat run in float32 between int8 Gemms and
  onnxruntime fuses DQ -> Gemm into QGemm. Quantizing every tensor added three roundings per layer (Gemm
  output, each activation slice, the Concat) for 2-10x the drift; and with QInt8
  activations onnxruntime deleted a Relu behind a Split (its "removable activation" rule), letting the
  negative values through (relative MSE 45 on a 2-7-7-7-1 net). QDQKeepRemovableActivations stays set so
  that rule cannot come back if more op types are ever quantized.
- Weights and activations are QInt8 (S8S8), onnxruntime's recommended QDQ setting and what ARM cores
  (Raspberry Pi, Jetson) run natively. reduce_range=True (7-bit weights) is the default because on x86
  without VNNI onnxruntime runs the int8 Gemm as uint8 x int8 pairs summed in 16 bits (VPMADDUBSW), which
  saturates: on this machine the drift was 10-20x what the same QDQ graph gives when emulated in float
  (up to 0.78 relative MSE with per_channel=True). The activation type does not avoid it (QInt8 and
  QUInt8 activations drifted the same); 7-bit weights do. For ARM or VNNI targets reduce_range=False gives
  about 2x less drift (measured on the float-emulated QDQ graph, which is what non-saturating kernels
  compute).
- The last Gemm and the input/output scaling stay float32 by default: quantizing the output tensor
  causes most of the error, and the passes fold the scaling into the Gemms anyway.
- Drift is a property of the network: on random 2-7-7-7-1 nets it ranged from 1e-4 to 1e-2 relative MSE
  across seeds (nets with little output variance suffer most); always check it with measure_drift.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from ..errors import DataError, ToolchainError, UsageError
from .onnx import INPUT_NAME, graph_input_dtype, run_onnx

__all__ = [
    "DriftReport",
    "check_rows",
    "quantize_static",
    "quantize_dynamic",
    "measure_drift",
    "is_qdq_only",
]

# Ops the QOperator format and dynamic quantization emit; a static QDQ model must contain none of them.
_QOPERATOR_OPS = frozenset(
    {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearSigmoid",
     "QLinearLeakyRelu", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSoftmax", "QLinearWhere",
     "QGemm", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}
)
_CALIBRATION_BATCH_ROWS = 256


@dataclass(frozen=True)
class DriftReport:
    """How far int8 outputs are from fp32 outputs on the same rows.

    relative_mse: mean over outputs of mean((y_int8 - y_fp32)^2) / var(y_fp32) (per output, so outputs on
    different scales weigh the same). mse_ratio: MSE(int8 vs targets) / MSE(fp32 vs targets) when targets
    were given, else None.
    """

    rows: int
    relative_mse: float
    max_abs_error: float
    mse_ratio: float | None = None

    def exceeds(self, max_drift: float) -> bool:
        """True when relative_mse is above max_drift (a NaN drift always exceeds)."""
        return not (self.relative_mse <= max_drift)


def _input_width(onnx_model: onnx.ModelProto) -> int | None:
    dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value) if len(dims) == 2 and dims[1].HasField("dim_value") else None


def _feature_names(onnx_model: onnx.ModelProto) -> list[str] | None:
    for prop in onnx_model.metadata_props:
        if prop.key == "feature_names":
            with contextlib.suppress(ValueError):
                names = json.loads(prop.value)
                return [str(n) for n in names] if isinstance(names, list) else None
    return None


def check_rows(
    rows: np.ndarray, onnx_model: onnx.ModelProto, *, source: str = "calibration data"
) -> np.ndarray:
    """Return rows as the graph's input dtype (float32, or float64 for a double input) and shape (n, n_inputs)
    if they fit the model's input, else raise DataError saying where."""
    x = np.asarray(rows)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(source, f"values must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    expected = _input_width(onnx_model)
    names = _feature_names(onnx_model)
    if x.ndim != 2:
        want = f"(rows, {expected})" if expected is not None else "(rows, columns)"
        raise DataError(source, f"expected a 2-D array {want}, got shape {x.shape}")
    if expected is not None and x.shape[1] != expected:
        listed = f" ({', '.join(names)})" if names and len(names) == expected else ""
        raise DataError(
            source, f"found {x.shape[1]} columns, expected {expected}{listed}; pass rows of the model's inputs"
        )
    if x.shape[0] == 0:
        raise DataError(source, "no rows; at least 1 row is required")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        what = "NaN" if np.isnan(x[r, c]) else "infinite value"
        name = names[c] if names and len(names) == x.shape[1] else str(c)
        raise DataError(
            source, f"{what} in column index {c}; rows must be finite (drop or impute them)", row=r, column=name
        )
    return np.ascontiguousarray(x, dtype=graph_input_dtype(onnx_model))


def _rows_reader(x: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class _RowsReader(CalibrationDataReader):
        """Feeds the calibration rows in fixed-size batches (deterministic order)."""

        def __init__(self) -> None:
            step = _CALIBRATION_BATCH_ROWS
            self._batches = iter([x[i : i + step] for i in range(0, len(x), step)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    return _RowsReader()


class _DropQuantizationChatter(logging.Filter):
    """onnxruntime.quantization logs advice (pre-processing, ...) on the root logger; keep it off stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("onnxruntime" in record.pathname and record.levelno < logging.ERROR)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    chatter = _DropQuantizationChatter()
    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


def _nodes_kept_fp32(onnx_model: onnx.ModelProto, keep_last_fp32: bool) -> list[str]:
    """Names of the nodes quantization must leave in float32.

    Always: the input and output affine scaling (nodes before the first and after the last Gemm). Quantizing
    the raw input, then its scaled copy, then the shifted copy, stacks three roundings for nothing, and an
    8-bit grid over a de-normalised output (e.g. 8.6 +- 0.3 in a range of 10) costs most of the accuracy.
    The compile passes fold the scaling into the Gemms anyway. keep_last_fp32 also keeps the last Gemm.
    """
    nodes = list(onnx_model.graph.node)
    gemms = [i for i, node in enumerate(nodes) if node.op_type == "Gemm"]
    if not gemms:
        raise ToolchainError("the model has no Gemm node; quantize models exported by swat_edge.export.onnx")
    first, last = gemms[0], gemms[-1]
    if keep_last_fp32 and len(gemms) == 1:
        raise UsageError(
            "nothing to quantize: the compiled model is a single (output) layer, which stays float32; "
            "export it as fp32, or pass --quantize-last to quantize that layer too"
        )
    keep = [i for i in range(len(nodes)) if i < first or i > last or (keep_last_fp32 and i == last)]
    unnamed = [nodes[i].op_type for i in keep if not nodes[i].name]
    if unnamed:
        raise ToolchainError(f"a {unnamed[0]} node that must stay float32 has no name, so it cannot be excluded")
    return [nodes[i].name for i in keep]


def _restore_metadata(fp32: onnx.ModelProto, quantized: onnx.ModelProto, description: str) -> onnx.ModelProto:
    """onnxruntime rewrites producer_name to its own; put ours back and record how the model was quantized."""
    quantized.producer_name = fp32.producer_name
    quantized.producer_version = fp32.producer_version
    # "quantization" goes first so the exporter's entries keep their order (load_onnx relies on the last one).
    props = {"quantization": description}
    props.update((p.key, p.value) for p in fp32.metadata_props if p.key != "quantization")
    del quantized.metadata_props[:]
    onnx.helper.set_model_props(quantized, props)
    return quantized


def is_qdq_only(onnx_model: onnx.ModelProto) -> bool:
    """True if the model has QuantizeLinear/DequantizeLinear pairs and no QOperator/integer ops."""
    ops = {node.op_type for node in onnx_model.graph.node}
    return "DequantizeLinear" in ops and not (ops & _QOPERATOR_OPS)


def quantize_static(
    fp32: onnx.ModelProto,
    calibration_rows: np.ndarray,
    *,
    keep_last_fp32: bool = True,
    per_channel: bool = False,
    reduce_range: bool = True,
) -> onnx.ModelProto:
    """Static int8 QDQ quantization (QInt8 weights and activations, MinMax calibration on the given rows)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    x = check_rows(calibration_rows, fp32)
    input_name = fp32.graph.input[0].name if fp32.graph.input else INPUT_NAME
    exclude = _nodes_kept_fp32(fp32, keep_last_fp32)
    with tempfile.TemporaryDirectory(prefix="swat-edge-quant-") as tmp, _quiet_quantizer():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(fp32, str(src))
        try:
            ort_quantize_static(
                str(src),
                str(dst),
                _rows_reader(x, input_name),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                nodes_to_exclude=exclude,
                op_types_to_quantize=["Gemm"],
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"], "QDQKeepRemovableActivations": True},
            )
        except Exception as exc:  # onnxruntime raises plain ValueError/RuntimeError/Fail
            raise ToolchainError(f"onnxruntime static quantization failed ({type(exc).__name__}: {exc})") from None
        int8 = onnx.load(str(dst))
    if not is_qdq_only(int8):
        raise ToolchainError("bug: static quantization produced QOperator/integer ops instead of QDQ pairs")
    what = "static-qdq-s8s8" + ("-per-channel" if per_channel else "") + ("-reduce-range" if reduce_range else "")
    return _restore_metadata(fp32, int8, what + ("-last-fp32" if keep_last_fp32 else ""))


def _gemm_to_matmul_add(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite Gemm(x, W, b) as MatMul + Add: onnxruntime's dynamic quantization only handles MatMul."""
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    inits = {t.name: t for t in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type != "Gemm":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise ToolchainError(f"Gemm node {node.name!r}: only transA=0, alpha=beta=1 can be quantized dynamically")
        w_name = node.input[1]
        if w_name not in inits:
            raise ToolchainError(f"Gemm node {node.name!r}: weight {w_name!r} is not a constant")
        w = numpy_helper.to_array(inits[w_name])
        if attrs.get("transB", 0):
            inits[w_name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T), w_name))
        product = node.output[0] + "_matmul" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [product], name=node.name))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def quantize_dynamic(
    fp32: onnx.ModelProto, *, keep_last_fp32: bool = True, per_channel: bool = False, reduce_range: bool = True
) -> onnx.ModelProto:
    """Dynamic int8 quantization: QInt8 weights, activations quantized per batch at run time.

    onnxruntime only quantizes MatMul dynamically (not Gemm), so the Gemms are rewritten as MatMul + Add
    first. Dynamic activations are always uint8 (onnxruntime's choice), hence uint8 x int8 kernels and the
    same saturation risk as static: reduce_range=True by default (see the module docstring).
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    exclude = _nodes_kept_fp32(fp32, keep_last_fp32)
    prepared = _gemm_to_matmul_add(fp32)
    with tempfile.TemporaryDirectory(prefix="swat-edge-quant-") as tmp, _quiet_quantizer():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(prepared, str(src))
        try:
            ort_quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                nodes_to_exclude=exclude,
                op_types_to_quantize=["MatMul"],
            )
        except Exception as exc:  # onnxruntime raises plain ValueError/RuntimeError/Fail
            raise ToolchainError(f"onnxruntime dynamic quantization failed ({type(exc).__name__}: {exc})") from None
        int8 = onnx.load(str(dst))
    n_to_quantize = sum(node.op_type == "Gemm" for node in fp32.graph.node) - int(keep_last_fp32)
    if n_to_quantize > 0 and not any(node.op_type == "MatMulInteger" for node in int8.graph.node):
        raise ToolchainError("bug: dynamic quantization left every MatMul in float32")
    what = "dynamic-s8-weights" + ("-per-channel" if per_channel else "") + ("-reduce-range" if reduce_range else "")
    return _restore_metadata(fp32, int8, what + ("-last-fp32" if keep_last_fp32 else ""))


def measure_drift(
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    rows: np.ndarray,
    targets: np.ndarray | None = None,
) -> DriftReport:
    """Run both models on the same rows and report how far the int8 outputs drift from fp32."""
    x = check_rows(rows, fp32, source="drift rows")
    y32 = run_onnx(fp32, x).astype(np.float64)
    y8 = run_onnx(int8, x).astype(np.float64)
    diff = y8 - y32
    mse = np.mean(diff**2, axis=0)
    var = np.var(y32, axis=0)
    # A constant output has no variance: measure it against its magnitude instead (1 if it is ~0).
    scale = np.where(var > 0.0, var, np.maximum(np.mean(y32, axis=0) ** 2, 1.0))
    mse_ratio = None
    if targets is not None:
        given = np.asarray(targets, dtype=np.float64)
        t = given[:, None] if given.ndim == 1 and y32.shape[1] == 1 else given
        if t.shape != y32.shape:
            raise DataError(
                "targets", f"shape {given.shape}, expected {y32.shape} (one row per input row, one column per output)"
            )
        if not np.all(np.isfinite(t)):
            r, c = (int(i) for i in np.argwhere(~np.isfinite(t))[0])
            raise DataError("targets", f"non-finite value in column index {c}; targets must be finite", row=r)
        mse32 = float(np.mean((y32 - t) ** 2))
        mse8 = float(np.mean((y8 - t) ** 2))
        mse_ratio = mse8 / mse32 if mse32 > 0.0 else (1.0 if mse8 == 0.0 else float("inf"))
    return DriftReport(
        rows=int(len(x)),
        relative_mse=float(np.mean(mse / scale)),
        max_abs_error=float(np.max(np.abs(diff))),
        mse_ratio=mse_ratio,
    )
