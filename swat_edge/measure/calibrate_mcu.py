"""`swat-edge calibrate --emulate --target cortex-m4`: a microcontroller profile's cost model fitted to emulated
cycle counts of generated C (mcu.emulate_c), and its accuracy on networks it was not fitted on.

The networks are random ones like the search's (calibrate.random_family_model, up to 4 hidden layers of up to 16
neurons, mixed activations, sparse weights, gated-off neurons), compiled and exported to C as `swat-edge export`
does, emulated on rows that cover their input range. Only the cost model's terms that exist in generated C
are fitted (call, libm's first use, per layer, per multiply-add, per output, per activation, and for layers emitted
as loops per loop, per neuron and per table entry: half the networks have a random subset of their layers as
loops); graph nodes, slices and copies cost nothing there. The fit is calibrate.fit_coefficients (non-negative
least squares on relative error).
"""
from __future__ import annotations

import datetime as _dt
import os
import subprocess
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..device.cost import TERMS, Counts, coefficient_vector, coefficients_from_vector, count_for, feature_vector
from ..device.targets import CodeSize, Provenance, TargetProfile, profile_to_toml
from ..errors import UsageError
from ..files import atomic_write_text
from ..export.c import loop_layers_allowed, to_c
from ..model import SparseMLP, sample_inputs
from .calibrate import _compiled, fit_coefficients, nnls, random_family_model
from .mcu import emulate_c, find_arm_gcc

__all__ = ["C_TERMS", "EmulatedNetwork", "EmulatedCalibration", "calibrate_emulated", "write_emulated_profile"]

# The cost model's terms that straight-line generated C has (the others are left at 0).
C_TERMS: tuple[str, ...] = ("call_us", "libm_us", "gemm_row_ns", "mac_fp32_ns", "gemm_out_ns", "relu_ns",
                            "leaky_relu_ns", "tanh_ns", "sigmoid_ns", "loop_layer_ns", "loop_row_ns", "loop_mac_ns")
# Share of the random networks exported with some layers as loops (a random non-empty subset of those allowed);
# the others are straight-line, as export emits without a size budget.
LOOP_SHARE = 0.5
DEFAULT_FIT_NETWORKS = 100
DEFAULT_CHECK_NETWORKS = 200
ROWS_PER_NETWORK = 8
MAX_DEPTH, MAX_WIDTH = 4, 16
WITHIN = 0.10  # the accuracy reported: share of held-out networks predicted within +-10%


@dataclass(frozen=True)
class EmulatedNetwork:
    widths: tuple[int, ...]
    macs: int
    emulated_us: float  # median over its rows
    predicted_us: float  # by the fitted coefficients
    flash_bytes: int  # what the model adds to the linked image
    predicted_bytes: float  # by the fitted [code_size] model

    @property
    def relative_error(self) -> float:
        return self.predicted_us / self.emulated_us - 1.0

    @property
    def size_error(self) -> float:
        return self.predicted_bytes / self.flash_bytes - 1.0


@dataclass(frozen=True)
class EmulatedCalibration:
    profile: TargetProfile
    fit_rmspe: float
    fitted: tuple[EmulatedNetwork, ...]
    checked: tuple[EmulatedNetwork, ...]  # networks not used by the fit
    derived_from: str  # the profile whose [mcu] section was emulated

    @property
    def within_share(self) -> float:
        """Share of the checked networks predicted within +-WITHIN of their emulated latency."""
        return _within([n.relative_error for n in self.checked])

    @property
    def size_within_share(self) -> float:
        """Share of the checked networks whose flash bytes are predicted within +-WITHIN."""
        return _within([n.size_error for n in self.checked])


def _within(relative_errors: list[float]) -> float:
    return float(np.mean(np.abs(relative_errors) <= WITHIN)) if relative_errors else 0.0


@dataclass(frozen=True)
class _Emulated:
    features: np.ndarray  # the cost model's feature vector (C terms only)
    size_features: np.ndarray  # CodeSize's, in its field order: 1, multiply-adds, outputs, libm call sites, any
    # libm neuron, any ReLU, any leaky ReLU, loop layers, loop table entries
    latency_us: float
    flash_bytes: int
    widths: tuple[int, ...]
    macs: int


def _size_features(counts: Counts) -> np.ndarray:
    libm = float(counts.tanh + counts.sigmoid)
    return np.array([1.0, float(counts.macs_fp32), float(counts.gemm_outputs), libm - float(counts.loop_libm),
                     min(libm, 1.0), min(float(counts.relu), 1.0), min(float(counts.leaky_relu), 1.0),
                     float(counts.loop_layers), float(counts.loop_macs + counts.loop_rows)])


def _loop_subset(rng: np.random.Generator, allowed: tuple[int, ...]) -> frozenset[int]:
    if not allowed or rng.random() >= LOOP_SHARE:
        return frozenset()
    while True:
        chosen = frozenset(li for li in allowed if rng.random() < 0.5)
        if chosen:
            return chosen


def _emulated(model: SparseMLP, target: TargetProfile, rng: np.random.Generator) -> _Emulated:
    """One network compiled and exported as `swat-edge export` does (some layers as loops, drawn from rng),
    emulated on `target`."""
    compiled = _compiled(model, "fp32")
    rows = sample_inputs(compiled, ROWS_PER_NETWORK, seed=1)
    loops = _loop_subset(rng, loop_layers_allowed(compiled))
    result = emulate_c(to_c(compiled, prefix="net", loop_layers=sorted(loops)), target, rows=rows,
                       reference=compiled)
    counts = count_for(compiled, target, "fp32", loops)
    mask = np.array([term in C_TERMS for term in TERMS], dtype=np.float64)
    widths = (compiled.n_inputs, *(layer.n_out for layer in compiled.hidden), compiled.n_outputs)
    return _Emulated(feature_vector(counts, 1) * mask, _size_features(counts), result.latency_us,
                     result.flash_bytes, widths, int(round(counts.macs_fp32)))


def _gcc_version() -> str:
    gcc = find_arm_gcc()
    first = subprocess.run([*gcc, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    return first[0] if first else gcc[0]


def calibrate_emulated(target: TargetProfile, *, n_fit: int = DEFAULT_FIT_NETWORKS,
                       n_check: int = DEFAULT_CHECK_NETWORKS, seed: int = 0,
                       progress: Callable[[int, int], None] | None = None) -> EmulatedCalibration:
    """Fit `target`'s C cost terms to n_fit emulated random networks, check them on n_check others; returns
    the profile with the fitted coefficients and provenance "emulated" (nothing is written)."""
    if target.mcu is None:
        raise UsageError(f"target {target.name} has no [mcu] section: --emulate needs a microcontroller profile")
    if n_fit < len(C_TERMS) or n_check < 1:
        raise UsageError(f"--networks {n_fit}: fit at least {len(C_TERMS)} networks and check at least 1")
    rng = np.random.default_rng(seed)
    total = n_fit + n_check
    runs = []
    for i in range(total):
        model = random_family_model(rng, seed=seed * 100_003 + i, max_depth=MAX_DEPTH, max_width=MAX_WIDTH)
        runs.append(_emulated(model, target, rng))
        if progress is not None:
            progress(i + 1, total)
    features = np.array([r.features for r in runs])
    emulated = np.array([r.latency_us for r in runs])
    cost, residuals = fit_coefficients(features[:n_fit], emulated[:n_fit])
    cost = coefficients_from_vector([float(f"{v:.4g}") for v in coefficient_vector(cost)])
    predicted = features @ coefficient_vector(cost)
    size_features = np.array([r.size_features for r in runs])
    flash = np.array([r.flash_bytes for r in runs], dtype=np.float64)
    size_coef = nnls(size_features[:n_fit] / flash[:n_fit, None], np.ones(n_fit))  # relative error, as for time
    code_size = CodeSize(*(float(f"{v:.4g}") for v in size_coef))
    predicted_bytes = size_features @ np.array(astuple(code_size))
    networks = tuple(EmulatedNetwork(r.widths, r.macs, r.latency_us, float(p), r.flash_bytes, float(b))
                     for r, p, b in zip(runs, predicted, predicted_bytes))
    rmspe = float(np.sqrt(np.mean(residuals**2)))
    checked = networks[n_fit:]
    share, size_share = _within([n.relative_error for n in checked]), _within([n.size_error for n in checked])
    mcu = target.mcu
    provenance = Provenance(
        kind="emulated",
        method=(f"swat-edge {__version__} calibrate --emulate --target {target.name} --seed {seed}: {n_fit} random "
                f"networks (up to {MAX_DEPTH}x{MAX_WIDTH}, {ROWS_PER_NETWORK} rows each) exported to C, built with "
                f"{_gcc_version()} {mcu.gcc_flags} -O2, emulated (Unicorn) and priced with the {mcu.core} timing "
                f"table and {mcu.flash_wait_states} flash wait states; non-negative least squares on relative error; "
                f"on {n_check} other networks {share:.0%} within +-{WITHIN:.0%} (flash bytes: {size_share:.0%})"),
        date=_dt.date.today().isoformat(),
        fit_rmspe=round(rmspe, 4),
        measurements=n_fit,
    )
    profile = replace(target, cost=cost, code_size=code_size, provenance=provenance, source=None)
    return EmulatedCalibration(profile, rmspe, networks[:n_fit], checked, target.name)


def write_emulated_profile(result: EmulatedCalibration, out: str | os.PathLike, *, force: bool) -> Path:
    """The profile as TOML, headed by comments that say how it was derived and how well it predicts."""
    p, errors = result.profile, np.abs([n.relative_error for n in result.checked])
    comments = [
        f"{p.description}.",
        f"EMULATED by `swat-edge calibrate --emulate --target {result.derived_from}` on {p.provenance.date}: the C",
        "that `swat-edge export` generates for random networks, built with arm-none-eabi-gcc, run in an",
        "instruction-set emulator and priced with the core's timing table and the [mcu] flash wait states",
        "(swat_edge/measure/mcu.py), half of them with some layers as loops. Terms C does not have (graph",
        "nodes, slices, copies) are 0.",
        f"Fit: relative RMS error {result.fit_rmspe:.1%} over {len(result.fitted)} networks; on {len(result.checked)} "
        f"other networks {result.within_share:.0%} predicted within +-{WITHIN:.0%}",
        f"(median error {np.median(errors):.1%}, worst {np.max(errors):.1%}); flash bytes ([code_size], what",
        f"--size-budget counts here) {result.size_within_share:.0%} within +-{WITHIN:.0%}. Check one model:",
        f"swat-edge bench model.c --target {p.name} --model model.safetensors",
    ]
    return atomic_write_text(out, profile_to_toml(p, comments=comments), force=force)
