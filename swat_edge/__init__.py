"""swat-edge: an edge deployment compiler for small sparse MLPs. Never imports torch at import time."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import SwatError  # noqa: E402
from .model import Layer, SparseMLP, forward, load_model, save_model  # noqa: E402

__all__ = ["__version__", "SwatError", "SparseMLP", "Layer", "load_model", "save_model", "forward"]
