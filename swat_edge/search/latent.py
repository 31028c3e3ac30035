"""Gradient search in an embedding's latent space (decoders frozen), and weight-space fine-tuning.

`optimise_latents` is the search `swat-edge search` runs: several starts per depth (encoded random MLPs of the
family) optimised together in one batched loop, with the objective of swat_edge.search.objective (fit,
sparsity, compactness, the target's predicted latency and size, budgets), the activation/gate/weight relaxation
annealed toward the hard network, and every few steps each start hard-decoded and scored on a validation
split; it returns each start's best hard iterate. `search_latent` is the minimal version without penalties
(used by `swat-edge embed eval` to measure what the decoder alone gives). `fine_tune` trains the surviving
weights of a hard network with its masks frozen.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..device.targets import TargetProfile
from ..errors import InputError
from ..model import ACTIVATIONS, Layer, SparseMLP, forward
from .embedding.decode import NetLayout, SoftNetwork, decode_soft, harden, soft_forward, soft_hidden, to_sparse_mlp
from .objective import (
    Budgets,
    LinearizedCost,
    ObjectiveWeights,
    Stack,
    cost_penalty,
    expected_nonzero_params,
    harden_stack,
    penalties,
    relax,
    stack_networks,
    unstack,
)

__all__ = [
    "Adam",
    "LatentSearchResult",
    "search_latent",
    "from_sparse_mlp",
    "fine_tune",
    "mse",
    "LatentSettings",
    "Assessment",
    "Snapshot",
    "LatentRun",
    "initial_latents",
    "family_param_count",
    "optimise_latents",
    "snapshot_network",
]


@dataclass(frozen=True)
class LatentSearchResult:
    """The best hard-decoded network (by validation MSE) and where it came from."""

    model: SparseMLP
    depth: int
    start: int
    step: int
    val_mse: float
    latent: np.ndarray


class Adam:
    """Plain Adam (Kingma & Ba) over a few tensors, one learning rate per group.

    torch.optim's first use imports torch._dynamo (measured 2.9 s on this machine, a tenth of the search's time
    budget); the search updates a handful of small tensors and needs none of its machinery. Same update as
    torch.optim.Adam with default betas and eps.
    """

    def __init__(self, groups: Sequence[Sequence[torch.Tensor]], lrs: Sequence[float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [list(g) for g in groups]
        self.lrs = list(lrs)
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = [[torch.zeros_like(p) for p in g] for g in self.groups]
        self.v = [[torch.zeros_like(p) for p in g] for g in self.groups]

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for group, ms, vs, lr in zip(self.groups, self.m, self.v, self.lrs):
            for p, m, v in zip(group, ms, vs):
                if p.grad is None:
                    continue
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-lr / c1)


def mse(model: SparseMLP, x: np.ndarray, y: np.ndarray) -> float:
    pred = forward(model, x)
    return float(np.mean((pred - y.reshape(pred.shape)) ** 2))


def _as_2d(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(-1, 1) if y.ndim == 1 else y


@contextmanager
def _frozen_decoders(module: Any) -> Iterator[None]:
    """The embedding in eval mode with no parameter gradients for the duration; its previous state after."""
    requires = [p.requires_grad for p in module.parameters()]
    was_training = module.training
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    try:
        yield
    finally:
        for p, r in zip(module.parameters(), requires):
            p.requires_grad_(r)
        module.train(was_training)


def search_latent(
    embedding: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    depths: Sequence[int] | None = None,
    starts_per_depth: int = 4,
    steps: int = 600,
    lr: float = 0.05,
    batch_points: int = 1024,
    eval_every: int = 50,
    final_temperature: float = 0.05,
    seed: int = 0,
) -> LatentSearchResult:
    """Fit y ~ f(x) by gradient descent on latents of `embedding` (an Embedding or Autoencoder; its decoders
    stay frozen). x: (rows, n_inputs <= max_inputs), already scaled (e.g. to [-1, 1]); y: (rows,) or
    (rows, n_outputs). The target is standardised and the scaling folded into the returned model exactly."""
    module = getattr(embedding, "module", embedding)
    family = module.config.family
    depths = tuple(family.depths if depths is None else depths)
    y_train, y_val = _as_2d(y_train), _as_2d(y_val)
    x_train, x_val = np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)
    _check_plain_search(family, x_train, y_train, steps=steps, starts_per_depth=starts_per_depth)
    n_inputs = x_train.shape[1]
    mean, std = y_train.mean(axis=0), y_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    yt = torch.as_tensor((y_train - mean) / std, dtype=torch.float32)
    xv = torch.as_tensor(x_val, dtype=torch.float32)
    yv = torch.as_tensor((y_val - mean) / std, dtype=torch.float32)
    latent_dim = module.config.architecture.latent_dim
    latents = {k: torch.randn(starts_per_depth, latent_dim, generator=gen).requires_grad_(True) for k in depths}
    optimizer = Adam([list(latents.values())], [lr])
    anneal = max(int(0.6 * steps), 1)
    best: tuple[float, int, int, int, torch.Tensor] | None = None
    with _frozen_decoders(module):
        for step in range(1, steps + 1):
            temperature = float(final_temperature ** min(step / anneal, 1.0))
            idx = rng.choice(len(xt), size=min(batch_points, len(xt)), replace=False)
            loss = torch.zeros(())
            for k in depths:
                net = decode_soft(module, latents[k], k, temperature=temperature)
                loss = loss + ((soft_forward(net, xt[idx]) - yt[idx]) ** 2).mean(dim=(1, 2)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % eval_every == 0 or step == steps:
                with torch.no_grad():
                    for k in depths:
                        hard = harden(decode_soft(module, latents[k], k))
                        val = ((soft_forward(hard, xv) - yv) ** 2).mean(dim=(1, 2))
                        i = int(val.argmin())
                        if best is None or float(val[i]) < best[0]:
                            best = (float(val[i]), k, i, step, latents[k][i].detach().clone())
        assert best is not None, "bug: the search never scored a start"
        val_std, depth, start, step_at, latent = best
        with torch.no_grad():
            net = decode_soft(module, latent[None, :], depth)
        model = to_sparse_mlp(
            net, 0, n_inputs=n_inputs, output_scale=std, output_offset=mean,
            provenance={"search": "latent", "depth": depth, "start": start, "step": step_at, "seed": seed},
        )
    return LatentSearchResult(
        model=model, depth=depth, start=start, step=step_at, val_mse=mse(model, x_val, y_val),
        latent=latent.numpy().astype(np.float64),
    )


def _check_plain_search(family: Any, x_train: np.ndarray, y_train: np.ndarray, *, steps: int,
                        starts_per_depth: int) -> None:
    if x_train.ndim != 2 or x_train.shape[1] > family.max_inputs:
        raise InputError(f"inputs have shape {x_train.shape}; this embedding takes (rows, 1..{family.max_inputs})")
    if y_train.shape[1] != family.n_outputs or len(y_train) != len(x_train):
        raise InputError(f"targets have shape {y_train.shape}; expected ({len(x_train)}, {family.n_outputs})")
    if steps < 1 or starts_per_depth < 1:
        raise InputError(f"search needs steps >= 1 and starts_per_depth >= 1, got {steps} and {starts_per_depth}")


def from_sparse_mlp(model: SparseMLP, dtype: torch.dtype = torch.float64) -> SoftNetwork:
    """A batch-of-one hard SoftNetwork computing `model` in its normalised space (scaling not included).

    Hidden layers of different widths are padded to the widest with gated-off neurons (zero weights in and
    out), which computes the same function; the first layer keeps the model's input count.
    """
    width = max((layer.n_out for layer in model.hidden), default=0)
    identity = ACTIVATIONS.index("identity")

    def padded(a: np.ndarray, rows: int, cols: int) -> torch.Tensor:
        out = np.zeros((rows, cols))
        out[: a.shape[0], : a.shape[1]] = a
        return torch.as_tensor(out, dtype=dtype)[None]

    weights, biases, acts, gates = [], [], [], []
    for l, layer in enumerate(model.hidden):
        weights.append(padded(layer.weight, model.n_inputs if l == 0 else width, width))
        biases.append(padded(layer.bias[None, :], 1, width)[0])
        index = [ACTIVATIONS.index(a) for a in layer.activations] + [identity] * (width - layer.n_out)
        acts.append(torch.nn.functional.one_hot(torch.as_tensor(index), len(ACTIVATIONS)).to(dtype))
        gates.append(padded(layer.mask.astype(np.float64)[None, :], 1, width)[0, 0])
    out = model.output
    weights.append(padded(out.weight, width if model.hidden else model.n_inputs, out.n_out))
    biases.append(torch.as_tensor(out.bias, dtype=dtype)[None])
    act_t = torch.stack(acts)[None] if acts else torch.zeros(1, 0, 0, len(ACTIVATIONS), dtype=dtype)
    gate_t = torch.stack(gates)[None] if gates else torch.zeros(1, 0, 0, dtype=dtype)
    return SoftNetwork(
        activations=ACTIVATIONS, weights=tuple(weights), biases=tuple(biases),
        activation_logits=act_t, gate_logits=gate_t, activation_probs=act_t, gate_probs=gate_t,
    )


def fine_tune(
    model: SparseMLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    steps: int = 500,
    lr: float = 0.01,
    batch_points: int = 1024,
    seed: int = 0,
    check_every: int = 25,
    history: list[tuple[int, float]] | None = None,
    final_lr: float | None = None,
) -> SparseMLP:
    """Train the surviving weights and biases in weight space (zero weights, gates and activations frozen).

    With a validation split, the best iterate on it (checked every `check_every` steps) is returned, and
    `history` (if given) receives (step, validation MSE) at each check, step 0 included. final_lr: cosine-decay
    the learning rate from lr to final_lr over the steps (None: constant).
    """
    if model.hidden and not all(len(layer.activations) for layer in model.hidden):
        raise InputError("fine_tune: every hidden layer needs at least one neuron")
    y_train = _as_2d(y_train)
    net = from_sparse_mlp(model)
    masks = [w[0] != 0.0 for w in net.weights]  # padding entries are zero: frozen with the pruned weights
    weights = [w.clone().requires_grad_(True) for w in net.weights]
    biases = [b.clone().requires_grad_(True) for b in net.biases]
    x_n = torch.as_tensor(np.asarray(x_train) * model.input_scale + model.input_offset)
    y_n = torch.as_tensor((y_train - model.output_offset) / model.output_scale)
    optimizer = Adam([weights + biases], [lr])
    rng = np.random.default_rng(seed)

    def current() -> SparseMLP:
        layers = [
            Layer.make((w[0] * m)[: layer.n_in, : layer.n_out].detach().numpy(), b[0, : layer.n_out].detach().numpy(),
                       layer.activations, layer.mask)
            for w, b, m, layer in zip(weights, biases, masks, model.layers)
        ]
        return model.replace(hidden=tuple(layers[:-1]), output=layers[-1])

    best_model, best_val = model, (mse(model, x_val, y_val) if x_val is not None else np.inf)
    if history is not None and x_val is not None:
        history.append((0, best_val))
    for step in range(1, steps + 1):
        if final_lr is not None:
            optimizer.lrs[0] = _cosine(step - 1, steps, lr, final_lr)
        idx = rng.choice(len(x_n), size=min(batch_points, len(x_n)), replace=False)
        trial = SoftNetwork(
            activations=net.activations, weights=tuple(w * m for w, m in zip(weights, masks)), biases=tuple(biases),
            activation_logits=net.activation_logits, gate_logits=net.gate_logits,
            activation_probs=net.activation_probs, gate_probs=net.gate_probs,
        )
        loss = ((soft_forward(trial, x_n[idx]) - y_n[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if x_val is not None and y_val is not None and (step % check_every == 0 or step == steps):
            candidate = current()
            val = mse(candidate, x_val, y_val)
            if history is not None:
                history.append((step, val))
            if val < best_val:
                best_model, best_val = candidate, val
    return best_model if x_val is not None else current()


# ---------------------------------------------------------------------------------------------------------
# The batched, penalised latent search behind `swat-edge search`.


@dataclass(frozen=True)
class LatentSettings:
    """How the latent search runs. Starting point: the second prototype's settings (embedding-findings.md)."""

    depths: tuple[int, ...] | None = None  # None: every depth the embedding decodes
    starts_per_depth: int = 4
    steps: int = 600
    lr: float = 0.05  # on the latents, cosine-decayed to final_lr
    final_lr: float = 0.005
    batch_points: int = 256  # training rows per step (all of them when fewer); 1024 measured 2x slower, no better
    eval_every: int = 50  # steps between hard decodes scored on the validation split
    anneal_fraction: float = 0.6  # temperature reaches final_temperature after this share of the steps
    final_temperature: float = 0.05
    weight_softness: float = 0.1  # width of the weight-threshold sigmoid at temperature 1 (0.005 at the end)
    # the budget hinges' weight grows linearly from 0 to full over this share of the steps (0: full from the
    # start). At full weight from step 1 the decoded starts, far over a tight budget, collapsed (cortex-m4, 3 CORNN
    # tasks x 2 budgets: best searched network 0.0054-0.0637 test MSE, 3 of 6 a single weight); grown over half
    # the steps they first fit, then shrink to the budget (0.0017-0.0195, 13-38 weights).
    budget_ramp_fraction: float = 0.5
    threshold_lr: float = 0.005
    threshold_max: float = 3.0  # the paper clamps the learnable weight threshold to [0, 3]
    cost_every: int = 50  # steps between exact cost-model evaluations (linearised in between; ~80 ms each)
    init: str = "encoded"  # "encoded": latents of random family MLPs; "normal": N(0, 1)
    # score each hard network with its output layer solved by least squares on the training rows (variable
    # projection, as the fine-tuner does) instead of the decoder's output layer
    variable_projection: bool = True
    projection_rows: int = 2048
    max_val_rows: int = 4096  # validation rows scored during the search (all rows for the final figures)
    seed: int = 0

    def check(self) -> "LatentSettings":
        if self.starts_per_depth < 1 or self.steps < 1 or self.eval_every < 1 or self.cost_every < 1:
            raise InputError(
                f"search needs starts_per_depth, steps, eval_every and cost_every >= 1, got {self.starts_per_depth}, "
                f"{self.steps}, {self.eval_every} and {self.cost_every}"
            )
        if self.init not in ("encoded", "normal"):
            raise InputError(f"init {self.init!r}: use 'encoded' or 'normal'")
        if not 0.0 <= self.budget_ramp_fraction <= 1.0:
            raise InputError(f"budget_ramp_fraction {self.budget_ramp_fraction:g}: give a share of the steps in [0, 1]")
        return self


@dataclass(frozen=True)
class Assessment:
    """The deployed figures of one hard candidate: predicted latency and bytes on the target, non-zero params."""

    latency_us: float
    size_bytes: float
    nonzero_params: int


@dataclass(frozen=True)
class Snapshot:
    """One start's best hard iterate so far: where it is in latent space and how it scored.

    val_mse is on the standardised target; score = log(val_mse) + the objective's structural and cost terms
    on the hard network (lower is better); violation: largest relative budget overshoot (0: within budgets).
    """

    depth: int
    start: int
    step: int
    val_mse: float
    score: float
    latent: np.ndarray
    threshold: float
    assessment: Assessment | None
    violation: float


@dataclass(frozen=True)
class LatentRun:
    """Result of optimise_latents: the best feasible iterate of each start (None where a start never met the
    budgets), the iterate closest to the budgets (when none met them), each start's best iterate ignoring the
    budgets, and the search history. Iterates whose output is a constant (a layer with every neuron off) are
    kept only as `closest`, when nothing else was found."""

    best: tuple[Snapshot | None, ...]
    closest: Snapshot | None
    unconstrained: tuple[Snapshot | None, ...]
    history: tuple[dict[str, Any], ...]
    steps: int


# assess(net, threshold): a hard candidate's deployed figures; net is a batch-of-one network of its own depth.
Assess = Callable[[SoftNetwork, float], Assessment]
# progress(step, total, info): info has train_mse, best_val_mse and latency_us (the last two None until known).
Progress = Callable[[int, int, dict[str, Any]], None]


def initial_latents(module: Any, depth: int, n: int, *, n_inputs: int, seed: int, init: str = "encoded") -> torch.Tensor:
    """n starting latents for `depth`: the encodings of random family MLPs of that depth (those reading at least
    n_inputs inputs first), or N(0, 1) draws. Deterministic in seed."""
    from .embedding.autoencoder import to_torch
    from .embedding.generator import sample_batch

    latent_dim = module.config.architecture.latent_dim
    if init == "normal":
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence((seed, depth)).generate_state(1)[0]))
        return torch.randn(n, latent_dim, generator=gen)
    family = module.config.family
    batch = sample_batch(family, module.config.distribution, 4 * n, 4, (7, seed, depth), depths=(depth,))
    order = np.argsort(batch.n_inputs < n_inputs, kind="stable")[:n]
    with torch.no_grad():
        latents = module.encode(to_torch(batch))
    return latents[torch.as_tensor(order)].detach().clone()


def family_param_count(family: Any) -> int:
    """Weights and biases of the family's largest network (all inputs, every neuron, the deepest depth)."""
    w, d = family.max_width, family.max_depth
    return family.max_inputs * w + (d - 1) * w * w + d * w + w * family.n_outputs + family.n_outputs


def _cosine(step: int, total: int, start: float, end: float) -> float:
    return end + 0.5 * (start - end) * (1.0 + np.cos(np.pi * min(step / max(total, 1), 1.0)))


# name -> (first column, end column, shape) of each tensor in one decoder's flat output
_DecoderSlices = dict[str, tuple[int, int, tuple[int, ...]]]


def _decoder_slices(family: Any, depths: Sequence[int]) -> dict[int, _DecoderSlices]:
    """Slices of each decoder's flat output, computed once: NetLayout.split recomputes its shapes on every call
    and split_output also tempers; at ~20 ms a step both showed up in the profile."""
    slices = {}
    for depth in depths:
        start, parts = 0, {}
        for name, shape in NetLayout(family, depth).shapes.items():
            n = int(np.prod(shape))
            parts[name] = (start, start + n, shape)
            start += n
        slices[depth] = parts
    return slices


@dataclass(frozen=True)
class _SearchSetup:
    """What stays fixed through one optimise_latents call."""

    module: Any  # the embedding's Autoencoder, decoders frozen
    depths: tuple[int, ...]
    keys: tuple[tuple[int, int], ...]  # (depth, start) of candidate b of the stack is keys[b]
    slices: dict[int, _DecoderSlices]
    n_inputs: int
    param_scale: float  # the family's largest network's parameter count (normalises the sparsity term)
    settings: LatentSettings
    weights: ObjectiveWeights
    budgets: Budgets
    cost: LinearizedCost | None  # None: no cost terms in the training loss
    assess: Assess | None  # None: hard candidates are scored without deployed figures

    @property
    def projection_rows(self) -> int:
        """Training rows for the output layer's least-squares solve when scoring (0: score as decoded)."""
        return self.settings.projection_rows if self.settings.variable_projection else 0


@dataclass(frozen=True)
class _SearchData:
    """The training and (possibly subsampled) validation rows as float32 tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def _checked_depths(family: Any, depths: Sequence[int] | None) -> tuple[int, ...]:
    depths = tuple(family.depths if depths is None else depths)
    bad = [k for k in depths if k not in family.depths]
    if bad:
        raise InputError(f"depth {bad[0]}: this embedding decodes depths {family.min_depth}..{family.max_depth}")
    return depths


def _search_data(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, family: Any,
                 max_val_rows: int, rng: np.random.Generator) -> _SearchData:
    """Check the shapes against the family and keep at most max_val_rows validation rows (drawn from rng)."""
    x_train, x_val = np.asarray(x_train, np.float64), np.asarray(x_val, np.float64)
    y_train, y_val = _as_2d(y_train), _as_2d(y_val)
    if x_train.ndim != 2 or not 1 <= x_train.shape[1] <= family.max_inputs:
        raise InputError(f"inputs have shape {x_train.shape}; this embedding takes (rows, 1..{family.max_inputs})")
    if y_train.shape[1] != family.n_outputs:
        raise InputError(f"targets have {y_train.shape[1]} columns; this embedding predicts {family.n_outputs}")
    if len(x_val) > max_val_rows:
        keep_rows = np.sort(rng.permutation(len(x_val))[:max_val_rows])
        x_val, y_val = x_val[keep_rows], y_val[keep_rows]
    return _SearchData(
        x_train=torch.as_tensor(x_train, dtype=torch.float32), y_train=torch.as_tensor(y_train, dtype=torch.float32),
        x_val=torch.as_tensor(x_val, dtype=torch.float32), y_val=torch.as_tensor(y_val, dtype=torch.float32),
    )


def _decode_stack(setup: _SearchSetup, latents: dict[int, torch.Tensor]) -> Stack:
    """Every depth's starts decoded and stacked into one batch (activation and gate probabilities untempered:
    relax() and harden_stack() temper them)."""
    family = setup.module.config.family
    nets = []
    for k in setup.depths:
        flat = setup.module.decode(latents[k], k)
        p = {name: flat[:, a:b].reshape(flat.shape[0], *shape) for name, (a, b, shape) in setup.slices[k].items()}
        weights = (p["first_weight"], *(p["deep_weight"][:, l] for l in range(k - 1)), p["output_weight"])
        biases = (*(p["bias"][:, l] for l in range(k)), p["output_bias"])
        nets.append(SoftNetwork(
            activations=tuple(family.activations), weights=weights, biases=biases,
            activation_logits=p["activation_logits"], gate_logits=p["gate_logits"],
            activation_probs=p["activation_logits"], gate_probs=p["gate_logits"],
        ))
    return stack_networks(nets, max(setup.depths))


def _minibatch(data: _SearchData, batch_points: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if len(data.x_train) > batch_points:
        idx = torch.as_tensor(rng.choice(len(data.x_train), size=batch_points, replace=False))
        return data.x_train[idx], data.y_train[idx]
    return data.x_train, data.y_train


def _budget_weights(weights: ObjectiveWeights, settings: LatentSettings, step: int) -> ObjectiveWeights:
    """The objective weights at `step`, the budget hinges' weight ramped up (LatentSettings.budget_ramp_fraction)."""
    ramp_steps = settings.budget_ramp_fraction * settings.steps
    if ramp_steps <= 0 or step >= ramp_steps:
        return weights
    return replace(weights, budget=weights.budget * step / ramp_steps)


def _descend(setup: _SearchSetup, latents: dict[int, torch.Tensor], thresholds: torch.Tensor, optimizer: Adam,
             x_batch: torch.Tensor, y_batch: torch.Tensor, *, step: int, temperature: float) -> float:
    """One gradient step on the latents and thresholds; returns the best start's relaxed training MSE."""
    settings = setup.settings
    relaxed = relax(_decode_stack(setup, latents), thresholds, temperature=temperature,
                    weight_softness=settings.weight_softness, n_inputs=setup.n_inputs)
    fit = ((soft_forward(relaxed.net, x_batch) - y_batch) ** 2).mean(dim=(1, 2))
    penalty = penalties(relaxed, setup.weights, setup.param_scale)
    if setup.cost is not None:
        if step == 1 or step % settings.cost_every == 0:
            setup.cost.refresh(relaxed)
        latency, size = setup.cost(relaxed)
        penalty = penalty + cost_penalty(latency, size, _budget_weights(setup.weights, settings, step),
                                         setup.budgets)
    # the penalties scale with the (detached) fit, so they act as relative terms: log MSE + penalty in effect
    total = (fit + fit.detach() * penalty).sum()
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    with torch.no_grad():
        thresholds.clamp_(0.0, settings.threshold_max)
    return float(fit.detach().min())


def _hard_score(val_mse: float, assessment: Assessment | None, nonzero: float, weights: ObjectiveWeights,
                param_scale: float) -> float:
    """log(validation MSE) + the objective's sparsity, latency and size terms of a hard network (lower is better)."""
    score = float(np.log(max(val_mse, 1e-30))) + weights.sparsity * nonzero / param_scale
    if assessment is not None:
        score += (weights.latency * float(np.log(assessment.latency_us))
                  + weights.size * float(np.log(max(assessment.size_bytes, 1.0))))
    return score


@dataclass
class _Leaderboard:
    """Each start's best hard iterates so far (within the budgets, and ignoring them), the iterate closest to
    the budgets, and the best feasible iterate overall (the leader, for progress and history)."""

    best: dict[tuple[int, int], Snapshot] = field(default_factory=dict)
    unconstrained: dict[tuple[int, int], Snapshot] = field(default_factory=dict)
    closest: Snapshot | None = None
    closest_rank: tuple[bool, float, float] = (True, np.inf, np.inf)
    leader: Snapshot | None = None

    def record(self, snap: Snapshot, *, alive: bool) -> None:
        # a constant network (a layer with every neuron off) only ever serves as "closest" figures
        rank = (not alive, snap.violation, snap.score)
        if self.closest is None or rank < self.closest_rank:
            self.closest, self.closest_rank = snap, rank
        if not alive:
            return
        key = (snap.depth, snap.start)
        if key not in self.unconstrained or snap.score < self.unconstrained[key].score:
            self.unconstrained[key] = snap
        if snap.violation == 0.0 and (key not in self.best or snap.score < self.best[key].score):
            self.best[key] = snap

    def update_leader(self) -> None:
        if self.best:
            self.leader = min(self.best.values(), key=lambda snap: snap.score)


def _score_hard_iterates(setup: _SearchSetup, latents: dict[int, torch.Tensor], thresholds: torch.Tensor,
                         data: _SearchData, step: int, board: _Leaderboard) -> dict[int, float]:
    """Hard-decode every start, score it on the validation rows and record it on the board; returns the best
    validation MSE of each depth."""
    with torch.no_grad():
        stack = _decode_stack(setup, latents)
        hard = harden_stack(stack, thresholds, setup.n_inputs)
        vals = (_projected_val_mse(hard.net, data, setup.projection_rows) if setup.projection_rows
                else ((soft_forward(hard.net, data.x_val) - data.y_val) ** 2).mean(dim=(1, 2)))
        nonzero = expected_nonzero_params(hard)
        # a real layer with every neuron off makes the output a constant: not a model worth keeping
        alive = ((hard.gates.sum(dim=2) > 0) | ~hard.live).all(dim=1)
    val_by_depth: dict[int, float] = {}
    for b, (depth, start) in enumerate(setup.keys):
        val = float(vals[b])
        if not np.isfinite(val):
            continue
        val_by_depth[depth] = min(val, val_by_depth.get(depth, np.inf))
        threshold = float(thresholds[b].detach())
        assessment = setup.assess(unstack(stack, b), threshold) if setup.assess is not None else None
        violation = (setup.budgets.violation(assessment.latency_us, assessment.size_bytes)
                     if assessment is not None else 0.0)
        board.record(Snapshot(
            depth=depth, start=start, step=step, val_mse=val,
            score=_hard_score(val, assessment, float(nonzero[b]), setup.weights, setup.param_scale),
            latent=latents[depth][start].detach().numpy().copy(), threshold=threshold,
            assessment=assessment, violation=violation,
        ), alive=bool(alive[b]))
    board.update_leader()
    return val_by_depth


def _projected_val_mse(net: SoftNetwork, data: _SearchData, rows: int) -> torch.Tensor:
    """Validation MSE (B,) of each hard network with its output layer replaced by the least-squares solve on (at
    most `rows`) training rows, zero output weights kept zero: what the fine-tuner's variable projection starts
    from, so the search ranks hidden stacks by what they can fit rather than by the decoder's output layer."""
    spread = torch.as_tensor(np.unique(np.linspace(0, len(data.x_train) - 1, rows).round().astype(np.int64)))
    x_train, y_train = data.x_train[spread], data.y_train[spread]  # spread over the file, whatever its order
    h_train = soft_hidden(net, x_train).double()
    h_val = soft_hidden(net, data.x_val).double()
    out_weight = net.weights[-1].double()  # (B, W, n_outputs)
    errors = []
    for k in range(out_weight.shape[2]):
        keep = (out_weight[:, None, :, k] != 0).double()
        design = torch.cat([h_train * keep, torch.ones_like(h_train[..., :1])], dim=2)
        target = y_train[:, k].double().expand(len(design), -1).unsqueeze(2)
        coef = torch.linalg.lstsq(design, target, driver="gelsd").solution
        design_val = torch.cat([h_val * keep, torch.ones_like(h_val[..., :1])], dim=2)
        errors.append(((design_val @ coef)[..., 0] - data.y_val[:, k].double()) ** 2)
    return torch.stack(errors, dim=2).mean(dim=(1, 2)).float()


def _leader_figures(leader: Snapshot | None) -> dict[str, float | None]:
    return {
        "best_val_mse": None if leader is None else leader.val_mse,
        "latency_us": None if leader is None or leader.assessment is None else leader.assessment.latency_us,
    }


def _history_entry(step: int, temperature: float, train_mse: float, val_by_depth: dict[int, float],
                   leader: Snapshot | None) -> dict[str, Any]:
    figures = _leader_figures(leader)
    return {
        "step": step,
        "temperature": temperature,
        "train_mse": train_mse,
        "val_mse_by_depth": val_by_depth,
        "best_val_mse": figures["best_val_mse"],
        "best_score": None if leader is None else leader.score,
        "best_latency_us": figures["latency_us"],
    }


def _search_setup(module: Any, depths: tuple[int, ...], n_inputs: int, settings: LatentSettings,
                  weights: ObjectiveWeights, budgets: Budgets, cost_target: TargetProfile | None, cost_dtype: str,
                  input_affine: int, assess: Assess | None) -> _SearchSetup:
    """cost_target: the target whose predicted cost enters the training loss (None: no cost terms)."""
    family = module.config.family
    cost = None
    if cost_target is not None:
        names = family.activations if "identity" in family.activations else (*family.activations, "identity")
        cost = LinearizedCost(cost_target, n_inputs=n_inputs, n_outputs=family.n_outputs, activations=names,
                              dtype=cost_dtype, input_affine=input_affine,
                              with_size=bool(weights.size) or budgets.size_bytes is not None)
    return _SearchSetup(
        module=module, depths=depths, keys=tuple((k, s) for k in depths for s in range(settings.starts_per_depth)),
        slices=_decoder_slices(family, depths), n_inputs=n_inputs, param_scale=float(family_param_count(family)),
        settings=settings, weights=weights, budgets=budgets, cost=cost,
        assess=assess if (cost is not None or budgets.any) else None,
    )


def optimise_latents(
    embedding: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    settings: LatentSettings = LatentSettings(),
    weights: ObjectiveWeights | None = None,
    budgets: Budgets | None = None,
    target: TargetProfile | None = None,
    cost_dtype: str = "fp32",
    input_affine: int = 0,
    assess: Assess | None = None,
    progress: Progress | None = None,
) -> LatentRun:
    """Search the latent space of `embedding` for networks fitting y ~ f(x), every depth and start in one batch.

    x: scaled inputs (rows, n_inputs <= max_inputs); y: standardised targets (rows, n_outputs). weights: an
    objective.ObjectiveWeights; budgets: objective.Budgets; target: a TargetProfile for the cost terms (None:
    none); assess(net, threshold) -> Assessment gives a hard candidate's deployed figures (net: a batch-of-one
    SoftNetwork of the candidate's depth; required when budgets or the latency/size weights are on). Returns
    each start's best hard iterate by validation score among those meeting the budgets.
    """
    settings = settings.check()
    weights = ObjectiveWeights() if weights is None else weights
    budgets = Budgets() if budgets is None else budgets
    module = getattr(embedding, "module", embedding)
    family = module.config.family
    depths = _checked_depths(family, settings.depths)
    rng = np.random.default_rng(np.random.SeedSequence((11, settings.seed)))
    data = _search_data(x_train, y_train, x_val, y_val, family, settings.max_val_rows, rng)
    n_inputs = data.x_train.shape[1]
    use_cost = target is not None and bool(weights.latency or weights.size or budgets.any)
    if (use_cost or budgets.any) and assess is None:
        raise InputError("bug: optimise_latents needs `assess` when cost terms or budgets are on")
    # (encoded before the decoders are frozen: the encoder runs in whatever mode the caller left the module)
    latents = {
        k: initial_latents(module, k, settings.starts_per_depth, n_inputs=n_inputs, seed=settings.seed,
                           init=settings.init).requires_grad_(True) for k in depths
    }
    thresholds = torch.zeros(settings.starts_per_depth * len(depths), requires_grad=True)
    setup = _search_setup(module, depths, n_inputs, settings, weights, budgets,
                          target if use_cost else None, cost_dtype, input_affine, assess)
    optimizer = Adam([[latents[k] for k in depths], [thresholds]], [settings.lr, settings.threshold_lr])
    anneal = max(int(settings.anneal_fraction * settings.steps), 1)
    board, history = _Leaderboard(), []
    with _frozen_decoders(module):
        for step in range(1, settings.steps + 1):
            temperature = float(settings.final_temperature ** min(step / anneal, 1.0))
            optimizer.lrs[0] = _cosine(step - 1, settings.steps, settings.lr, settings.final_lr)
            optimizer.lrs[1] = _cosine(step - 1, settings.steps, settings.threshold_lr, 0.1 * settings.threshold_lr)
            x_batch, y_batch = _minibatch(data, settings.batch_points, rng)
            train_mse = _descend(setup, latents, thresholds, optimizer, x_batch, y_batch, step=step,
                                 temperature=temperature)
            if step % settings.eval_every == 0 or step == settings.steps:
                val_by_depth = _score_hard_iterates(setup, latents, thresholds, data, step, board)
                history.append(_history_entry(step, temperature, train_mse, val_by_depth, board.leader))
            if progress is not None:
                progress(step, settings.steps, {"train_mse": train_mse, **_leader_figures(board.leader)})
    return LatentRun(
        best=tuple(board.best.get(key) for key in setup.keys), closest=None if board.best else board.closest,
        unconstrained=tuple(board.unconstrained.get(key) for key in setup.keys), history=tuple(history),
        steps=settings.steps,
    )


def snapshot_network(embedding: Any, snapshot: Snapshot) -> SoftNetwork:
    """The decoded network (batch of one) of a snapshot, for to_sparse_mlp(..., weight_threshold=snapshot.threshold)."""
    module = getattr(embedding, "module", embedding)
    with torch.no_grad():
        return decode_soft(module, torch.as_tensor(snapshot.latent)[None, :], snapshot.depth)
