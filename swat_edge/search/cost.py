"""Differentiable face of the cost model: swat_edge.device.cost's formula on soft (torch) gates, activation mixes, weights.

The search relaxes a network into neuron gates in [0, 1], per-neuron activation probabilities and soft
non-zero weight indicators; `estimate_soft` turns those into a latency (and bytes, and peak memory) that
gradients flow through. It calls the very same `network_counts` and `latency_us` as the numpy face, so on a
hard network (0/1 gates, one-hot activations) both give the same numbers. This is the only module of the
cost model that imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..device.cost import (ACTIVATION_BYTES, Counts, LayerQuantities, deployed_bytes, latency_us, model_quantities,
                           network_counts)
from ..device.targets import TargetProfile, load_target
from ..errors import UsageError
from ..model import ACTIVATIONS, SparseMLP

__all__ = ["SoftEstimate", "soft_layer", "estimate_soft", "layers_from_model"]


@dataclass(frozen=True)
class SoftEstimate:
    """0-d tensors (differentiable where the inputs require grad)."""

    latency_us: torch.Tensor  # one call at the requested batch size
    model_bytes: torch.Tensor
    peak_activation_bytes: torch.Tensor
    counts: Counts


def soft_layer(
    gates: torch.Tensor, activation_probs: torch.Tensor, nonzero: torch.Tensor | None = None
) -> LayerQuantities:
    """Check shapes and wrap one hidden layer's soft quantities.

    gates (n,), activation_probs (n, len(ACTIVATIONS)) with rows summing to 1, nonzero (n_in, n) or None.
    """
    if gates.ndim != 1:
        raise UsageError(f"gates must be 1-D (n,), got shape {tuple(gates.shape)}")
    n = gates.shape[0]
    if tuple(activation_probs.shape) != (n, len(ACTIVATIONS)):
        raise UsageError(
            f"activation_probs must have shape ({n}, {len(ACTIVATIONS)}) (columns: {', '.join(ACTIVATIONS)}), "
            f"got {tuple(activation_probs.shape)}"
        )
    if nonzero is not None and (nonzero.ndim != 2 or nonzero.shape[1] != n):
        raise UsageError(f"nonzero must have shape (n_in, {n}), got {tuple(nonzero.shape)}")
    return LayerQuantities(gates=gates, activation_probs=activation_probs, nonzero=nonzero)


def estimate_soft(
    hidden: Sequence[LayerQuantities],
    *,
    n_inputs: int | torch.Tensor,
    n_outputs: int,
    target: TargetProfile | str,
    dtype: str = "fp32",
    batch_size: int = 1,
    output_nonzero: torch.Tensor | None = None,
    input_affine: int = 0,
    output_affine: int = 0,
) -> SoftEstimate:
    """Expected cost of the relaxed network on `target` (see swat_edge.device.cost for the counting rules).

    Chained layers must agree in size: layer i's nonzero has as many rows as layer i-1 has neurons.
    input_affine / output_affine: Mul/Add nodes the deployed graph keeps for scaling (cost.affine_nodes of
    the model's scale and offset; `swat-edge export` keeps the input scaling for int8 and folds it for fp32).
    """
    profile = target if isinstance(target, TargetProfile) else load_target(target)
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    prev = None
    for i, layer in enumerate(hidden):
        if prev is not None and layer.nonzero is not None and layer.nonzero.shape[0] != prev:
            raise UsageError(f"hidden layer {i}: nonzero has {layer.nonzero.shape[0]} rows, the previous layer {prev} neurons")
        prev = layer.gates.shape[0]
    counts = network_counts(
        hidden,
        n_inputs=n_inputs,
        n_outputs=n_outputs,
        output_nonzero=output_nonzero,
        dtype=dtype,
        sparse_kernel=profile.runtime.sparse_kernel,
        gemm_column_block=profile.runtime.gemm_column_block,
        input_affine=input_affine,
        output_affine=output_affine,
    )
    return SoftEstimate(
        latency_us=latency_us(counts, profile.cost, batch_size),
        model_bytes=deployed_bytes(counts, profile),
        peak_activation_bytes=ACTIVATION_BYTES * batch_size * counts.peak_elements,
        counts=counts,
    )


def layers_from_model(
    model: SparseMLP, *, dtype: torch.dtype = torch.float64
) -> tuple[list[LayerQuantities], torch.Tensor]:
    """A hard model's quantities as tensors: (hidden layers, output non-zero indicators)."""
    hidden, output_nonzero = model_quantities(model)
    as_tensor = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    layers = [
        LayerQuantities(as_tensor(h.gates), as_tensor(h.activation_probs), as_tensor(h.nonzero)) for h in hidden
    ]
    return layers, as_tensor(output_nonzero)
