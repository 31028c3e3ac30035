"""Pass: drop input features that no active first-layer neuron reads (their weight rows are all zero)."""
from __future__ import annotations

import numpy as np

from ..model import Layer, SparseMLP
from ._report import PassReport, make_report

__all__ = ["drop_unused_inputs"]


def drop_unused_inputs(model: SparseMLP) -> tuple[SparseMLP, PassReport]:
    """Remove unused input columns; n_inputs, feature names, input scaling and calibration columns follow.

    The first input is kept when none is used (a constant network), so the model still takes an input.
    The report's kept_inputs gives the indices of the features the new model takes.
    """
    first = model.layers[0]
    # Weights into gated-off neurons are multiplied by a zero mask, so they do not count as a use.
    used = np.any(first.weight[:, first.mask] != 0.0, axis=1)
    if not used.any():
        used[0] = True
    kept = np.flatnonzero(used)
    dropped = tuple(model.feature_names[j] for j in np.flatnonzero(~used))
    if not dropped:
        new_model = model
        summary = "every input is used"
    else:
        new_first = Layer.make(first.weight[kept], first.bias, first.activations, first.mask)
        layers = [new_first, *model.layers[1:]]
        new_model = model.replace(
            hidden=tuple(layers[:-1]),
            output=layers[-1],
            input_scale=model.input_scale[kept],
            input_offset=model.input_offset[kept],
            input_fill=None if model.input_fill is None else model.input_fill[kept],
            feature_names=tuple(model.feature_names[j] for j in kept),
            calibration=None if model.calibration is None else model.calibration[:, kept],
        )
        new_model.check()
        summary = f"dropped {len(dropped)} unused input(s): {', '.join(dropped)}"
    return new_model, make_report(
        "drop_unused_inputs",
        model,
        new_model,
        summary,
        changed=bool(dropped),
        kept_inputs=kept.tolist(),
        dropped_inputs=dropped,
    )
