"""Typed errors of the library; the CLI maps them to one-line messages and exit codes."""
from __future__ import annotations

__all__ = [
    "SwatError",
    "UsageError",
    "OutputExistsError",
    "MissingFileError",
    "UnknownTargetError",
    "InputError",
    "DataError",
    "ModelFileError",
    "SchemaVersionError",
    "TargetProfileError",
    "NumericsError",
    "ToolchainError",
    "UnstableTimingError",
    "MissingExtraError",
    "SwatWarning",
]


class SwatError(Exception):
    """Base of every error swat-edge raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(SwatError):
    """The invocation must change (a flag, a path)."""

    exit_code = 2


class OutputExistsError(UsageError, FileExistsError):
    def __init__(self, path: object) -> None:
        super().__init__(f"{path}: already exists; pass --force to overwrite it")
        self.path = path


class MissingFileError(UsageError, FileNotFoundError):
    def __init__(self, path: object, what: str = "file") -> None:
        super().__init__(f"{path}: no such {what}")
        self.path = path


class UnknownTargetError(UsageError, LookupError):
    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"unknown target {name!r}; available: {', '.join(available)} (or a path to a .toml profile)")
        self.name = name
        self.available = available


class InputError(SwatError, ValueError):
    """The content of something the user handed us is wrong."""


class DataError(InputError):
    """A table (CSV/NPZ) is malformed; names the file, row and column where known."""

    def __init__(self, path: object, problem: str, *, row: int | None = None, column: str | None = None) -> None:
        where = str(path)
        if row is not None:
            where += f" row {row}"
        if column is not None:
            where += f", column {column!r}" if row is not None else f" column {column!r}"
        super().__init__(f"{where}: {problem}")
        self.path, self.row, self.column, self.problem = path, row, column, problem


class ModelFileError(InputError):
    """A model file that is not a swat-edge model / not ONNX / truncated / inconsistent."""


class SchemaVersionError(ModelFileError):
    pass


class TargetProfileError(InputError):
    def __init__(self, path: object, problem: str, *, key: str | None = None) -> None:
        where = f"{path}" + (f": field {key!r}" if key else "")
        super().__init__(f"{where}: {problem}")
        self.path, self.key, self.problem = path, key, problem


class NumericsError(SwatError):
    """A compiled or exported model disagrees with the reference forward pass beyond tolerance."""


class ToolchainError(SwatError):
    """A tool we need (C compiler, onnxruntime feature) is missing or failed."""


class UnstableTimingError(SwatError):
    """Timings too noisy to trust (a busy or throttling machine): a measurement that cannot be fitted or repeated."""


class MissingExtraError(SwatError, ImportError):
    def __init__(self, feature: str, *, package: str = "torch", extra: str = "search") -> None:
        super().__init__(f"{feature} needs {package}: pip install 'swat-edge[{extra}]'")


class SwatWarning(UserWarning):
    pass
