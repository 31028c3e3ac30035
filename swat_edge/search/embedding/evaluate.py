"""How good is an embedding: reconstruction R^2 on held-out random MLPs (per depth, next to a quadratic fit),
right-depth rate, latent smoothness. (Whether search through it beats an untrained decoder: search.compare_decoders.)"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...errors import InputError
from .autoencoder import Autoencoder, to_torch
from .config import EmbeddingConfig
from .decode import harden, soft_forward, split_output
from .generator import MLPBatch, heldout_seed, sample_batch

__all__ = [
    "DepthRow",
    "EvalReport",
    "quadratic_features",
    "quadratic_r2",
    "spearman",
    "reconstruction_r2",
    "evaluate_embedding",
    "quick_metrics",
]

_THRESHOLD = 0.9


@dataclass(frozen=True)
class DepthRow:
    """Held-out MLPs of one true depth. R^2 is of the best decoder, hard-decoded (what the search exports)."""

    depth: int
    n_mlps: int
    median_r2: float
    share_above_0_9: float
    median_r2_soft: float
    quadratic_median_r2: float
    quadratic_share_above_0_9: float
    beats_quadratic_share: float
    right_depth_share: float


@dataclass(frozen=True)
class EvalReport:
    rows: tuple[DepthRow, ...]
    right_depth_share: float
    spearman_latent_vs_function: float
    n_pairs: int
    n_points: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.__dict__ for r in self.rows],
            "right_depth_share": self.right_depth_share,
            "spearman_latent_vs_function": self.spearman_latent_vs_function,
            "n_pairs": self.n_pairs,
            "n_points": self.n_points,
            "seed": self.seed,
        }


def quadratic_features(x: np.ndarray) -> np.ndarray:
    """[1, x_i, x_i x_j (i <= j)] for x (P, n)."""
    n = x.shape[1]
    cols = [np.ones(len(x))] + [x[:, i] for i in range(n)]
    cols += [x[:, i] * x[:, j] for i in range(n) for j in range(i, n)]
    return np.stack(cols, axis=1)


def _r2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R^2 per MLP over points and outputs: pred, y (B, P, n_outputs)."""
    var = y.var(axis=1).mean(axis=-1)
    mse = ((pred - y) ** 2).mean(axis=(1, 2))
    return 1.0 - mse / np.maximum(var, 1e-12)


def quadratic_r2(batch: MLPBatch, fit_points: int) -> np.ndarray:
    """R^2 of a least-squares quadratic in each MLP's real inputs, fitted on the first `fit_points` points and
    scored on the rest (held-out points, like the embedding's score)."""
    x_fit, x_test = batch.x[:fit_points], batch.x[fit_points:]
    y_fit, y_test = batch.y[:, :fit_points], batch.y[:, fit_points:]
    pred = np.empty_like(y_test)
    for n in np.unique(batch.n_inputs):
        sel = np.flatnonzero(batch.n_inputs == n)
        a_fit, a_test = quadratic_features(x_fit[:, :n]), quadratic_features(x_test[:, :n])
        # one solve for all MLPs with this input count: targets stacked as columns
        targets = np.moveaxis(y_fit[sel], 0, 1).reshape(fit_points, -1)
        coef, *_ = np.linalg.lstsq(a_fit, targets, rcond=None)
        pred[sel] = np.moveaxis((a_test @ coef).reshape(len(x_test), len(sel), -1), 1, 0)
    return _r2(pred, y_test)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order; the inputs here are continuous)."""
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


@torch.no_grad()
def reconstruction_r2(
    module: Autoencoder, batch: MLPBatch, score_from: int = 0, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode the batch, decode with every decoder; R^2 on points[score_from:] per decoder.

    Returns (hard (K, B), soft at temperature 1 (K, B), latents (B, latent_dim)).
    """
    family = module.config.family
    tb = to_torch(batch, device)
    latents = module.encode(tb)
    xm = tb.x[score_from:].unsqueeze(0) * tb.input_mask[:, None, :]
    y = batch.y[:, score_from:]
    hard, soft = [], []
    for k in family.depths:
        net = split_output(module.decode(latents, k), family, k)
        soft.append(_r2(soft_forward(net, xm).double().cpu().numpy(), y))
        hard.append(_r2(soft_forward(harden(net), xm).double().cpu().numpy(), y))
    return np.stack(hard), np.stack(soft), latents.double().cpu().numpy()


def _pairs(n: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    i = rng.integers(n, size=n_pairs)
    j = (i + rng.integers(1, n, size=n_pairs)) % n  # never a pair of one MLP with itself
    return i, j


def evaluate_embedding(
    embedding: Any,
    *,
    n_per_depth: int = 250,
    n_points: int = 256,
    n_pairs: int = 5000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> EvalReport:
    """Reconstruction on held-out MLPs (seeds disjoint from training), per true depth, hard-decoded, next to a
    quadratic least-squares fit; right-depth rate; Spearman(latent distance, functional distance) over pairs."""
    module: Autoencoder = getattr(embedding, "module", embedding)
    config: EmbeddingConfig = module.config
    family = config.family
    if n_per_depth < 1 or n_points < 8:
        raise InputError(f"evaluation needs n_per_depth >= 1 and n_points >= 8, got {n_per_depth} and {n_points}")
    batch = sample_batch(family, config.distribution, n_per_depth * len(family.depths), 2 * n_points,
                         heldout_seed(seed))
    hard, soft, latents = reconstruction_r2(module, batch, score_from=n_points, device=device)
    quad = quadratic_r2(batch, n_points)
    best_hard = hard.max(axis=0)
    best_soft = soft.max(axis=0)
    right = (np.asarray(family.depths)[hard.argmax(axis=0)] == batch.depth)
    rows = []
    for k in family.depths:
        sel = batch.depth == k
        rows.append(DepthRow(
            depth=k,
            n_mlps=int(sel.sum()),
            median_r2=float(np.median(best_hard[sel])),
            share_above_0_9=float(np.mean(best_hard[sel] > _THRESHOLD)),
            median_r2_soft=float(np.median(best_soft[sel])),
            quadratic_median_r2=float(np.median(quad[sel])),
            quadratic_share_above_0_9=float(np.mean(quad[sel] > _THRESHOLD)),
            beats_quadratic_share=float(np.mean(best_hard[sel] > quad[sel])),
            right_depth_share=float(np.mean(right[sel])),
        ))
    rng = np.random.default_rng(np.random.SeedSequence(heldout_seed(seed)).spawn(1)[0])
    i, j = _pairs(batch.size, n_pairs, rng)
    y = batch.y[:, n_points:]
    functional = np.sqrt(((y[i] - y[j]) ** 2).mean(axis=(1, 2)))
    latent = np.linalg.norm(latents[i] - latents[j], axis=1)
    return EvalReport(
        rows=tuple(rows),
        right_depth_share=float(np.mean(right)),
        spearman_latent_vs_function=spearman(latent, functional),
        n_pairs=n_pairs,
        n_points=n_points,
        seed=seed,
    )


def quick_metrics(module: Autoencoder, *, n_per_depth: int = 32, n_points: int = 256,
                  device: str | torch.device = "cpu") -> dict[str, float]:
    """Median hard R^2 of the best decoder per depth on a fixed held-out batch (for training checkpoints)."""
    family = module.config.family
    was_training = module.training
    module.eval()
    try:
        batch = sample_batch(family, module.config.distribution, n_per_depth * len(family.depths), n_points,
                             heldout_seed(10**6))
        hard, _, _ = reconstruction_r2(module, batch, device=device)
    finally:
        module.train(was_training)
    best = hard.max(axis=0)
    out = {f"r2_depth{k}": float(np.median(best[batch.depth == k])) for k in family.depths}
    out["right_depth"] = float(np.mean(np.asarray(family.depths)[hard.argmax(axis=0)] == batch.depth))
    return out


# ---------------------------------------------------------------------------------------------------------
# Does the embedding earn its place: the same latent search through the trained and an untrained decoder.
