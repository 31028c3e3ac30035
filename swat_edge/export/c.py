"""Runtime-free C99 code generation: a SparseMLP as straight-line C (float32 or int8), checked by a host compiler.

The generated file needs no runtime: no allocation, no tables to load, only <math.h> (and the freestanding
<stdint.h> for int8 code). Every non-zero weight becomes one multiply-add in the source and a
zero weight becomes nothing, so unstructured sparsity pays in full. The model's input normalisation is folded
into the first layer and its output scaling into the last, so `<prefix>_predict` takes raw features and
returns raw targets, exactly like `model.forward`.

Lowering (pure, float64): fold the scaling; gated-off neurons and neurons with no non-zero input are
constants, folded into the next layer's biases; neurons no live neuron reads are dropped; each layer's
neurons are emitted grouped by activation (canonical ACTIVATIONS order). Sums are pairwise (a balanced
tree): shorter dependency chains and smaller rounding error than a left-to-right chain.

int8 scheme (`dtype="int8"`), static and calibrated like the int8 ONNX path:
- every value that feeds a layer (each input feature, each hidden neuron's activation) is quantized
  asymmetrically to int8 with its own scale and offset from the calibration rows' min/max
  (q = clamp(round(v / S + d), -128, 127)); in straight-line code a per-neuron scale costs the same one
  multiply-add as a per-layer scale, and it spends all 256 levels on each neuron's own range;
- weights are int8, symmetric, one scale per output neuron, after folding the input's scale S_i into them;
- dot products accumulate in int32; one float multiply-add dequantizes (z = s_j * acc + c_j), where c_j
  holds the bias and the exact (unquantized) offset terms; activations and outputs are computed in float;
- except a ReLU or identity neuron that feeds the next layer: its int8 value comes from the int32 sum in integer
  arithmetic only, (acc * m + b) >> k clamped (m keeps >= 10 bits and no product leaves int32), so a ReLU
  network's hidden stack never touches float: on a core without an FPU that is what makes int8 pay.
The declared drift is the relative MSE (as quantize.DriftReport defines it) of a float32 simulation of that
arithmetic against forward() on the calibration rows; verify_c checks the compiled code on other rows
against INT8_MAX_RELATIVE_MSE (or the caller's limit).

fast_math: tanh (and sigmoid through it) from a clamped rational approximation, branch-free and without
int conversions, instead of libm's tanhf (about 4x its throughput on x86-64). Maximum absolute errors are
FAST_TANH_MAX_ABS_ERROR and FAST_SIGMOID_MAX_ABS_ERROR (measured on a dense grid by tests/test_export_c.py);
the banner says so, and verify_c widens its tolerance by those errors propagated through |weights|.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from .. import __version__
from ..compile.fold_normalization import input_shift, wide_inputs
from ..errors import InputError, ModelFileError, NumericsError, UsageError
from ..files import atomic_path, check_input_file, check_output_path
from ..model import (
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    SparseMLP,
    apply_activation,
    forward,
    model_hash,
    output_tolerance,
    sample_inputs,
    with_missing_rows,
)
from .cc import compile_c, find_c_compiler, run_program

__all__ = [
    "CSource",
    "Int8Info",
    "CCheckReport",
    "VERIFY_CFLAGS",
    "FAST_TANH_MAX_ABS_ERROR",
    "FAST_SIGMOID_MAX_ABS_ERROR",
    "INT8_MAX_RELATIVE_MSE",
    "to_c",
    "loop_layers_allowed",
    "read_c",
    "write_c",
    "with_header_name",
    "verify_c",
    "check_prefix",
    "c_float_literal",
    "relative_mse",
    "run_c_rows",
]

Dtype = Literal["float", "int8"]

# Flags the verification compiles with: the strictest portable C99 set; a clean build here builds anywhere.
VERIFY_CFLAGS: tuple[str, ...] = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")
# Measured against float64 over [-30, 30] in steps of 1e-4 plus +-100 and +-1e30 (gcc 12, x86-64): 3.1e-7
# (tanh) and 1.7e-7 (sigmoid), against libm tanhf's 1.0e-7 and 7.9e-8; tests/test_export_c.py repeats the
# measurement. The declared bounds leave headroom for other compilers and FPUs.
FAST_TANH_MAX_ABS_ERROR = 5e-7
FAST_SIGMOID_MAX_ABS_ERROR = 3e-7
# Same limit the runtime notes use for static int8 ONNX models (relative MSE vs fp32).
INT8_MAX_RELATIVE_MSE = 1e-3
_INT8_SYNTHETIC_ROWS = 1024
# Quantizer ranges are the calibration min/max widened by this share of the span on each side: rows a bit
# outside the calibration set then lose a little resolution instead of saturating. On the bundled example
# calibrated on 250 rows and checked on 250 others, relative MSE fell from 1.5e-3 (no margin) to 3.1e-4.
_RANGE_MARGIN = 0.1
_VERIFY_ROWS = 256
_MAX_PREFIX_CHARS = 40
_BANNER_TAG = "swat-edge-c:"
_RUN_TIMEOUT_S = 60

# fast tanh: tanh(x) / x as P(s) / Q(s) in s = x^2 on [0, 81] (degree 4 / 4, Q(0) = 1), fitted by weighted
# linearised least squares (Loeb iteration, then Lawson reweighting towards minimax of the absolute tanh
# error) on 8000 points; float64 fit error 1.9e-8, float32 evaluation error 3.3e-7. Coefficients are
# float32-rounded and written here so the output never depends on a fit's last bits.
_TANH_P = ("0.999999881f", "0.13373208f", "0.00348659186f", "2.04719272e-05f", "1.31842492e-08f")
_TANH_Q = ("1.0f", "0.467065036f", "0.0258420222f", "0.00032713986f", "7.70269651e-07f")

_C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto if inline int
    long register restrict return short signed sizeof static struct switch typedef union unsigned void volatile
    while alignas alignof bool constexpr false nullptr static_assert thread_local true typeof typeof_unqual""".split()
)
# The header may be included from C++; a prefix that is a C++ keyword would read oddly there.
_CXX_KEYWORDS = frozenset(
    """and and_eq asm bitand bitor catch char8_t char16_t char32_t class compl concept consteval constinit
    co_await co_return co_yield decltype delete dynamic_cast explicit export friend mutable namespace new
    noexcept not not_eq operator or or_eq private protected public reinterpret_cast requires static_cast
    template this throw try typeid typename using virtual wchar_t xor xor_eq""".split()
)
# Names the C library owns (macros or functions a prefix alone would shadow or be confused with).
_LIBRARY_NAMES = frozenset({"main", "errno", "assert", "math", "stdin", "stdout", "stderr", "NULL", "EOF"})


# ---------------------------------------------------------------------------------------------------------
# Plain data


@dataclass(frozen=True)
class Int8Info:
    """How an int8 file was calibrated and how far it drifts from the float model (relative MSE)."""

    calibration_rows: int
    calibration_source: str  # "calibration_rows argument" | "model calibration rows" | "synthetic rows"
    relative_mse: float  # float32 simulation of the generated arithmetic vs forward() on the calibration rows
    max_relative_mse: float  # the limit verify_c holds the compiled code to


@dataclass(frozen=True)
class CSource:
    """A generated C99 source and header. `source` includes `header_name`; write_c writes both side by side."""

    source: str
    header: str
    prefix: str
    header_name: str
    dtype: str
    fast_math: bool
    n_inputs: int
    n_outputs: int
    model_hash: str
    tool_version: str
    macs: int  # multiply-adds per row in the generated code (one per emitted non-zero weight)
    activation_counts: dict[str, int]  # activation calls per row, by type (identity not counted)
    notes: tuple[str, ...]  # what the generator changed or assumed (sanitised names, synthetic calibration)
    int8: Int8Info | None = None
    activation_max_abs_error: dict[str, float] = dataclasses.field(default_factory=dict)  # fast_math only
    input_type: str = "float"  # C type of `in`: "double" for a model with wide inputs (timestamps)
    loop_layers: tuple[int, ...] = ()  # layers (indices into model.layers) emitted as loops over weight tables

    @property
    def input_dtype(self) -> type:
        """numpy dtype of the rows `<prefix>_predict` reads."""
        return np.float64 if self.input_type == "double" else np.float32


@dataclass(frozen=True)
class CCheckReport:
    """The compiled C agreed with forward() on `rows` rows (verify_c raises NumericsError otherwise)."""

    compiler: str
    flags: tuple[str, ...]
    rows: int
    rows_source: str
    dtype: str
    max_abs_error: tuple[float, ...]  # per output, C vs forward()
    tolerance: tuple[float, ...]  # per output, absolute (float); informational for int8
    relative_mse: float  # mean over outputs, as quantize.DriftReport
    max_relative_mse: float | None  # the int8 limit; None for float
    batch_matches_single: bool  # <prefix>_predict_batch gave bit-identical outputs to per-row calls


# ---------------------------------------------------------------------------------------------------------
# Names and literals (pure)


def check_prefix(prefix: str) -> tuple[str, tuple[str, ...]]:
    """A valid, unreserved C identifier prefix -> (prefix, notes saying what was changed and why)."""
    original = str(prefix)
    name = re.sub(r"[^A-Za-z0-9_]", "_", original)
    name = re.sub(r"_+", "_", name).strip("_")  # `__` anywhere and a leading `_` are reserved
    reasons = []
    if name != original:
        reasons.append("not a valid C identifier")
    if not name:
        name = "model"
    if name[0].isdigit():
        name = "m_" + name
        reasons.append("starts with a digit")
    if name in _C_KEYWORDS or name in _CXX_KEYWORDS or name in _LIBRARY_NAMES:
        reasons.append("a C/C++ keyword or C library name")
        name = name + "_model"
    if len(name) > _MAX_PREFIX_CHARS:
        name = name[:_MAX_PREFIX_CHARS].rstrip("_")
        reasons.append(f"longer than {_MAX_PREFIX_CHARS} characters")
    if name == original:
        return name, ()
    why = ", ".join(dict.fromkeys(reasons)) or "changed"
    return name, (f"prefix {original!r} is {why}; using {name!r}",)


def _macro_names(names: Sequence[str]) -> tuple[tuple[str, ...], int]:
    """Feature/target names -> unique upper-case macro suffixes, and how many had to change."""
    out: list[str] = []
    changed = 0
    seen: set[str] = set()
    for i, raw in enumerate(names):
        base = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", str(raw))).strip("_").upper() or f"N{i}"
        name = base if base not in seen else f"{base}_{i}"
        while name in seen:
            name += "_"
        seen.add(name)
        out.append(name)
        changed += name != str(raw).upper()
    return tuple(out), changed


def c_float_literal(value: float) -> str:
    """A C float literal that reads back as exactly float32(value): 9 significant digits and an `f`."""
    with np.errstate(over="ignore"):
        f32 = np.float32(value)
    if not np.isfinite(f32):
        raise NumericsError(f"value {value!r} does not fit in float32; the generated C cannot represent it")
    text = f"{float(f32):.9g}"
    if not any(ch in text for ch in ".en"):
        text += ".0"  # `3f` is not a C literal, `3.0f` is
    return text + "f"


def relative_mse(y: np.ndarray, y_reference: np.ndarray) -> float:
    """Mean over outputs of MSE / variance of the reference (quantize.DriftReport's definition)."""
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(y_reference, dtype=np.float64)
    mse = np.mean((y - ref) ** 2, axis=0)
    var = np.var(ref, axis=0)
    mean_sq = np.mean(ref, axis=0) ** 2
    # A constant output has no variance (rounding in np.var can leave ~1e-32): measure it against its
    # magnitude instead (1 if it is ~0). Same definition as quantize.measure_drift, with a rounding floor.
    scale = np.where(var > 1e-12 * mean_sq, var, np.maximum(mean_sq, 1.0))
    return float(np.mean(mse / scale))


# ---------------------------------------------------------------------------------------------------------
# Lowering: SparseMLP -> straight-line plan (float64)


@dataclass(frozen=True)
class _Unit:
    """One emitted neuron: act(bias + sum(weight * source)); sources index the previous layer's neurons."""

    index: int
    activation: str
    bias: float
    terms: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class _Plan:
    n_inputs: int
    n_outputs: int
    layers: tuple[tuple[_Unit, ...], ...]  # hidden layers (grouped by activation), then the output layer
    # float32-exact value subtracted from each raw input before the folded scaling (0: none), for features
    # far from zero such as timestamps (compile.fold_normalization.input_shift)
    input_shift: tuple[float, ...] = ()
    # the function reads double rows (compile.fold_normalization.wide_inputs): a timestamp in float32 is
    # rounded to 128 s before any arithmetic; the midpoints are subtracted in double, then cast to float
    double_input: bool = False
    # per input, the value a missing (NaN) input is replaced by (NaN: none), as SparseMLP.input_fill
    input_fill: tuple[float, ...] = ()


def _act_scalar(name: str, z: float) -> float:
    return float(apply_activation(name, np.array([z], dtype=np.float64))[0])


def _lower(model: SparseMLP) -> _Plan:
    weights = [np.array(layer.weight, dtype=np.float64) for layer in model.layers]
    biases = [np.array(layer.bias, dtype=np.float64) for layer in model.layers]
    # x_n = x * s + o  =>  x_n @ W + b = x @ (s[:, None] * W) + (o @ W + b); a feature far from zero is
    # shifted first (exactly, in float32): x_n = (x - c) * s + (o + c * s)
    shift = input_shift(model)
    biases[0] = biases[0] + (model.input_offset + shift * model.input_scale) @ weights[0]
    weights[0] = model.input_scale[:, None] * weights[0]
    # y = y_n * os + oo, with y_n linear in the last layer's inputs
    weights[-1] = weights[-1] * model.output_scale[None, :]
    biases[-1] = biases[-1] * model.output_scale + model.output_offset

    n_hidden = len(model.hidden)
    variable = list(range(model.n_inputs))  # neurons of the previous layer that depend on the input
    constants: dict[int, float] = {}  # previous layer's constant neurons -> value
    layers: list[list[_Unit]] = []
    for li, layer in enumerate(model.layers):
        w, b = weights[li], biases[li]
        is_output = li == n_hidden
        units: list[_Unit] = []
        next_constants: dict[int, float] = {}
        for j in range(layer.n_out):
            act = layer.activations[j]
            bias = float(b[j]) + sum(c * float(w[i, j]) for i, c in constants.items())
            terms = tuple((i, float(w[i, j])) for i in variable if w[i, j] != 0.0)
            if not is_output and not layer.mask[j]:
                next_constants[j] = 0.0
            elif not is_output and not terms:
                next_constants[j] = _act_scalar(act, bias)
            else:
                units.append(_Unit(j, act, bias, terms))
        layers.append(units)
        variable = [u.index for u in units]
        constants = next_constants

    # Backwards: keep only neurons some kept neuron of the next layer reads.
    for li in range(n_hidden - 1, -1, -1):
        used = {i for u in layers[li + 1] for i, _ in u.terms}
        layers[li] = [u for u in layers[li] if u.index in used]
    order = {name: k for k, name in enumerate(ACTIVATIONS)}
    grouped = [tuple(sorted(units, key=lambda u: (order[u.activation], u.index))) for units in layers[:-1]]
    output = tuple(sorted(layers[-1], key=lambda u: u.index))
    fill = () if model.input_fill is None else tuple(float(v) for v in model.input_fill)
    return _Plan(model.n_inputs, model.n_outputs, (*grouped, output), tuple(float(c) for c in shift),
                 bool(wide_inputs(model).any()), fill)


def _plan_values(plan: _Plan, x: np.ndarray) -> list[dict[int, np.ndarray]]:
    """float64 values of every source: [inputs, hidden layer 1, ...], each {neuron index: column}."""
    x = _filled(plan, np.asarray(x, dtype=np.float64)) - _shift_vector(plan)
    values: list[dict[int, np.ndarray]] = [{i: x[:, i] for i in range(plan.n_inputs)}]
    for units in plan.layers:
        prev = values[-1]
        layer_values = {}
        for u in units:
            z = np.full(len(x), u.bias)
            for i, w in u.terms:
                z = z + w * prev[i]
            layer_values[u.index] = apply_activation(u.activation, z)
        values.append(layer_values)
    return values


def _filled(plan: _Plan | _QPlan, x: np.ndarray) -> np.ndarray:
    """x with missing inputs replaced as the generated code does (isnan(in[i]) ? fill : in[i])."""
    return np.where(np.isnan(x), np.asarray(plan.input_fill), x) if plan.input_fill else x


def _shift_vector(plan: _Plan | _QPlan) -> np.ndarray:
    return np.asarray(plan.input_shift, dtype=np.float64) if plan.input_shift else np.zeros(plan.n_inputs)


def _plan_forward(plan: _Plan, x: np.ndarray) -> np.ndarray:
    out = _plan_values(plan, x)[-1]
    return np.column_stack([out[k] for k in range(plan.n_outputs)]) if plan.n_outputs else np.zeros((len(x), 0))


# ---------------------------------------------------------------------------------------------------------
# int8 quantization of a plan


@dataclass(frozen=True)
class _QAct:
    """q = clamp(round(v * mul + add)) and v ~= scale * q + shift."""

    mul: float
    add: float
    scale: float
    shift: float


@dataclass(frozen=True)
class _IntRequant:
    """A ReLU / identity neuron's int8 output for the next layer straight from its int32 sum, in integer
    arithmetic only: q = clamp((acc * mul + add) >> shift, floor, 127); floor is the quantized 0 for ReLU."""

    mul: int
    add: int  # includes the rounding half, 1 << (shift - 1)
    shift: int
    floor: int


@dataclass(frozen=True)
class _QUnit:
    index: int
    activation: str
    scale: float  # z = scale * acc + offset
    offset: float
    terms: tuple[tuple[int, int], ...]  # (source, int8 weight)
    requant: _IntRequant | None = None  # set: the next layer reads q directly (no float on the way)


@dataclass(frozen=True)
class _QPlan:
    n_inputs: int
    n_outputs: int
    sources: tuple[dict[int, _QAct], ...]  # per layer input: inputs, hidden 1, ... (only what is read)
    layers: tuple[tuple[_QUnit, ...], ...]
    input_shift: tuple[float, ...] = ()  # as _Plan.input_shift: subtracted from the raw inputs first
    double_input: bool = False  # as _Plan.double_input
    input_fill: tuple[float, ...] = ()  # as _Plan.input_fill


# Output bounds of each activation: a range margin never reaches past them (relu never goes below 0).
_ACT_BOUNDS = {"relu": (0.0, np.inf), "tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}


def _qact(v: np.ndarray, activation: str | None) -> _QAct:
    """Quantizer for one value from its calibration samples: min/max widened by _RANGE_MARGIN of the span."""
    lo, hi = float(np.min(v)), float(np.max(v))
    span = hi - lo
    floor = max(abs(lo), abs(hi), 1.0) * 1e-6
    if span < floor:  # constant on the calibration rows: give it a small range around its value
        lo, hi = lo - floor / 2, hi + floor / 2
    else:
        bound_lo, bound_hi = _ACT_BOUNDS.get(activation or "", (-np.inf, np.inf))
        lo = max(lo - _RANGE_MARGIN * span, min(bound_lo, lo))
        hi = min(hi + _RANGE_MARGIN * span, max(bound_hi, hi))
    scale = (hi - lo) / 255.0
    # q = round((v - lo) / scale) - 128 ; v ~= scale * q + (lo + 128 * scale)
    return _QAct(mul=1.0 / scale, add=-lo / scale - 128.0, scale=scale, shift=lo + 128.0 * scale)


def _quantize_plan(plan: _Plan, rows: np.ndarray) -> _QPlan:
    values = _plan_values(plan, rows)
    sources: list[dict[int, _QAct]] = []
    layers: list[tuple[_QUnit, ...]] = []
    for li, units in enumerate(plan.layers):
        read = sorted({i for u in units for i, _ in u.terms})
        acts = {} if li == 0 else {u.index: u.activation for u in plan.layers[li - 1]}
        qa = {i: _qact(values[li][i], acts.get(i)) for i in read}
        qunits = []
        for u in units:
            eff = {i: w * qa[i].scale for i, w in u.terms}  # weight on q_i
            max_w = max((abs(v) for v in eff.values()), default=0.0)
            s = max_w / 127.0 if max_w > 0.0 else 1.0
            wq = tuple((i, int(np.round(eff[i] / s))) for i, _ in u.terms)
            # Offsets use the exact weights: an offset term is large for an uncentred feature, and
            # quantizing its weight would turn the weight's rounding error into a large constant error.
            offset = u.bias + sum(w * qa[i].shift for i, w in u.terms)
            qunits.append(_QUnit(u.index, u.activation, s, offset, tuple((i, q) for i, q in wq if q != 0)))
        sources.append(qa)
        layers.append(tuple(qunits))
    # Backwards again: weights that rounded to 0 can leave a neuron (and its quantizer) unread.
    for li in range(len(layers) - 1, -1, -1):
        used = {i for u in layers[li] for i, _ in u.terms}
        sources[li] = {i: a for i, a in sources[li].items() if i in used}
        if li > 0:
            layers[li - 1] = tuple(u for u in layers[li - 1] if u.index in used)
    for li in range(len(layers) - 1):
        layers[li] = tuple(dataclasses.replace(u, requant=_int_requant(u, sources[li + 1][u.index]))
                           for u in layers[li])
    return _QPlan(plan.n_inputs, plan.n_outputs, tuple(sources), tuple(layers), plan.input_shift,
                  plan.double_input, plan.input_fill)


# Integer requantisation keeps at least this many bits of its multiplier, else the neuron stays in float.
_MIN_REQUANT_BITS = 10
_INT32_MAX = 2**31 - 1


def _int_requant(u: _QUnit, next_q: _QAct) -> _IntRequant | None:
    """Integer requantiser of a ReLU / identity neuron for the quantizer `next_q` of the next layer.

    q = round(act(scale * acc + offset) * mul + add) becomes (acc * m + b) >> k with m ~ scale * mul * 2^k: the
    largest k whose products cannot overflow int32 (|acc| <= 128 sum |w|), so a core without an FPU (or with
    one) computes the whole hidden stack in integers. ReLU is max(q, q(0)) because mul > 0. None when the
    multiplier would keep fewer than _MIN_REQUANT_BITS bits (a huge range; the neuron stays in float)."""
    if u.activation not in ("relu", "identity") or not u.terms:
        return None
    real_mul = u.scale * next_q.mul
    real_add = u.offset * next_q.mul + next_q.add
    acc_bound = 128 * sum(abs(w) for _, w in u.terms)
    for shift in range(30, 0, -1):
        mul = int(round(real_mul * 2.0**shift))
        add = int(round(real_add * 2.0**shift)) + (1 << (shift - 1))
        if acc_bound * mul + abs(add) <= _INT32_MAX:
            break
    else:
        return None
    if mul < 2**_MIN_REQUANT_BITS:
        return None
    floor = int(_q8_numpy(np.array([next_q.add], dtype=np.float32))[0]) if u.activation == "relu" else -128
    return _IntRequant(mul, add, shift, floor)


def _q8_numpy(t: np.ndarray) -> np.ndarray:
    t = np.where(t >= np.float32(-128.0), t, np.float32(-128.0))
    t = np.minimum(t, np.float32(127.0)).astype(np.float32)
    half = np.float32(0.5)
    return np.trunc(np.where(t >= 0, t + half, t - half)).astype(np.int64)


def _act_f32(name: str, z: np.ndarray) -> np.ndarray:
    f = np.float32
    if name == "identity":
        return z
    if name == "relu":
        return np.where(z > 0, z, f(0.0)).astype(f)
    if name == "leaky_relu":
        return np.where(z >= 0, z, (f(LEAKY_RELU_SLOPE) * z).astype(f)).astype(f)
    if name == "tanh":
        return np.tanh(z).astype(f)
    if name == "sigmoid":
        return (f(0.5) + (f(0.5) * np.tanh((f(0.5) * z).astype(f))).astype(f)).astype(f)
    raise ValueError(f"bug: unknown activation {name!r}")


def _simulate_int8(qplan: _QPlan, x: np.ndarray) -> np.ndarray:
    """float32 simulation of the generated int8 code (same operations and rounding, libm aside)."""
    f = np.float32
    x = _filled(qplan, np.asarray(x, dtype=np.float64))
    if qplan.double_input:  # (float)(in[i] - c) in double
        x = (x - _shift_vector(qplan)).astype(np.float32)
    else:
        x = (x.astype(np.float32) - _shift_vector(qplan).astype(np.float32)).astype(np.float32)
    prev: dict[int, np.ndarray] = {i: x[:, i] for i in range(qplan.n_inputs)}
    prev_q: dict[int, np.ndarray] = {}  # int8 values the previous layer requantized in integers
    out = np.zeros((len(x), qplan.n_outputs), dtype=np.float64)
    for li, qunits in enumerate(qplan.layers):
        q = {i: prev_q[i] if i in prev_q else _q8_numpy((prev[i] * f(a.mul)).astype(f) + f(a.add))
             for i, a in qplan.sources[li].items()}
        current, current_q = {}, {}
        for u in qunits:
            acc = np.zeros(len(x), dtype=np.int64)
            for i, w in u.terms:
                acc += w * q[i]
            if u.requant is not None:  # int32 in C; the bounds guarantee no overflow, so int64 gives the same
                r = u.requant
                current_q[u.index] = np.clip((acc * r.mul + r.add) >> r.shift, r.floor, 127)
                continue
            z = ((acc.astype(f) * f(u.scale)).astype(f) + f(u.offset)).astype(f)
            if li == len(qplan.layers) - 1:
                out[:, u.index] = z
            else:
                current[u.index] = _act_f32(u.activation, z)
        prev, prev_q = current, current_q
    return out


# ---------------------------------------------------------------------------------------------------------
# C emission (pure string functions)


# Joins the tokens of one product so that line wrapping never splits `w * x` (replaced by a space after).
_GLUE = "\x00"


def _product(weight: str, source: str) -> str:
    return f"{weight}{_GLUE}*{_GLUE}{source}"


def _sum_tree(terms: Sequence[str]) -> str:
    """Balanced sum of terms; `a + -w * x` is written `a - w * x` (bit-identical: negation is exact)."""
    if not terms:
        return "0.0f"
    if len(terms) == 1:
        return terms[0]
    mid = (len(terms) + 1) // 2
    left, right_terms = _sum_tree(terms[:mid]), terms[mid:]
    if len(right_terms) == 1:
        right = right_terms[0]
        return f"{left} - {right[1:]}" if right.startswith("-") else f"{left} + {right}"
    return f"{left} + ({_sum_tree(right_terms)})"


def _plus(value: float) -> str:
    """`+ c` or `- |c|` (bit-identical in IEEE arithmetic: negation is exact)."""
    text = c_float_literal(value)
    return f"- {text[1:]}" if text.startswith("-") else f"+ {text}"


def _input_value(i: int, fill: float, double_input: bool) -> str:
    """in[i], or the fill value where it is missing (isnan works on float and double)."""
    if np.isnan(fill):
        return f"in[{i}]"
    literal = repr(float(fill)) if double_input else c_float_literal(fill)
    return f"(isnan(in[{i}]) ? {literal} : in[{i}])"


def _shifted_inputs(input_shift: Sequence[float], read: set[int], double_input: bool = False,
                    input_fill: Sequence[float] = ()) -> tuple[list[str], str]:
    """Statements that prepare the raw inputs, and the name format of the prepared inputs: a missing input gets
    its fill value (input_fill), each shifted input's c is subtracted (exact in float32); with double_input
    (`in` is double) every input read is converted to float, after its shift in double."""
    fills = [float(v) for v in input_fill] if input_fill else [math.nan] * len(input_shift)
    filled = [i for i in sorted(read) if not math.isnan(fills[i])]
    lines = ["    /* missing inputs (NaN) get their training median */"] if filled else []
    if double_input:
        lines += ["    /* inputs as double (some lie far from zero): subtract their midpoints in double, then float */"]
        for i in sorted(read):
            c = float(input_shift[i]) if input_shift else 0.0
            raw = _input_value(i, fills[i], True)
            value = f"{raw} - {c!r}" if c > 0 else f"{raw} + {-c!r}" if c < 0 else raw
            lines += _statement(f"const float x{i}", f"(float)({value})")
        return lines, "x{}"
    shifted = [(i, c) for i, c in enumerate(input_shift) if c != 0.0 and i in read]
    if not shifted and not filled:
        return [], "in[{}]"
    if shifted:
        lines.append("    /* inputs far from zero: subtract their midpoint first (exact in float32) */")
    for i, c in shifted:
        lines += _statement(f"const float x{i}", f"{_input_value(i, fills[i], False)} {_plus(-c)}")
    lines += [f"    const float x{i} = {_input_value(i, fills[i], False)};" for i in sorted(read)
              if not input_shift or input_shift[i] == 0.0]
    return lines, "x{}"


def _float_sum(bias: float, terms: Sequence[tuple[int, float]], source: Callable[[int], str]) -> str:
    parts = [] if bias == 0.0 else [c_float_literal(bias)]
    parts += [_product(c_float_literal(w), source(i)) for i, w in terms]
    return _sum_tree(parts)


def _int_sum(terms: Sequence[tuple[int, int]], source: str) -> str:
    text = ""
    for i, w in terms:
        if not text:
            text = _product(str(w), source.format(i))
        else:
            text += f" {'-' if w < 0 else '+'} {_product(str(abs(w)), source.format(i))}"
    return text or "0"


def _statement(lhs: str, rhs: str, indent: str = "    ") -> list[str]:
    # Wrap long expressions at spaces only (every space separates tokens); no hyphen breaks ("1e-05f").
    lines = textwrap.wrap(
        f"{lhs} = {rhs};",
        width=110,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(_GLUE, " ") for line in lines]


def _act_call(prefix: str, name: str, expr: str) -> str:
    return expr if name == "identity" else f"{prefix}_{name}({expr})"


def _helpers(prefix: str, used: set[str], *, fast_math: bool, quantizes: bool, requantizes: bool = False
             ) -> list[str]:
    """Static helper functions, only those the body calls (-Wunused-function would reject the rest)."""
    p = prefix
    out: list[str] = []
    fast = fast_math and bool(used & {"tanh", "sigmoid"})
    if fast:
        (p0, p1, p2, p3, p4), (q0, q1, q2, q3, q4) = _TANH_P, _TANH_Q
        out += [
            "/* tanh(x) ~= x P(x^2) / Q(x^2) on [-9, 9] (degree 4 over 4 in x^2, Estrin form), +-1 beyond:",
            f" * max abs error {FAST_TANH_MAX_ABS_ERROR:g}; no branches, no int conversions; NaN stays NaN.",
            " * One copy, called from every neuron: inlined, it made straight-line code 2.6-2.9x larger for",
            " * no gain in speed (measured in the Cortex-M4 emulator). */",
            "#if defined(__GNUC__)",
            "__attribute__((noinline))",
            "#endif",
            f"static float {p}_tanh_fast(float x)",
            "{",
            "    float s, s2, num, den;",
            "    x = x < -9.0f ? -9.0f : x;",
            "    x = x > 9.0f ? 9.0f : x;",
            "    s = x * x;",
            "    s2 = s * s;",
            f"    num = ({p0} + {p1} * s) + s2 * (({p2} + {p3} * s) + s2 * {p4});",
            f"    den = ({q0} + {q1} * s) + s2 * (({q2} + {q3} * s) + s2 * {q4});",
            "    return x * num / den;",
            "}",
            "",
        ]
    if "relu" in used:
        out += [f"static inline float {p}_relu(float z)", "{", "    return z > 0.0f ? z : 0.0f;", "}", ""]
    if "leaky_relu" in used:
        slope = c_float_literal(LEAKY_RELU_SLOPE)
        out += [f"static inline float {p}_leaky_relu(float z)", "{", f"    return z >= 0.0f ? z : {slope} * z;", "}", ""]
    if "tanh" in used:
        call = f"{p}_tanh_fast(z)" if fast else "tanhf(z)"
        out += [f"static inline float {p}_tanh(float z)", "{", f"    return {call};", "}", ""]
    if "sigmoid" in used:
        call = f"{p}_tanh_fast(0.5f * z)" if fast else "tanhf(0.5f * z)"
        out += [
            "/* 0.5 + 0.5 tanh(z / 2) equals 1 / (1 + exp(-z)) and cannot overflow */",
            f"static inline float {p}_sigmoid(float z)",
            "{",
            f"    return 0.5f + 0.5f * {call};",
            "}",
            "",
        ]
    if requantizes:
        out += [
            "/* int8 from an int32 sum in integers only: (acc * mul + add) >> shift, clamped to [lo, 127]. The",
            " * constants keep every product within int32; >> on a negative int32 is an arithmetic shift in gcc,",
            " * clang and the Arm compilers (C99 leaves it to the implementation; CMSIS-NN relies on it too). */",
            f"static inline int32_t {p}_rq(int32_t acc, int32_t mul, int32_t add, int shift, int32_t lo)",
            "{",
            "    int32_t q = (acc * mul + add) >> shift;",
            "    return q < lo ? lo : (q > 127 ? 127 : q);",
            "}",
            "",
        ]
    if quantizes:
        out += [
            "/* Saturate to [-128, 127] (NaN goes to -128), then round half away from zero. */",
            f"static inline int32_t {p}_q8(float t)",
            "{",
            "    if (!(t >= -128.0f)) {",
            "        t = -128.0f;",
            "    } else if (t > 127.0f) {",
            "        t = 127.0f;",
            "    }",
            "    return (int32_t)(t >= 0.0f ? t + 0.5f : t - 0.5f);",
            "}",
            "",
        ]
    return out


def _groups(units: Sequence[_Unit] | Sequence[_QUnit]) -> list[tuple[str, list]]:
    """A hidden layer's units by activation, in emission order (they arrive sorted by activation)."""
    groups: dict[str, list] = {}
    for u in units:
        groups.setdefault(u.activation, []).append(u)
    return list(groups.items())


def loop_eligible(plan: _Plan) -> tuple[bool, ...]:
    """Per plan layer (hidden layers, then the output layer): can it be emitted as a loop over a weight table?
    A layer that reads a hidden layer (not the inputs, which may be shifted, filled or double) and whose neurons
    share one activation."""
    return tuple(li >= 1 and bool(units) and bool(plan.layers[li - 1]) and len({u.activation for u in units}) == 1
                 for li, units in enumerate(plan.layers))


def loop_layers_allowed(model: SparseMLP) -> tuple[int, ...]:
    """Indices into model.layers that to_c can emit as loops (loop_layers) for this model."""
    return tuple(li for li, ok in enumerate(loop_eligible(_lower(model))) if ok)


def _table(name: str, rows: Sequence[Sequence[float]]) -> list[str]:
    """`static const float name[n][m] = {...};` one row per line (wrapped), in flash on a microcontroller."""
    lines = [f"static const float {name}[{len(rows)}][{len(rows[0])}] = {{"]
    for row in rows:
        lines += textwrap.wrap("{" + ", ".join(c_float_literal(v) for v in row) + "},", width=110,
                               initial_indent="    ", subsequent_indent="     ", break_long_words=False,
                               break_on_hyphens=False)
    return [*lines, "};"]


def _positions(units: Sequence[_Unit]) -> dict[int, int]:
    """Neuron index -> its position in the array a layer writes for a loop (emission order)."""
    return {u.index: p for p, u in enumerate(units)}


def _array_source(array: str, units: Sequence[_Unit]) -> Callable[[int], str]:
    """How code names a neuron of `units` kept in `array`: array[position]."""
    position = _positions(units)
    return lambda i: f"{array}[{position[i]}]"


def _loop_layer(plan: _Plan, li: int, prefix: str) -> tuple[list[str], list[str]]:
    """Layer li as a loop: (file-scope tables, statements). Reads the array h{li}, writes h{li+1} (or out).
    Zero weights stay in the table: the loop multiplies them like any other."""
    units, previous = plan.layers[li], plan.layers[li - 1]
    position = _positions(previous)
    weights = np.zeros((len(units), len(previous)))
    for j, u in enumerate(units):
        for i, w in u.terms:
            weights[j, position[i]] = w
    is_output = li == len(plan.layers) - 1
    name = f"{prefix}_w{li + 1}"
    tables = [*_table(name, weights.tolist()), *_table(f"{prefix}_b{li + 1}", [[u.bias for u in units]]), ""]
    target = "out" if is_output else f"h{li + 1}"
    what = ("outputs (output scaling folded in)" if is_output
            else f"hidden layer {li + 1}: {units[0].activation} x{len(units)}")
    lines = [f"    /* {what}, as a loop over {name} ({len(units)} x {len(previous)}, zeros included) */"]
    if not is_output:
        lines.append(f"    float h{li + 1}[{len(units)}];")
    lines += [
        f"    for (int j = 0; j < {len(units)}; ++j) {{",
        f"        float z = {prefix}_b{li + 1}[0][j];",
        f"        for (int i = 0; i < {len(previous)}; ++i) {{",
        f"            z += {name}[j][i] * h{li}[i];",
        "        }",
        f"        {target}[j] = {_act_call(prefix, units[0].activation, 'z')};",
        "    }",
    ]
    return tables, lines


def _float_body(plan: _Plan, prefix: str, loops: frozenset[int] = frozenset()) -> tuple[list[str], list[str]]:
    """(file-scope tables, statements of <prefix>_predict). Layers in `loops` (plan layer indices, each
    loop_eligible) are loops over weight tables; the layer before a loop writes an array for it."""
    tables: list[str] = []
    lines: list[str] = []
    n_hidden = len(plan.layers) - 1
    as_array = {li for li in range(n_hidden) if li + 1 in loops} | {li for li in loops if li < n_hidden}
    for li, units in enumerate(plan.layers):
        if li in loops:
            layer_tables, layer_lines = _loop_layer(plan, li, prefix)
            tables += layer_tables
            lines += layer_lines
            continue
        if li == 0:
            shift_lines, pattern = _shifted_inputs(plan.input_shift, {i for u in units for i, _ in u.terms},
                                                   plan.double_input, plan.input_fill)
            lines += shift_lines
            source = pattern.format
        elif li - 1 in as_array:
            source = _array_source(f"h{li}", plan.layers[li - 1])
        else:
            source = f"h{li}_{{}}".format
        if li == n_hidden:
            lines.append("    /* outputs (output scaling folded in) */")
            for u in units:
                lines += _statement(f"out[{u.index}]", _float_sum(u.bias, u.terms, source))
            continue
        if li in as_array:
            lines.append(f"    float h{li + 1}[{len(units)}];")
            target = _array_source(f"h{li + 1}", units)
        else:
            target = f"const float h{li + 1}_{{}}".format
        for name, group in _groups(units):
            lines.append(f"    /* hidden layer {li + 1}: {name} x{len(group)} */")
            for u in group:
                expr = _act_call(prefix, u.activation, _float_sum(u.bias, u.terms, source))
                lines += _statement(target(u.index), expr)
    return tables, lines


def _int8_body(qplan: _QPlan, prefix: str) -> list[str]:
    lines: list[str] = []
    n_hidden = len(qplan.layers) - 1
    for li, qunits in enumerate(qplan.layers):
        in_integers = {u.index for u in qplan.layers[li - 1] if u.requant is not None} if li > 0 else set()
        from_float = {i: a for i, a in qplan.sources[li].items() if i not in in_integers}
        if from_float:
            what = "inputs (normalisation folded in)" if li == 0 else f"hidden layer {li}"
            lines.append(f"    /* {what} -> int8 */")
            src = f"h{li}_{{}}"
            if li == 0:
                shift_lines, src = _shifted_inputs(qplan.input_shift, set(from_float), qplan.double_input,
                                                   qplan.input_fill)
                lines += shift_lines
            for i, a in from_float.items():
                t = f"{src.format(i)} * {c_float_literal(a.mul)} {_plus(a.add)}"
                lines += _statement(f"const int32_t q{li}_{i}", f"{prefix}_q8({t})")
        qsource = f"q{li}_{{}}"

        def dequant(u: _QUnit) -> str:
            if not u.terms:
                return c_float_literal(u.offset)
            return f"(float)({_int_sum(u.terms, qsource)}) * {c_float_literal(u.scale)} {_plus(u.offset)}"

        if li == n_hidden:
            lines.append("    /* outputs: int32 accumulation, float scaling (output scaling folded in) */")
            for u in qunits:
                lines += _statement(f"out[{u.index}]", dequant(u))
            continue
        for name, group in _groups(qunits):
            integer = [u for u in group if u.requant is not None]
            lines.append(f"    /* hidden layer {li + 1}: {name} x{len(group)}"
                         + (f", {len(integer)} requantized in integers */" if integer else " */"))
            for u in group:
                if u.requant is None:
                    lines += _statement(f"const float h{li + 1}_{u.index}",
                                        _act_call(prefix, u.activation, dequant(u)))
                    continue
                r = u.requant
                lines += _statement(f"const int32_t q{li + 1}_{u.index}",
                                    f"{prefix}_rq({_int_sum(u.terms, qsource)}, {r.mul}, {r.add}, {r.shift}, {r.floor})")
    return lines


def _banner(
    *,
    prefix: str,
    dtype: str,
    fast_math: bool,
    model: SparseMLP,
    sha256: str,
    macs: int,
    act_counts: dict[str, int],
    in_names: Sequence[str],
    out_names: Sequence[str],
    extra: Sequence[str],
    loops: frozenset[int] = frozenset(),
) -> list[str]:
    widths = "-".join(str(w) for w in model.widths)
    acts = ", ".join(f"{n} {k}" for k, n in act_counts.items()) or "none"
    kind = "int8 weights and activations, int32 accumulation" if dtype == "int8" else "float32"
    needs = "<math.h> and <stdint.h>" if dtype == "int8" else "<math.h>"
    lines = [
        f"/* Generated by swat-edge {__version__}; do not edit (regenerate with `swat-edge export`).",
        f" * Model sha256 {sha256}",
        f" * Network {widths}, {kind}: {macs} multiply-adds and activations {acts} per row.",
        f" * Inputs (raw, normalisation folded in): {', '.join(in_names)}",
        f" * Outputs (raw, output scaling folded in): {', '.join(out_names)}",
        f" * C99; no dynamic allocation, no static state; needs only {needs} (link with -lm where needed).",
    ]
    lines += [f" * {line}" for line in extra]
    lines += [
        f" * {_BANNER_TAG} prefix={prefix} dtype={dtype} fast_math={int(fast_math)} "
        f"n_inputs={model.n_inputs} n_outputs={model.n_outputs} sha256={sha256}"
        + (f" loops={','.join(str(li) for li in sorted(loops))}" if loops else ""),
        " */",
    ]
    return lines


def _safe_comment(text: str) -> str:
    # Only characters that cannot end a comment, form a trigraph or splice a line.
    return re.sub(r"[^A-Za-z0-9 _.,:;=+()\[\]<>%-]", "_", text)


def _io_macros(model: SparseMLP, prefix: str) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Macro forms of the feature and target names, and a note when any name had to change to become one."""
    in_macros, n_in_changed = _macro_names(model.feature_names)
    out_macros, n_out_changed = _macro_names(model.target_names)
    notes = []
    if n_in_changed or n_out_changed:
        notes.append(
            f"{n_in_changed} feature and {n_out_changed} target names are written in macro form "
            f"(upper case, non-identifier characters as '_'), e.g. {model.feature_names[0]!r} -> "
            f"{prefix.upper()}_IN_{in_macros[0]}"
        )
    return in_macros, out_macros, notes


@dataclass(frozen=True)
class _Body:
    """The statements of <prefix>_predict and what the banner and CSource report about them."""

    lines: tuple[str, ...]
    macs: int
    act_counts: dict[str, int]  # non-identity activations that occur, in ACTIVATIONS order
    int8: Int8Info | None
    notes: tuple[str, ...]
    tables: tuple[str, ...] = ()  # file-scope weight tables of the layers emitted as loops


def _activation_counts(units: Sequence[_Unit] | Sequence[_QUnit]) -> dict[str, int]:
    return {a: n for a in ACTIVATIONS if a != "identity" and (n := sum(u.activation == a for u in units))}


def _float_predict(plan: _Plan, prefix: str, loops: frozenset[int] = frozenset()) -> _Body:
    tables, lines = _float_body(plan, prefix, loops)
    macs = sum(len(plan.layers[li]) * len(plan.layers[li - 1]) if li in loops else sum(len(u.terms) for u in units)
               for li, units in enumerate(plan.layers))
    return _Body(
        lines=tuple(lines),
        macs=macs,
        act_counts=_activation_counts([u for units in plan.layers[:-1] for u in units]),
        int8=None,
        notes=(),
        tables=tuple(tables),
    )


def _int8_predict(
    model: SparseMLP, plan: _Plan, prefix: str, calibration_rows: np.ndarray | None, max_relative_mse: float
) -> _Body:
    """The int8 body, calibrated on `calibration_rows` (else the model's, else synthetic ones, said in notes)."""
    rows, source = _calibration(model, calibration_rows)
    notes = []
    if source == "synthetic rows":
        notes.append(
            f"int8 calibrated on {len(rows)} synthetic rows (normalised inputs in [-1.5, 1.5]); pass real "
            "rows for a tighter range"
        )
    qplan = _quantize_plan(plan, rows)
    drift = relative_mse(_simulate_int8(qplan, rows), forward(model, rows.astype(np.float32)))
    return _Body(
        lines=tuple(_int8_body(qplan, prefix)),
        macs=sum(len(u.terms) for units in qplan.layers for u in units),
        act_counts=_activation_counts([u for units in qplan.layers[:-1] for u in units]),
        int8=Int8Info(len(rows), source, drift, float(max_relative_mse)),
        notes=tuple(notes),
    )


def _fast_math_errors(used: set[str]) -> tuple[dict[str, float], str]:
    """Max abs error of each approximated activation the model uses, and the note that says so."""
    bounds = (("tanh", FAST_TANH_MAX_ABS_ERROR), ("sigmoid", FAST_SIGMOID_MAX_ABS_ERROR))
    errors = {k: v for k, v in bounds if k in used}
    note = "fast_math: approximate activations, max abs error " + (
        ", ".join(f"{k} {v:g}" for k, v in errors.items()) or "n/a (no tanh or sigmoid neurons)"
    )
    return errors, note


def _banner_extra(fast_math: bool, int8: Int8Info | None, loops: frozenset[int] = frozenset()) -> list[str]:
    """The banner's lines about approximations (fast_math's error bounds, int8's calibration and drift) and the
    layers emitted as loops."""
    extra = []
    if loops:
        layers = ", ".join(str(li + 1) for li in sorted(loops))
        extra.append(f"Layers {layers} (1 = first hidden) are loops over weight tables (smaller code, zeros "
                     "multiplied); the others are straight-line.")
    if fast_math:
        extra.append(
            f"fast_math: tanh max abs error {FAST_TANH_MAX_ABS_ERROR:g}, sigmoid {FAST_SIGMOID_MAX_ABS_ERROR:g} "
            "(a rational approximation instead of tanhf)."
        )
    if int8 is not None:
        extra.append(
            f"int8: per-neuron asymmetric activation scales and symmetric weight scales, calibrated on "
            f"{int8.calibration_rows} {_safe_comment(int8.calibration_source)}; relative MSE "
            f"vs float {int8.relative_mse:.3g}."
        )
    return [_safe_comment(e) for e in extra]


def _predict_class_source(prefix: str, input_type: str, n_classes: int) -> list[str]:
    """A classifier's `<prefix>_predict_class`: the logits into scores, the most probable class's index back."""
    head = [f"int {prefix}_predict_class(const {input_type} *in, float *scores)", "{"]
    if n_classes == 2:
        body = [f"    {prefix}_predict(in, scores);",
                "    return scores[0] > 0.0f ? 1 : 0; /* the logit of class 1 (class 0's is 0) */"]
    else:
        body = ["    int k, best = 0;", f"    {prefix}_predict(in, scores);", f"    for (k = 1; k < {n_classes}; ++k) {{",
                "        if (scores[k] > scores[best]) {", "            best = k;", "        }", "    }",
                "    return best;"]
    return [*head, *body, "}", ""]


def _source_text(
    *, prefix: str, header_name: str, dtype: str, fast_math: bool, banner: Sequence[str], body: _Body,
    input_type: str = "float", n_classes: int = 0,
) -> str:
    """The .c file: banner, includes, the helpers the body calls, <prefix>_predict and <prefix>_predict_batch."""
    upper = prefix.upper()
    includes = ["#include <math.h>"]
    if dtype == "int8":
        includes.append("#include <stdint.h>")
    reads_input = any("in[" in line for line in body.lines)
    quantizes = any(f"{prefix}_q8(" in line for line in body.lines)
    requantizes = any(f"{prefix}_rq(" in line for line in body.lines)
    src = [
        *banner,
        "",
        *includes,
        "",
        f'#include "{header_name}"',
        "",
        *_helpers(prefix, set(body.act_counts), fast_math=fast_math, quantizes=quantizes, requantizes=requantizes),
        *body.tables,
        f"void {prefix}_predict(const {input_type} *in, float *out)",
        "{",
        *([] if reads_input else ["    (void)in; /* every output is constant */"]),
        *body.lines,
        "}",
        "",
        f"void {prefix}_predict_batch(const {input_type} *in, float *out, int n_rows)",
        "{",
        "    int r;",
        "    for (r = 0; r < n_rows; ++r) {",
        f"        {prefix}_predict(in, out);",
        f"        in += {upper}_N_INPUTS;",
        f"        out += {upper}_N_OUTPUTS;",
        "    }",
        "}",
        "",
        *(_predict_class_source(prefix, input_type, n_classes) if n_classes else []),
    ]
    source = "\n".join(src)
    assert _GLUE not in source, "bug: an expression bypassed _statement"
    return source


def to_c(
    model: SparseMLP,
    *,
    prefix: str = "model",
    dtype: Dtype = "float",
    fast_math: bool = False,
    calibration_rows: np.ndarray | None = None,
    max_relative_mse: float = INT8_MAX_RELATIVE_MSE,
    header_name: str | None = None,
    loop_layers: Sequence[int] = (),
) -> CSource:
    """Generate `<prefix>_predict(const float *in, float *out)` and `<prefix>_predict_batch` as C99 source + header.

    dtype "int8": calibrates on `calibration_rows` (raw inputs), else the model's calibration rows, else
    synthetic rows (said in notes). loop_layers: indices into model.layers (float only) emitted as a loop over a
    weight table instead of straight-line code: about 4 bytes of flash per weight (zeros included) instead of
    about 20 per non-zero weight (c_layer_shapes says which layers can be). Deterministic: the same model and
    options give the same bytes.
    """
    if dtype not in ("float", "int8"):
        raise UsageError(f"dtype {dtype!r}: use 'float' or 'int8'")
    model.check()
    prefix, notes_list = check_prefix(prefix)
    header_name = header_name or f"{prefix}.h"
    _check_header_name(header_name)
    in_macros, out_macros, macro_notes = _io_macros(model, prefix)
    sha = model_hash(model)
    plan = _lower(model)
    input_type = "double" if plan.double_input else "float"
    upper = prefix.upper()
    loops = _check_loop_layers(plan, loop_layers, dtype)
    if dtype == "int8":
        body = _int8_predict(model, plan, prefix, calibration_rows, max_relative_mse)
    else:
        body = _float_predict(plan, prefix, loops)
    notes = [*notes_list, *macro_notes, *body.notes]
    act_errors: dict[str, float] = {}
    if fast_math:
        act_errors, fast_math_note = _fast_math_errors(set(body.act_counts))
        notes.append(fast_math_note)
    banner = _banner(
        prefix=prefix,
        dtype=dtype,
        fast_math=fast_math,
        model=model,
        sha256=sha,
        macs=body.macs,
        act_counts=body.act_counts,
        in_names=[f"{upper}_IN_{n}" for n in in_macros],
        out_names=[f"{upper}_OUT_{n}" for n in out_macros],
        extra=_banner_extra(fast_math, body.int8, loops),
        loops=loops,
    )
    return CSource(
        source=_source_text(
            prefix=prefix, header_name=header_name, dtype=dtype, fast_math=fast_math, banner=banner, body=body,
            input_type=input_type, n_classes=len(model.classes),
        ),
        header=_header(prefix, banner, model, in_macros, out_macros, input_type),
        prefix=prefix,
        header_name=header_name,
        dtype=dtype,
        fast_math=bool(fast_math),
        n_inputs=model.n_inputs,
        n_outputs=model.n_outputs,
        model_hash=sha,
        tool_version=__version__,
        macs=body.macs,
        activation_counts=body.act_counts,
        notes=tuple(notes),
        int8=body.int8,
        activation_max_abs_error=act_errors,
        input_type=input_type,
        loop_layers=tuple(sorted(loops)),
    )


def _check_loop_layers(plan: _Plan, loop_layers: Sequence[int], dtype: str) -> frozenset[int]:
    loops = frozenset(int(li) for li in loop_layers)
    if loops and dtype != "float":
        raise UsageError("loop layers are emitted for float C only, not int8")
    eligible = loop_eligible(plan)
    for li in sorted(loops):
        if not 0 <= li < len(eligible) or not eligible[li]:
            allowed = [k for k, ok in enumerate(eligible) if ok]
            raise UsageError(f"layer {li} cannot be emitted as a loop (it must read a hidden layer and have one "
                             f"activation type); loop-able layers of this model: {allowed or 'none'}")
    return loops


def _header(
    prefix: str, banner: Sequence[str], model: SparseMLP, in_macros: Sequence[str], out_macros: Sequence[str],
    input_type: str = "float",
) -> str:
    classes = model.classes
    upper = prefix.upper()
    guard = f"{upper}_SWAT_EDGE_H"
    lines = [
        *banner,
        "",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {upper}_N_INPUTS {model.n_inputs}",
        f"#define {upper}_N_OUTPUTS {model.n_outputs}",
        "",
        "/* Column of each input in `in` and of each output in `out`. */",
        *(f"#define {upper}_IN_{name} {i}" for i, name in enumerate(in_macros)),
        *(f"#define {upper}_OUT_{name} {k}" for k, name in enumerate(out_macros)),
        "",
        *([f"/* Inputs are double: some features lie too far from zero for float (e.g. unix timestamps). */",
           f"#define {upper}_INPUT_DOUBLE 1", ""] if input_type == "double" else []),
        f"/* One row: in[{upper}_N_INPUTS] raw features -> out[{upper}_N_OUTPUTS] raw targets. */",
        f"void {prefix}_predict(const {input_type} *in, float *out);",
        "",
        f"/* n_rows rows, row-major: in[n_rows * {upper}_N_INPUTS] -> out[n_rows * {upper}_N_OUTPUTS]. */",
        f"void {prefix}_predict_batch(const {input_type} *in, float *out, int n_rows);",
        *(["", f"/* A classifier of {len(classes)} classes, by index: "
               + ", ".join(f"{k} {name!r}" for k, name in enumerate(classes)).replace("*/", "* /") + " */",
           f"#define {prefix.upper()}_N_CLASSES {len(classes)}",
           f"/* The most probable class's index; scores[{prefix.upper()}_N_OUTPUTS] gets the logits"
           + (" (one: class 1's; class 0's is 0)" if len(classes) == 2 else "") + ". */",
           f"int {prefix}_predict_class(const {input_type} *in, float *scores);"] if classes else []),
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def _check_header_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+\.h", name):
        raise UsageError(
            f"header name {name!r}: use letters, digits and _ . + - ending in .h (it is written into an #include)"
        )


def _calibration(model: SparseMLP, rows: np.ndarray | None) -> tuple[np.ndarray, str]:
    if rows is not None:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != model.n_inputs:
            raise InputError(
                f"calibration rows: shape {x.shape}, expected (rows, {model.n_inputs}) raw input rows"
            )
        if len(x) < 2:
            raise InputError(f"calibration rows: {len(x)} row(s); give at least 2 (hundreds are better)")
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            r, c = (int(v) for v in bad[0])
            raise InputError(
                f"calibration rows: row {r}, column {model.feature_names[c]!r} is not finite; "
                "rows must be finite (drop or impute them)"
            )
        return x, "calibration_rows argument"
    if model.calibration is not None and len(model.calibration) >= 2:
        return np.asarray(model.calibration, dtype=np.float64), "model calibration rows"
    return sample_inputs(model, _INT8_SYNTHETIC_ROWS, seed=0), "synthetic rows"


# ---------------------------------------------------------------------------------------------------------
# Reading back and writing


def read_c(path_c: str | os.PathLike) -> CSource:
    """A generated .c and its .h from disk (for `bench model.c`); checks the swat-edge banner."""
    p = check_input_file(path_c, "C source")
    text = p.read_text(encoding="utf-8", errors="replace")
    m = re.search(
        _BANNER_TAG + r" prefix=(\w+) dtype=(float|int8) fast_math=([01]) n_inputs=(\d+) n_outputs=(\d+) "
        r"sha256=([0-9a-f]{64})(?: loops=([0-9,]+))?",
        text[:4000],
    )
    if m is None:
        raise ModelFileError(f"{p}: not a C file generated by swat-edge (no '{_BANNER_TAG}' banner line)")
    inc = re.search(r'^#include "([^"]+)"', text, flags=re.M)
    header_name = inc.group(1) if inc else p.with_suffix(".h").name
    path_h = p.with_name(header_name)
    if not path_h.exists():
        raise ModelFileError(f"{p}: its header {path_h} is missing; keep the .c and .h files together")
    header = path_h.read_text(encoding="utf-8", errors="replace")
    version = re.search(r"Generated by swat-edge ([\w.+-]+);", text[:400])
    declared = re.search(r": (\d+) multiply-adds", text[:2000])
    macs = int(declared.group(1)) if declared else len(re.findall(r"\d[\w.+-]*\s+\*\s+(?:in\[|h\d|q\d|x\d)", text))
    return CSource(
        source=text,
        header=header,
        prefix=m.group(1),
        header_name=header_name,
        dtype=m.group(2),
        fast_math=m.group(3) == "1",
        n_inputs=int(m.group(4)),
        n_outputs=int(m.group(5)),
        model_hash=m.group(6),
        tool_version=version.group(1) if version else "unknown",
        macs=macs,
        activation_counts={},
        notes=(f"read from {p}",),
        input_type="double" if re.search(rf"void {m.group(1)}_predict\(const double \*in", text) else "float",
        loop_layers=tuple(int(li) for li in m.group(7).split(",")) if m.group(7) else (),
    )


def with_header_name(csrc: CSource, header_name: str) -> CSource:
    """The same code with its `#include` pointing at `header_name` (the .h written next to the .c)."""
    if header_name == csrc.header_name:
        return csrc
    _check_header_name(header_name)
    old = f'#include "{csrc.header_name}"'
    if csrc.source.count(old) != 1:
        raise ValueError(f"bug: expected one {old!r} line in the generated source")
    return dataclasses.replace(
        csrc, source=csrc.source.replace(old, f'#include "{header_name}"'), header_name=header_name
    )


def write_c(csrc: CSource, path_c: str | os.PathLike, *, force: bool = False) -> tuple[Path, Path]:
    """Write `path_c` and the header next to it (same stem, .h), atomically -> (path_c, path_h).

    Refuses existing outputs without force (checked for both before writing either). On failure neither
    file is left half-written, and a header that was new is removed again if the source cannot be placed.
    """
    p = Path(path_c)
    if p.suffix != ".c":
        raise UsageError(f"{p}: the C output must end in .c (its header is written next to it as .h)")
    path_h = p.with_suffix(".h")
    check_output_path(p, force=force)
    check_output_path(path_h, force=force)
    csrc = with_header_name(csrc, path_h.name)
    header_existed = path_h.exists()
    header_placed = False
    try:
        with atomic_path(p, force=force) as tmp_c:
            tmp_c.write_bytes(csrc.source.encode("utf-8"))
            with atomic_path(path_h, force=force) as tmp_h:
                tmp_h.write_bytes(csrc.header.encode("utf-8"))
            header_placed = True
    except BaseException:
        if header_placed and not header_existed:
            path_h.unlink(missing_ok=True)
        raise
    return p, path_h


# ---------------------------------------------------------------------------------------------------------
# Compiling and checking


def _driver(csrc: CSource) -> str:
    p, up, t = csrc.prefix, csrc.prefix.upper(), csrc.input_type
    return f"""/* verification driver: rows ({t}) -> outputs of {p}_predict per row and {p}_predict_batch */
#include <stdio.h>
#include <stdlib.h>
#include "{csrc.header_name}"

static int write_all(const char *path, const float *data, size_t count)
{{
    FILE *f = fopen(path, "wb");
    size_t done;
    if (f == NULL) {{
        return 1;
    }}
    done = fwrite(data, sizeof(float), count, f);
    return (fclose(f) != 0 || done != count) ? 1 : 0;
}}

int main(int argc, char **argv)
{{
    FILE *f;
    long n, r;
    {t} *x;
    float *y_single, *y_batch;
    size_t n_in, n_out;
    if (argc != 5) {{
        return 2;
    }}
    n = strtol(argv[2], NULL, 10);
    if (n < 1) {{
        return 2;
    }}
    n_in = (size_t)n * {up}_N_INPUTS;
    n_out = (size_t)n * {up}_N_OUTPUTS;
    x = ({t} *)malloc((n_in + 1) * sizeof({t}));
    y_single = (float *)malloc((n_out + 1) * sizeof(float));
    y_batch = (float *)malloc((n_out + 1) * sizeof(float));
    if (x == NULL || y_single == NULL || y_batch == NULL) {{
        return 3;
    }}
    f = fopen(argv[1], "rb");
    if (f == NULL || fread(x, sizeof({t}), n_in, f) != n_in) {{
        return 4;
    }}
    fclose(f);
    for (r = 0; r < n; ++r) {{
        {p}_predict(x + (size_t)r * {up}_N_INPUTS, y_single + (size_t)r * {up}_N_OUTPUTS);
    }}
    {p}_predict_batch(x, y_batch, (int)n);
    if (write_all(argv[3], y_single, n_out) || write_all(argv[4], y_batch, n_out)) {{
        return 5;
    }}
    free(x);
    free(y_single);
    free(y_batch);
    return 0;
}}
"""


def run_c_rows(csrc: CSource, rows: np.ndarray, *, cc: str | None = None, include_dirs: Sequence[Path] = ()
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """Compile the code with a driver and run it on rows of its input type -> (per-row outputs, batch outputs,
    compiler)."""
    cmd = find_c_compiler(cc)
    x = np.ascontiguousarray(rows, dtype=csrc.input_dtype)
    with tempfile.TemporaryDirectory(prefix="swat-edge-c-") as tmp:
        d = Path(tmp)
        (d / f"{csrc.prefix}.c").write_bytes(csrc.source.encode("utf-8"))
        (d / csrc.header_name).write_bytes(csrc.header.encode("utf-8"))
        (d / "swat_edge_check.c").write_bytes(_driver(csrc).encode("utf-8"))
        exe = d / "check"
        compile_c(cmd, [d / f"{csrc.prefix}.c", d / "swat_edge_check.c"], exe,
                  flags=(*VERIFY_CFLAGS, *(f"-I{i}" for i in include_dirs)))
        x.tofile(d / "rows.f32")
        run_program(
            [str(exe), str(d / "rows.f32"), str(len(x)), str(d / "single.f32"), str(d / "batch.f32")],
            what="the compiled check program",
            timeout_s=_RUN_TIMEOUT_S,
        )
        shape = (len(x), csrc.n_outputs)
        single = np.fromfile(d / "single.f32", dtype=np.float32).reshape(shape)
        batch = np.fromfile(d / "batch.f32", dtype=np.float32).reshape(shape)
    return single, batch, " ".join(cmd)


def _fast_math_bound(plan: _Plan, errors: dict[str, float]) -> np.ndarray:
    """Worst-case output error from activation errors, propagated through |weights| (Lipschitz <= 1, sigmoid 1/4)."""
    lipschitz = {"sigmoid": 0.25}
    err: dict[int, float] = {i: 0.0 for i in range(plan.n_inputs)}
    for units in plan.layers:
        err = {
            u.index: lipschitz.get(u.activation, 1.0) * sum(abs(w) * err[i] for i, w in u.terms)
            + errors.get(u.activation, 0.0)
            for u in units
        }
    return np.array([err[k] for k in range(plan.n_outputs)])


def _verify_rows(csrc: CSource, model: SparseMLP, rows: np.ndarray | int | None) -> tuple[np.ndarray, str]:
    if isinstance(rows, np.ndarray) or (rows is not None and not isinstance(rows, (int, np.integer))):
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != model.n_inputs or len(x) < 1:
            raise InputError(f"check rows: shape {x.shape}, expected (rows >= 1, {model.n_inputs})")
        if not np.all(np.isfinite(x)):
            raise InputError("check rows: contain NaN or inf; rows must be finite (drop or impute them)")
        return with_missing_rows(model, x), "given rows"
    n = _VERIFY_ROWS if rows is None else int(rows)
    if n < 1:
        raise UsageError(f"rows={n}: need at least 1 row to check the generated C")
    synthetic = sample_inputs(model, n, seed=1)  # seed 0 is the synthetic int8 calibration set
    if csrc.int8 is not None and csrc.int8.calibration_source != "synthetic rows":
        if model.calibration is not None and len(model.calibration):
            cal = np.asarray(model.calibration[:n], dtype=np.float64)
            return with_missing_rows(model, cal), "model calibration rows (in-sample)"
    if csrc.int8 is None and model.calibration is not None and len(model.calibration):
        cal = np.asarray(model.calibration[:n], dtype=np.float64)
        return with_missing_rows(model, np.vstack([synthetic, cal])), "synthetic and model calibration rows"
    return with_missing_rows(model, synthetic), "synthetic rows (seed 1)"


def verify_c(
    csrc: CSource,
    model: SparseMLP,
    *,
    rows: np.ndarray | int | None = None,
    cc: str | None = None,
    max_relative_mse: float | None = None,
) -> CCheckReport:
    """Compile `csrc` with the host compiler (VERIFY_CFLAGS), run it, and compare with forward(model).

    float: every output within output_tolerance (1e-5 x output scale), plus the fast-math bound if any.
    int8: relative MSE vs forward() within max_relative_mse (default: the limit declared in csrc.int8).
    Both: the batched function must give bit-identical outputs to per-row calls.
    rows: raw input rows, or how many synthetic rows to use. For int8, pass rows from the calibration
    rows' distribution (held out); rows far outside the calibrated ranges saturate and drift.
    Raises ToolchainError (no compiler / compile error), NumericsError (mismatch), UsageError (wrong model).
    """
    sha = model_hash(model)
    if sha != csrc.model_hash:
        raise UsageError(
            f"the C code was generated from model {csrc.model_hash[:12]}, not from this model ({sha[:12]}); "
            "regenerate it from this model"
        )
    x, rows_source = _verify_rows(csrc, model, rows)
    x32 = x.astype(csrc.input_dtype)  # the rows the code receives (float32, or double for wide inputs)
    single, batch, compiler = run_c_rows(csrc, x32, cc=cc)
    y_ref = forward(model, x32.astype(np.float64))
    y = single.astype(np.float64)
    matches = bool(np.array_equal(single, batch))
    if not matches:
        bad = np.argwhere(single != batch)[0]
        raise NumericsError(
            f"generated C: {csrc.prefix}_predict_batch differs from {csrc.prefix}_predict at row {int(bad[0])}, "
            f"output {model.target_names[int(bad[1])]!r}; this is a swat-edge bug, please report it"
        )
    if not np.all(np.isfinite(y)):
        r, k = (int(v) for v in np.argwhere(~np.isfinite(y))[0])
        raise NumericsError(
            f"generated C: output {model.target_names[k]!r} is {y[r, k]} on check row {r}; please report it"
        )
    err = np.max(np.abs(y - y_ref), axis=0)
    tol = output_tolerance(model, y_ref)
    if csrc.fast_math and csrc.activation_max_abs_error:
        tol = tol + _fast_math_bound(_lower(model), csrc.activation_max_abs_error)
    drift = relative_mse(y, y_ref)
    limit = None
    if csrc.dtype == "int8":
        limit = max_relative_mse if max_relative_mse is not None else (
            csrc.int8.max_relative_mse if csrc.int8 is not None else INT8_MAX_RELATIVE_MSE
        )
        if not drift <= limit:
            raise NumericsError(
                f"generated int8 C drifts from the float model: relative MSE {drift:.3g} > {limit:g} on "
                f"{len(x)} {rows_source}; calibrate on rows like these (--calibration FILE, or calibration_rows) "
                "or use dtype float"
            )
    else:
        bad = ~(err <= tol)
        if bad.any():
            k = int(np.argmax(np.where(bad, err / tol, -np.inf)))
            r = int(np.argmax(np.abs(y[:, k] - y_ref[:, k])))
            raise NumericsError(
                f"generated C disagrees with the reference forward pass: output {model.target_names[k]!r}, "
                f"row {r}: |error| {err[k]:.3g} > tolerance {tol[k]:.3g} (1e-5 x output scale); this is a "
                "swat-edge bug, please report it with the model file"
            )
    return CCheckReport(
        compiler=compiler,
        flags=VERIFY_CFLAGS,
        rows=len(x),
        rows_source=rows_source,
        dtype=csrc.dtype,
        max_abs_error=tuple(float(e) for e in err),
        tolerance=tuple(float(t) for t in tol),
        relative_mse=drift,
        max_relative_mse=limit,
        batch_matches_single=matches,
    )
