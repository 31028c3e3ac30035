"""Ablation: does latent search through the trained decoder beat the same search through an untrained one?

Runs the search on CORNN tasks (`swat-edge embed eval --cornn`); it sits above the embedding package because it
uses the search, which the embedding must not import.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data import read_table
from ..errors import InputError
from ..files import check_input_file
from .embedding.autoencoder import Autoencoder, build_autoencoder
from .latent import fine_tune, mse, search_latent

__all__ = ["CornnTask", "load_cornn_task", "DecoderComparisonRow", "compare_with_untrained"]


@dataclass(frozen=True)
class CornnTask:
    """One CORNN function, scaled by the SWAT-NN protocol: inputs from the manifest's domain to [-1, 1], the
    target to [-1, 1] with the training labels' min and max (the test set uses the same constants)."""

    slug: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_cornn_task(cornn_dir: str | os.PathLike, slug: str) -> CornnTask:
    root = Path(cornn_dir)
    manifest = check_input_file(root / "manifest.csv", "CORNN manifest")
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = {row["slug"]: row for row in csv.DictReader(fh)}
    if slug not in rows:
        raise InputError(f"{manifest}: no task {slug!r}; available: {', '.join(sorted(rows))}")
    row = rows[slug]
    lo = np.array([float(row["x_min"]), float(row["y_min"])])
    hi = np.array([float(row["x_max"]), float(row["y_max"])])
    train = read_table(root / row["train_file"]).values
    test = read_table(root / row["test_file"]).values
    scale_x = lambda v: 2.0 * (v[:, :2] - lo) / (hi - lo) - 1.0  # noqa: E731
    y_lo, y_hi = train[:, 2].min(), train[:, 2].max()
    scale_y = lambda v: 2.0 * (v[:, 2] - y_lo) / max(y_hi - y_lo, 1e-12) - 1.0  # noqa: E731
    return CornnTask(slug, scale_x(train), scale_y(train), scale_x(test), scale_y(test))


@dataclass(frozen=True)
class DecoderComparisonRow:
    """Test MSE (scaled target) of the latent search through the trained and the untrained decoder, before and
    after weight-space fine-tuning of the found network."""

    task: str
    seed: int
    trained_mse: float
    untrained_mse: float
    trained_finetuned_mse: float
    untrained_finetuned_mse: float
    trained_depth: int
    untrained_depth: int


def compare_with_untrained(
    embedding: Any,
    cornn_dir: str | os.PathLike,
    tasks: Sequence[str],
    *,
    seeds: Sequence[int] = (0,),
    search_steps: int = 600,
    finetune_steps: int = 500,
    starts_per_depth: int = 4,
    untrained_seed: int = 12345,
    progress: Callable[[str], None] | None = None,
) -> tuple[DecoderComparisonRow, ...]:
    """For each task and seed: 80/20 train/validation split of the training rows, latent search through the
    trained decoder and through a randomly initialised autoencoder of the same shape, then fine-tuning."""

    module: Autoencoder = getattr(embedding, "module", embedding)
    untrained = build_autoencoder(module.config, seed=untrained_seed).eval()
    rows = []
    for slug in tasks:
        task = load_cornn_task(cornn_dir, slug)
        for seed in seeds:
            perm = np.random.default_rng(seed).permutation(len(task.x_train))
            n_val = len(perm) // 5
            tr, va = perm[n_val:], perm[:n_val]
            found = {}
            for name, decoder in (("trained", module), ("untrained", untrained)):
                if progress is not None:
                    progress(f"{slug} seed {seed}: searching through the {name} decoder")
                result = search_latent(decoder, task.x_train[tr], task.y_train[tr], task.x_train[va],
                                       task.y_train[va], steps=search_steps, starts_per_depth=starts_per_depth,
                                       seed=seed)
                tuned = fine_tune(result.model, task.x_train[tr], task.y_train[tr], x_val=task.x_train[va],
                                  y_val=task.y_train[va], steps=finetune_steps, seed=seed)
                found[name] = (mse(result.model, task.x_test, task.y_test), mse(tuned, task.x_test, task.y_test),
                               result.depth)
            rows.append(DecoderComparisonRow(
                task=slug, seed=seed,
                trained_mse=found["trained"][0], untrained_mse=found["untrained"][0],
                trained_finetuned_mse=found["trained"][1], untrained_finetuned_mse=found["untrained"][1],
                trained_depth=found["trained"][2], untrained_depth=found["untrained"][2],
            ))
    return tuple(rows)
