"""Terminal output: rich tables and progress on stdout, one-line errors and verdicts on stderr."""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from .files import atomic_write_text

__all__ = ["stdout", "stderr", "make_table", "print_table", "write_json"]

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def make_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    return table


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    stdout.print(make_table(title, columns, rows))


def write_json(path: str | os.PathLike, payload: Any, *, force: bool) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", force=force)
