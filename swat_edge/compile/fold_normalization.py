"""Pass: fold input scaling into the first layer and output de-normalisation into the last, at zero run-time cost."""
from __future__ import annotations

import numpy as np

from ..model import Layer, SparseMLP
from ._report import PassReport, make_report

__all__ = ["fold_normalization", "fold_output_normalization"]


def fold_normalization(model: SparseMLP) -> tuple[SparseMLP, PassReport]:
    """Return a model with identity scaling (scale 1, offset 0) that takes raw features and returns raw targets.

    Input:  (x s + o) W + b = x (diag(s) W) + (o W + b).
    Output: (h W + b) S + O = h (W diag(S)) + (b S + O); the output layer is linear, so this is exact.
    With no hidden layers the output layer is also the first layer and gets both foldings.
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
    layers = list(model.layers)
    if fold_in:
        first = layers[0]
        layers[0] = Layer.make(
            model.input_scale[:, None] * first.weight,
            first.bias + model.input_offset @ first.weight,
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
        input_offset=np.zeros(model.n_inputs) if fold_in else model.input_offset,
        output_scale=np.ones(model.n_outputs),
        output_offset=np.zeros(model.n_outputs),
    )
    new_model.check()
    done = [what for what, flag in (("input scaling", fold_in), ("output de-normalisation", fold_out)) if flag]
    summary = f"folded {' and '.join(done)} into the weights" if done else "scaling already identity"
    return new_model, make_report(name, model, new_model, summary, changed=bool(done))
