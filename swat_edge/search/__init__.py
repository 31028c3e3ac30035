"""Search (torch): the latent search through the embedding, weight-space fine-tuning, the differentiable cost
face (cost), the objective, and run_search, which turns a Dataset and a target into a chosen SparseMLP.

The only stage that imports torch; importing it without torch raises MissingExtraError. embedding/ is the
autoencoder it searches in. May import: errors, files, model, data, compile, device. Never imports export,
measure or runs: the CLI hands a SearchResult to runs.
"""
from __future__ import annotations

from ..errors import MissingExtraError

try:
    import torch
except ImportError:
    raise MissingExtraError("swat_edge.search (the embedding and the search)") from None

from .compare_decoders import compare_with_untrained  # noqa: E402
from .embedding.autoencoder import Autoencoder, Embedding, build_autoencoder  # noqa: E402
from .embedding.config import PRESETS, Architecture, EmbeddingConfig, Recipe, make_config  # noqa: E402
from .embedding.decode import SoftNetwork, decode_soft, harden, soft_forward, to_sparse_mlp, with_temperature  # noqa: E402
from .embedding.evaluate import evaluate_embedding  # noqa: E402
from .embedding.family import Family  # noqa: E402
from .embedding.generator import Distribution, sample_batch  # noqa: E402
from .embedding.storage import load_embedding, save_embedding  # noqa: E402
from .embedding.train import train_embedding  # noqa: E402
from .latent import fine_tune, search_latent  # noqa: E402

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
    "set_torch_threads",
    "soft_forward",
    "to_sparse_mlp",
    "train_embedding",
    "with_temperature",
]


def set_torch_threads(threads: int) -> None:
    """Use `threads` intra-op threads and one inter-op thread in this process (what --threads sets)."""
    torch.set_num_threads(threads)  # measured: 1 thread per process is fastest on a shared 2-core machine
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed earlier in this process (tests call the CLI repeatedly)
        pass
