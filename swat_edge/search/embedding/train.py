"""Training the embedding: fresh random MLPs every step, functional + decaying parameter loss, checkpoints,
resume, and torch.distributed DDP when launched by torchrun (gloo on CPU, nccl on CUDA)."""
from __future__ import annotations

import collections
import hashlib
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import NumericsError, UsageError
from .autoencoder import Autoencoder, TorchBatch, build_autoencoder, to_torch
from .config import EmbeddingConfig, Recipe
from .decode import NetLayout, harden, soft_forward, split_output
from .evaluate import quick_metrics
from .generator import MLPBatch, sample_batch, training_seed
from .storage import (
    check_same_config,
    has_checkpoint,
    load_checkpoint,
    read_run_config,
    save_checkpoint,
    save_embedding,
    weights_to_bytes,
    write_run_config,
)

__all__ = [
    "TrainResult",
    "DistContext",
    "init_distributed",
    "learning_rate",
    "param_loss_weight",
    "functional_loss",
    "is_hard_step",
    "parameter_loss",
    "train_embedding",
]

_HARD_STREAM = 2  # SeedSequence stream of the soft/hard choice (generator.py uses 0 and 1)

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    start_step: int
    step: int
    finished: bool
    history: tuple[dict[str, Any], ...]
    mlps_per_s: float
    world_size: int
    rank_weight_sha256: tuple[str, ...]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device
    distributed: bool
    owns_group: bool = False  # this call created the process group (and so tears it down)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")  # set_device needs an index
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = world > 1 and not torch.distributed.is_initialized()
    if owns:
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, world_size=world, device=dev, distributed=world > 1, owns_group=owns)


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up, then cosine decay to final_lr_fraction x lr at recipe.steps."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    span = max(recipe.steps - recipe.warmup_steps, 1)
    t = min(max(step - recipe.warmup_steps, 0) / span, 1.0)
    floor = recipe.final_lr_fraction
    return recipe.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def param_loss_weight(recipe: Recipe, step: int) -> float:
    """param_loss_weight decaying geometrically to 1% of it at param_loss_decay_steps, then held."""
    return recipe.param_loss_weight * 0.01 ** min(step / recipe.param_loss_decay_steps, 1.0)


def _mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((pred - y) ** 2).mean(dim=(1, 2))


def functional_loss(
    raws: list[torch.Tensor], tb: TorchBatch, *, hard: bool, true_depth_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over MLPs of the min over decoders of the output MSE on the shared points (targets have variance 1),
    on the soft networks (temperature 1) or, with hard=True, on the hardened ones with straight-through
    gradients. With true_depth_weight w the loss is (1 - w) x that + w x the MSE of each MLP's own-depth
    decoder, so every decoder keeps learning its depth even when another one wins the min.
    Returns (loss, index of the winning decoder per MLP)."""
    family = tb.family
    xm = tb.x.unsqueeze(0) * tb.input_mask[:, None, :]
    mses = []
    for k, raw in zip(family.depths, raws):
        net = split_output(raw, family, k)
        if hard:
            net = harden(net, straight_through=True)
        mses.append(_mse(soft_forward(net, xm), tb.y))
    stacked = torch.stack(mses)
    best = stacked.min(dim=0)
    loss = best.values.mean()
    if true_depth_weight > 0:
        own = stacked.gather(0, (tb.depth - family.min_depth)[None, :]).mean()
        loss = (1.0 - true_depth_weight) * loss + true_depth_weight * own
    return loss, best.indices


def is_hard_step(recipe: Recipe, step: int) -> bool:
    """Whether step `step` trains on hardened networks (probability hard_fraction, same on every rank)."""
    if recipe.hard_fraction <= 0.0:
        return False
    rng = np.random.default_rng(np.random.SeedSequence((_HARD_STREAM, recipe.seed, step)))
    return bool(rng.random() < recipe.hard_fraction)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def parameter_loss(raws: list[torch.Tensor], tb: TorchBatch) -> torch.Tensor:
    """Copy loss on each MLP's true-depth decoder: Huber on the real weights and biases (canonical order),
    cross-entropy on active neurons' activations, BCE on the gates; averaged over MLPs."""
    family = tb.family
    total = torch.zeros((), device=tb.y.device)
    for k, raw in zip(family.depths, raws):
        sel = tb.depth == k
        m = int(sel.sum())
        if m == 0:
            continue
        p = NetLayout(family, k).split(raw[sel])
        t = tb.select(sel)
        g = t.gate[:, :k]
        huber = lambda a, b: F.smooth_l1_loss(a, b, reduction="none")  # noqa: E731
        terms = [
            _masked_mean(huber(p["first_weight"], t.first_weight), t.input_mask[:, :, None] * g[:, 0][:, None, :]),
            _masked_mean(huber(p["bias"], t.bias[:, :k]), g),
            _masked_mean(huber(p["output_weight"], t.output_weight), g[:, k - 1][:, :, None]),
            huber(p["output_bias"], t.output_bias).mean(),
            _masked_mean(
                F.cross_entropy(p["activation_logits"].reshape(-1, family.n_activations),
                                t.activation[:, :k].reshape(-1), reduction="none").reshape(g.shape), g),
            F.binary_cross_entropy_with_logits(p["gate_logits"], g),
        ]
        if k > 1:
            terms.append(_masked_mean(huber(p["deep_weight"], t.deep_weight[:, : k - 1]),
                                      g[:, :-1, :, None] * g[:, 1:, None, :]))
        total = total + sum(terms) * (m / tb.size)
    return total


def _noise(recipe: Recipe, step: int, rank: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    if recipe.latent_noise <= 0:
        return None
    seed = int.from_bytes(hashlib.sha256(repr(training_seed(recipe.seed, step, rank)).encode()).digest()[:8], "little")
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * recipe.latent_noise).to(device)


class _BatchSource:
    """The step's batch, drawn in `workers` background processes ahead of the training loop when workers > 0.

    Batches depend only on (seed, step, rank), so prefetching changes where they are drawn, never what they
    are: a run with workers gives the same weights as one without. At most 2 x workers batches wait in memory.
    """

    def __init__(self, config: EmbeddingConfig, rank: int, local_batch: int, start: int, stop: int, workers: int):
        self._args = (config.family, config.distribution, local_batch, config.recipe.n_points)
        self._seed, self._rank = config.recipe.seed, rank
        self._next, self._stop = start, stop
        self._pending: collections.deque = collections.deque()
        self._pool = None
        if workers > 0:
            # spawn, not fork: the parent holds torch (and maybe CUDA) state that must not be forked
            self._pool = multiprocessing.get_context("spawn").Pool(workers)
            for _ in range(2 * workers):
                self._submit()

    def _submit(self) -> None:
        if self._next < self._stop:
            self._pending.append(self._pool.apply_async(
                sample_batch, (*self._args, training_seed(self._seed, self._next, self._rank))))
            self._next += 1

    def get(self, step: int) -> MLPBatch:
        if self._pool is None:
            return sample_batch(*self._args, training_seed(self._seed, step, self._rank))
        batch = self._pending.popleft().get()
        self._submit()
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()


def _weights_sha256(module: Autoencoder) -> str:
    return hashlib.sha256(weights_to_bytes(module)).hexdigest()


def _check_out_dir(out_dir: Path, config: EmbeddingConfig, resume: bool) -> None:
    if resume:
        check_same_config(out_dir, read_run_config(out_dir).to_dict(), config)
        return
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(
            f"{out_dir}: already exists and is not an empty folder; pass --resume to continue the run in it, "
            "or choose a new --out folder"
        )


def train_embedding(
    config: EmbeddingConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    until: int | None = None,
    checkpoint_every: int = 500,
    eval_mlps_per_depth: int = 32,
    device: str = "auto",
    data_workers: int = 0,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train (or resume) an embedding into out_dir; stop at `until` (default recipe.steps).

    Every step draws a fresh batch from the step's own seed, so a resumed run replays exactly what an
    uninterrupted one would do. Only rank 0 writes; every checkpoint records each rank's weight hash, and
    ranks that disagree raise NumericsError. The final embedding pair is written to out_dir when the
    schedule is complete. data_workers > 0 draws batches in that many background processes (for a GPU,
    which would otherwise wait on numpy); the weights are the same either way.
    """
    ctx = init_distributed(device)
    try:
        return _train(config, Path(out_dir), ctx, resume=resume, until=until, checkpoint_every=checkpoint_every,
                      eval_mlps_per_depth=eval_mlps_per_depth, data_workers=data_workers, progress=progress)
    finally:
        if ctx.owns_group:
            torch.distributed.destroy_process_group()


def _checked_stop(recipe: Recipe, ctx: DistContext, *, until: int | None, checkpoint_every: int,
                  data_workers: int) -> int:
    """Refuse arguments the run cannot honour; the step to stop at."""
    if recipe.batch_size % ctx.world_size:
        raise UsageError(
            f"recipe batch_size {recipe.batch_size} does not split over {ctx.world_size} processes; "
            "use a process count that divides it"
        )
    if checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every is {checkpoint_every}; it must be at least 1")
    stop = recipe.steps if until is None else min(until, recipe.steps)
    if stop < 1:
        raise UsageError(f"--until is {until}; it must be at least 1")
    if data_workers < 0:
        raise UsageError(f"--data-workers is {data_workers}; it must be 0 or more")
    return stop


def _resume_or_begin(out: Path, config: EmbeddingConfig, module: Autoencoder, optimizer: torch.optim.Optimizer, *,
                     resume: bool, rank: int) -> tuple[int, list[dict[str, Any]]]:
    """Load the last checkpoint into module and optimizer (resume), or start the run folder; (start step, history).

    A run stopped before its first checkpoint restarts from step 0."""
    if resume and has_checkpoint(out):
        ckpt = load_checkpoint(out, config)
        module.load_state_dict(ckpt.model_state)
        optimizer.load_state_dict(ckpt.optimizer_state)
        return ckpt.step, list(ckpt.history)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_run_config(out, config)
    return 0, []


def _parallel(module: Autoencoder, ctx: DistContext) -> torch.nn.Module:
    """The module as the training step calls it: wrapped in DDP when distributed."""
    if not ctx.distributed:
        return module
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
    )


@dataclass(frozen=True)
class _Session:
    """What the steps and checkpoints of one _train call share."""

    config: EmbeddingConfig
    out: Path
    ctx: DistContext
    module: Autoencoder
    model: torch.nn.Module  # module, or its DDP wrapper: what the step runs
    optimizer: torch.optim.Optimizer
    start: int
    stop: int
    local_batch: int  # MLPs per step on this rank
    history: list[dict[str, Any]]  # checkpoint metrics, appended by rank 0
    eval_mlps_per_depth: int
    progress: ProgressFn | None
    started_at: float  # time.perf_counter() when the steps began

    def mlps_per_s(self, step_done: int) -> float:
        elapsed = time.perf_counter() - self.started_at
        return (step_done - self.start) * self.config.recipe.batch_size / max(elapsed, 1e-9)


@dataclass(frozen=True)
class _StepLosses:
    total: torch.Tensor
    functional: torch.Tensor
    param: torch.Tensor


def _train_step(session: _Session, batch: MLPBatch, step: int) -> _StepLosses:
    """One optimiser step on `batch` at the schedule's learning rate, loss weights and latent noise for `step`."""
    recipe, ctx = session.config.recipe, session.ctx
    tb = to_torch(batch, ctx.device)
    noise = _noise(recipe, step, ctx.rank, (session.local_batch, session.config.architecture.latent_dim), ctx.device)
    for group in session.optimizer.param_groups:
        group["lr"] = learning_rate(recipe, step)
    _, raws = session.model(tb, noise)
    func, _ = functional_loss(raws, tb, hard=is_hard_step(recipe, step), true_depth_weight=recipe.true_depth_weight)
    weight = param_loss_weight(recipe, step)
    param = parameter_loss(raws, tb) if weight > 0 else torch.zeros((), device=ctx.device)
    loss = func + weight * param
    session.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(session.module.parameters(), recipe.grad_clip)
    session.optimizer.step()
    return _StepLosses(total=loss, functional=func, param=param)


def _checkpoint(session: _Session, step_done: int) -> tuple[str, ...]:
    """Check every rank holds the same weights, then (rank 0) evaluate, save and report; the ranks' hashes."""
    ctx = session.ctx
    digest = _weights_sha256(session.module)
    if ctx.distributed:
        gathered: list[Any] = [None] * ctx.world_size
        torch.distributed.all_gather_object(gathered, digest)
        rank_hashes = tuple(str(h) for h in gathered)
    else:
        rank_hashes = (digest,)
    if len(set(rank_hashes)) != 1:
        raise NumericsError(f"DDP ranks hold different weights after step {step_done} (hashes {rank_hashes})")
    if ctx.rank == 0:
        metrics = {"step": step_done, "mlps_per_s": session.mlps_per_s(step_done),
                   **quick_metrics(session.module, n_per_depth=session.eval_mlps_per_depth, device=ctx.device)}
        session.history.append(metrics)
        save_checkpoint(session.out, session.module, session.optimizer, step=step_done, history=session.history,
                        extra={"rank_weight_sha256": list(rank_hashes), "world_size": ctx.world_size})
        if session.progress is not None:
            session.progress(step_done, session.stop, {k: float(v) for k, v in metrics.items()})
    if ctx.distributed:
        torch.distributed.barrier()
    return rank_hashes


def _run_steps(session: _Session, source: _BatchSource, checkpoint_every: int) -> tuple[str, ...]:
    """Steps start..stop-1 with checkpoints every checkpoint_every steps and at stop; the last checkpoint's
    per-rank weight hashes. Interrupted (Ctrl-C), a single process checkpoints what it completed first."""
    recipe = session.config.recipe
    rank_hashes: tuple[str, ...] = ()
    completed = session.start
    try:
        for step in range(session.start, session.stop):
            losses = _train_step(session, source.get(step), step)
            done = completed = step + 1
            loss_value = losses.total.item()
            if not math.isfinite(loss_value):
                raise NumericsError(f"training loss became {loss_value} at step {done}; lower recipe.lr")
            if session.progress is not None and session.ctx.rank == 0:
                session.progress(done, session.stop, {
                    "loss": loss_value, "functional": losses.functional.item(), "param": losses.param.item(),
                    "lr": learning_rate(recipe, step), "mlps_per_s": session.mlps_per_s(done),
                })
            if done % checkpoint_every == 0 or done == session.stop:
                rank_hashes = _checkpoint(session, done)
    except KeyboardInterrupt:
        # training in pieces: keep what was done (single process only; DDP peers cannot agree on a step here)
        history = session.history
        unsaved = completed > session.start and (not history or history[-1]["step"] != completed)
        if unsaved and not session.ctx.distributed:
            _checkpoint(session, completed)
        raise
    return rank_hashes


def _train(
    config: EmbeddingConfig,
    out: Path,
    ctx: DistContext,
    *,
    resume: bool,
    until: int | None,
    checkpoint_every: int,
    eval_mlps_per_depth: int,
    data_workers: int,
    progress: ProgressFn | None,
) -> TrainResult:
    recipe = config.recipe
    stop = _checked_stop(recipe, ctx, until=until, checkpoint_every=checkpoint_every, data_workers=data_workers)
    _check_out_dir(out, config, resume)
    if ctx.distributed:
        torch.distributed.barrier()  # every rank has checked the folder before rank 0 writes into it

    module = build_autoencoder(config, seed=recipe.seed).to(ctx.device)
    optimizer = torch.optim.Adam(module.parameters(), lr=recipe.lr)
    start, history = _resume_or_begin(out, config, module, optimizer, resume=resume, rank=ctx.rank)
    if start >= stop:  # nothing left to do (a finished run, or --until at or before the checkpoint)
        return TrainResult(out_dir=out, start_step=start, step=start, finished=start >= recipe.steps,
                           history=tuple(history), mlps_per_s=0.0, world_size=ctx.world_size, rank_weight_sha256=())
    model = _parallel(module, ctx)
    module.train()
    session = _Session(config=config, out=out, ctx=ctx, module=module, model=model, optimizer=optimizer,
                       start=start, stop=stop, local_batch=recipe.batch_size // ctx.world_size, history=history, eval_mlps_per_depth=eval_mlps_per_depth,
                       progress=progress, started_at=time.perf_counter())
    source = _BatchSource(config, ctx.rank, session.local_batch, start, stop, data_workers)
    try:
        rank_hashes = _run_steps(session, source, checkpoint_every)
    finally:
        source.close()
    finished = stop == recipe.steps
    if finished and ctx.rank == 0:
        save_embedding(module, out, steps=stop, metrics=history[-1] if history else {}, force=True)
    return TrainResult(
        out_dir=out,
        start_step=start,
        step=stop,
        finished=finished,
        history=tuple(history),
        mlps_per_s=session.mlps_per_s(stop),
        world_size=ctx.world_size,
        rank_weight_sha256=rank_hashes,
    )
