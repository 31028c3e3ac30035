"""The autoencoder over MLPs: encoder -> fixed-size latent vector -> one decoder per depth ("multi-scale")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import EmbeddingConfig
from .decode import NetLayout, SoftNetwork, soft_forward
from .generator import MLPBatch

__all__ = [
    "TorchBatch",
    "to_torch",
    "true_networks",
    "true_forward",
    "encoder_input_size",
    "Autoencoder",
    "Embedding",
    "build_autoencoder",
]

# Fixed seed of the probe points the encoder reads function values on; stored with the weights anyway.
_PROBE_SEED = 20250611


@dataclass(frozen=True)
class TorchBatch:
    """An MLPBatch as float32 torch tensors (see generator.MLPBatch for the layout)."""

    family: Any
    depth: torch.Tensor
    input_mask: torch.Tensor
    first_weight: torch.Tensor
    deep_weight: torch.Tensor
    bias: torch.Tensor
    activation: torch.Tensor
    gate: torch.Tensor
    output_weight: torch.Tensor
    output_bias: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.depth.shape[0])

    def select(self, sel: torch.Tensor) -> "TorchBatch":
        """The MLPs where the boolean mask `sel` (B,) is true (same points)."""
        values = {k: getattr(self, k)[sel] for k in (
            "depth", "input_mask", "first_weight", "deep_weight", "bias", "activation", "gate",
            "output_weight", "output_bias", "y")}
        return TorchBatch(family=self.family, x=self.x, **values)


def to_torch(batch: MLPBatch, device: torch.device | str = "cpu") -> TorchBatch:
    f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return TorchBatch(
        family=batch.family,
        depth=torch.as_tensor(batch.depth, device=device),
        input_mask=f32(batch.input_mask),
        first_weight=f32(batch.first_weight),
        deep_weight=f32(batch.deep_weight),
        bias=f32(batch.bias),
        activation=torch.as_tensor(batch.activation, device=device),
        gate=f32(batch.gate),
        output_weight=f32(batch.output_weight),
        output_bias=f32(batch.output_bias),
        x=f32(batch.x),
        y=f32(batch.y),
    )


def true_networks(tb: TorchBatch, depth: int) -> SoftNetwork:
    """The batch's networks as hard SoftNetworks of `depth` layers (meaningful for MLPs of that depth)."""
    fam = tb.family
    acts = torch.nn.functional.one_hot(tb.activation[:, :depth], fam.n_activations).to(torch.float32)
    weights = (tb.first_weight, *(tb.deep_weight[:, l] for l in range(depth - 1)), tb.output_weight)
    biases = (*(tb.bias[:, l] for l in range(depth)), tb.output_bias)
    gates = tb.gate[:, :depth]
    return SoftNetwork(
        activations=tuple(fam.activations), weights=weights, biases=biases,
        activation_logits=acts, gate_logits=gates, activation_probs=acts, gate_probs=gates,
    )


def true_forward(tb: TorchBatch, x: torch.Tensor) -> torch.Tensor:
    """Outputs (B, P, n_outputs) of the batch's own MLPs on shared points x (P, max_inputs), padding masked."""
    out = torch.zeros(tb.size, x.shape[0], tb.family.n_outputs, dtype=x.dtype, device=x.device)
    xm = x.unsqueeze(0) * tb.input_mask[:, None, :]
    for depth in torch.unique(tb.depth).tolist():
        sel = tb.depth == depth
        out[sel] = soft_forward(true_networks(tb.select(sel), int(depth)), xm[sel])
    return out


def encoder_input_size(config: EmbeddingConfig) -> int:
    f, a = config.family, config.architecture
    w, d = f.max_width, f.max_depth
    params = f.max_inputs * w + (d - 1) * w * w + d * w + d * w * f.n_activations + d * w + w * f.n_outputs + f.n_outputs
    return params + len(f.depths) + f.max_inputs + a.probe_points * f.n_outputs


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Encoder (MLP over the canonical, asinh-squashed parameters, the one-hot activations and gates, depth and
    input count, plus the function's values on fixed probe points) -> latent, layer-normalised without affine
    (so random N(0, 1) starts of a search land where the decoders were trained) -> one MLP decoder per depth."""

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        f, a = config.family, config.architecture
        self.encoder = _mlp([encoder_input_size(config)] + [a.encoder_hidden] * a.encoder_layers + [a.latent_dim])
        self.latent_norm = nn.LayerNorm(a.latent_dim, elementwise_affine=False)
        self.decoders = nn.ModuleList(
            _mlp([a.latent_dim] + [a.decoder_hidden] * a.decoder_layers + [NetLayout(f, k).size]) for k in f.depths
        )
        gen = torch.Generator().manual_seed(_PROBE_SEED)
        self.register_buffer("probe_x", torch.rand(a.probe_points, f.max_inputs, generator=gen) * 2 - 1)

    def encoder_features(self, tb: TorchBatch) -> torch.Tensor:
        f = self.config.family
        b = tb.size
        gate = tb.gate
        one_hot = torch.nn.functional.one_hot(tb.activation, f.n_activations).to(torch.float32) * gate[..., None]
        depth_hot = torch.nn.functional.one_hot(tb.depth - f.min_depth, len(f.depths)).to(torch.float32)
        parts = [
            torch.asinh(tb.first_weight).reshape(b, -1),
            torch.asinh(tb.deep_weight).reshape(b, -1),
            torch.asinh(tb.bias).reshape(b, -1),
            one_hot.reshape(b, -1),
            gate.reshape(b, -1),
            torch.asinh(tb.output_weight).reshape(b, -1),
            torch.asinh(tb.output_bias).reshape(b, -1),
            depth_hot,
            tb.input_mask,
        ]
        if self.probe_x.shape[0]:
            parts.append(true_forward(tb, self.probe_x).clamp(-20.0, 20.0).reshape(b, -1))
        return torch.cat(parts, dim=1)

    def encode(self, tb: TorchBatch) -> torch.Tensor:
        """Latents (B, latent_dim) of the batch's MLPs."""
        return self.latent_norm(self.encoder(self.encoder_features(tb)))

    def decode(self, latents: torch.Tensor, depth: int) -> torch.Tensor:
        """The depth-`depth` decoder's flat output (B, NetLayout(family, depth).size); see decode.split_output."""
        return self.decoders[depth - self.config.family.min_depth](latents)

    def forward(
        self, tb: TorchBatch, latent_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Training pass (what DDP wraps): latents and every decoder's flat output, decoded from the latents
        plus `latent_noise` when given (noise makes nearby latents decode to nearby functions)."""
        latents = self.encode(tb)
        noisy = latents if latent_noise is None else latents + latent_noise
        return latents, [decoder(noisy) for decoder in self.decoders]


def build_autoencoder(config: EmbeddingConfig, seed: int = 0) -> Autoencoder:
    """A freshly initialised autoencoder; same config and seed give the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Autoencoder(config)


@dataclass(frozen=True)
class Embedding:
    """A trained (or loaded) embedding: its config, module (in eval mode), training steps and metrics."""

    config: EmbeddingConfig
    module: Autoencoder
    steps: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    source: str = ""

    def encode(self, tb: TorchBatch) -> torch.Tensor:
        return self.module.encode(tb)

    def decode(self, latents: torch.Tensor, depth: int) -> torch.Tensor:
        return self.module.decode(latents, depth)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())
