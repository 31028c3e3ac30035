"""Embedding files: safetensors weights + a JSON sidecar (config, steps, metrics, sha256); never pickle.

An embedding directory holds `embedding.safetensors` and `embedding.json`. A training directory also holds
`config.json` and `checkpoint/` (the embedding pair plus `optimizer.safetensors` and `train_state.json`:
optimizer tensors in safetensors, its scalars in JSON). A checkpoint is written into a temporary folder and
swapped in by rename, so an interrupted write never leaves a half checkpoint as the latest one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from ...errors import InputError, MissingFileError, ModelFileError, SchemaVersionError, UsageError
from ...files import atomic_write_bytes, atomic_write_text, read_json
from .autoencoder import Autoencoder, Embedding, build_autoencoder
from .config import EmbeddingConfig, config_from_dict

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "WEIGHTS_FILE",
    "META_FILE",
    "DEFAULT_EMBEDDING_DIR",
    "weights_to_bytes",
    "save_embedding",
    "load_embedding",
    "resolve_embedding",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_run_config",
    "write_run_config",
    "check_same_config",
    "has_checkpoint",
]

FORMAT_NAME = "swat-edge.embedding"
SCHEMA_VERSION = 1
WEIGHTS_FILE = "embedding.safetensors"
META_FILE = "embedding.json"
_OPT_WEIGHTS = "optimizer.safetensors"
_TRAIN_STATE = "train_state.json"
_RUN_CONFIG = "config.json"
_CHECKPOINT = "checkpoint"
DEFAULT_EMBEDDING_DIR = Path(__file__).resolve().parent / "default"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_to_bytes(module: Autoencoder) -> bytes:
    """Canonical safetensors bytes of the module's weights (float32, contiguous, CPU)."""
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    return save(state, metadata={"format": FORMAT_NAME})


def _meta(config: EmbeddingConfig, steps: int, metrics: dict[str, Any], weights: bytes, n_parameters: int) -> dict:
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "swat_edge_version": __version__,
        "config": config.to_dict(),
        "steps": int(steps),
        "metrics": metrics,
        "n_parameters": int(n_parameters),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(weights),
        "weights_bytes": len(weights),
    }


def save_embedding(
    module: Autoencoder,
    directory: str | os.PathLike,
    *,
    steps: int,
    metrics: dict[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Write `directory`/embedding.safetensors and embedding.json (weights first, the JSON with their hash last)."""
    d = Path(directory)
    weights = weights_to_bytes(module)
    n_params = sum(p.numel() for p in module.parameters())
    meta = _meta(module.config, steps, metrics or {}, weights, n_params)
    atomic_write_bytes(d / WEIGHTS_FILE, weights, force=force)
    atomic_write_text(d / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n", force=force)
    return d / META_FILE


def resolve_embedding(name_or_path: str | os.PathLike) -> Path:
    """The embedding.json that `name_or_path` designates: "default" (the shipped one), an embedding or training
    directory, or the .json / .safetensors file of an embedding."""
    if str(name_or_path) == "default":
        meta = DEFAULT_EMBEDDING_DIR / META_FILE
        if not meta.exists():
            raise UsageError(
                f"the default embedding is not installed ({meta} is missing); train one with "
                "'swat-edge embed train --preset default --out DIR' and pass DIR instead"
            )
        return meta
    p = Path(name_or_path)
    if p.is_dir():
        for candidate in (p / META_FILE, p / _CHECKPOINT / META_FILE):
            if candidate.exists():
                return candidate
        raise MissingFileError(p / META_FILE, "embedding file (is this an embedding or training folder?)")
    if p.suffix == ".safetensors":
        p = p.with_name(META_FILE) if p.name == WEIGHTS_FILE else p.with_suffix(".json")
    if not p.exists():
        if not Path(name_or_path).exists() and os.sep not in str(name_or_path) and "." not in str(name_or_path):
            raise UsageError(f"unknown embedding {str(name_or_path)!r}: give 'default' or a path to an embedding folder")
        raise MissingFileError(p, "embedding file")
    return p


def _read_meta(meta_path: Path) -> dict[str, Any]:
    meta = read_json(meta_path, "embedding file", error=ModelFileError, hint="the embedding file is corrupted")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{meta_path}: not a {FORMAT_NAME} file (no 'format': {FORMAT_NAME!r})")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{meta_path}: embedding schema version {meta.get('schema_version')!r} is not supported; this "
            f"swat-edge reads version {SCHEMA_VERSION} (upgrade swat-edge or retrain the embedding)"
        )
    for key in ("config", "weights_sha256", "steps"):
        if key not in meta:
            raise ModelFileError(f"{meta_path}: field {key!r} is missing; the embedding file is incomplete")
    return meta


def _load_state(weights_path: Path, expected_sha: str, module: Autoencoder) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not weights_path.exists():
        raise MissingFileError(weights_path, "embedding weights file")
    data = weights_path.read_bytes()
    actual = _sha256(data)
    if actual != expected_sha:
        raise ModelFileError(
            f"{weights_path}: sha256 {actual[:12]}... does not match {expected_sha[:12]}... recorded in its JSON; "
            "the file is corrupted or belongs to another embedding (copy both files again, or retrain)"
        )
    try:
        state = load(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"{weights_path}: corrupt safetensors data ({exc})") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        name = (missing or extra)[0]
        what = "lacks" if missing else "has an unexpected"
        raise ModelFileError(f"{weights_path}: {what} tensor {name!r}; weights and config do not belong together")
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelFileError(
                f"{weights_path}: tensor {name!r} has shape {tuple(state[name].shape)}, the config needs "
                f"{tuple(tensor.shape)}; weights and config do not belong together"
            )
    module.load_state_dict(state)


def load_embedding(name_or_path: str | os.PathLike = "default", *, device: str | torch.device = "cpu") -> Embedding:
    """Load an embedding ("default" or a path), checking its format, hash and tensor shapes; eval mode."""
    meta_path = resolve_embedding(name_or_path)
    meta = _read_meta(meta_path)
    try:
        config = config_from_dict(meta["config"], where=f"{meta_path}: config")
    except InputError as exc:
        raise ModelFileError(str(exc)) from None
    module = build_autoencoder(config)
    _load_state(meta_path.parent / str(meta.get("weights_file", WEIGHTS_FILE)), str(meta["weights_sha256"]), module)
    module.to(device).eval()
    return Embedding(
        config=config, module=module, steps=int(meta["steps"]), metrics=dict(meta.get("metrics") or {}),
        weights_sha256=str(meta["weights_sha256"]), source=str(meta_path),
    )


# ---------------------------------------------------------------------------------------------------------
# Training runs: config.json + checkpoint/


def write_run_config(directory: Path, config: EmbeddingConfig) -> None:
    atomic_write_text(directory / _RUN_CONFIG, config.to_json() + "\n", force=True)


def read_run_config(directory: Path) -> EmbeddingConfig:
    path = directory / _RUN_CONFIG
    data = read_json(path, "training config (is this a training folder?)", error=ModelFileError)
    try:
        return config_from_dict(data, where=str(path))
    except InputError as exc:
        raise ModelFileError(str(exc)) from None


class Checkpoint:
    """What a resume needs: step, model state, optimizer state dict, and the run's metric history."""

    def __init__(self, step: int, model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                 history: list[dict[str, Any]]) -> None:
        self.step, self.model_state, self.optimizer_state, self.history = step, model_state, optimizer_state, history


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        state_meta[str(idx)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().to("cpu").contiguous()
                state_meta[str(idx)][key] = {"tensor": f"state.{idx}.{key}"}
            else:
                state_meta[str(idx)][key] = {"value": value}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"state": state_meta, "param_groups": groups}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        state: dict[int, dict[str, Any]] = {}
        for idx, entry in meta["state"].items():
            state[int(idx)] = {
                key: (tensors[spec["tensor"]] if "tensor" in spec else spec["value"]) for key, spec in entry.items()
            }
        groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where}: optimizer state is inconsistent ({exc!r}); the checkpoint is corrupted") from None
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    directory: Path,
    module: Autoencoder,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write directory/checkpoint/ (embedding pair + optimizer) by building it aside and renaming it in."""
    from safetensors.torch import save

    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=directory))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a checkpoint folder should be readable like any folder
    try:
        metrics = history[-1] if history else {}
        save_embedding(module, tmp, steps=step, metrics=metrics, force=True)
        opt_tensors, opt_meta = _optimizer_to_files(optimizer)
        opt_bytes = save(opt_tensors, metadata={"format": FORMAT_NAME + ".optimizer"})
        (tmp / _OPT_WEIGHTS).write_bytes(opt_bytes)
        state = {
            "format": FORMAT_NAME + ".train-state",
            "schema_version": SCHEMA_VERSION,
            "step": int(step),
            "config": module.config.to_dict(),
            "optimizer": opt_meta,
            "optimizer_sha256": _sha256(opt_bytes),
            "history": history,
            **(extra or {}),
        }
        (tmp / _TRAIN_STATE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        final, old = directory / _CHECKPOINT, directory / (_CHECKPOINT + ".old")
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def has_checkpoint(directory: Path) -> bool:
    return any((directory / name / _TRAIN_STATE).exists() for name in (_CHECKPOINT, _CHECKPOINT + ".old"))


def load_checkpoint(directory: Path, config: EmbeddingConfig) -> Checkpoint:
    """Read directory/checkpoint (or checkpoint.old if a swap was interrupted); refuse another config's."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    ckpt = directory / _CHECKPOINT
    if not (ckpt / _TRAIN_STATE).exists() and (directory / (_CHECKPOINT + ".old") / _TRAIN_STATE).exists():
        ckpt = directory / (_CHECKPOINT + ".old")
    state_path = ckpt / _TRAIN_STATE
    state = read_json(state_path, "checkpoint (nothing to resume: train without --resume first)",
                      error=ModelFileError, hint="the checkpoint is corrupted")
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME + ".train-state":
        raise ModelFileError(f"{state_path}: not a swat-edge training checkpoint")
    check_same_config(directory, state.get("config"), config)
    embedding = load_embedding(ckpt)
    opt_path = ckpt / _OPT_WEIGHTS
    if not opt_path.exists():
        raise MissingFileError(opt_path, "optimizer state file")
    data = opt_path.read_bytes()
    if _sha256(data) != state.get("optimizer_sha256"):
        raise ModelFileError(f"{opt_path}: sha256 does not match {state_path}; the checkpoint is corrupted")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"{opt_path}: corrupt safetensors data ({exc})") from None
    return Checkpoint(
        step=int(state["step"]),
        model_state=embedding.module.state_dict(),
        optimizer_state=_optimizer_from_files(tensors, state.get("optimizer") or {}, str(state_path)),
        history=list(state.get("history") or []),
    )


def check_same_config(directory: Path, stored: Any, config: EmbeddingConfig) -> None:
    """Refuse to resume a run in `directory` (stored config as a dict) with a different config."""
    if stored != config.to_dict():
        diff = _first_difference(stored, config.to_dict())
        raise UsageError(
            f"{directory}: was trained with another config ({diff}); resume with the same "
            "--preset/--config/--steps/--seed, or train into a new --out folder"
        )


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'config'}: {a!r} in the checkpoint, {b!r} now"
