"""Target profiles (hardware, runtime, int8 policy, cost coefficients, provenance): load, check, list and write TOML."""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport (a conditional dependency)
    import tomli as tomllib

from ..errors import MissingFileError, TargetProfileError, UnknownTargetError, UsageError

__all__ = [
    "PROFILE_SCHEMA_VERSION",
    "RUNTIMES",
    "INT8_POLICIES",
    "INT8_FAST_PATHS",
    "PROVENANCE_KINDS",
    "Hardware",
    "Runtime",
    "CostCoefficients",
    "Provenance",
    "Mcu",
    "CodeSize",
    "TargetProfile",
    "builtin_targets_dir",
    "list_targets",
    "load_target",
    "profile_from_dict",
    "profile_from_toml",
    "profile_to_dict",
    "profile_to_toml",
    "profile_rows",
    "provenance_line",
]

PROFILE_SCHEMA_VERSION = 1
RUNTIMES: tuple[str, ...] = ("onnxruntime", "none")  # "none": generated C code, no runtime at all
INT8_POLICIES: tuple[str, ...] = ("never", "when_faster", "always")
# How the target runs int8 dot products: none (widening multiplies, often slower than fp32), dotprod (ARMv8.2
# SDOT/UDOT), vnni (x86 AVX-512/AVX VNNI), u8s8 (x86 AVX2 VPMADDUBSW, 16-bit saturation risk), cmsis-nn (MCU).
INT8_FAST_PATHS: tuple[str, ...] = ("none", "dotprod", "vnni", "u8s8", "cmsis-nn")
# measured: timed on the device by `calibrate`; emulated: fitted to cycle counts of generated C in an instruction
# set emulator (`calibrate --emulate`, microcontrollers); estimated: derived from public specifications.
PROVENANCE_KINDS: tuple[str, ...] = ("measured", "emulated", "estimated")


@dataclass(frozen=True)
class Hardware:
    isa: str  # e.g. "x86_64", "aarch64", "thumbv7em"
    cpu: str  # core or product name
    cores: int
    simd_bits: int  # widest vector unit the runtime uses (0: none)
    int8_fast_path: str  # one of INT8_FAST_PATHS
    clock_mhz: float | None = None  # None: unknown (a calibrated machine that does not report it)
    l1d_kib: int | None = None  # per core
    l2_kib: int | None = None
    l3_kib: int | None = None
    ram_kib: int | None = None  # the budget a deployed model may use, where it applies
    flash_kib: int | None = None


@dataclass(frozen=True)
class Runtime:
    name: str  # one of RUNTIMES
    version: str | None = None
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    # True: the deployed code skips zero weights (generated C), so MACs count non-zero weights only;
    # False: a dense Gemm runs every weight (onnxruntime), so zeros inside a matrix cost the same as others.
    sparse_kernel: bool = False
    # Dense Gemm kernels compute output columns in blocks (onnxruntime's MLAS: 16 floats on AVX2), so a layer of
    # width n costs like one of width ceil(n / block) * block; calibration picks the block that fits best.
    gemm_column_block: int = 1


@dataclass(frozen=True)
class CostCoefficients:
    """Latency terms of the cost model (swat_edge.device.cost): one call costs

    call_us + node_us x nodes + slice_us x slices + batch x 1e-3 x (sum of every *_ns coefficient x its count).
    """

    call_us: float  # fixed cost of one inference call (runtime entry, input/output binding)
    node_us: float  # per executed graph node (kernel dispatch)
    slice_us: float  # per slice of Split and Concat, per call (one tensor each)
    gemm_row_ns: float  # per float Gemm, per batch row (kernel setup per row block)
    qgemm_row_ns: float  # per int8 Gemm, per batch row
    mac_fp32_ns: float  # per float multiply-add
    mac_int8_ns: float  # per int8 multiply-add (int32 accumulation)
    gemm_out_ns: float  # per Gemm output element (bias, store)
    quantize_ns: float  # per element quantized to int8 at a layer input
    copy_ns: float  # per element copied by Split and Concat (or scaled by an input/output Mul/Add)
    slice_row_ns: float  # per slice and row of Split and Concat
    affine_row_ns: float  # per row and Mul/Add of input scaling or output de-normalisation (broadcast row by row)
    relu_ns: float  # per element of each activation type
    leaky_relu_ns: float
    tanh_ns: float
    sigmoid_ns: float
    # once per call when any tanh or sigmoid runs: on a microcontroller libm's tanhf is fetched from flash once
    # and then runs from the instruction cache (0 where a profile does not name it)
    libm_us: float = 0.0
    # generated C layers emitted as a loop over a weight table (export.c loop_layers): per loop layer, per neuron
    # and per table entry (zeros included), per batch row (0 where a profile does not name them)
    loop_layer_ns: float = 0.0
    loop_row_ns: float = 0.0
    loop_mac_ns: float = 0.0


@dataclass(frozen=True)
class Provenance:
    kind: str  # "measured" (by swat-edge calibrate) or "estimated" (from public specs; derivation in the file)
    method: str  # how the coefficients were obtained, in a sentence
    date: str | None = None  # measured: ISO date of the calibration run
    machine: str | None = None  # measured: the machine it ran on
    fit_rmspe: float | None = None  # measured: root-mean-square relative error of the fit over its measurements
    measurements: int | None = None  # measured: how many (probe, batch size) timings the fit used


@dataclass(frozen=True)
class Mcu:
    """How a microcontroller target's generated C is built and emulated (`swat-edge bench model.c --target`)."""

    core: str  # timing table and emulated CPU (swat_edge.measure.mcu.CORES), e.g. "cortex-m4"
    gcc_flags: str  # arm-none-eabi-gcc's code generation flags, e.g. "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard"
    flash_wait_states: int  # at the profile's clock (STM32L4 at 80 MHz: 4)
    flash_line_bytes: int = 8  # bytes one flash read delivers (STM32: 64-bit lines)
    icache_bytes: int = 0  # instruction cache in front of flash (STM32L4's ART accelerator: 1 KB)
    dcache_bytes: int = 0  # cache for constants read from flash (STM32L4: 256 bytes)


@dataclass(frozen=True)
class CodeSize:
    """Flash bytes of the generated C (code and constants, libm included) as the size budget counts them:
    call_bytes + mac_bytes x multiply-adds + output_bytes x neuron outputs + libm_call_bytes x tanh/sigmoid
    neurons + libm_bytes once when any is used + relu_bytes / leaky_relu_bytes once when that activation is used
    (the software-float comparisons a core without an FPU links); a layer emitted as a loop instead costs
    loop_layer_bytes of code and loop_weight_bytes per table entry (weights, zeros included, and biases).
    Fitted by `calibrate --emulate`; a profile without the loop terms (0) never chooses loops."""

    call_bytes: float
    mac_bytes: float
    output_bytes: float
    libm_call_bytes: float
    libm_bytes: float
    relu_bytes: float = 0.0
    leaky_relu_bytes: float = 0.0
    loop_layer_bytes: float = 0.0
    loop_weight_bytes: float = 0.0


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    hardware: Hardware
    runtime: Runtime
    int8_policy: str  # one of INT8_POLICIES: int8 only where the target runs it faster
    cost: CostCoefficients
    provenance: Provenance
    schema_version: int = PROFILE_SCHEMA_VERSION
    mcu: Mcu | None = None  # microcontrollers only: the optional [mcu] table
    code_size: CodeSize | None = None  # generated C only: bytes are code + constants (else weights and biases)
    source: str | None = field(default=None, compare=False)  # file it was read from (not written to TOML)

    def replace(self, **changes: Any) -> "TargetProfile":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------------------
# Schema: the TOML layout is derived from the dataclasses above, so reader, writer and checks cannot drift.

_SECTIONS: tuple[tuple[str, type], ...] = (
    ("hardware", Hardware),
    ("runtime", Runtime),
    ("cost", CostCoefficients),
    ("provenance", Provenance),
)
_OPTIONAL_SECTIONS: tuple[tuple[str, type], ...] = (("mcu", Mcu), ("code_size", CodeSize))
_TOP_LEVEL = ("schema_version", "name", "description", "int8_policy")
_CHOICES: dict[str, tuple[str, ...]] = {
    "int8_policy": INT8_POLICIES,
    "hardware.int8_fast_path": INT8_FAST_PATHS,
    "runtime.name": RUNTIMES,
    "provenance.kind": PROVENANCE_KINDS,
}
_MIN_ONE = {
    "hardware.cores",
    "runtime.intra_op_threads",
    "runtime.inter_op_threads",
    "runtime.gemm_column_block",
    "mcu.flash_line_bytes",
    "schema_version",
}
# The annotations are strings (from __future__ import annotations); these are the only ones used above.
_KINDS = {
    "str": (str, False),
    "str | None": (str, True),
    "int": (int, False),
    "int | None": (int, True),
    "float": (float, False),
    "float | None": (float, True),
    "bool": (bool, False),
}


def _field_kind(f: dataclasses.Field) -> tuple[type, bool]:
    try:
        return _KINDS[str(f.type)]
    except KeyError:
        raise AssertionError(f"bug: unsupported profile field type {f.type!r}") from None


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table", list: "array"}.get(
        type(value), type(value).__name__
    )


def _check_value(where: str, key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise TargetProfileError(where, f"expected true or false, got {value!r} ({_type_name(value)})", key=key)
        return value
    if kind is str:
        if not isinstance(value, str):
            raise TargetProfileError(where, f"expected a string, got {value!r} ({_type_name(value)})", key=key)
        if key in _CHOICES and value not in _CHOICES[key]:
            raise TargetProfileError(
                where, f"{value!r} is not one of {', '.join(repr(c) for c in _CHOICES[key])}", key=key
            )
        return value
    # Numbers: TOML booleans are not numbers here even though bool subclasses int in Python.
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TargetProfileError(where, f"expected an integer, got {value!r} ({_type_name(value)})", key=key)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TargetProfileError(where, f"expected a number, got {value!r} ({_type_name(value)})", key=key)
    if not math.isfinite(value):
        raise TargetProfileError(where, f"must be a finite number, got {value!r}", key=key)
    lowest = 1 if key in _MIN_ONE else 0
    if value < lowest:
        raise TargetProfileError(where, f"must be >= {lowest}, got {value!r}", key=key)
    return float(value) if kind is float else value


def _read_table(where: str, data: Mapping[str, Any], prefix: str, cls: type) -> Any:
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            raise TargetProfileError(
                where, f"unknown field; known fields of [{prefix}]: {', '.join(sorted(known))}", key=f"{prefix}.{key}"
            )
    values = {}
    for f in fields:
        key = f"{prefix}.{f.name}"
        kind, optional = _field_kind(f)
        has_default = f.default is not dataclasses.MISSING
        if f.name not in data:
            if not (optional or has_default):
                raise TargetProfileError(where, f"missing; [{prefix}] needs {f.name} ({kind.__name__})", key=key)
            continue
        values[f.name] = _check_value(where, key, data[f.name], kind)
    return cls(**values)


def profile_from_dict(data: Mapping[str, Any], *, source: str = "<profile>") -> TargetProfile:
    """Check a parsed profile and build a TargetProfile; TargetProfileError names the file and the field."""
    allowed = set(_TOP_LEVEL) | {name for name, _ in _SECTIONS + _OPTIONAL_SECTIONS}
    for key in data:
        if key not in allowed:
            raise TargetProfileError(source, f"unknown field; known: {', '.join(sorted(allowed))}", key=key)
    for key in _TOP_LEVEL:
        if key not in data:
            raise TargetProfileError(source, "missing", key=key)
    version = _check_value(source, "schema_version", data["schema_version"], int)
    if version != PROFILE_SCHEMA_VERSION:
        raise TargetProfileError(
            source,
            f"version {version} is not supported; this swat-edge reads version {PROFILE_SCHEMA_VERSION} "
            "(upgrade swat-edge or rerun swat-edge calibrate)",
            key="schema_version",
        )
    sections = {}
    for name, cls in _SECTIONS:
        table = data.get(name)
        if table is None:
            raise TargetProfileError(source, f"missing; the profile needs a [{name}] table", key=name)
        if not isinstance(table, dict):
            raise TargetProfileError(source, f"expected a [{name}] table, got {_type_name(table)}", key=name)
        sections[name] = _read_table(source, table, name, cls)
    for name, cls in _OPTIONAL_SECTIONS:
        table = data.get(name)
        if table is not None and not isinstance(table, dict):
            raise TargetProfileError(source, f"expected a [{name}] table, got {_type_name(table)}", key=name)
        sections[name] = None if table is None else _read_table(source, table, name, cls)
    profile = TargetProfile(
        name=_check_value(source, "name", data["name"], str),
        description=_check_value(source, "description", data["description"], str),
        hardware=sections["hardware"],
        runtime=sections["runtime"],
        int8_policy=_check_value(source, "int8_policy", data["int8_policy"], str),
        cost=sections["cost"],
        provenance=sections["provenance"],
        schema_version=version,
        mcu=sections["mcu"],
        code_size=sections["code_size"],
        source=source,
    )
    if not profile.name.strip():
        raise TargetProfileError(source, "must not be empty", key="name")
    prov = profile.provenance
    if prov.kind in ("measured", "emulated"):
        for key in ("date", "machine", "fit_rmspe", "measurements") if prov.kind == "measured" else (
                "date", "fit_rmspe", "measurements"):
            if getattr(prov, key) is None:
                raise TargetProfileError(source, f"missing; a {prov.kind} profile records it",
                                         key=f"provenance.{key}")
    if profile.code_size is not None and profile.runtime.name != "none":
        raise TargetProfileError(source, "a [code_size] model is for generated C (runtime.name = \"none\")",
                                 key="code_size")
    if prov.kind == "emulated" and profile.mcu is None:
        raise TargetProfileError(source, "an emulated profile needs the [mcu] table it was emulated with",
                                 key="provenance.kind")
    return profile


def profile_from_toml(text: str, *, source: str = "<profile>") -> TargetProfile:
    """Parse TOML text; a syntax error names the line and column (tomllib's position)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetProfileError(source, f"not valid TOML: {exc}") from None
    return profile_from_dict(data, source=source)


# ---------------------------------------------------------------------------------------------------------
# Built-in profiles and lookup


def builtin_targets_dir() -> Path | None:
    """Folder of the built-in profiles: `swat_edge/profiles` in an installed wheel, `targets/` in a checkout."""
    package = Path(__file__).resolve().parent.parent  # swat_edge/
    for candidate in (package / "profiles", package.parent / "targets"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    return None


def _builtin_files() -> dict[str, Path]:
    folder = builtin_targets_dir()
    return {} if folder is None else {p.stem: p for p in sorted(folder.glob("*.toml"))}


def list_targets() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(_builtin_files())


def _looks_like_path(name: str) -> bool:
    return name.endswith(".toml") or os.sep in name or (os.altsep is not None and os.altsep in name)


def load_target(name_or_path: str | os.PathLike) -> TargetProfile:
    """A built-in profile by name (see list_targets) or a profile file by path (*.toml or containing a /)."""
    text_name = os.fspath(name_or_path)
    if not isinstance(text_name, str):
        raise UsageError(f"target {text_name!r}: give a profile name or a path to a .toml file")
    if isinstance(name_or_path, Path) or _looks_like_path(text_name):
        path = Path(text_name)
        if not path.exists():
            raise MissingFileError(path, "target profile")
        if path.is_dir():
            raise UsageError(f"{path}: is a directory, expected a target profile (.toml)")
    else:
        files = _builtin_files()
        if text_name not in files:
            raise UnknownTargetError(text_name, sorted(files))
        path = files[text_name]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TargetProfileError(path, "not a text file (expected UTF-8 TOML)") from None
    return profile_from_toml(text, source=str(path))


# ---------------------------------------------------------------------------------------------------------
# Writer for the flat profile shape: top-level scalars, then one table per section; None fields omitted.


def _toml_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # TOML basic strings forbid raw control characters
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"bug: cannot write non-finite number {value!r} to a profile")
        return repr(value)  # shortest text that reads back to the same double; always has '.', 'e' or both
    if isinstance(value, str):
        return _toml_string(value)
    raise ValueError(f"bug: unsupported profile value {value!r}")


def profile_to_dict(profile: TargetProfile) -> dict[str, Any]:
    """The TOML-shaped dictionary of a profile (None fields left out, `source` not included)."""
    out: dict[str, Any] = {key: getattr(profile, key) for key in _TOP_LEVEL}
    for name, _ in _SECTIONS + _OPTIONAL_SECTIONS:
        value = getattr(profile, name)
        if value is not None:
            out[name] = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    return out


def profile_to_toml(profile: TargetProfile, *, comments: Iterable[str] = ()) -> str:
    """TOML text that profile_from_toml reads back to an equal profile; `comments` become a '#' header."""
    lines = [f"# {line}".rstrip() for text in comments for line in text.splitlines()]
    data = profile_to_dict(profile)
    for key in _TOP_LEVEL:
        lines.append(f"{key} = {_toml_value(data[key])}")
    for name in (name for name, _ in _SECTIONS + _OPTIONAL_SECTIONS if name in data):
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in data[name].items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def profile_rows(profile: TargetProfile) -> list[tuple[str, str]]:
    """(field, value) rows describing a profile for a table, fields as in the TOML ("cost.call_us")."""
    rows = [("name", profile.name), ("description", profile.description), ("int8_policy", profile.int8_policy)]
    for name, _ in _SECTIONS + _OPTIONAL_SECTIONS:
        section = getattr(profile, name)
        for key, value in (dataclasses.asdict(section) if section is not None else {}).items():
            if value is not None:
                rows.append((f"{name}.{key}", _format_value(value)))
    return rows


def provenance_line(profile: TargetProfile) -> str:
    """One sentence saying where the coefficients come from and how far to trust them."""
    p = profile.provenance
    if p.kind == "measured":
        fit = f"{p.fit_rmspe:.1%}" if p.fit_rmspe is not None else "unknown"
        return (
            f"measured on {p.machine} at {p.date}: fit error (relative RMS) {fit} over {p.measurements} timings"
        )
    if p.kind == "emulated":
        return (f"emulated on {p.date}: fitted to cycle counts of generated C in an instruction-set emulator, "
                f"relative RMS error {p.fit_rmspe:.1%} over {p.measurements} networks ({p.method})")
    where = f" (derivation in the comments of {profile.source})" if profile.source else ""
    return f"estimated from public specifications, not measured{where}; run swat-edge calibrate on the device to replace it"
