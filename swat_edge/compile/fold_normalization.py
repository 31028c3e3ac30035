"""Pass: fold input scaling into the first layer and output de-normalisation into the last, at zero run-time cost."""
from __future__ import annotations

import numpy as np

from ..model import Layer, SparseMLP
from ._report import PassReport, make_report

__all__ = ["SHIFT_OFFSET_LIMIT", "WIDE_OFFSET_LIMIT", "fold_normalization", "fold_output_normalization",
           "input_shift", "wide_inputs"]

# Folding x_n = x s + o into the first layer makes float32 add terms x (s W) that are about |o| times the
# result and cancel against the bias o W: a feature whose midpoint lies |o| half-ranges from zero loses about
# log2|o| of float32's 24 bits. Up to 16 (4 bits, ~1e-6 relative, a tenth of the export checks' 1e-5) the
# fold stays exact enough; beyond it (a unix timestamp 1.7e9 +/- 3000 has |o| = 5.7e5) the column is
# shifted first, see input_shift.
SHIFT_OFFSET_LIMIT = 16.0

# The shift keeps the arithmetic exact, but float32 rounds the raw value itself before any arithmetic: its
# spacing near a midpoint |o| half-ranges from zero is about |o| 2^-23 half-ranges. Beyond 256 half-ranges
# (a spacing over 2^-16 of the range; a unix timestamp 1.7e9 +/- 3000 is at 5.7e5, spacing 128 s) the deployed
# model takes its inputs as float64, subtracts the midpoints in float64, then continues in float32.
WIDE_OFFSET_LIMIT = 256.0


def input_shift(model: SparseMLP) -> np.ndarray:
    """Per input column, a float32-exact value c to subtract from the raw feature before the folded scaling.

    c is 0 except for columns with |input_offset| > SHIFT_OFFSET_LIMIT (and a non-zero scale), where it is the
    raw value the model maps to 0 (the training range's midpoint) rounded to float32. For any x within a
    factor of 2 of c, float32 computes x - c exactly (Sterbenz), so a deployed model that subtracts c first
    and then applies the folded weights s W and bias (o + c s) W + b (both computed in float64) keeps the
    precision the feature has around c instead of cancelling two large numbers.
    """
    scale = np.asarray(model.input_scale, dtype=np.float64)
    offset = np.asarray(model.input_offset, dtype=np.float64)
    shift = np.zeros(model.n_inputs)
    need = (np.abs(offset) > SHIFT_OFFSET_LIMIT) & (scale != 0.0)
    if need.any():
        with np.errstate(over="ignore"):
            center = (-offset[need] / scale[need]).astype(np.float32).astype(np.float64)
        shift[need] = np.where(np.isfinite(center), center, 0.0)  # beyond float32: nothing to keep exact
    return shift


def wide_inputs(model: SparseMLP) -> np.ndarray:
    """Per input column: True when float32 cannot carry the raw feature at the precision the model needs (its
    midpoint is more than WIDE_OFFSET_LIMIT half-ranges from zero); an exported model with any such column
    takes float64 inputs. Decided on the model as trained (before fold_normalization forgets the ranges)."""
    scale = np.asarray(model.input_scale, dtype=np.float64)
    offset = np.asarray(model.input_offset, dtype=np.float64)
    return (np.abs(offset) > WIDE_OFFSET_LIMIT) & (scale != 0.0)


def fold_normalization(model: SparseMLP) -> tuple[SparseMLP, PassReport]:
    """Return a model with identity scaling that takes raw features and returns raw targets.

    Input:  (x s + o) W + b = x (diag(s) W) + (o W + b).
    Output: (h W + b) S + O = h (W diag(S)) + (b S + O); the output layer is linear, so this is exact.
    With no hidden layers the output layer is also the first layer and gets both foldings.
    A feature far from zero (see input_shift) keeps an exact float32 shift as its input offset:
    ((x - c) s + (o + c s)) W + b = (x - c) (diag(s) W) + ((o + c s) W + b), input scale 1, offset -c.
    """
    return _fold(model, inputs=True, name="fold_normalization")


def fold_output_normalization(model: SparseMLP) -> tuple[SparseMLP, PassReport]:
    """Fold only the output de-normalisation; keep the input scaling as its own (fp32) step.

    For int8: one per-tensor quantization scale is shared by all input columns of the first Gemm, so raw
    features of different ranges (rpm 0-6000 next to a 0-1 ratio) would lose the small ones entirely. Kept
    unfolded, the first Gemm sees every feature scaled to about [-1, 1].
    """
    return _fold(model, inputs=False, name="fold_output_normalization")


def _fold(model: SparseMLP, *, inputs: bool, name: str) -> tuple[SparseMLP, PassReport]:
    fold_in = inputs and not (np.all(model.input_scale == 1.0) and np.all(model.input_offset == 0.0))
    fold_out = not (np.all(model.output_scale == 1.0) and np.all(model.output_offset == 0.0))
    shift = input_shift(model) if fold_in else np.zeros(model.n_inputs)
    layers = list(model.layers)
    if fold_in:
        first = layers[0]
        weight = np.asarray(first.weight, dtype=np.float64)
        offset = np.asarray(model.input_offset, dtype=np.float64) + shift * model.input_scale  # after the shift
        layers[0] = Layer.make(
            model.input_scale[:, None] * weight,
            first.bias + offset @ weight,
            first.activations,
            first.mask,
        )
    if fold_out:
        last = layers[-1]
        layers[-1] = Layer.make(
            last.weight * model.output_scale[None, :],
            last.bias * model.output_scale + model.output_offset,
            last.activations,
            last.mask,
        )
    new_model = model.replace(
        hidden=tuple(layers[:-1]),
        output=layers[-1],
        input_scale=np.ones(model.n_inputs) if fold_in else model.input_scale,
        input_offset=0.0 - shift if fold_in else model.input_offset,  # 0.0 - 0.0 is +0.0, not -0.0
        output_scale=np.ones(model.n_outputs),
        output_offset=np.zeros(model.n_outputs),
    )
    new_model.check()
    done = [what for what, flag in (("input scaling", fold_in), ("output de-normalisation", fold_out)) if flag]
    summary = f"folded {' and '.join(done)} into the weights" if done else "scaling already identity"
    shifted = [n for n, c in zip(model.feature_names, shift) if c != 0.0]
    if shifted:
        summary += f"; {', '.join(shifted)} shifted first (exact in float32: far from zero)"
    return new_model, make_report(name, model, new_model, summary, changed=bool(done))
