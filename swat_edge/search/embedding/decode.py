"""Latent -> network: differentiable soft networks, their torch forward, and the hard decode to a SparseMLP.

A decoder of depth k emits, per latent, a flat vector laid out as `NetLayout` says: first-layer weights
(max_inputs x W), deeper hidden weights ((k-1) x W x W), hidden biases (k x W), activation logits
(k x W x n_activations), gate logits (k x W), output weights (W x n_outputs) and output biases. `SoftNetwork`
holds that vector split into tensors; `soft_forward` runs it (activation mix = softmax(logits / temperature),
gates = sigmoid(logits)); `harden` makes it the network `to_sparse_mlp` exports (argmax activation, gate kept iff
probability >= 0.5, |w| < threshold -> 0), optionally with straight-through gradients for training.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from ...model import LEAKY_RELU_SLOPE, Layer, SparseMLP
from .family import Family

__all__ = [
    "NetLayout",
    "SoftNetwork",
    "split_output",
    "decode_soft",
    "with_temperature",
    "harden",
    "soft_forward",
    "pad_inputs",
    "to_sparse_mlp",
    "activation_fn",
]


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The torch twin of swat_edge.model.apply_activation (also what examples/make_example.py trains with)."""
    if name == "identity":
        return lambda z: z
    if name == "relu":
        return torch.relu
    if name == "leaky_relu":
        return lambda z: F.leaky_relu(z, LEAKY_RELU_SLOPE)
    if name == "tanh":
        return torch.tanh
    if name == "sigmoid":
        return torch.sigmoid
    raise ValueError(f"bug: unknown activation {name!r}")


@dataclass(frozen=True)
class NetLayout:
    """Where each tensor of a depth-k network sits in a decoder's flat output."""

    family: Family
    depth: int

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        f, k, w = self.family, self.depth, self.family.max_width
        return {
            "first_weight": (f.max_inputs, w),
            "deep_weight": (k - 1, w, w),
            "bias": (k, w),
            "activation_logits": (k, w, f.n_activations),
            "gate_logits": (k, w),
            "output_weight": (w, f.n_outputs),
            "output_bias": (f.n_outputs,),
        }

    @property
    def size(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes.values())

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        if flat.ndim != 2 or flat.shape[1] != self.size:
            raise InputError(f"decoder output has shape {tuple(flat.shape)}; depth {self.depth} needs (batch, {self.size})")
        out, start = {}, 0
        for name, shape in self.shapes.items():
            n = int(np.prod(shape))
            out[name] = flat[:, start : start + n].reshape(flat.shape[0], *shape)
            start += n
        return out


@dataclass(frozen=True)
class SoftNetwork:
    """A batch of decoded depth-k networks. weights[l] (B, n_in, n_out) and biases[l] (B, n_out) for the k
    hidden layers and then the output layer; activation_probs (B, k, W, A) over `activations`; gate_probs
    (B, k, W) in [0, 1]. The logits are kept so a search can re-temper them."""

    activations: tuple[str, ...]
    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    activation_logits: torch.Tensor
    gate_logits: torch.Tensor
    activation_probs: torch.Tensor
    gate_probs: torch.Tensor

    @property
    def depth(self) -> int:
        return len(self.weights) - 1

    @property
    def batch_size(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def max_inputs(self) -> int:
        return int(self.weights[0].shape[1])


def split_output(flat: torch.Tensor, family: Family, depth: int, *, temperature: float = 1.0) -> SoftNetwork:
    """A decoder's flat output (B, NetLayout(family, depth).size) as a SoftNetwork at `temperature`."""
    parts = NetLayout(family, depth).split(flat)
    weights = (parts["first_weight"], *(parts["deep_weight"][:, l] for l in range(depth - 1)), parts["output_weight"])
    biases = (*(parts["bias"][:, l] for l in range(depth)), parts["output_bias"])
    net = SoftNetwork(
        activations=tuple(family.activations),
        weights=weights,
        biases=biases,
        activation_logits=parts["activation_logits"],
        gate_logits=parts["gate_logits"],
        activation_probs=parts["activation_logits"],
        gate_probs=torch.sigmoid(parts["gate_logits"]),
    )
    return with_temperature(net, temperature)


def with_temperature(net: SoftNetwork, temperature: float) -> SoftNetwork:
    """The same network with activation_probs = softmax(activation_logits / temperature)."""
    if not temperature > 0:
        raise InputError(f"temperature is {temperature}; it must be > 0 (use harden() for argmax)")
    return replace(net, activation_probs=torch.softmax(net.activation_logits / temperature, dim=-1))


def decode_soft(embedding: Any, latents: torch.Tensor, depth: int, *, temperature: float = 1.0) -> SoftNetwork:
    """Decode latents (B, latent_dim) with the depth-`depth` decoder of `embedding` (an Embedding or its
    Autoencoder module) into soft networks; differentiable in the latents."""
    module = getattr(embedding, "module", embedding)
    family = module.config.family
    if depth not in family.depths:
        raise InputError(f"depth {depth}: this embedding decodes depths {family.min_depth}..{family.max_depth}")
    if latents.ndim != 2 or latents.shape[1] != module.config.architecture.latent_dim:
        raise InputError(
            f"latents have shape {tuple(latents.shape)}; expected (batch, {module.config.architecture.latent_dim})"
        )
    return split_output(module.decode(latents, depth), family, depth, temperature=temperature)


def _hard_or_st(hard: torch.Tensor, soft: torch.Tensor, straight_through: bool) -> torch.Tensor:
    return hard + soft - soft.detach() if straight_through else hard


def harden(net: SoftNetwork, *, weight_threshold: float = 0.0, straight_through: bool = False) -> SoftNetwork:
    """The hard network: one-hot argmax activations, gates 1 iff probability >= 0.5, |w| < threshold -> 0.

    With straight_through=True the forward pass is the hard network and gradients flow as if it were soft.
    """
    probs = net.activation_probs
    one_hot = F.one_hot(probs.argmax(dim=-1), probs.shape[-1]).to(probs.dtype)
    gates = (net.gate_probs >= 0.5).to(net.gate_probs.dtype)
    weights = net.weights
    if weight_threshold > 0:
        weights = tuple(
            _hard_or_st(w * (w.abs() >= weight_threshold).to(w.dtype), w, straight_through) for w in weights
        )
    return replace(
        net,
        weights=weights,
        activation_probs=_hard_or_st(one_hot, probs, straight_through),
        gate_probs=_hard_or_st(gates, net.gate_probs, straight_through),
    )


def pad_inputs(x: torch.Tensor, max_inputs: int) -> torch.Tensor:
    """Zero-pad the last axis of x to max_inputs columns: how data with fewer inputs enters the family."""
    n = x.shape[-1]
    if n > max_inputs:
        raise InputError(f"inputs have {n} columns; this embedding takes at most {max_inputs}")
    return x if n == max_inputs else F.pad(x, (0, max_inputs - n))


# Every activation is a fixed combination of four basis functions (leaky_relu = 0.99 relu + 0.01 z), so a
# soft mix of five activations costs four elementwise passes, and the gate folds into the coefficients.
_BASIS_FNS = {"z": lambda z: z, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
_BASIS_OF = {
    "identity": {"z": 1.0},
    "relu": {"relu": 1.0},
    "leaky_relu": {"relu": 1.0 - LEAKY_RELU_SLOPE, "z": LEAKY_RELU_SLOPE},
    "tanh": {"tanh": 1.0},
    "sigmoid": {"sigmoid": 1.0},
}
_BASIS_CACHE: dict[tuple[tuple[str, ...], torch.dtype, torch.device], tuple[tuple[str, ...], torch.Tensor]] = {}


def _basis(names: Sequence[str], like: torch.Tensor) -> tuple[tuple[str, ...], torch.Tensor]:
    key = (tuple(names), like.dtype, like.device)
    if key not in _BASIS_CACHE:
        used = tuple(b for b in _BASIS_FNS if any(b in _BASIS_OF[n] for n in names))
        matrix = torch.tensor([[_BASIS_OF[n].get(b, 0.0) for b in used] for n in names], dtype=like.dtype)
        _BASIS_CACHE[key] = (used, matrix.to(like.device))
    return _BASIS_CACHE[key]


def _mix(z: torch.Tensor, probs: torch.Tensor, gates: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """gate * sum_k probs_k * act_k(z): z (B, P, W), probs (B, W, A), gates (B, W)."""
    used, matrix = _basis(names, z)
    coef = torch.matmul(probs, matrix) * gates[..., None]  # (B, W, n_basis)
    out = None
    for j, name in enumerate(used):
        c = coef[..., j]
        if not c.requires_grad and not bool((c != 0).any()):
            continue  # hard networks: most basis functions carry no weight
        term = _BASIS_FNS[name](z)
        out = term * c[:, None, :] if out is None else torch.addcmul(out, term, c[:, None, :])
    return torch.zeros_like(z) if out is None else out


def soft_hidden(net: SoftNetwork, x: torch.Tensor) -> torch.Tensor:
    """What the output layer sees: (B, P, W) activations of the last hidden layer (the inputs, padded, for a
    network without one) on inputs x: (P, n) shared or (B, P, n) per network."""
    x = pad_inputs(x, net.max_inputs)
    h = x.unsqueeze(0).expand(net.batch_size, -1, -1) if x.ndim == 2 else x
    for l in range(net.depth):
        z = torch.matmul(h, net.weights[l]) + net.biases[l][:, None, :]
        h = _mix(z, net.activation_probs[:, l], net.gate_probs[:, l], net.activations)
    return h


def soft_forward(net: SoftNetwork, x: torch.Tensor) -> torch.Tensor:
    """Outputs (B, P, n_outputs) of the soft networks on inputs x: (P, n) shared or (B, P, n) per network,
    n <= max_inputs (missing columns are zero-padded)."""
    return torch.matmul(soft_hidden(net, x), net.weights[-1]) + net.biases[-1][:, None, :]


def to_sparse_mlp(
    net: SoftNetwork,
    index: int = 0,
    *,
    n_inputs: int | None = None,
    weight_threshold: float = 0.0,
    **model_fields: Any,
) -> SparseMLP:
    """Hard-decode network `index` of the batch into a SparseMLP (the bridge to the torch-free side).

    n_inputs: keep only the first n_inputs input rows (the rest are padding fed zeros); default max_inputs.
    model_fields: passed to SparseMLP.make (input_scale, output_offset, feature_names, provenance, ...).
    """
    n_inputs = net.max_inputs if n_inputs is None else n_inputs
    if not 1 <= n_inputs <= net.max_inputs:
        raise InputError(f"n_inputs is {n_inputs}; this network takes 1..{net.max_inputs}")
    if not 0 <= index < net.batch_size:
        raise InputError(f"index {index}: the batch holds {net.batch_size} networks")
    hard = harden(net, weight_threshold=weight_threshold)

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    act_idx = hard.activation_probs[index].argmax(dim=-1).cpu().numpy()
    gates = arr(hard.gate_probs[index]) >= 0.5
    hidden = []
    for l in range(net.depth):
        w = arr(hard.weights[l][index])
        if l == 0:
            w = w[:n_inputs]
        acts = tuple(net.activations[int(k)] for k in act_idx[l])
        hidden.append(Layer.make(w, arr(hard.biases[l][index]), acts, gates[l]))
    output = Layer.make(arr(hard.weights[-1][index]), arr(hard.biases[-1][index]), "identity")
    return SparseMLP.make(hidden, output, **model_fields)
