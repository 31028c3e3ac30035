"""Cost model: latency, throughput, model bytes and peak activation memory of a network on a target profile.

What is counted follows what the exporter emits and onnxruntime 1.32 runs (checked node for node against
onnxruntime's optimised graph in tests/test_cost.py): compile passes have run (scaling folded, dead neurons
removed); per hidden layer one Gemm; a layer with one non-identity activation type has it fused into the Gemm
(FusedGemm: no extra node); a layer with k > 1 types runs Split -> one node per non-identity type -> Concat;
identity costs nothing; the output layer is one float Gemm. int8 (static QDQ, last layer float, as
swat_edge.export.quantize emits) adds a QuantizeLinear before each hidden layer, runs the hidden Gemms as int8 and
leaves a lone activation as its own node; a ReLU-only layer folds its ReLU into the int8 range (the next
layer then needs no QuantizeLinear), except as the last hidden layer, which runs as a float FusedGemm behind
three DequantizeLinear nodes. Dense Gemms round each layer's output columns up to the runtime's column block.

Latency of one call at batch B, with the coefficients of swat_edge.device.targets.CostCoefficients:

    call_us + node_us * nodes + slice_us * slices + B * 1e-3 * sum(coefficient_ns * count per row)

The per-row terms are a Gemm's row overhead (float, int8), MACs (float, int8), Gemm outputs, quantized
elements, Split/Concat copies and slices, the input-scaling Mul/Add (broadcast row by row: ~20 ns a row on
the host) and each activation's elements: what dominates small MLPs was measured, not assumed
(benchmarks/cost_accuracy.py).

`network_counts` is written with operations numpy arrays and torch tensors share (`.prod(0)`, `.sum()`,
indexing, arithmetic), so this numpy face and the differentiable torch face (swat_edge.search.cost) evaluate
literally the same formula. With 0/1 gates and one-hot activation probabilities the soft expressions reduce
to exact counts: for a layer with gates g_i and activation probabilities p_ia, q_ia = g_i p_ia,
P(type a present) = 1 - prod_i(1 - q_ia), P(only type a) = prod_i(1 - g_i + q_ia) - prod_i(1 - g_i),
P(two or more types) = 1 - prod_i(1 - g_i) - sum_a P(only a); expected widths multiply into MACs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from ..model import ACTIVATIONS, SparseMLP
from .targets import CostCoefficients, TargetProfile, load_target

__all__ = [
    "DTYPES",
    "ACTIVATION_TERMS",
    "PER_CALL_TERMS",
    "PER_ROW_TERMS",
    "TERMS",
    "LOOP_TERMS",
    "ACTIVATION_BYTES",
    "LayerQuantities",
    "Counts",
    "Estimate",
    "network_counts",
    "model_quantities",
    "count_model",
    "affine_nodes",
    "count_for",
    "deployed_bytes",
    "latency_us",
    "terms_us",
    "feature_vector",
    "coefficient_vector",
    "coefficients_from_vector",
    "estimate",
    "estimate_counts",
    "choose_dtype",
    "loop_eligible_layers",
    "choose_loop_layers",
    "LATENCY_UNITS",
    "SIZE_UNITS",
    "parse_latency_us",
    "parse_size_bytes",
]

DTYPES: tuple[str, ...] = ("fp32", "int8")
# Non-identity activations, in model.ACTIVATIONS order; identity is free (the exporter emits no node).
ACTIVATION_TERMS: tuple[str, ...] = tuple(a for a in ACTIVATIONS if a != "identity")
_IDENTITY = ACTIVATIONS.index("identity")
_NON_IDENTITY = [ACTIVATIONS.index(a) for a in ACTIVATION_TERMS]
_RELU = ACTIVATIONS.index("relu")
_TANH = ACTIVATIONS.index("tanh")
_SIGMOID = ACTIVATIONS.index("sigmoid")
# (coefficient, Counts field): paid once per call, and paid per batch row.
PER_CALL_TERMS: tuple[tuple[str, str | None], ...] = (("call_us", None), ("node_us", "nodes"), ("slice_us", "slices"),
                                                      ("libm_us", "libm_used"))
PER_ROW_TERMS: tuple[tuple[str, str], ...] = (
    ("gemm_row_ns", "gemm_rows"),
    ("qgemm_row_ns", "qgemm_rows"),
    ("mac_fp32_ns", "macs_fp32"),
    ("mac_int8_ns", "macs_int8"),
    ("gemm_out_ns", "gemm_outputs"),
    ("quantize_ns", "quantized"),
    ("copy_ns", "copied"),
    ("slice_row_ns", "slices"),
    ("affine_row_ns", "affine_ops"),
    *((f"{a}_ns", a) for a in ACTIVATION_TERMS),
    ("loop_layer_ns", "loop_layers"),
    ("loop_row_ns", "loop_rows"),
    ("loop_mac_ns", "loop_macs"),
)
TERMS: tuple[str, ...] = tuple(name for name, _ in PER_CALL_TERMS + PER_ROW_TERMS)
# Terms only generated C has (layers emitted as loops); onnxruntime graphs count 0 of them.
LOOP_TERMS: tuple[str, ...] = ("loop_layer_ns", "loop_row_ns", "loop_mac_ns")
ACTIVATION_BYTES = 4  # tensors between nodes are float32 in both dtypes (int8 Gemms output float here)
_INT8_LAYER_EXTRA_BYTES = 8  # per quantized layer: weight scale and zero point (as model.model_stats counts)


@dataclass(frozen=True)
class LayerQuantities:
    """One hidden layer as the cost model sees it: numpy arrays (hard) or torch tensors (soft).

    gates: (n,) probability that each neuron is kept (0/1 for a hard network).
    activation_probs: (n, len(ACTIVATIONS)) probability of each activation per neuron (rows sum to 1).
    nonzero: (n_in, n) probability that each incoming weight is non-zero, or None (every weight counts).
    """

    gates: Any
    activation_probs: Any
    nonzero: Any = None


@dataclass(frozen=True)
class Counts:
    """What one call of a network costs, in the units of the cost terms. Per-row counts are per batch row.

    Floats for a hard network; 0-d torch tensors (differentiable) from swat_edge.search.cost.
    """

    nodes: Any  # graph nodes executed per call
    gemm_rows: Any  # float Gemms (each pays gemm_row_ns per row)
    qgemm_rows: Any  # int8 Gemms
    macs_fp32: Any
    macs_int8: Any
    gemm_outputs: Any  # Gemm output elements
    quantized: Any  # elements quantized to int8
    copied: Any  # elements copied by Split and Concat
    slices: Any  # slices of Split and Concat
    affine_ops: Any  # element-wise Mul/Add kept for input scaling and output de-normalisation
    relu: Any  # activation elements by type
    leaky_relu: Any
    tanh: Any
    sigmoid: Any
    widths: tuple[Any, ...]  # inputs read, hidden widths (expected), outputs
    weight_bytes: Any  # weights and biases as deployed
    peak_elements: Any  # most activation elements alive at once, per row
    libm_used: Any = 0.0  # 1 when any tanh or sigmoid runs (soft: min(expected count, 1))
    # generated C layers emitted as loops (network_counts' loop_layers; hard counts only): their multiply-adds
    # (table entries, zeros included) and neurons are counted here, not in macs_fp32 / gemm_outputs / gemm_rows
    loop_layers: Any = 0.0
    loop_rows: Any = 0.0
    loop_macs: Any = 0.0
    loop_libm: Any = 0.0  # tanh / sigmoid neurons inside loop layers (one call site per layer in the code)

    def as_floats(self) -> "Counts":
        """The same counts as Python floats (for reports of a soft estimate)."""
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            values[f.name] = tuple(float(x) for x in v) if f.name == "widths" else float(v)
        return Counts(**values)


def _layer_structure(layer: LayerQuantities) -> tuple[Any, Any, Any, Any, Any]:
    """(width, elements per activation (A,), P(type present) (A,), P(only this type) (A,), P(k >= 2 types))."""
    g = layer.gates
    q = g[:, None] * layer.activation_probs  # (n, A): neuron kept and has activation a
    none_kept = (1 - g).prod(0)
    only = (1 - g[:, None] + q).prod(0) - none_kept
    present = 1 - (1 - q).prod(0)
    multi = 1 - none_kept - only.sum()
    return g.sum(), q.sum(0), present, only, multi


def _round_up(width: Any, block: int) -> Any:
    """width rounded up to a multiple of block; a soft width gets the gradient of width itself.

    The step function has no useful gradient, so the rounding is added as a constant (straight-through):
    the value is exact on whole widths and d/d(width) is 1.
    """
    if block <= 1:
        return width
    rounded = -((-width) // block) * block
    step = rounded - width
    detach = getattr(step, "detach", None)  # torch tensors; numpy and Python numbers have no graph to cut
    return width + (detach() if detach is not None else step)


def network_counts(
    hidden: Sequence[LayerQuantities],
    *,
    n_inputs: Any,
    n_outputs: int,
    output_nonzero: Any = None,
    dtype: str = "fp32",
    sparse_kernel: bool = False,
    gemm_column_block: int = 1,
    input_affine: int = 0,
    output_affine: int = 0,
    loop_layers: frozenset[int] = frozenset(),
) -> Counts:
    """Count nodes, MACs, elements and bytes of a network given per-layer quantities (hard or soft).

    n_inputs: the inputs the network reads when the first layer's `nonzero` is None; with it, an input
    counts as read when any kept neuron has a non-zero weight from it (what drop_unused_inputs keeps).
    sparse_kernel: MACs and weight bytes count non-zero weights only (generated C skips zeros); otherwise
    every weight of the dense matrices counts (onnxruntime's Gemm), with the output columns rounded up to
    gemm_column_block (the kernel's column block; MACs only, not bytes). int8 quantizes the hidden layers.
    input_affine / output_affine: element-wise Mul/Add nodes (0-2 each) the graph keeps for input scaling and
    output de-normalisation (the int8 export keeps the input scaling in float; fp32 folds both).
    loop_layers: indices into the layers (hidden ones, then the output layer) that generated C emits as a loop
    over a dense weight table (sparse_kernel, fp32, hard counts): every table entry is a multiply-add there.

    Longer than the house's ~80 lines on purpose: it is one formula, generic over floats and torch tensors (the
    search differentiates through it), that walks the graph the exporter emits layer by layer; split into
    helpers it would pass a dozen running totals back and forth.
    """
    if dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    quantize = dtype == "int8" and len(hidden) > 0  # nothing to quantize without a hidden layer
    first_nonzero = hidden[0].nonzero if hidden else output_nonzero
    if first_nonzero is not None:
        first_gates = hidden[0].gates if hidden else None
        used = first_nonzero if first_gates is None else first_nonzero * first_gates[None, :]
        n_in = (1 - (1 - used).prod(1)).sum()
    else:
        n_in = n_inputs

    zero = 0.0 * n_in  # a zero of the right kind (float or tensor) to accumulate into
    c = {name: zero for name in ("nodes", "gemm_rows", "qgemm_rows", "macs_fp32", "macs_int8", "gemm_outputs",
                                 "quantized", "copied", "slices", "affine_ops", "weight_bytes", *ACTIVATION_TERMS,
                                 "loop_layers", "loop_rows", "loop_macs", "loop_libm")}
    widths = [n_in]
    peaks = []
    prev_width, prev_gates = n_in, None
    c["nodes"] = c["nodes"] + input_affine + output_affine
    c["affine_ops"] = c["affine_ops"] + input_affine + output_affine
    c["copied"] = c["copied"] + input_affine * n_in + output_affine * n_outputs
    # P(the previous hidden layer's output comes straight from its int8 Gemm: identity-only, or ReLU-only with
    # the ReLU folded into the int8 range); onnxruntime then quantizes inside that Gemm, with no QuantizeLinear.
    prev_direct = zero
    for i, layer in enumerate(hidden):
        width, per_act, present, only, multi = _layer_structure(layer)
        if sparse_kernel and layer.nonzero is not None:
            src = 1 if prev_gates is None else prev_gates[:, None]
            weights = (layer.nonzero * src * layer.gates[None, :]).sum()
            macs = weights
        else:
            weights = prev_width * width
            macs = weights if sparse_kernel else prev_width * _round_up(width, gemm_column_block)
        relu_only = only[_RELU]
        if quantize:
            # onnxruntime 1.32 on the QDQ graph: a ReLU-only layer's ReLU disappears into the int8 output
            # range, and the next layer then needs no QuantizeLinear; but when it is the last hidden layer
            # (its output goes to the float output Gemm) the layer runs as a float FusedGemm behind three
            # DequantizeLinear nodes (input, weight, bias).
            quantize_input = 1 - prev_direct
            as_float = relu_only if i == len(hidden) - 1 else zero
            c["nodes"] = c["nodes"] + quantize_input + (1 - as_float) + 4 * as_float
            c["qgemm_rows"] = c["qgemm_rows"] + (1 - as_float)
            c["gemm_rows"] = c["gemm_rows"] + as_float
            c["macs_int8"] = c["macs_int8"] + (1 - as_float) * macs
            c["macs_fp32"] = c["macs_fp32"] + as_float * macs
            c["quantized"] = c["quantized"] + (quantize_input + as_float) * prev_width
            c["weight_bytes"] = c["weight_bytes"] + weights + 4 * width + _INT8_LAYER_EXTRA_BYTES
        elif i in loop_layers:
            c["nodes"] = c["nodes"] + 1
            _add_loop_layer(c, prev_width * width, width, per_act[_TANH] + per_act[_SIGMOID])
        else:
            c["nodes"] = c["nodes"] + 1
            c["gemm_rows"] = c["gemm_rows"] + 1
            c["macs_fp32"] = c["macs_fp32"] + macs
            c["weight_bytes"] = c["weight_bytes"] + 4 * (weights + width)
        if i not in loop_layers:
            c["gemm_outputs"] = c["gemm_outputs"] + width
        for name, j in zip(ACTIVATION_TERMS, _NON_IDENTITY):
            c[name] = c[name] + per_act[j]
        multi_types = present - only  # P(type a present and the layer has two or more types)
        act_nodes_multi = sum(multi_types[j] for j in _NON_IDENTITY)
        c["nodes"] = c["nodes"] + 2 * multi + act_nodes_multi  # Split + Concat + one node per type
        if quantize:  # a lone activation other than ReLU stays its own node after an int8 Gemm
            c["nodes"] = c["nodes"] + sum(only[j] for j in _NON_IDENTITY if j != _RELU)
        c["copied"] = c["copied"] + 2 * width * multi
        c["slices"] = c["slices"] + 2 * multi_types.sum()
        peaks += [prev_width + width, 2 * width * multi]
        widths.append(width)
        prev_width, prev_gates, prev_direct = width, layer.gates, relu_only + only[_IDENTITY]
    # Output layer: a float Gemm, every output kept.
    if sparse_kernel and output_nonzero is not None:
        out_weights = output_nonzero.sum() if prev_gates is None else (output_nonzero * prev_gates[:, None]).sum()
        out_macs = out_weights
    else:
        out_weights = prev_width * n_outputs
        out_macs = out_weights if sparse_kernel else prev_width * _round_up(n_outputs, gemm_column_block)
    c["nodes"] = c["nodes"] + 1
    if len(hidden) in loop_layers:
        _add_loop_layer(c, prev_width * n_outputs, n_outputs, zero)
    else:
        c["gemm_rows"] = c["gemm_rows"] + 1
        c["macs_fp32"] = c["macs_fp32"] + out_macs
        c["gemm_outputs"] = c["gemm_outputs"] + n_outputs
        c["weight_bytes"] = c["weight_bytes"] + 4 * (out_weights + n_outputs)
    peaks.append(prev_width + n_outputs)
    widths.append(n_outputs)
    return Counts(widths=tuple(widths), peak_elements=max(peaks), libm_used=_at_most_one(c["tanh"] + c["sigmoid"]),
                  **c)


def _add_loop_layer(c: dict[str, Any], entries: Any, width: Any, libm_neurons: Any) -> None:
    c["loop_layers"] = c["loop_layers"] + 1
    c["loop_rows"] = c["loop_rows"] + width
    c["loop_macs"] = c["loop_macs"] + entries
    c["loop_libm"] = c["loop_libm"] + libm_neurons
    c["weight_bytes"] = c["weight_bytes"] + 4 * (entries + width)


# ---------------------------------------------------------------------------------------------------------
# The formula (generic over floats and tensors)


def _count(counts: Counts, field: str | None) -> Any:
    return 1.0 + 0.0 * counts.nodes if field is None else getattr(counts, field)  # None: once per call


def terms_us(counts: Counts, cost: CostCoefficients, batch_size: Any = 1) -> dict[str, Any]:
    """Each term's share of one call's latency at batch_size, in microseconds (they sum to latency_us)."""
    out = {name: getattr(cost, name) * _count(counts, field) for name, field in PER_CALL_TERMS}
    for name, field in PER_ROW_TERMS:
        out[name] = batch_size * 1e-3 * getattr(cost, name) * getattr(counts, field)
    return out


def latency_us(counts: Counts, cost: CostCoefficients, batch_size: Any = 1) -> Any:
    """Predicted latency of one call at batch_size, in microseconds."""
    per_call_us = sum(getattr(cost, name) * _count(counts, field) for name, field in PER_CALL_TERMS)
    per_row_ns = sum(getattr(cost, name) * getattr(counts, field) for name, field in PER_ROW_TERMS)
    return per_call_us + batch_size * 1e-3 * per_row_ns


def feature_vector(counts: Counts, batch_size: int) -> np.ndarray:
    """Counts at batch_size as a vector over TERMS, so that latency_us == feature_vector @ coefficient_vector."""
    per_call = [float(_count(counts, field)) for _, field in PER_CALL_TERMS]
    per_row = [batch_size * 1e-3 * float(getattr(counts, field)) for _, field in PER_ROW_TERMS]
    return np.array(per_call + per_row, dtype=np.float64)


def coefficient_vector(cost: CostCoefficients) -> np.ndarray:
    return np.array([getattr(cost, name) for name in TERMS], dtype=np.float64)


def coefficients_from_vector(values: Sequence[float]) -> CostCoefficients:
    if len(values) != len(TERMS):
        raise ValueError(f"bug: {len(values)} coefficients for {len(TERMS)} terms")
    return CostCoefficients(**{name: float(v) for name, v in zip(TERMS, values)})


# ---------------------------------------------------------------------------------------------------------
# numpy face: hard networks


def model_quantities(model: SparseMLP) -> tuple[list[LayerQuantities], np.ndarray]:
    """Hard per-layer quantities of a model: gates = masks, one-hot activations, non-zero weight indicators.

    Returns (hidden layers, output layer non-zero indicators).
    """
    hidden = []
    for layer in model.hidden:
        probs = np.zeros((layer.n_out, len(ACTIVATIONS)))
        probs[np.arange(layer.n_out), [ACTIVATIONS.index(a) for a in layer.activations]] = 1.0
        hidden.append(
            LayerQuantities(
                gates=layer.mask.astype(np.float64),
                activation_probs=probs,
                nonzero=(layer.weight != 0.0).astype(np.float64),
            )
        )
    return hidden, (model.output.weight != 0.0).astype(np.float64)


def affine_nodes(scale: np.ndarray, offset: np.ndarray) -> int:
    """Mul and/or Add the exporter emits for x * scale + offset (none for the identity)."""
    return int(not np.all(scale == 1.0)) + int(not np.all(offset == 0.0))


def count_model(
    model: SparseMLP, *, dtype: str = "fp32", sparse_kernel: bool = False, gemm_column_block: int = 1,
    loop_layers: frozenset[int] = frozenset(),
) -> Counts:
    """Exact counts of a compiled model exported in `dtype` (compiled as `swat-edge export` compiles for that
    dtype: run_passes with PIPELINE, or PIPELINE_INT8 which keeps the input scaling for int8)."""
    hidden, output_nonzero = model_quantities(model)
    counts = network_counts(
        hidden,
        n_inputs=model.n_inputs,
        n_outputs=model.n_outputs,
        output_nonzero=output_nonzero,
        dtype=dtype,
        sparse_kernel=sparse_kernel,
        gemm_column_block=gemm_column_block,
        input_affine=affine_nodes(model.input_scale, model.input_offset),
        output_affine=affine_nodes(model.output_scale, model.output_offset),
        loop_layers=frozenset(loop_layers),
    )
    return counts.as_floats()


def _at_most_one(value: Any) -> Any:
    """min(value, 1) for a float or a torch tensor (a soft count of neurons -> a soft 'any is used')."""
    return value.clamp(max=1.0) if hasattr(value, "clamp") else min(value, 1.0)


def deployed_bytes(counts: Counts, profile: TargetProfile) -> Any:
    """What a size budget counts: on a profile with a [code_size] model (generated C) the flash bytes of the code
    and constants, libm included; else the weights and biases as deployed. Generic over floats and tensors."""
    size = profile.code_size
    if size is None:
        return counts.weight_bytes
    libm_neurons = counts.tanh + counts.sigmoid
    return (size.call_bytes + size.mac_bytes * (counts.macs_fp32 + counts.macs_int8)
            + size.output_bytes * counts.gemm_outputs + size.libm_call_bytes * (libm_neurons - counts.loop_libm)
            + size.libm_bytes * _at_most_one(libm_neurons) + size.relu_bytes * _at_most_one(counts.relu)
            + size.leaky_relu_bytes * _at_most_one(counts.leaky_relu)
            + size.loop_layer_bytes * counts.loop_layers
            + size.loop_weight_bytes * (counts.loop_macs + counts.loop_rows))


@dataclass(frozen=True)
class Estimate:
    """Predicted cost of one network on one target (a prediction: compare with `swat-edge bench`)."""

    target: str
    provenance: str  # the profile's provenance kind: "measured" or "estimated" coefficients
    dtype: str
    batch_sizes: tuple[int, ...]
    latency_us: tuple[float, ...]  # per batch size: one call of that many rows
    peak_activation_bytes: tuple[int, ...]  # per batch size
    # what a size budget counts (deployed_bytes): weights and biases in `dtype` as deployed (int8: last layer
    # float32), or on a target with a [code_size] model the generated code's flash bytes
    model_bytes: int
    model_bytes_fp32: int
    model_bytes_int8: int
    nodes: int
    terms_us: dict[str, float]  # batch-1 latency split by term
    # generated C: the layers (indices into model.layers) emitted as loops, as choose_loop_layers chose them
    loop_layers: tuple[int, ...] = ()

    def latency_at(self, batch_size: int) -> float:
        try:
            return self.latency_us[self.batch_sizes.index(batch_size)]
        except ValueError:
            raise KeyError(batch_size) from None

    def throughput_rows_per_s(self, batch_size: int) -> float:
        return batch_size / (self.latency_at(batch_size) * 1e-6)


def _profile(target: TargetProfile | str) -> TargetProfile:
    return target if isinstance(target, TargetProfile) else load_target(target)


def _check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(dict.fromkeys(int(b) for b in batch_sizes))
    if not sizes or any(b < 1 for b in sizes):
        raise UsageError(f"batch sizes must be integers >= 1, got {list(batch_sizes)}")
    return sizes


def choose_dtype(model: SparseMLP, target: TargetProfile | str, *, batch_size: int = 1, compile: bool = True) -> str:
    """The dtype the target's int8 policy picks: never, always, or when_faster (the cheaper prediction)."""
    profile = _profile(target)
    if profile.int8_policy == "never":
        return "fp32"
    compiled = {d: _compiled(model, compile, d) for d in DTYPES}
    counts = {d: count_for(compiled[d], profile, d) for d in DTYPES}
    return _choose(counts, profile, batch_size, has_hidden=bool(compiled["int8"].hidden))


def _choose(counts: dict[str, Counts], profile: TargetProfile, batch_size: int, *, has_hidden: bool) -> str:
    if profile.int8_policy == "never" or not has_hidden:
        return "fp32"
    if profile.int8_policy == "always":
        return "int8"
    cheaper = latency_us(counts["int8"], profile.cost, batch_size) < latency_us(counts["fp32"], profile.cost, batch_size)
    return "int8" if cheaper else "fp32"


def count_for(model: SparseMLP, profile: TargetProfile, dtype: str, loop_layers: frozenset[int] = frozenset()
              ) -> Counts:
    """count_model with the profile's runtime settings (sparse kernel, Gemm column block)."""
    return count_model(
        model,
        dtype=dtype,
        sparse_kernel=profile.runtime.sparse_kernel,
        gemm_column_block=profile.runtime.gemm_column_block,
        loop_layers=loop_layers if dtype == "fp32" else frozenset(),
    )


def loop_eligible_layers(model: SparseMLP) -> tuple[int, ...]:
    """Layers (indices into model.layers) generated C can emit as a loop: they read a hidden layer with kept
    neurons and their kept neurons share one activation (as export.c.loop_eligible checks on its lowered plan)."""
    out = []
    for li in range(1, len(model.layers)):
        layer = model.layers[li]
        previous = model.layers[li - 1]
        kept = [a for a, m in zip(layer.activations, layer.mask) if m] if li < len(model.hidden) else ["identity"]
        if previous.mask.any() and len(set(kept)) == 1:
            out.append(li)
    return tuple(out)


_MAX_EXHAUSTIVE_LOOPS = 10


def choose_loop_layers(model: SparseMLP, profile: TargetProfile, size_budget_bytes: float | None = None, *,
                       compile: bool = False) -> frozenset[int]:
    """Which layers generated C emits as loops on `profile`, chosen by its cost model (compile=True runs the
    export's compile passes first; else `model` is taken as compiled).

    Loops are smaller (about 4 bytes a weight instead of about 20) and usually slower. By default only loops
    predicted both smaller and not slower; when that breaks a size budget, the fastest choice predicted within
    it (the smallest when none is). Nothing on a profile without the loop terms (runtimes, hand-written
    profiles)."""
    size = profile.code_size
    if size is None or size.loop_weight_bytes <= 0.0 or profile.cost.loop_mac_ns <= 0.0:
        return frozenset()
    model = _compiled(model, compile, "fp32")
    eligible = loop_eligible_layers(model)
    if len(eligible) > _MAX_EXHAUSTIVE_LOOPS:  # deeper than the family: all or nothing
        choices = [frozenset(), frozenset(eligible)]
    else:
        choices = [frozenset(li for k, li in enumerate(eligible) if bits >> k & 1) for bits in range(2**len(eligible))]

    def cost_of(loops: frozenset[int]) -> tuple[float, float]:
        counts = count_for(model, profile, "fp32", loops)
        return float(latency_us(counts, profile.cost)), float(deployed_bytes(counts, profile))

    costs = {loops: cost_of(loops) for loops in choices}
    straight_us, straight_bytes = costs[frozenset()]
    smaller_not_slower = [k for k, (us, b) in costs.items() if us <= straight_us and b < straight_bytes]
    base = min(smaller_not_slower, key=lambda k: (costs[k][1], costs[k][0], sorted(k))) if smaller_not_slower \
        else frozenset()
    if size_budget_bytes is None or costs[base][1] <= size_budget_bytes:
        return base
    fits = [k for k, (_, b) in costs.items() if b <= size_budget_bytes]
    if not fits:  # the budget cannot be met: the smallest code, and the budget check says by how much
        return min(costs, key=lambda k: (costs[k][1], costs[k][0], sorted(k)))
    return min(fits, key=lambda k: (costs[k][0], costs[k][1], sorted(k)))


def _compiled(model: SparseMLP, compile: bool, dtype: str) -> SparseMLP:
    """The model as `swat-edge export` compiles it for `dtype` (int8 keeps the input scaling in float)."""
    if not compile:
        return model
    from ..compile import PIPELINE, PIPELINE_INT8, run_passes  # numpy-only; imported here to keep this module light

    return run_passes(model, passes=PIPELINE_INT8 if dtype == "int8" else PIPELINE).model


def estimate_counts(
    counts_by_dtype: dict[str, Counts], profile: TargetProfile, *, dtype: str, batch_sizes: Sequence[int] = (1,),
    loop_layers: frozenset[int] = frozenset(),
) -> Estimate:
    """An Estimate from counts already made (both dtypes, for the byte figures)."""
    sizes = _check_batch_sizes(batch_sizes)
    counts = counts_by_dtype[dtype]
    return Estimate(
        target=profile.name,
        provenance=profile.provenance.kind,
        dtype=dtype,
        batch_sizes=sizes,
        latency_us=tuple(float(latency_us(counts, profile.cost, b)) for b in sizes),
        peak_activation_bytes=tuple(int(round(ACTIVATION_BYTES * b * counts.peak_elements)) for b in sizes),
        model_bytes=int(round(deployed_bytes(counts, profile))),
        model_bytes_fp32=int(round(deployed_bytes(counts_by_dtype["fp32"], profile))),
        model_bytes_int8=int(round(deployed_bytes(counts_by_dtype["int8"], profile))),
        nodes=int(round(counts.nodes)),
        terms_us={k: float(v) for k, v in terms_us(counts, profile.cost, 1).items()},
        loop_layers=tuple(sorted(loop_layers)) if dtype == "fp32" else (),
    )


def estimate(
    model: SparseMLP,
    target: TargetProfile | str,
    *,
    dtype: str | None = None,
    batch_sizes: Sequence[int] = (1,),
    compile: bool = True,
    size_budget_bytes: float | None = None,
    loop_layers: Sequence[int] | None = None,
) -> Estimate:
    """Predict latency (per batch size), bytes and peak activation memory of `model` deployed on `target`.

    dtype None: the target's int8 policy chooses (at the first batch size). compile=True runs the compile
    passes first, as `swat-edge export` does; pass compile=False for a model that run_passes returned.
    On a generated-C target the layers emitted as loops are chosen as export chooses them (choose_loop_layers,
    with `size_budget_bytes`), or are `loop_layers` (those of a C file already generated: CSource.loop_layers).
    """
    profile = _profile(target)
    sizes = _check_batch_sizes(batch_sizes)
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    compiled = {d: _compiled(model, compile, d) for d in DTYPES}
    if loop_layers is None:
        loops = choose_loop_layers(compiled["fp32"], profile, size_budget_bytes)
    else:
        loops = frozenset(int(li) for li in loop_layers)
    counts = {d: count_for(compiled[d], profile, d, loops) for d in DTYPES}
    if dtype is None:
        dtype = _choose(counts, profile, sizes[0], has_hidden=bool(compiled["int8"].hidden))
    return estimate_counts(counts, profile, dtype=dtype, batch_sizes=sizes, loop_layers=loops)


# Units a budget may be given in, the first being what the cost model counts in (us per call, bytes).
LATENCY_UNITS: dict[str, float] = {"us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}
SIZE_UNITS: dict[str, float] = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def _parse_quantity(text: str, units: dict[str, float], flag: str, example: str) -> float:
    """'20us' -> 20.0 (in the first unit); a bare number is in the first unit."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in units) or float(match.group(1)) <= 0:
        raise UsageError(f"{flag} {text!r}: give a positive number with a unit ({', '.join(units)}), e.g. {example}")
    return float(match.group(1)) * units[unit or next(iter(units))]


def parse_latency_us(text: str, *, flag: str = "--latency-budget") -> float:
    """A latency such as '20us', '0.5 ms' or '20' (us) -> microseconds; UsageError naming `flag` otherwise."""
    return _parse_quantity(text, LATENCY_UNITS, flag, "20us")


def parse_size_bytes(text: str, *, flag: str = "--size-budget") -> float:
    """A size such as '4KB' (1000 bytes), '4KiB' (1024) or '512' (bytes) -> bytes; UsageError naming `flag` otherwise."""
    return _parse_quantity(text, SIZE_UNITS, flag, "4KB")
