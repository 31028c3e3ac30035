"""SparseMLP -> ONNX (built with onnx.helper, no torch), onnxruntime execution and numerical checks."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..compile.fold_normalization import input_shift, wide_inputs
from ..errors import DataError, InputError, ModelFileError, NumericsError, ToolchainError, UsageError
from ..files import check_input_file
from ..model import (
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    Layer,
    SparseMLP,
    forward,
    model_hash,
    output_tolerance,
    sample_inputs,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "METADATA_KEYS",
    "MIN_OPSET",
    "CheckReport",
    "to_onnx",
    "to_onnx_bytes",
    "load_onnx",
    "read_metadata",
    "session_options",
    "run_onnx",
    "input_dtype",
    "graph_input_dtype",
    "check_onnx",
    "verify_onnx",
]

INPUT_NAME = "input"
OUTPUT_NAME = "output"
PROBABILITIES_NAME = "probabilities"  # a classifier's second output
BATCH_DIM = "batch"
# Split takes its sizes as an attribute before opset 13 and as an input from 13 on; both are handled.
# Opset 11 is where Gemm's bias became optional and Split/Concat took their current semantics.
MIN_OPSET = 11
# Keys this exporter writes into metadata_props; a file from swat-edge without all of them is truncated.
# "n_outputs" is written last on purpose: protobuf writes repeated entries in order, so a file cut between
# two metadata entries always loses it (see load_onnx).
METADATA_KEYS: tuple[str, ...] = (
    "producer",
    "producer_version",
    "model_sha256",
    "export_style",
    "simplifier",
    "feature_names",
    "target_names",
    "input_type",
    "classes",
    "n_inputs",
    "n_outputs",
)
# Added after the first release: a file without input_type was exported before double inputs existed (float32
# input); classes is written for classifiers only.
_OPTIONAL_METADATA = ("input_type", "classes")
_ONNX_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
# Rows onnxsim runs the graph on to validate its rewrite (fixed seed: export bytes must be deterministic).
_SIMPLIFY_CHECK_ROWS = 64


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class _GraphBuilder:
    """Collects nodes and initializers; names every node (quantization excludes nodes by name)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attrs))
        return output

    def multi_op(
        self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: object
    ) -> list[str]:
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))
        return list(outputs)


def _activation(g: _GraphBuilder, name: str, x: str, out: str) -> str:
    """Apply one activation to tensor x; identity emits nothing and returns x."""
    if name == "identity":
        return x
    if name == "leaky_relu":
        return g.op("LeakyRelu", [x], out, alpha=float(LEAKY_RELU_SLOPE))
    return g.op(_ONNX_OPS[name], [x], out)


def _effective_activations(layer: Layer) -> tuple[str, ...]:
    """Per-neuron activations where a gated-off neuron copies a live neighbour's.

    A gated-off neuron's value never reaches the output (the next layer's row for it is zeroed), so its
    activation is free; copying the previous live neuron's keeps runs of equal activations as long as
    possible (fewer Split slices). Leading gated-off neurons copy the first live one.
    """
    live = [a for a, on in zip(layer.activations, layer.mask) if on]
    if not live:
        return ("identity",) * layer.n_out
    current = live[0]
    out = []
    for act, on in zip(layer.activations, layer.mask):
        if on:
            current = act
        out.append(current)
    return tuple(out)


def _runs(activations: Sequence[str]) -> list[tuple[str, int]]:
    """Contiguous runs of equal activations as (name, length)."""
    runs: list[tuple[str, int]] = []
    for act in activations:
        if runs and runs[-1][0] == act:
            runs[-1] = (act, runs[-1][1] + 1)
        else:
            runs.append((act, 1))
    return runs


def _grouped_activations(g: _GraphBuilder, layer: Layer, z: str, prefix: str, opset: int) -> str:
    runs = _runs(_effective_activations(layer))
    if len(runs) == 1:  # one op right after the Gemm: onnxruntime fuses it into FusedGemm
        return _activation(g, runs[0][0], z, f"{prefix}_{runs[0][0]}")
    sizes = np.array([n for _, n in runs], dtype=np.int64)
    outs = [f"{prefix}_split_{i}" for i in range(len(runs))]
    if opset >= 13:
        g.multi_op("Split", [z, g.const(f"{prefix}.split_sizes", sizes)], outs, f"{prefix}_split", axis=1)
    else:
        g.multi_op("Split", [z], outs, f"{prefix}_split", axis=1, split=[int(n) for n in sizes])
    parts = [_activation(g, act, s, f"{prefix}_{act}_{i}") for i, ((act, _), s) in enumerate(zip(runs, outs))]
    return g.op("Concat", parts, f"{prefix}_concat", axis=1)


def _naive_activations(g: _GraphBuilder, layer: Layer, z: str, prefix: str) -> str:
    """Every activation on the whole layer, mixed with constant 0/1 masks (the gating mask folded in)."""
    acts = np.asarray(layer.activations)
    mixed = None
    for name in ACTIVATIONS:
        select = (acts == name) & layer.mask
        if not np.any(acts == name):
            continue
        a = _activation(g, name, z, f"{prefix}_{name}")
        m = g.const(f"{prefix}.select_{name}", select.astype(np.float32))
        term = g.op("Mul", [a, m], f"{prefix}_{name}_masked")
        mixed = term if mixed is None else g.op("Add", [mixed, term], f"{prefix}_{name}_sum")
    if mixed is None:  # bug guard: a layer always has at least one neuron
        raise AssertionError("bug: layer without activations")
    return mixed


def _affine(g: _GraphBuilder, x: str, scale: np.ndarray, offset: np.ndarray, prefix: str) -> str:
    """x * scale + offset, emitting only the parts that are not the identity."""
    if not np.all(scale == 1.0):
        x = g.op("Mul", [x, g.const(f"{prefix}.scale", _f32(scale))], f"{prefix}_scaled")
    if not np.all(offset == 0.0):
        x = g.op("Add", [x, g.const(f"{prefix}.offset", _f32(offset))], f"{prefix}_shifted")
    return x


def _filled_input(g: _GraphBuilder, model: SparseMLP, double_input: bool) -> str:
    """The input with missing (NaN) values replaced by the model's input_fill (IsNaN + Where), if it has one."""
    if model.input_fill is None or not np.any(np.isfinite(model.input_fill)):
        return INPUT_NAME
    fill = np.ascontiguousarray(model.input_fill, dtype=np.float64 if double_input else np.float32)
    missing = g.op("IsNaN", [INPUT_NAME], "input_missing")
    return g.op("Where", [missing, g.const("input.fill", fill), INPUT_NAME], "input_filled")


def _input_affine(g: _GraphBuilder, model: SparseMLP, double_input: bool) -> str:
    """x * scale + offset; a feature far from zero (e.g. a timestamp) is first centred exactly in float32,
    (x - c) * scale + (offset + c * scale), so Mul and Add do not cancel two large numbers (input_shift).
    With double_input the graph takes float64 rows, centres them in float64 and casts to float32."""
    shift = input_shift(model)
    x = _filled_input(g, model, double_input)
    if double_input:
        if np.any(shift != 0.0):
            center = np.ascontiguousarray(0.0 - shift, dtype=np.float64)
            x = g.op("Add", [x, g.const("input.center", center)], "input_centered64")
        return _affine(g, g.op("Cast", [x], "input_centered", to=TensorProto.FLOAT), model.input_scale,
                       model.input_offset + shift * model.input_scale, "input")
    if np.any(shift != 0.0):
        x = g.op("Add", [x, g.const("input.center", _f32(0.0 - shift))], "input_centered")
    return _affine(g, x, model.input_scale, model.input_offset + shift * model.input_scale, "input")


def _build_graph(model: SparseMLP, naive: bool, opset: int, double_input: bool) -> onnx.GraphProto:
    g = _GraphBuilder()
    h = _input_affine(g, model, double_input)
    prev_mask: np.ndarray | None = None
    for i, layer in enumerate(model.layers):
        is_output = i == len(model.hidden)
        prefix = "output" if is_output else f"hidden{i}"
        weight = layer.weight
        if prev_mask is not None and not prev_mask.all():
            # A gated-off neuron feeds the next layer through zero rows: h @ W with those rows zeroed equals
            # (h * mask) @ W exactly, so no Mul by the mask is needed at run time.
            weight = weight * prev_mask[:, None]
        # transB=1 stores the weight as (n_out, n_in), the layout per-channel quantization expects on axis 0.
        w = g.const(f"{prefix}.weight", _f32(weight.T))
        b = g.const(f"{prefix}.bias", _f32(layer.bias))
        z = g.op("Gemm", [h, w, b], f"{prefix}_gemm", transB=1)
        if is_output:
            h = z
        elif naive:
            h = _naive_activations(g, layer, z, prefix)
        else:
            h = _grouped_activations(g, layer, z, prefix, opset)
        prev_mask = layer.mask
    h = _affine(g, h, model.output_scale, model.output_offset, "output")
    # The last tensor is produced by exactly one node and read by none: rename it to the graph output.
    last = g.nodes[-1]
    if list(last.output) != [h]:
        raise AssertionError("bug: the graph output is not the last node's only output")
    last.output[0] = OUTPUT_NAME
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, model.n_outputs])]
    if model.classes:
        outputs.append(_probabilities(g, model))
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE if double_input else TensorProto.FLOAT,
                                        [BATCH_DIM, model.n_inputs])
    return helper.make_graph(g.nodes, "swat_edge_mlp", [inp], outputs, initializer=g.initializers)


def _probabilities(g: _GraphBuilder, model: SparseMLP) -> onnx.ValueInfoProto:
    """A classifier's second output: class probabilities (rows, classes), softmax of the logits (for two
    classes, of [0, logit])."""
    logits = OUTPUT_NAME
    if model.n_outputs == 1:
        zero = g.op("Mul", [OUTPUT_NAME, g.const("classes.zero", _f32(np.zeros(1)))], "logit_zero")
        logits = g.op("Concat", [zero, OUTPUT_NAME], "logits_pair", axis=1)
    g.op("Softmax", [logits], PROBABILITIES_NAME, axis=1)
    return helper.make_tensor_value_info(PROBABILITIES_NAME, TensorProto.FLOAT, [BATCH_DIM, len(model.classes)])


@contextlib.contextmanager
def _torch_blocked() -> Iterator[None]:
    """Make `import torch` fail inside the block (onnxsim imports it when present); undo afterwards."""
    added = "torch" not in sys.modules
    if added:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if added and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


def _simplify(proto: onnx.ModelProto, model: SparseMLP) -> tuple[onnx.ModelProto, str]:
    """Run onnxsim; returns (model, "onnxsim") or (the input, "onnxsim-unvalidated") if it could not check."""
    rows = np.ascontiguousarray(sample_inputs(model, _SIMPLIFY_CHECK_ROWS, seed=0), dtype=graph_input_dtype(proto))
    with _torch_blocked():
        try:
            import onnxsim
        except ImportError as exc:
            raise ToolchainError(
                f"onnxsim is not importable ({exc}); reinstall swat-edge or pass simplify=False"
            ) from None
        try:
            # onnxsim prints progress ("Checking 0/1...") to stdout; the library must not print.
            with contextlib.redirect_stdout(io.StringIO()):
                simplified, ok = onnxsim.simplify(proto, check_n=1, input_data={INPUT_NAME: rows}, certify=False)
        except Exception as exc:  # onnxsim raises plain RuntimeError/ValueError from its C++ core
            raise ToolchainError(f"onnxsim failed on the exported graph ({type(exc).__name__}: {exc}); "
                                 "pass simplify=False to export without it") from None
    if not ok:
        return proto, "onnxsim-unvalidated"
    del simplified.metadata_props[:]  # we write our own; onnxsim's verdict entries would vary by install
    return simplified, "onnxsim"


def graph_input_dtype(proto: onnx.ModelProto) -> type:
    """numpy dtype of the rows a graph takes: float64 for a double input (wide_inputs), else float32."""
    double = bool(proto.graph.input) and proto.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    return np.float64 if double else np.float32


def input_dtype(session_or_type: Any) -> type:
    """numpy dtype an onnxruntime input (or its type string, e.g. "tensor(double)") is fed with."""
    kind = session_or_type if isinstance(session_or_type, str) else session_or_type.type
    return np.float64 if kind == "tensor(double)" else np.float32


def _set_metadata(proto: onnx.ModelProto, model: SparseMLP, export_style: str, simplifier: str) -> None:
    from .. import __version__

    proto.producer_name = "swat-edge"
    proto.producer_version = __version__
    values = {
        "producer": "swat-edge",
        "producer_version": __version__,
        "model_sha256": model_hash(model),
        "export_style": export_style,
        "simplifier": simplifier,
        "feature_names": json.dumps(list(model.feature_names)),
        "target_names": json.dumps(list(model.target_names)),
        "n_inputs": str(model.n_inputs),
        "n_outputs": str(model.n_outputs),
        "input_type": np.dtype(graph_input_dtype(proto)).name,
        "classes": json.dumps(list(model.classes)),
    }
    del proto.metadata_props[:]
    helper.set_model_props(proto, {key: values[key] for key in METADATA_KEYS if key != "classes" or model.classes})


def to_onnx(model: SparseMLP, *, naive: bool = False, opset: int = 17, simplify: bool = True,
            double_input: bool | None = None) -> onnx.ModelProto:
    """Export a SparseMLP as an ONNX graph: input "input" (batch, n_inputs) -> output "output" (batch, n_outputs).

    Each hidden layer is a Gemm followed by one activation op (single-activation layers, fusable by
    onnxruntime) or Split -> per-slice activation -> Concat over contiguous runs of equal activations.
    naive=True computes every activation present on the whole layer and mixes them with 0/1 masks: the
    benchmark baseline. metadata_props["simplifier"] records whether onnxsim's result was kept ("onnxsim"),
    could not be validated so the plain graph was kept ("onnxsim-unvalidated"), or was not run ("none").
    double_input: the input is tensor(double) (default: when the model has wide_inputs; an exporter that
    compiles first decides on the model before compiling, which still knows each feature's range).
    """
    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        raise UsageError(f"opset {opset} is not supported; use an opset from {MIN_OPSET} to {max_opset}")
    model.check()
    if double_input is None:
        double_input = bool(wide_inputs(model).any())
    graph = _build_graph(model, naive, opset, double_input)
    # make_model_gen_version picks the IR version that goes with the opset, so a newer onnx package does
    # not stamp files with an IR version older runtimes refuse.
    proto = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)])
    simplifier = "none"
    if simplify:
        proto, simplifier = _simplify(proto, model)
    _set_metadata(proto, model, "naive" if naive else "grouped", simplifier)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx_bytes(model: SparseMLP, **options: object) -> bytes:
    """to_onnx(...).SerializeToString(): what gets written to a .onnx file."""
    return to_onnx(model, **options).SerializeToString()  # type: ignore[arg-type]


def read_metadata(onnx_model: onnx.ModelProto) -> dict[str, object]:
    """metadata_props as a dict, with swat-edge's JSON lists and counts decoded (see METADATA_KEYS)."""
    props = {p.key: p.value for p in onnx_model.metadata_props}
    out: dict[str, object] = {}
    for key, value in props.items():
        if key in ("feature_names", "target_names", "classes"):
            out[key] = json.loads(value)
        elif key in ("n_inputs", "n_outputs"):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read and validate an ONNX file; a missing, foreign or truncated file raises a one-line error."""
    p = check_input_file(path, "ONNX file")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"{p}: empty file, not an ONNX model (re-export it with `swat-edge export`)")
    try:
        proto = onnx.load(str(p))
    except Exception:  # protobuf DecodeError, or a failure resolving external data
        raise ModelFileError(
            f"{p}: not an ONNX model, or truncated ({size} bytes could not be parsed as an ONNX protobuf)"
        ) from None
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.output:
        raise ModelFileError(f"{p}: not an ONNX model, or truncated (no ir_version or graph in {size} bytes)")
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{p}: invalid or truncated ONNX model ({first})") from None
    if proto.producer_name == "swat-edge":
        present = {prop.key for prop in proto.metadata_props}
        missing = [key for key in METADATA_KEYS if key not in present and key not in _OPTIONAL_METADATA]
        if missing:
            raise ModelFileError(
                f"{p}: truncated swat-edge ONNX file (metadata {missing[0]!r} missing); re-export it"
            )
    return proto


def _as_bytes(model: onnx.ModelProto | bytes) -> bytes:
    return model if isinstance(model, bytes) else model.SerializeToString()


def session_options(threads: int = 1):
    """The one set of onnxruntime options swat-edge runs models with (checks and benchmarks alike).

    1 inter-op thread and sequential execution: thread pools cost more than they save on microsecond models.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the library must not print warnings to the user's stderr
    return options


def _session(onnx_model: onnx.ModelProto | bytes):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(_as_bytes(onnx_model), session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ToolchainError(f"onnxruntime cannot load the model ({type(exc).__name__}: {exc})") from None


def run_onnx(onnx_model: onnx.ModelProto | bytes, x: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output model on rows x with onnxruntime (CPU, 1 thread); float32 result."""
    session = _session(onnx_model)
    x = np.asarray(x)
    spec = session.get_inputs()[0]
    width = spec.shape[1] if len(spec.shape) == 2 and isinstance(spec.shape[1], int) else None
    if x.ndim != 2 or (width is not None and x.shape[1] != width):
        raise DataError("input rows", f"shape {x.shape}, expected (rows, {width if width is not None else 'n_inputs'})")
    return session.run(None, {spec.name: np.ascontiguousarray(x, dtype=input_dtype(spec))})[0]


@dataclass(frozen=True)
class CheckReport:
    """ONNX output vs the reference forward pass on `rows` rows.

    max_abs_error and tolerance are those of the output closest to (or furthest past) its tolerance,
    named by worst_output; tolerance is 1e-5 x that output's scale (model.output_tolerance).
    """

    rows: int
    max_abs_error: float
    tolerance: float
    passed: bool
    worst_output: str = ""


def check_onnx(
    onnx_model: onnx.ModelProto | bytes,
    model: SparseMLP,
    *,
    x: np.ndarray | None = None,
    input_columns: Sequence[int] | None = None,
    rows: int = 512,
    seed: int = 0,
) -> CheckReport:
    """Compare onnxruntime's output with forward(model) on x (default: sample_inputs(model, rows, seed)).

    input_columns: the columns of the model's inputs the ONNX graph takes (for a compiled model that
    dropped unused inputs); x is always in the reference model's columns.
    The reference runs on the rows the graph receives: float32, or float64 for a graph with a double input
    (wide_inputs: a unix timestamp moves by up to 64 when rounded to float32).
    """
    x = sample_inputs(model, rows, seed=seed) if x is None else np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != model.n_inputs:
        raise DataError("check rows", f"shape {x.shape}, expected (rows, {model.n_inputs})")
    x = x.astype(input_dtype(_session(onnx_model).get_inputs()[0])).astype(np.float64)
    feed = x
    if input_columns is not None:
        cols = np.asarray(list(input_columns), dtype=np.int64)
        if cols.size and (cols.min() < 0 or cols.max() >= model.n_inputs):
            raise InputError(f"input_columns {cols.tolist()}: each must lie in [0, {model.n_inputs})")
        feed = x[:, cols]
    y_ref = forward(model, x)
    y = run_onnx(onnx_model, feed).astype(np.float64)
    if y.shape != y_ref.shape:
        raise NumericsError(f"ONNX model output has shape {y.shape}, the reference model gives {y_ref.shape}")
    tol = output_tolerance(model, y_ref)
    err = np.abs(y - y_ref)
    err = np.where(np.isnan(err), np.inf, err)  # a NaN disagrees with everything
    per_output = err.max(axis=0) if len(err) else np.zeros(model.n_outputs)
    worst = int(np.argmax(per_output / tol))
    return CheckReport(
        rows=int(x.shape[0]),
        max_abs_error=float(per_output[worst]),
        tolerance=float(tol[worst]),
        passed=bool(np.all(per_output <= tol)),
        worst_output=model.target_names[worst],
    )


def verify_onnx(onnx_model: onnx.ModelProto | bytes, model: SparseMLP, **options: object) -> CheckReport:
    """check_onnx(...) that raises NumericsError when the ONNX model disagrees beyond tolerance."""
    report = check_onnx(onnx_model, model, **options)  # type: ignore[arg-type]
    if not report.passed:
        raise NumericsError(
            f"ONNX model disagrees with the reference forward pass: max abs error {report.max_abs_error:.3g} "
            f"on output {report.worst_output!r} exceeds tolerance {report.tolerance:.3g} over {report.rows} rows"
        )
    return report
