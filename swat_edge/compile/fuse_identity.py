"""Pass: fuse each all-identity hidden layer into the next layer when that does not add dense MACs."""
from __future__ import annotations

from ..model import Layer, SparseMLP
from ._report import PassReport, make_report

__all__ = ["fuse_identity_layers"]


def _is_identity(layer: Layer) -> bool:
    # Gated-off neurons output 0 whatever their activation, so only active ones must be identity.
    return all(a == "identity" for a, on in zip(layer.activations, layer.mask) if on)


def _fuse(first: Layer, second: Layer) -> Layer:
    """act2((x W1 + b1) W2 + b2) = act2(x (W1 W2) + (b1 W2 + b2)); gated-off neurons of `first` drop out."""
    live = first.mask
    w1, b1, w2 = first.weight[:, live], first.bias[live], second.weight[live]
    return Layer.make(w1 @ w2, b1 @ w2 + second.bias, second.activations, second.mask)


def fuse_identity_layers(model: SparseMLP) -> tuple[SparseMLP, PassReport]:
    """Replace a linear hidden layer and the layer after it by their product, left to right, to a fixpoint.

    A fusion happens only when the fused layer's dense MACs (n_in x n_out) are not larger than the two
    layers' together, so a bottleneck (64 -> 1 -> 64) stays: its product would be a 64 x 64 matrix.
    """
    layers = list(model.layers)
    labels = [f"hidden {i}" for i in range(len(model.hidden))] + ["output"]
    fused: list[str] = []
    # Fusing a later pair can make an earlier identity layer cheap to fuse (8 -> 1 -> 64 -> 1 becomes
    # 8 -> 1 -> 1), so rescan until a scan fuses nothing; `kept` then describes the final layers.
    while True:
        kept: list[str] = []
        n_fused = len(fused)
        i = 0
        while i < len(layers) - 1:  # the last entry is the output layer: it has no successor to fuse into
            first, second = layers[i], layers[i + 1]
            if not _is_identity(first):
                i += 1
                continue
            macs_apart = first.n_in * first.n_out + second.n_in * second.n_out
            macs_fused = first.n_in * second.n_out
            if macs_fused > macs_apart:
                kept.append(f"{labels[i]} ({first.n_out} neurons: fusing costs {macs_fused} > {macs_apart} MACs)")
                i += 1
                continue
            fused.append(f"{labels[i]} ({first.n_out} neurons) into {labels[i + 1]}")
            layers[i : i + 2] = [_fuse(first, second)]
            labels[i : i + 2] = [labels[i + 1]]
            # Stay at i: the fused layer takes the second layer's activations and may itself be identity.
        if len(fused) == n_fused:
            break

    parts = []
    if fused:
        parts.append(f"fused {len(fused)} identity layer(s): " + ", ".join(fused))
    if kept:
        parts.append(f"kept {len(kept)}: " + ", ".join(kept))
    summary = "; ".join(parts) if parts else "no identity hidden layers"
    new_model = model.replace(hidden=tuple(layers[:-1]), output=layers[-1])
    new_model.check()
    return new_model, make_report("fuse_identity_layers", model, new_model, summary, changed=bool(fused))
