"""Run the CLI in-process the way a user's shell would see it: exit code, stdout, stderr."""
from __future__ import annotations

import pytest

from swat_edge.cli import main


def run_cli(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code), out, err
