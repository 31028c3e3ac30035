"""The search objective: data fit, sparsity and compactness penalties, and the target's predicted latency and size.

Every penalty is scaled by the candidate's current MSE (detached), so each candidate minimises, in effect,
log(MSE) + P: P is a trade-off in *relative* error ("1% less latency is worth latency_weight % more MSE"),
whatever the data's scale. The prototype measured the paper's fixed -0.4 x std(gates) term dominating an
MSE of 1e-2..1e-4 and switching half the neurons off (reference/embedding-findings.md); relative terms cannot.

Relaxation at temperature T (annealed from 1 toward ~0.05; at T = 1 the decoder is in its training regime):
activation mix softmax(logits / T), neuron gates sigmoid(gate_logits / T), weight keep probabilities
sigmoid((|w| - t) / (weight_softness x T)) with a learnable threshold t per candidate; the hard network is
their limit (argmax, gate logit >= 0, |w| >= t), exactly what decode.to_sparse_mlp exports.

Speed: the search's cost is per tensor operation, not per candidate (a step is a few hundred tiny ops), so all
candidates of every depth run as ONE batch of max-depth networks (`stack_networks`): layers past a candidate's
depth are identity layers (weights I, bias 0, identity activation, gate 1) that pass the last real layer through
unchanged, and are left out of every penalty and cost. The cost model (swat_edge.search.cost) costs one network
per call, ~4 ms with its gradient; `LinearizedCost` evaluates it exactly every few steps and uses its first-order
Taylor expansion in the relaxed quantities in between, which is batched and nearly free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from ..device.targets import TargetProfile
from ..model import ACTIVATIONS
from .cost import estimate_soft, soft_layer
from .embedding.decode import SoftNetwork

__all__ = [
    "ObjectiveWeights",
    "Budgets",
    "Stack",
    "Relaxed",
    "stack_networks",
    "unstack",
    "relax",
    "harden_stack",
    "expected_nonzero_params",
    "penalties",
    "cost_penalty",
    "LinearizedCost",
    "activation_matrix",
]


@dataclass(frozen=True)
class ObjectiveWeights:
    """Weights of the penalty terms, each multiplying the candidate's current MSE (see the module docstring).

    compactness: -mean over layers of std(gates) + 0.1 mean(gates) (pushes gates to 0/1 and toward fewer neurons).
    sparsity: expected non-zero parameters / the family's largest parameter count (the paper's smooth L0).
    l1: mean |w| of the kept weights.
    latency / size: log of the predicted latency (us) / model bytes on the target (the trade-off knobs).
    budget: hinge on log(predicted / (budget_margin x budget)) for each budget given.
    """

    compactness: float = 0.1
    sparsity: float = 0.3
    l1: float = 0.01
    latency: float = 0.1
    size: float = 0.0
    budget: float = 5.0
    budget_margin: float = 0.9


@dataclass(frozen=True)
class Budgets:
    """Hard limits on the deployed model (None: no limit)."""

    latency_us: float | None = None
    size_bytes: float | None = None

    @property
    def any(self) -> bool:
        return self.latency_us is not None or self.size_bytes is not None

    def violation(self, latency_us: float, size_bytes: float) -> float:
        """The largest relative overshoot, max(predicted / budget) - 1, floored at 0 (0: every budget met)."""
        ratios = [0.0]
        if self.latency_us is not None:
            ratios.append(latency_us / self.latency_us - 1.0)
        if self.size_bytes is not None:
            ratios.append(size_bytes / self.size_bytes - 1.0)
        return max(max(ratios), 0.0)


@dataclass(frozen=True)
class Stack:
    """Decoded networks of several depths as one batch of depth-D networks (raw decoder values, temperature 1).

    net.activations is the family's list, plus "identity" when the family lacks it (for the padding layers);
    activation_logits keep the family's columns only. live (B, D): which layers are real; depth (B,).
    """

    net: SoftNetwork
    live: torch.Tensor
    depth: torch.Tensor
    family_activations: tuple[str, ...]

    @property
    def identity(self) -> int:
        return self.net.activations.index("identity")


def stack_networks(nets: Sequence[SoftNetwork], max_depth: int) -> Stack:
    """Concatenate decoded SoftNetworks (one per depth, any batch sizes) into one Stack of depth max_depth."""
    family_acts = nets[0].activations
    names = family_acts if "identity" in family_acts else (*family_acts, "identity")
    weights: list[list[torch.Tensor]] = [[] for _ in range(max_depth + 1)]
    biases: list[list[torch.Tensor]] = [[] for _ in range(max_depth + 1)]
    act_logits, gate_logits, live, depth = [], [], [], []
    for net in nets:
        k, b = net.depth, net.batch_size
        width = net.gate_logits.shape[-1]
        ref = net.weights[0]
        eye = torch.eye(width, dtype=ref.dtype).expand(b, width, width)
        for l in range(max_depth):
            weights[l].append(net.weights[l] if l < k else eye)
            biases[l].append(net.biases[l] if l < k else ref.new_zeros(b, width))
        weights[-1].append(net.weights[-1])
        biases[-1].append(net.biases[-1])
        pad = max_depth - k
        act_logits.append(F.pad(net.activation_logits, (0, 0, 0, 0, 0, pad)))
        gate_logits.append(F.pad(net.gate_logits, (0, 0, 0, pad)))
        live.append((torch.arange(max_depth) < k).expand(b, max_depth))
        depth.append(torch.full((b,), k, dtype=torch.long))
    logits = torch.cat(act_logits)
    gates = torch.cat(gate_logits)
    stacked = SoftNetwork(
        activations=tuple(names),
        weights=tuple(torch.cat(w) for w in weights),
        biases=tuple(torch.cat(b) for b in biases),
        activation_logits=logits, gate_logits=gates, activation_probs=logits, gate_probs=gates,
    )
    return Stack(net=stacked, live=torch.cat(live), depth=torch.cat(depth), family_activations=tuple(family_acts))


def unstack(stack: Stack, index: int) -> SoftNetwork:
    """Candidate `index` as a batch-of-one SoftNetwork of its own depth (family activations, temperature 1)."""
    k = int(stack.depth[index])
    net = stack.net
    n_act = len(stack.family_activations)
    logits = net.activation_logits[index : index + 1, :k, :, :n_act]
    gates = net.gate_logits[index : index + 1, :k]
    return SoftNetwork(
        activations=stack.family_activations,
        weights=(*(w[index : index + 1] for w in net.weights[:k]), net.weights[-1][index : index + 1]),
        biases=(*(b[index : index + 1] for b in net.biases[:k]), net.biases[-1][index : index + 1]),
        activation_logits=logits, gate_logits=gates, activation_probs=torch.softmax(logits, dim=-1),
        gate_probs=torch.sigmoid(gates),
    )


@dataclass(frozen=True)
class Relaxed:
    """A Stack relaxed (or hardened) at one temperature, ready for soft_forward and the penalties.

    net: weights multiplied by `keep`, tempered activation_probs (over net.activations) and gates; padding layers
    are exact identity layers. keep: per layer (hidden..., output) (B, n_in, n_out) weight keep probabilities
    (1 on padding layers). live, depth: as in Stack. n_inputs: the data's real input count.
    """

    net: SoftNetwork
    keep: tuple[torch.Tensor, ...]
    live: torch.Tensor
    depth: torch.Tensor
    n_inputs: int

    @property
    def gates(self) -> torch.Tensor:
        return self.net.gate_probs

    @property
    def activation_probs(self) -> torch.Tensor:
        return self.net.activation_probs


def _assemble(stack: Stack, keep: Sequence[torch.Tensor], probs_family: torch.Tensor, gates: torch.Tensor,
              n_inputs: int) -> Relaxed:
    """Put padding layers back to identity (keep 1, identity activation, gate 1) and build the Relaxed."""
    net, live = stack.net, stack.live
    n_layers = live.shape[1]
    keep = [torch.where(live[:, l, None, None], keep[l], torch.ones_like(keep[l])) if l < n_layers else keep[l]
            for l in range(len(keep))]
    extra = len(net.activations) - probs_family.shape[-1]
    probs = F.pad(probs_family, (0, extra)) if extra else probs_family
    identity = F.one_hot(torch.tensor(stack.identity), len(net.activations)).to(probs.dtype)
    probs = torch.where(live[:, :, None, None], probs, identity)
    gates = torch.where(live[:, :, None], gates, torch.ones_like(gates))
    relaxed_net = replace(
        net, weights=tuple(w * k for w, k in zip(net.weights, keep)), activation_probs=probs, gate_probs=gates
    )
    return Relaxed(net=relaxed_net, keep=tuple(keep), live=live, depth=stack.depth, n_inputs=n_inputs)


def relax(stack: Stack, thresholds: torch.Tensor, *, temperature: float, weight_softness: float,
          n_inputs: int) -> Relaxed:
    """The relaxed networks at `temperature`, with one learnable weight threshold per candidate (B,)."""
    t = thresholds.reshape(-1, 1, 1)
    keep = [torch.sigmoid((w.abs() - t) / (weight_softness * temperature)) for w in stack.net.weights]
    probs = torch.softmax(stack.net.activation_logits / temperature, dim=-1)
    gates = torch.sigmoid(stack.net.gate_logits / temperature)
    return _assemble(stack, keep, probs, gates, n_inputs)


def harden_stack(stack: Stack, thresholds: torch.Tensor, n_inputs: int) -> Relaxed:
    """The hard networks (what to_sparse_mlp exports): argmax activations, gate logit >= 0, |w| >= threshold."""
    t = thresholds.reshape(-1, 1, 1)
    keep = [(w.abs() >= t).to(w.dtype) for w in stack.net.weights]
    logits = stack.net.activation_logits
    probs = F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    gates = (stack.net.gate_logits >= 0).to(logits.dtype)
    return _assemble(stack, keep, probs, gates, n_inputs)


def _real_keep(relaxed: Relaxed) -> list[torch.Tensor]:
    """keep with the first layer cut to the real inputs (padding columns are fed zeros and never deployed)."""
    return [relaxed.keep[0][:, : relaxed.n_inputs], *relaxed.keep[1:]]


def expected_nonzero_params(relaxed: Relaxed) -> torch.Tensor:
    """(B,) expected non-zero weights between kept neurons + biases of kept neurons + output biases (the paper's
    parameter count; exact on hard networks)."""
    gates, live = relaxed.gates, relaxed.live.to(relaxed.gates.dtype)
    keep = _real_keep(relaxed)
    n_hidden = live.shape[1]
    total = torch.zeros(gates.shape[0], dtype=gates.dtype)
    src = None
    for l in range(n_hidden):
        dest = gates[:, l]
        w = keep[l] * dest[:, None, :] if src is None else keep[l] * src[:, :, None] * dest[:, None, :]
        total = total + live[:, l] * (w.sum(dim=(1, 2)) + dest.sum(dim=1))
        src = dest if src is None else torch.where(relaxed.live[:, l, None], dest, src)
    assert src is not None, "bug: a stack without hidden layers"
    out = keep[-1] * src[:, :, None]
    return total + out.sum(dim=(1, 2)) + keep[-1].shape[2]


def penalties(relaxed: Relaxed, weights: ObjectiveWeights, param_scale: float) -> torch.Tensor:
    """(B,) structural penalty of each candidate: compactness + sparsity + l1, over its real layers only."""
    gates, live = relaxed.gates, relaxed.live.to(relaxed.gates.dtype)
    n_live = live.sum(dim=1)
    compact = (-(gates.std(dim=2, unbiased=False) * live).sum(dim=1) + 0.1 * (gates.mean(dim=2) * live).sum(dim=1))
    compact = compact / n_live
    sparse = expected_nonzero_params(relaxed) / param_scale
    weights_real = [relaxed.net.weights[0][:, : relaxed.n_inputs], *relaxed.net.weights[1:]]
    abs_sum = sum(w.abs().sum(dim=(1, 2)) * (live[:, l] if l < live.shape[1] else 1.0)
                  for l, w in enumerate(weights_real))
    count = sum(w[0].numel() * (live[:, l] if l < live.shape[1] else 1.0) for l, w in enumerate(weights_real))
    return weights.compactness * compact + weights.sparsity * sparse + weights.l1 * abs_sum / count


def cost_penalty(
    latency_us: torch.Tensor, size_bytes: torch.Tensor, weights: ObjectiveWeights, budgets: Budgets
) -> torch.Tensor:
    """(B,) latency and size terms: the trade-off (log) plus a hinge per budget."""
    penalty = weights.latency * torch.log(latency_us) + weights.size * torch.log(size_bytes)
    margin = math.log(weights.budget_margin)
    if budgets.latency_us is not None:
        penalty = penalty + weights.budget * F.relu(torch.log(latency_us / budgets.latency_us) - margin)
    if budgets.size_bytes is not None:
        penalty = penalty + weights.budget * F.relu(torch.log(size_bytes / budgets.size_bytes) - margin)
    return penalty


def activation_matrix(names: Sequence[str], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(len(names), len(ACTIVATIONS)) 0/1 matrix mapping an activation order onto model.ACTIVATIONS."""
    m = torch.zeros(len(names), len(ACTIVATIONS), dtype=dtype)
    for i, name in enumerate(names):
        m[i, ACTIVATIONS.index(name)] = 1.0
    return m


class LinearizedCost:
    """Predicted latency_us and model bytes per candidate, from swat_edge.search.cost, linearised between refreshes.

    refresh(relaxed) evaluates the cost model exactly (one call per candidate, on its real layers) and its
    gradient; __call__(relaxed) returns (latency_us (B,), bytes (B,)) as value + gradient . (quantities -
    quantities at the last refresh): differentiable, batched, exact at each refresh. with_size=False skips the
    gradient of the bytes (then constant between refreshes).
    """

    def __init__(
        self,
        target: TargetProfile,
        *,
        n_inputs: int,
        n_outputs: int,
        activations: Sequence[str],
        dtype: str = "fp32",
        input_affine: int = 0,
        with_size: bool = True,
    ) -> None:
        self.target = target
        self.with_size = with_size
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.dtype = dtype
        self.input_affine = input_affine
        self.to_model_order = activation_matrix(activations)
        self._anchor: tuple[torch.Tensor, ...] | None = None
        self._values: tuple[torch.Tensor, torch.Tensor] | None = None
        self._grads: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None

    @staticmethod
    def _quantities(relaxed: Relaxed) -> tuple[torch.Tensor, ...]:
        return (relaxed.gates, relaxed.activation_probs, *_real_keep(relaxed))

    def exact(self, quantities: Sequence[torch.Tensor], depth: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(latency_us (B,), model bytes (B,)) from cost_torch.estimate_soft, one candidate at a time."""
        gates, probs, *keep = quantities
        probs = torch.matmul(probs, self.to_model_order.to(probs.dtype))
        latency, size = [], []
        for b, k in enumerate(depth):
            layers = [soft_layer(gates[b, l], probs[b, l], keep[l][b]) for l in range(k)]
            est = estimate_soft(
                layers, n_inputs=self.n_inputs, n_outputs=self.n_outputs, target=self.target, dtype=self.dtype,
                output_nonzero=keep[-1][b], input_affine=self.input_affine,
            )
            latency.append(est.latency_us)
            size.append(est.model_bytes)
        return torch.stack(latency), torch.stack(size)

    def refresh(self, relaxed: Relaxed) -> None:
        leaves = tuple(q.detach().clone().requires_grad_(True) for q in self._quantities(relaxed))
        with torch.enable_grad():
            latency, size = self.exact(leaves, [int(k) for k in relaxed.depth])
            g_latency = torch.autograd.grad(latency.sum(), leaves, retain_graph=self.with_size, allow_unused=True)
            # bytes only steer the search under a size weight or budget; skipping their gradient saves ~30%
            g_size = torch.autograd.grad(size.sum(), leaves, allow_unused=True) if self.with_size else \
                (None,) * len(leaves)

        def fill(grads: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, ...]:
            return tuple(torch.zeros_like(q) if g is None else g for q, g in zip(leaves, grads))

        self._anchor = tuple(q.detach() for q in leaves)
        self._values = (latency.detach(), size.detach())
        self._grads = (fill(g_latency), fill(g_size))

    def __call__(self, relaxed: Relaxed) -> tuple[torch.Tensor, torch.Tensor]:
        if self._anchor is None:
            self.refresh(relaxed)
        assert self._anchor is not None and self._values is not None and self._grads is not None, "bug: no refresh"
        quantities = self._quantities(relaxed)
        out = []
        for value, grads in zip(self._values, self._grads):
            delta = sum(((q - a) * g).flatten(1).sum(1) for q, a, g in zip(quantities, self._anchor, grads))
            # far from the anchor a first-order step can overshoot below zero; latency and bytes stay positive
            out.append(torch.clamp(value + delta, min=1e-3 * float(value.min()) + 1e-9))
        return out[0], out[1]
