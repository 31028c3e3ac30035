"""Run the CLI the way a user's shell would see it: in-process (exit code, stdout, stderr), or in a fresh process
with torch made unimportable (what the device side must survive)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swat_edge.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code), out, err


def run_without_torch(commands: list[list], never_imported: tuple[str, ...] = ("torch",)) -> subprocess.CompletedProcess:
    """Each command through main() in one fresh Python where `import torch` raises; every one must exit 0, and
    afterwards none of `never_imported` may be loaded. Returns the finished process (returncode 0 on success)."""
    lines = [
        "import sys",
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError",
        "from swat_edge.cli import main",
        "def run(args):",
        "    try:",
        "        main(args)",
        "    except SystemExit as e:",
        "        assert e.code == 0, (args, e.code)",
        *(f"run({[str(a) for a in cmd]!r})" for cmd in commands),
        "del sys.modules['torch']",
        *(f"assert {name!r} not in sys.modules" for name in never_imported),
    ]
    return subprocess.run([sys.executable, "-c", "\n".join(lines) + "\n"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
