"""Shared fixtures: the bundled example and small seeded models."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from swat_edge.model import SparseMLP, load_model, random_model

REPO = Path(__file__).resolve().parent.parent
# Test helpers (clirun.py) import by name from every test folder, tests/search included.
sys.path.insert(0, str(Path(__file__).resolve().parent))
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def example_model_path() -> Path:
    return EXAMPLES / "motor.safetensors"


@pytest.fixture(scope="session")
def example_model(example_model_path: Path) -> SparseMLP:
    return load_model(example_model_path)


@pytest.fixture
def mixed_model() -> SparseMLP:
    """2-7-7-7-1, per-neuron mixed activations, 30% zero weights, some gated-off neurons, with scaling."""
    return random_model((2, 7, 7, 7, 1), sparsity=0.3, dead_fraction=0.15, seed=3)
