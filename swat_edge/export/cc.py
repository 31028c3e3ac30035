"""The host C toolchain: find a compiler, compile and link, run what was built; failures are one-line errors."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from ..errors import ToolchainError

__all__ = ["NO_COMPILER_HINT", "which_c_compiler", "find_c_compiler", "compile_c", "run_program"]

# Said wherever a missing compiler skips something (export's verification, the tests).
NO_COMPILER_HINT = "no C compiler found (set CC)"
_CANDIDATES = ("cc", "gcc", "clang")
_COMPILE_TIMEOUT_S = 120


def which_c_compiler(cc: str | None = None) -> list[str] | None:
    """The compiler command (`cc`, else $CC, else cc/gcc/clang on PATH), or None when none is configured or found.

    A compiler that was asked for (`cc` or $CC) but does not exist is an error, not None: the user chose it.
    """
    spec = cc if cc is not None else os.environ.get("CC") or None
    if spec is not None:
        cmd = shlex.split(spec)
        if not cmd or shutil.which(cmd[0]) is None:
            where = "cc argument" if cc is not None else "CC"
            raise ToolchainError(f"{where}={spec!r}: not found on PATH; set CC to an installed C compiler (e.g. gcc)")
        return cmd
    for name in _CANDIDATES:
        if shutil.which(name):
            return [name]
    return None


def find_c_compiler(cc: str | None = None) -> list[str]:
    """Like which_c_compiler, but no compiler at all is a ToolchainError that says how to provide one."""
    cmd = which_c_compiler(cc)
    if cmd is None:
        raise ToolchainError("no C compiler found (set CC, e.g. CC=gcc, or install gcc or clang)")
    return cmd


def _first_error_line(text: str) -> str:
    """The compiler's first diagnostic that is an error (gcc/clang: `file:line:col: error: ...`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in (r":\d+(:\d+)?: (fatal )?error:", r"\berror\b"):
        for line in lines:
            if re.search(pattern, line):
                return line
    return lines[0] if lines else "no message"


def compile_c(
    cc: Sequence[str],
    sources: Sequence[Path],
    output: Path,
    *,
    flags: Sequence[str],
    libs: Sequence[str] = ("-lm",),
    what: str = "the generated C",
) -> None:
    """Compile and link `sources` into `output`; ToolchainError with the compiler's first error line on failure."""
    cmd = [*cc, *flags, "-o", str(output), *(str(s) for s in sources), *libs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{cc[0]} could not be run on {what} ({exc})") from None
    if proc.returncode != 0:
        # Paths inside a temporary build folder mean nothing to the user: keep just the file names.
        first = _first_error_line(proc.stderr or proc.stdout).replace(f"{output.parent}{os.sep}", "")
        raise ToolchainError(f"{cc[0]} failed to compile {what}: {first} (flags: {' '.join(flags)})")


def run_program(args: Sequence[str], *, what: str, timeout_s: float) -> str:
    """Run a program we built and return its stdout; ToolchainError naming `what` if it cannot run or fails."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"{what} could not run ({exc})") from None
    if proc.returncode != 0:
        raise ToolchainError(f"{what} failed with exit code {proc.returncode}")
    return proc.stdout
