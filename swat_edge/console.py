"""Terminal output: rich tables and progress on stdout, one-line errors and verdicts on stderr."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from .files import atomic_write_text

__all__ = ["stdout", "stderr", "make_table", "print_table", "write_json"]

# Wider than rich's 80-column default when output is piped (CI logs, files): tables stay one row per line.
_PIPE_WIDTH = 160
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def make_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    # Numbers never wrap; only the last column (free text such as "what changed") may fold.
    last = len(columns) - 1
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i in (0, last) else "right", no_wrap=i != last)
    for row in rows:
        table.add_row(*(str(c) for c in row))
    return table


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    stdout.print(make_table(title, columns, rows))


def write_json(path: str | os.PathLike, payload: Any, *, force: bool) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", force=force)
