"""Embedding configuration: family, random-MLP distribution, architecture, training recipe; the presets."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from ...errors import InputError, UsageError
from .family import Family, family_from_dict
from .generator import Distribution, distribution_from_dict

__all__ = [
    "Architecture",
    "Recipe",
    "EmbeddingConfig",
    "PRESETS",
    "make_config",
    "config_from_dict",
    "check_architecture",
    "check_recipe",
]


@dataclass(frozen=True)
class Architecture:
    """MLP encoder -> latent vector (layer-normalised, no affine) -> one MLP decoder per depth.

    probe_points: the encoder also reads the MLP's outputs on this many fixed points (0: parameters only).
    """

    latent_dim: int = 128
    encoder_hidden: int = 512
    encoder_layers: int = 3
    decoder_hidden: int = 512
    decoder_layers: int = 2
    probe_points: int = 64


@dataclass(frozen=True)
class Recipe:
    """Training recipe. `steps` is the length of the learning-rate schedule (and the default stop).

    Loss = functional MSE, min over decoders, on shared points; on a share `hard_fraction` of the steps it is
    computed on the hard networks (argmax activations, gates at 0.5, straight-through gradients: the regime
    the search ends in), on the others at activation temperature 1. A share true_depth_weight of it is the MSE
    of each MLP's own-depth decoder instead of the min (winner-take-all lets one decoder take every MLP).
    Optional: a parameter-copy loss on the true-depth decoder weighted param_loss_weight, decaying geometrically
    to 1% of that by param_loss_decay_steps. The prototype needed it; with the probe-reading encoder it slowed
    training (median R^2 at step 500 of the default schedule 0.67/0.63/0.53/0.52 with weight 1, 0.95/0.88/0.80/
    0.72 without), so it is off by default.
    """

    # The shipped default embedding's schedule: 9,000 steps of 1,024 MLPs (9.2 M networks), 6.3 min on one
    # H200 with 15 processes drawing batches (--data-workers 15); about 2.3 h on one CPU core.
    steps: int = 9000
    batch_size: int = 1024
    n_points: int = 128
    lr: float = 1e-3
    warmup_steps: int = 1000
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    param_loss_weight: float = 0.0
    param_loss_decay_steps: int = 6000
    hard_fraction: float = 0.5
    true_depth_weight: float = 0.5
    latent_noise: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class EmbeddingConfig:
    family: Family = Family()
    distribution: Distribution = Distribution()
    architecture: Architecture = Architecture()
    recipe: Recipe = Recipe()

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family.to_dict(),
            "distribution": self.distribution.to_dict(),
            "architecture": asdict(self.architecture),
            "recipe": asdict(self.recipe),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_ARCH_LIMITS = {
    "latent_dim": (1, 4096),
    "encoder_hidden": (1, 8192),
    "encoder_layers": (1, 16),
    "decoder_hidden": (1, 8192),
    "decoder_layers": (1, 16),
    "probe_points": (0, 4096),
}
_RECIPE_INT_LIMITS = {
    "steps": (1, 10**9),
    "batch_size": (1, 10**6),
    "n_points": (2, 10**6),
    "warmup_steps": (0, 10**9),
    "param_loss_decay_steps": (1, 10**9),
    "seed": (0, 2**63 - 1),
}
_RECIPE_FLOAT_LIMITS = {
    "lr": (1e-9, 10.0),
    "final_lr_fraction": (0.0, 1.0),
    "grad_clip": (0.0, 1e6),
    "param_loss_weight": (0.0, 1e6),
    "hard_fraction": (0.0, 1.0),
    "true_depth_weight": (0.0, 1.0),
    "latent_noise": (0.0, 10.0),
}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_architecture(arch: Architecture, where: str = "architecture") -> Architecture:
    for name, (low, high) in _ARCH_LIMITS.items():
        v = getattr(arch, name)
        if not _is_int(v) or not low <= v <= high:
            raise InputError(f"{where}: {name} is {v!r}; it must be a whole number in {low}..{high}")
    return arch


def check_recipe(recipe: Recipe, where: str = "recipe") -> Recipe:
    for name, (low, high) in _RECIPE_INT_LIMITS.items():
        v = getattr(recipe, name)
        if not _is_int(v) or not low <= v <= high:
            raise InputError(f"{where}: {name} is {v!r}; it must be a whole number in {low}..{high}")
    for name, (low, high) in _RECIPE_FLOAT_LIMITS.items():
        v = getattr(recipe, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
            raise InputError(f"{where}: {name} is {v!r}; it must be a number in [{low}, {high}]")
    return recipe


def _plain(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected an object with fields {', '.join(f.name for f in fields(cls))}")
    known = {f.name for f in fields(cls)}
    extra = sorted(set(data) - known)
    if extra:
        raise InputError(f"{where}: unknown field {extra[0]!r}; known fields: {', '.join(sorted(known))}")
    return cls(**data)


def config_from_dict(data: Mapping[str, Any], base: EmbeddingConfig | None = None, where: str = "config") -> EmbeddingConfig:
    """A checked config: `data`'s sections (family, distribution, architecture, recipe) override `base` field by
    field. Unknown sections or fields are refused."""
    base = base or EmbeddingConfig()
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a JSON object with sections family, distribution, architecture, recipe")
    sections = {"family", "distribution", "architecture", "recipe"}
    extra = sorted(set(data) - sections)
    if extra:
        raise InputError(f"{where}: unknown section {extra[0]!r}; known sections: {', '.join(sorted(sections))}")
    merged = base.to_dict()
    for name in sections & set(data):
        if not isinstance(data[name], Mapping):
            raise InputError(f"{where}: section {name!r} must be an object of fields")
        merged[name] = {**merged[name], **data[name]}
    return EmbeddingConfig(
        family=family_from_dict(merged["family"], f"{where}: family"),
        distribution=distribution_from_dict(merged["distribution"], f"{where}: distribution"),
        architecture=check_architecture(_plain(Architecture, merged["architecture"], f"{where}: architecture"),
                                        f"{where}: architecture"),
        recipe=check_recipe(_plain(Recipe, merged["recipe"], f"{where}: recipe"), f"{where}: recipe"),
    )


PRESETS: dict[str, EmbeddingConfig] = {
    # inputs 1-8, depth 1-4, width <= 8, one output, {identity, relu, leaky_relu, tanh, sigmoid}
    "default": EmbeddingConfig(),
    # for tests and smoke runs: seconds on one core
    "tiny": EmbeddingConfig(
        family=Family(max_inputs=2, min_depth=1, max_depth=2, max_width=3, activations=("relu", "tanh", "sigmoid")),
        architecture=Architecture(latent_dim=8, encoder_hidden=32, encoder_layers=2, decoder_hidden=32,
                                  decoder_layers=1, probe_points=8),
        recipe=Recipe(steps=20, batch_size=16, n_points=16, warmup_steps=2, param_loss_decay_steps=10),
    ),
}


def make_config(
    preset: str = "default",
    *,
    overrides: Mapping[str, Any] | None = None,
    steps: int | None = None,
    seed: int | None = None,
) -> EmbeddingConfig:
    """The preset's config with optional JSON-like overrides and --steps / --seed applied, checked."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    config = config_from_dict(overrides or {}, PRESETS[preset])
    recipe_changes: dict[str, Any] = {}
    if steps is not None:
        recipe_changes["steps"] = steps
    if seed is not None:
        recipe_changes["seed"] = seed
    if recipe_changes:
        config = replace(config, recipe=check_recipe(replace(config.recipe, **recipe_changes), "recipe"))
    return config
