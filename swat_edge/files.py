"""Safe file handling: input checks, overwrite refusal, and atomic writes (temp file + rename)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError, MissingFileError, OutputExistsError, UsageError

__all__ = [
    "check_input_file",
    "read_json",
    "check_output_path",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
]


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(p, what)
    if p.is_dir():
        raise UsageError(f"{p}: is a directory, expected a {what}")
    return p


def read_json(
    path: str | os.PathLike, what: str = "JSON file", *, error: type[InputError] = InputError, hint: str = ""
) -> Any:
    """The parsed content of a JSON file, or a one-line error that names the file and what is wrong with it.

    MissingFileError "no such <what>" when it is absent; `error` (InputError or a subclass such as
    ModelFileError) when it is not UTF-8 or not valid JSON, with "; <hint>" appended when a hint is given
    (e.g. "the checkpoint is corrupted"). What the content must look like is the caller's to check.
    """
    p = check_input_file(path, what)
    suffix = f"; {hint}" if hint else ""
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{p}: not a JSON file (not UTF-8 text){suffix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){suffix}") from None


def check_output_path(path: str | os.PathLike, *, force: bool) -> Path:
    """Refuse to clobber an existing file without --force and fail early if the folder cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p}: is a directory; give a file name")
    if p.exists() and not force:
        raise OutputExistsError(p)
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"{p}: cannot write to folder {parent} (permission denied)")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{p}: {parent} is not a folder")
    return p


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; rename it onto `path` only if the block succeeds.

    An interrupted or failed write leaves the destination as it was and no temp file behind.
    """
    dest = check_output_path(path, force=force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a written model should be readable like any file
    try:
        yield tmp
        if dest.exists() and not force:  # someone else created it meanwhile
            raise OutputExistsError(dest)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, force: bool) -> Path:
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, force: bool) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), force=force)
