"""Fixtures for the embedding tests: the tiny preset and a briefly trained tiny embedding."""
from __future__ import annotations

from pathlib import Path

import pytest
from cornn_data import CORNN_DIR, HAVE_CORNN, SKIP_REASON


@pytest.fixture(scope="session")
def tiny_config():
    pytest.importorskip("torch")
    from swat_edge.search.embedding.config import make_config

    return make_config("tiny")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    """A tiny embedding trained for its full 20-step schedule (a training folder)."""
    import torch

    from swat_edge.search.embedding.train import train_embedding

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny") / "run"
    train_embedding(tiny_config, out, checkpoint_every=10, device="cpu")
    return out


@pytest.fixture
def cornn_dir() -> Path:
    if not HAVE_CORNN:
        pytest.skip(SKIP_REASON)
    return CORNN_DIR
