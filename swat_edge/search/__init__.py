"""The MLP embedding and latent search (torch side); importing it without torch raises MissingExtraError."""
from __future__ import annotations

from ..errors import MissingExtraError

try:
    import torch  # noqa: F401
except ImportError:
    raise MissingExtraError("swat_edge.search (the embedding and the search)") from None

from .config import PRESETS, Architecture, EmbeddingConfig, Recipe, make_config  # noqa: E402
from .decode import SoftNetwork, decode_soft, harden, soft_forward, to_sparse_mlp, with_temperature  # noqa: E402
from .embedding import Autoencoder, Embedding, build_autoencoder  # noqa: E402
from .evaluate import compare_with_untrained, evaluate_embedding  # noqa: E402
from .family import Family  # noqa: E402
from .generator import Distribution, sample_batch  # noqa: E402
from .latent import fine_tune, search_latent  # noqa: E402
from .storage import load_embedding, save_embedding  # noqa: E402
from .train import train_embedding  # noqa: E402

__all__ = [
    "PRESETS",
    "Architecture",
    "Autoencoder",
    "Distribution",
    "Embedding",
    "EmbeddingConfig",
    "Family",
    "Recipe",
    "SoftNetwork",
    "build_autoencoder",
    "compare_with_untrained",
    "decode_soft",
    "evaluate_embedding",
    "fine_tune",
    "harden",
    "load_embedding",
    "make_config",
    "sample_batch",
    "save_embedding",
    "search_latent",
    "soft_forward",
    "to_sparse_mlp",
    "train_embedding",
    "with_temperature",
]
