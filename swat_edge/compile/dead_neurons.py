"""Pass: remove hidden neurons that are gated off, feed nothing, or output a constant (folded into the next bias)."""
from __future__ import annotations

import numpy as np

from ..model import Layer, SparseMLP, apply_activation
from ._report import PassReport, make_report

__all__ = ["remove_dead_neurons"]


def remove_dead_neurons(model: SparseMLP) -> tuple[SparseMLP, PassReport]:
    """Physically delete dead hidden neurons, to a fixpoint; afterwards every mask is True.

    A neuron is dead when it is gated off (contributes 0), when its outgoing weights are all zero
    (contributes 0), or when its incoming weights are all zero: then it outputs act(bias), a constant that
    is added to the next layer's bias (W_next[j, :] * act(b_j)) before the neuron goes. If a hidden layer
    empties, the network output is constant and the result has no hidden layers and a zero-weight output
    layer whose bias is that constant.
    """
    layers = model.layers
    weights = [layer.weight.copy() for layer in layers]
    biases = [layer.bias.copy() for layer in layers]
    acts = [np.asarray(layer.activations, dtype=object) for layer in layers]
    masks = [layer.mask.copy() for layer in layers]
    n_gated = n_unused = n_constant = 0

    # Removing a neuron deletes a row of the next weight matrix and a column of its own: either can leave a
    # neighbour with no input or no output, so sweep until a sweep removes nothing.
    changed = True
    while changed:
        changed = False
        for i in range(len(model.hidden)):
            w, w_next = weights[i], weights[i + 1]
            gated = ~masks[i]
            unused = ~np.any(w_next != 0.0, axis=1) & ~gated
            constant = ~np.any(w != 0.0, axis=0) & ~gated & ~unused
            drop = gated | unused | constant
            if not drop.any():
                continue
            if constant.any():
                values = np.array(
                    [apply_activation(str(a), np.array([b]))[0] for a, b in zip(acts[i][constant], biases[i][constant])]
                )
                biases[i + 1] = biases[i + 1] + values @ w_next[constant]
            keep = ~drop
            weights[i], biases[i], acts[i], masks[i] = w[:, keep], biases[i][keep], acts[i][keep], masks[i][keep]
            weights[i + 1] = w_next[keep]
            n_gated += int(gated.sum())
            n_unused += int(unused.sum())
            n_constant += int(constant.sum())
            changed = True

    n_removed = n_gated + n_unused + n_constant
    out_bias = biases[-1]
    if any(w.shape[1] == 0 for w in weights[:-1]):
        # An empty hidden layer cuts every path: the sweeps have folded the whole network into the output bias.
        assert weights[-1].shape[0] == 0, "bug: an empty hidden layer left inputs to the output layer"
        hidden: tuple[Layer, ...] = ()
        output = Layer.make(np.zeros((model.n_inputs, model.n_outputs)), out_bias, "identity")
        summary = (
            f"network output is constant: removed all {len(model.hidden)} hidden layers "
            f"({n_removed} neurons); the output layer is its bias"
        )
    else:
        hidden = tuple(
            Layer.make(weights[i], biases[i], tuple(str(a) for a in acts[i]), masks[i])
            for i in range(len(model.hidden))
        )
        output = Layer.make(weights[-1], out_bias, "identity")
        summary = "nothing to remove"
    if n_removed and hidden:
        reasons = [
            f"{n} {why}"
            for n, why in (
                (n_gated, "gated off"),
                (n_unused, "feeding nothing"),
                (n_constant, "constant, folded into the next bias"),
            )
            if n
        ]
        summary = f"removed {n_removed} neurons: {', '.join(reasons)}"
    new_model = model.replace(hidden=hidden, output=output)
    new_model.check()
    return new_model, make_report("remove_dead_neurons", model, new_model, summary, changed=n_removed > 0)
