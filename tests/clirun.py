"""Run the CLI the way a user's shell would see it: in-process (exit code, stdout, stderr), or in a fresh process
with torch made unimportable (what the device side must survive)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swat_edge.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code), out, err


# `import torch` raises ModuleNotFoundError and importlib.util.find_spec("torch") is None: as where it is not installed.
_BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
_TORCH_LOADED = "[m for m in sys.modules if (m == 'torch' and sys.modules[m] is not None) or m.startswith('torch.')]"


def python_without_torch(code: str, *, block: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python and check afterwards that torch was not loaded; returns the finished process
    (returncode 0 when the code and the check passed, stdout and stderr as text).

    block=True: torch cannot be imported (what the device side must survive); code that needs it fails there.
    block=False: torch stays importable, so a guarded `try: import torch` (onnxsim has one) is caught too.
    """
    lines = [_BLOCK_TORCH if block else "import sys\n", textwrap.dedent(code).rstrip("\n"),
             f"_torch_loaded = {_TORCH_LOADED}", "assert not _torch_loaded, f'torch was imported: {_torch_loaded}'"]
    return subprocess.run([sys.executable, "-c", "\n".join(lines) + "\n"], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def run_without_torch(commands: list[list], never_imported: tuple[str, ...] = ("torch",)) -> subprocess.CompletedProcess:
    """Each command through main() in one fresh Python where `import torch` raises; every one must exit 0, and
    afterwards none of `never_imported` may be loaded. Returns the finished process (returncode 0 on success)."""
    lines = [
        "from swat_edge.cli import main",
        "def run(args):",
        "    try:",
        "        main(args)",
        "    except SystemExit as e:",
        "        assert e.code == 0, (args, e.code)",
        *(f"run({[str(a) for a in cmd]!r})" for cmd in commands),
        *(f"assert sys.modules.get({name!r}) is None, {name!r}" for name in never_imported),
    ]
    return python_without_torch("\n".join(lines))
