"""The `swat-edge` command line: parse, call the library, print. `main()` is the only place that exits."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.exceptions import TyperException

from . import __version__
from .console import stderr, stdout
from .errors import SwatError

__all__ = ["app", "main"]

app = typer.Typer(
    name="swat-edge",
    help="Edge deployment compiler for small sparse MLPs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        stdout.print(f"swat-edge {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on internal errors."),
) -> None:
    """Edge deployment compiler for small sparse MLPs."""


# ---------------------------------------------------------------------------------------------------------
# Commands. Each returns an int exit code (0 ok, 1 "ran and found a problem"); errors are raised as SwatError.

# (commands are added below, one function per command)


# ---------------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI and exit: 0 ok, 1 failure/verdict, 2 usage, 3 internal error, 130 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="swat-edge", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        stderr.print("interrupted")
        code = 130
    except TyperException as exc:  # usage errors found by the parser: one line, exit 2
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
        else:
            stderr.print(f"error: {exc.format_message()} (see swat-edge --help)", markup=False)
        code = exc.exit_code
    except SwatError as exc:
        if debug:
            raise
        stderr.print(f"error: {exc}", markup=False)
        code = exc.exit_code
    except KeyboardInterrupt:
        stderr.print("interrupted")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # a bug: say so, distinctly from a failure (exit 3, not 1)
        if debug:
            raise
        stderr.print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback; please report)",
            markup=False,
        )
        code = 3
    sys.exit(code)


if __name__ == "__main__":
    main()
