"""Random MLPs of a family for training and evaluating the embedding, in a padded, canonical numpy layout.

What the prototype measured (reference/embedding-findings.md) shapes every choice here: fan-in scaled weights
with a per-MLP gain (the paper's U(-5,5) explodes), each MLP's output layer rescaled so its outputs on the
sample points have mean 0 and variance 1 (a plain functional MSE is then well conditioned), pure activations,
depth stratified batches, and a canonical neuron order (sign-flipped odd units, then sorted by bias) so that
a parameter loss does not fight n! equivalent answers. Gains reach well above 1 and biases scale with them,
so saturations and kinks fall inside the input box: tamed nets with gain <= 3 were nearly affine (held-out
quadratic fits reach median R^2 0.99/0.97/0.95/0.92 at depths 1-4 with gain in [0.5, 3]; 0.98/0.93/0.87/0.79
with the default gain in [1, 12]).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import InputError
from ...model import Layer, SparseMLP, apply_activation
from .family import Family

__all__ = [
    "Distribution",
    "MLPBatch",
    "check_distribution",
    "distribution_from_dict",
    "sample_batch",
    "sample_points",
    "batch_forward",
    "batch_to_sparse_mlp",
    "training_seed",
    "heldout_seed",
]

# Seed streams: training batches and held-out evaluation batches draw from disjoint SeedSequence entropy,
# so no evaluation MLP can ever appear in training, whatever the run seed or step.
_TRAIN_STREAM = 0
_HELDOUT_STREAM = 1


def training_seed(run_seed: int, step: int, rank: int = 0) -> tuple[int, ...]:
    return (_TRAIN_STREAM, int(run_seed), int(step), int(rank))


def heldout_seed(index: int) -> tuple[int, ...]:
    return (_HELDOUT_STREAM, int(index))


@dataclass(frozen=True)
class Distribution:
    """How random MLPs are drawn (see the module docstring for why).

    gain: log-uniform in [gain_min, gain_max], per MLP; weights U(-1,1) * gain * sqrt(3 / fan-in).
    bias: U(-1,1) * bias_scale * gain (kinks and saturations land inside the input box).
    sparsity: per MLP, one of `sparsities` (each weight zeroed with that probability; every active
    neuron keeps at least one input). mixed_share: share of MLPs with per-neuron activations; the rest use
    one activation per layer. MLPs whose outputs are nearly constant on the points (std below
    min_relative_std of their RMS) or that need output weights above max_output_weight after
    normalisation (a tiny wiggle blown up) are redrawn.
    """

    gain_min: float = 1.0
    gain_max: float = 12.0
    bias_scale: float = 1.0
    sparsities: tuple[float, ...] = (0.0, 0.25, 0.5)
    mixed_share: float = 0.5
    min_relative_std: float = 0.05
    max_output_weight: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sparsities"] = list(self.sparsities)
        return d


def check_distribution(dist: Distribution, where: str = "distribution") -> Distribution:
    def num(name: str, low: float, high: float) -> float:
        value = getattr(dist, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InputError(f"{where}: {name} is {value!r}; it must be a number in [{low}, {high}]")
        return float(value)

    gmin = num("gain_min", 1e-3, 100.0)
    num("gain_max", gmin, 100.0)
    num("bias_scale", 0.0, 100.0)
    num("mixed_share", 0.0, 1.0)
    num("min_relative_std", 0.0, 0.9)
    num("max_output_weight", 1.0, 1e6)
    sp = dist.sparsities
    if not isinstance(sp, (tuple, list)) or not sp or any(
        isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s < 1.0 for s in sp
    ):
        raise InputError(f"{where}: sparsities is {sp!r}; expected a non-empty list of numbers in [0, 1)")
    return dist


def distribution_from_dict(data: Mapping[str, Any], where: str = "distribution") -> Distribution:
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected an object with fields {', '.join(Distribution.__dataclass_fields__)}")
    known = set(Distribution.__dataclass_fields__)
    extra = sorted(set(data) - known)
    if extra:
        raise InputError(f"{where}: unknown field {extra[0]!r}; known fields: {', '.join(sorted(known))}")
    values = dict(data)
    if isinstance(values.get("sparsities"), list):
        values["sparsities"] = tuple(values["sparsities"])
    return check_distribution(Distribution(**values), where)


@dataclass(frozen=True)
class MLPBatch:
    """B random MLPs padded to the family's maximum shape, in canonical neuron order, with their outputs.

    first_weight (B, max_inputs, W); deep_weight (B, max_depth-1, W, W) (layer l+1's incoming weights);
    bias (B, max_depth, W); activation (B, max_depth, W) indices into family.activations; gate (B, max_depth, W)
    bool; output_weight (B, W, n_outputs); output_bias (B, n_outputs). Layers at or beyond an MLP's depth are
    zero with gates off; the output layer reads the MLP's last hidden layer. Input columns at or beyond
    n_inputs have zero weights and are fed zeros. x (P, max_inputs): the shared points; y (B, P, n_outputs):
    outputs on the points (x masked per MLP), mean 0 and variance 1 per MLP and output.
    """

    family: Family
    depth: np.ndarray
    n_inputs: np.ndarray
    first_weight: np.ndarray
    deep_weight: np.ndarray
    bias: np.ndarray
    activation: np.ndarray
    gate: np.ndarray
    output_weight: np.ndarray
    output_bias: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def size(self) -> int:
        return int(self.depth.shape[0])

    @property
    def input_mask(self) -> np.ndarray:
        return np.arange(self.family.max_inputs)[None, :] < self.n_inputs[:, None]


def sample_points(family: Family, n_points: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(n_points, family.max_inputs))


def _activate(index: np.ndarray, z: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Per-neuron activations: index (B, W) selects names[k] for each neuron of z (B, P, W)."""
    zt = np.ascontiguousarray(np.swapaxes(z, 1, 2))  # (B, W, P): one row per neuron
    out = np.empty_like(zt)
    for k, name in enumerate(names):
        sel = index == k
        if sel.any():
            out[sel] = apply_activation(name, zt[sel])  # each neuron computed once, by its own activation
    return np.swapaxes(out, 1, 2)


def _hidden_forward(
    x_masked: np.ndarray, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray],
    acts: Sequence[np.ndarray], gates: Sequence[np.ndarray], names: Sequence[str],
) -> np.ndarray:
    h = x_masked
    for w, b, a, g in zip(weights, biases, acts, gates):
        h = _activate(a, np.matmul(h, w) + b[:, None, :], names) * g[:, None, :]
    return h


def _draw_group(
    family: Family, dist: Distribution, depth: int, m: int, x: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """m candidate MLPs of one depth (some may be invalid), before canonical ordering."""
    w_max, n_act = family.max_width, family.n_activations
    n_in = rng.integers(1, family.max_inputs + 1, size=m)
    in_mask = np.arange(family.max_inputs)[None, :] < n_in[:, None]
    gain = np.exp(rng.uniform(np.log(dist.gain_min), np.log(dist.gain_max), size=m))
    sparsity = np.asarray(dist.sparsities, dtype=np.float64)[rng.integers(len(dist.sparsities), size=m)]
    widths = rng.integers(1, w_max + 1, size=(m, depth))
    gates = [np.arange(w_max)[None, :] < widths[:, l : l + 1] for l in range(depth)]
    mixed = rng.random(m) < dist.mixed_share
    acts = []
    for _ in range(depth):
        per_neuron = rng.integers(n_act, size=(m, w_max))
        per_layer = np.repeat(rng.integers(n_act, size=(m, 1)), w_max, axis=1)
        acts.append(np.where(mixed[:, None], per_neuron, per_layer))
    weights, biases = [], []
    src_mask = in_mask
    for l in range(depth):
        n_src = src_mask.shape[1]
        live = src_mask[:, :, None] & gates[l][:, None, :]
        keep = (rng.random((m, n_src, w_max)) >= sparsity[:, None, None]) & live
        # every active neuron keeps one randomly chosen live input, so no neuron is cut off by sparsity
        pick = np.where(live, rng.random((m, n_src, w_max)), -1.0)
        keep |= (pick == pick.max(axis=1, keepdims=True)) & live
        fan_in = np.maximum(keep.sum(axis=1), 1)
        scale = gain[:, None] * np.sqrt(3.0 / fan_in)
        weights.append(rng.uniform(-1.0, 1.0, size=(m, n_src, w_max)) * keep * scale[:, None, :])
        biases.append(rng.uniform(-1.0, 1.0, size=(m, w_max)) * dist.bias_scale * gain[:, None] * gates[l])
        acts[l] = np.where(gates[l], acts[l], 0)
        src_mask = gates[l]
    h = _hidden_forward(x[None, :, :] * in_mask[:, None, :], weights, biases, acts, gates, family.activations)
    last = gates[-1]
    out_w = rng.uniform(-1.0, 1.0, size=(m, w_max, family.n_outputs)) * last[:, :, None]
    out_w *= np.sqrt(3.0 / last.sum(axis=1))[:, None, None]
    y = np.matmul(h, out_w)
    mean = y.mean(axis=1)
    std = y.std(axis=1)
    rms = np.sqrt((y**2).mean(axis=1))
    valid = np.all((std > 1e-9) & (std >= dist.min_relative_std * rms), axis=1)
    safe = np.where(std > 1e-9, std, 1.0)
    out_w = out_w / safe[:, None, :]
    out_b = -mean / safe
    y = (y - mean[:, None, :]) / safe[:, None, :]
    valid &= np.max(np.abs(out_w), axis=(1, 2)) <= dist.max_output_weight
    return dict(
        n_in=n_in, weights=weights, biases=biases, acts=acts, gates=gates,
        out_w=out_w, out_b=out_b, y=y, valid=valid,
    )


def _take(group: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in group.items():
        out[k] = [a[idx] for a in v] if isinstance(v, list) else v[idx]
    return out


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in parts[0].items():
        if isinstance(v, list):
            out[k] = [np.concatenate([p[k][l] for p in parts]) for l in range(len(v))]
        else:
            out[k] = np.concatenate([p[k] for p in parts])
    return out


# Units whose sign can be flipped without changing the function (with a bias fix-up for sigmoid).
_ODD = ("identity", "tanh")
_SIGMOID = "sigmoid"


def _canonicalize(group: dict[str, Any], names: Sequence[str]) -> None:
    """In place: flip odd units to bias >= 0, then sort active neurons by bias (inactive last), layer by layer.

    Both keep the function: tanh/identity units satisfy f(-z) = -f(z) (negate the outgoing weights);
    sigmoid(-z) = 1 - sigmoid(z) (negate the outgoing weights and add them to the next biases).
    """
    weights, biases, acts, gates = group["weights"], group["biases"], group["acts"], group["gates"]
    depth = len(weights)
    odd_idx = [k for k, n in enumerate(names) if n in _ODD]
    sig_idx = [k for k, n in enumerate(names) if n == _SIGMOID]
    for l in range(depth):
        nxt_w = weights[l + 1] if l + 1 < depth else group["out_w"]
        nxt_b = biases[l + 1] if l + 1 < depth else group["out_b"]
        neg = gates[l] & (biases[l] < 0)
        odd = neg & np.isin(acts[l], odd_idx)
        sig = neg & np.isin(acts[l], sig_idx)
        flip = odd | sig
        sign = np.where(flip, -1.0, 1.0)
        nxt_b += np.einsum("bj,bjo->bo", sig.astype(np.float64), nxt_w)
        if l + 1 < depth:
            nxt_b *= gates[l + 1]  # keep gated-off neurons all-zero
        weights[l] = weights[l] * sign[:, None, :]
        biases[l] = biases[l] * sign
        nxt_w *= sign[:, :, None]
        key = np.where(gates[l], biases[l], np.inf)
        order = np.argsort(key, axis=1, kind="stable")
        weights[l] = np.take_along_axis(weights[l], order[:, None, :], axis=2)
        biases[l] = np.take_along_axis(biases[l], order, axis=1)
        acts[l] = np.take_along_axis(acts[l], order, axis=1)
        gates[l] = np.take_along_axis(gates[l], order, axis=1)
        nxt_w[:] = np.take_along_axis(nxt_w, order[:, :, None], axis=1)


def sample_batch(
    family: Family,
    dist: Distribution,
    n_mlps: int,
    n_points: int,
    seed: int | Sequence[int],
    *,
    depths: Sequence[int] | None = None,
) -> MLPBatch:
    """n_mlps random MLPs, depth stratified (equal shares of each depth, in depth order), and their outputs
    on n_points shared points. Same family, distribution and seed give the same batch.
    """
    depths = tuple(family.depths if depths is None else depths)
    if n_mlps < 1 or n_points < 2:
        raise InputError(f"sample_batch: need at least 1 MLP and 2 points, got {n_mlps} and {n_points}")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    x = sample_points(family, n_points, rng)
    counts = [n_mlps // len(depths) + (1 if i < n_mlps % len(depths) else 0) for i in range(len(depths))]
    w_max, d_max = family.max_width, family.max_depth
    parts = []
    for depth, count in zip(depths, counts):
        if count == 0:
            continue
        kept: list[dict[str, Any]] = []
        have = 0
        for _ in range(100):
            group = _draw_group(family, dist, depth, count - have + 4 + (count - have) // 4, x, rng)
            idx = np.flatnonzero(group["valid"])[: count - have]
            kept.append(_take(group, idx))
            have += len(idx)
            if have == count:
                break
        else:
            raise InputError(
                f"distribution: could not draw {count} usable depth-{depth} MLPs (nearly all were flat); "
                "raise gain_min or lower min_relative_std"
            )
        group = _concat(kept)
        _canonicalize(group, family.activations)
        m = len(group["n_in"])
        deep = np.zeros((m, d_max - 1, w_max, w_max))
        bias = np.zeros((m, d_max, w_max))
        act = np.zeros((m, d_max, w_max), dtype=np.int64)
        gate = np.zeros((m, d_max, w_max), dtype=bool)
        for l in range(depth):
            if l > 0:
                deep[:, l - 1] = group["weights"][l]
            bias[:, l] = group["biases"][l]
            act[:, l] = group["acts"][l]
            gate[:, l] = group["gates"][l]
        parts.append(dict(
            depth=np.full(m, depth, dtype=np.int64), n_inputs=group["n_in"].astype(np.int64),
            first_weight=group["weights"][0], deep_weight=deep, bias=bias, activation=act, gate=gate,
            output_weight=group["out_w"], output_bias=group["out_b"], y=group["y"],
        ))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return MLPBatch(family=family, x=x, **merged)


def batch_forward(batch: MLPBatch, x: np.ndarray) -> np.ndarray:
    """Outputs (B, P, n_outputs) of every MLP of the batch on points x (P, max_inputs), float64."""
    out = np.empty((batch.size, x.shape[0], batch.family.n_outputs))
    for depth in np.unique(batch.depth):
        sel = batch.depth == depth
        weights = [batch.first_weight[sel]] + [batch.deep_weight[sel, l - 1] for l in range(1, depth)]
        h = _hidden_forward(
            x[None, :, :] * batch.input_mask[sel][:, None, :], weights,
            [batch.bias[sel, l] for l in range(depth)], [batch.activation[sel, l] for l in range(depth)],
            [batch.gate[sel, l] for l in range(depth)], batch.family.activations,
        )
        out[sel] = np.matmul(h, batch.output_weight[sel]) + batch.output_bias[sel][:, None, :]
    return out


def batch_to_sparse_mlp(batch: MLPBatch, index: int) -> SparseMLP:
    """MLP `index` of the batch as a SparseMLP with its own input count (padding columns dropped)."""
    depth, n_in = int(batch.depth[index]), int(batch.n_inputs[index])
    names = batch.family.activations
    layers = []
    for l in range(depth):
        w = batch.first_weight[index, :n_in] if l == 0 else batch.deep_weight[index, l - 1]
        acts = tuple(names[int(k)] for k in batch.activation[index, l])
        layers.append(Layer.make(w, batch.bias[index, l], acts, batch.gate[index, l]))
    output = Layer.make(batch.output_weight[index], batch.output_bias[index], "identity")
    return SparseMLP.make(layers, output, provenance={"generator": "swat_edge.search.embedding.generator", "depth": depth})
