"""What `swat-edge inspect` shows: per-layer rows for a swat-edge model, graph facts for an ONNX file."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelFileError
from ..files import check_input_file
from ..model import SparseMLP, load_model, model_hash, model_stats

__all__ = [
    "LayerRow",
    "ModelSummary",
    "TensorInfo",
    "WeightRow",
    "OnnxSummary",
    "QUANT_OPS",
    "summarize_model",
    "read_onnx",
    "summarize_onnx",
    "summarize_file",
]

# Ops that only appear in a quantized graph (QDQ format, dynamic quantization, or QOperator format).
QUANT_OPS: frozenset[str] = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "QLinearMatMul",
        "QGemm",
        "QLinearConv",
        "ConvInteger",
    }
)
# op type -> index of the input that holds the weight matrix
_WEIGHT_INPUT: dict[str, int] = {"Gemm": 1, "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "QGemm": 3}


# ---------------------------------------------------------------------------------------------------------
# swat-edge model files


@dataclass(frozen=True)
class LayerRow:
    """One layer of a SparseMLP; counts follow model.model_stats (sparse = skips zeros and gated-off neurons)."""

    layer: str  # "hidden 0", ..., "output"
    n_in: int
    n_out: int
    n_active: int  # neurons with mask on (all of them for the output layer)
    activations: dict[str, int]  # active hidden neurons by activation; {} for the (linear) output layer
    nonzero_weights: int
    dense_macs: int
    sparse_macs: int
    bytes_fp32: int
    bytes_int8: int


@dataclass(frozen=True)
class ModelSummary:
    source: str
    sha256: str
    layers: tuple[LayerRow, ...]
    total: LayerRow  # built from model_stats; its counts equal the sums over `layers`
    nonzero_params: int
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    provenance: dict[str, Any]
    calibration_rows: int


def _layer_row(name: str, layer: Any, source_live: np.ndarray, *, is_hidden: bool) -> LayerRow:
    # Same formulas as model.model_stats, per layer (a weight counts only between two live neurons);
    # a test checks that the rows sum to model_stats.
    live = layer.mask
    nz = int(np.count_nonzero(layer.weight[np.ix_(source_live, live)]))
    acts: dict[str, int] = {}
    if is_hidden:
        for act, on in zip(layer.activations, live):
            if on:
                acts[act] = acts.get(act, 0) + 1
    return LayerRow(
        layer=name,
        n_in=layer.n_in,
        n_out=layer.n_out,
        n_active=int(live.sum()),
        activations=acts,
        nonzero_weights=nz,
        dense_macs=layer.n_in * layer.n_out,
        sparse_macs=nz,
        bytes_fp32=4 * (layer.n_in * layer.n_out + layer.n_out),
        bytes_int8=layer.n_in * layer.n_out + 4 * layer.n_out + 8,
    )


def summarize_model(model: SparseMLP, source: str = "<model>") -> ModelSummary:
    rows = []
    source_live = np.ones(model.n_inputs, dtype=bool)
    for i, layer in enumerate(model.layers):
        is_hidden = i < len(model.hidden)
        rows.append(_layer_row(f"hidden {i}" if is_hidden else "output", layer, source_live, is_hidden=is_hidden))
        source_live = layer.mask
    stats = model_stats(model)
    total = LayerRow(
        layer="total",
        n_in=model.n_inputs,
        n_out=model.n_outputs,
        n_active=stats.active_neurons,
        activations=dict(stats.activation_counts),
        nonzero_weights=stats.nonzero_weights,
        dense_macs=stats.dense_macs,
        sparse_macs=stats.sparse_macs,
        bytes_fp32=stats.bytes_fp32,
        bytes_int8=stats.bytes_int8,
    )
    return ModelSummary(
        source=source,
        sha256=model_hash(model),
        layers=tuple(rows),
        total=total,
        nonzero_params=stats.nonzero_params,
        feature_names=model.feature_names,
        target_names=model.target_names,
        provenance=dict(model.provenance),
        calibration_rows=0 if model.calibration is None else int(model.calibration.shape[0]),
    )


# ---------------------------------------------------------------------------------------------------------
# ONNX files


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # e.g. "float", "int8"
    shape: tuple[int | str, ...]  # a str is a symbolic dimension (e.g. the batch), "?" an unknown one


@dataclass(frozen=True)
class WeightRow:
    """A Gemm/MatMul whose weight is a constant: the weight's stored shape, type and non-zero count."""

    node: str
    op_type: str
    weight: str  # initializer name (the int8 one when it is fed through DequantizeLinear)
    weight_shape: tuple[int, ...]
    weight_dtype: str
    n_in: int
    n_out: int
    nonzero_weights: int


@dataclass(frozen=True)
class OnnxSummary:
    source: str
    size_bytes: int
    sha256: str
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    node_count: int
    op_histogram: dict[str, int]  # sorted by count (desc), then name
    weights: tuple[WeightRow, ...]
    is_int8: bool
    metadata: dict[str, str]  # metadata_props (swat-edge writes its provenance here)


def read_onnx(model: str | os.PathLike | bytes) -> tuple[Any, bytes, str]:
    """Parse an ONNX file or bytes -> (ModelProto, raw bytes, source name); ModelFileError if it is not ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, (bytes, bytearray)):
        data, source, base_dir = bytes(model), "<bytes>", None
    else:
        path = check_input_file(model, "ONNX file")
        data, source, base_dir = path.read_bytes(), str(path), path.parent
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        raise ModelFileError(
            f"{source}: not an ONNX model (protobuf parse failed; truncated or another format?)"
        ) from None
    # protobuf parses some arbitrary bytes without complaint: require what every real model has.
    if proto.ir_version <= 0 or len(proto.graph.output) == 0:
        raise ModelFileError(f"{source}: not an ONNX model (no IR version or no graph outputs)")
    external = any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
    )
    if external:
        if base_dir is None:
            raise ModelFileError(f"{source}: weights are stored in an external data file; pass the .onnx path instead")
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(base_dir))
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise ModelFileError(f"{source}: cannot read its external weight data ({exc})") from None
    return proto, data, source


def _tensor_info(value_info: Any) -> TensorInfo:
    import onnx

    ttype = value_info.type.tensor_type
    dtype = onnx.TensorProto.DataType.Name(ttype.elem_type).lower() if ttype.elem_type else "?"
    dims: list[int | str] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append("?")
    return TensorInfo(name=value_info.name, dtype=dtype, shape=tuple(dims))


def _weight_rows(graph: Any) -> tuple[WeightRow, ...]:
    import onnx
    from onnx import numpy_helper

    consts: dict[str, Any] = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    consts[node.output[0]] = attr.t
    producer = {out: node for node in graph.node for out in node.output}

    def resolve(name: str) -> tuple[Any, bool] | None:
        # Follow DequantizeLinear / Transpose back to the stored constant (int8 weights sit behind a DQ).
        transposed = False
        for _ in range(4):
            if name in consts:
                return consts[name], transposed
            node = producer.get(name)
            if node is None or node.op_type not in ("DequantizeLinear", "Transpose"):
                return None
            transposed ^= node.op_type == "Transpose"
            name = node.input[0]
        return None

    rows = []
    for i, node in enumerate(graph.node):
        idx = _WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx:
            continue
        found = resolve(node.input[idx])
        if found is None:
            continue  # activation x activation product: no stored weight
        tensor, transposed = found
        arr = numpy_helper.to_array(tensor)
        if arr.ndim != 2:
            continue
        trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i == 1 for a in node.attribute)
        n_in, n_out = arr.shape[::-1] if (trans_b ^ transposed) else arr.shape
        rows.append(
            WeightRow(
                node=node.name or f"{node.op_type}#{i}",
                op_type=node.op_type,
                weight=tensor.name,
                weight_shape=tuple(int(d) for d in arr.shape),
                weight_dtype=onnx.TensorProto.DataType.Name(tensor.data_type).lower(),
                n_in=int(n_in),
                n_out=int(n_out),
                nonzero_weights=int(np.count_nonzero(arr)),
            )
        )
    return tuple(rows)


def summarize_onnx(model: str | os.PathLike | bytes) -> OnnxSummary:
    proto, data, source = read_onnx(model)
    graph = proto.graph
    initializer_names = {init.name for init in graph.initializer}
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node)
    weights = _weight_rows(graph)
    is_int8 = bool(QUANT_OPS & {n.op_type for n in graph.node}) or any(
        w.weight_dtype in ("int8", "uint8") for w in weights
    )
    return OnnxSummary(
        source=source,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ir_version=int(proto.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p),
        inputs=tuple(_tensor_info(v) for v in graph.input if v.name not in initializer_names),
        outputs=tuple(_tensor_info(v) for v in graph.output),
        node_count=len(graph.node),
        op_histogram=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        weights=weights,
        is_int8=is_int8,
        metadata={p.key: p.value for p in proto.metadata_props},
    )


def summarize_file(path: str | os.PathLike) -> ModelSummary | OnnxSummary:
    """A .onnx file is read as ONNX; any other suffix as a swat-edge model file."""
    p = check_input_file(path, "model file")
    if p.suffix.lower() == ".onnx":
        return summarize_onnx(p)
    return summarize_model(load_model(p), str(p))
