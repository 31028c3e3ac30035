"""The C timing harness is a real C file (swat_edge/measure/harness.c): it compiles on its own under strict
warnings, refuses to build without being told which model to time, and a wheel ships it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swat_edge.export.c import to_c, write_c
from swat_edge.export.cc import NO_COMPILER_HINT, which_c_compiler
from swat_edge.measure.bench_c import HARNESS_FILE, harness_defines, harness_source
from swat_edge.model import random_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project's own fallback for 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "swat_edge" / "measure" / HARNESS_FILE
STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror")

CC = which_c_compiler()
needs_cc = pytest.mark.skipif(CC is None, reason=f"{NO_COMPILER_HINT}; the harness is not compiled")


def _compile_object(flags: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CC is not None
    cmd = [*CC, *flags, "-c", str(HARNESS), "-o", str(cwd / "harness.o"), "-I", str(cwd)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


@needs_cc
@pytest.mark.parametrize("dtype", ["float", "int8"])
def test_harness_compiles_cleanly_on_its_own_with_strict_warnings(tmp_path: Path, dtype: str) -> None:
    csrc = to_c(random_model((3, 4, 2), seed=0), prefix="timed", dtype=dtype)
    write_c(csrc, tmp_path / "timed.c")  # the harness includes the model's header, nothing else of it
    proc = _compile_object((*STRICT, *harness_defines(csrc)), tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@needs_cc
def test_harness_without_a_model_says_which_macros_to_define(tmp_path: Path) -> None:
    proc = _compile_object(STRICT, tmp_path)
    assert proc.returncode != 0
    assert "define SWAT_EDGE_MODEL_HEADER" in proc.stderr


def test_harness_source_is_the_file_beside_bench_c() -> None:
    assert harness_source() == HARNESS.read_text(encoding="utf-8")
    assert "int main(int argc, char **argv)" in harness_source()


def test_defines_name_the_models_header_functions_and_widths() -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0), prefix="motor", header_name="motor_v2.h")
    assert harness_defines(csrc) == (
        '-DSWAT_EDGE_MODEL_HEADER="motor_v2.h"',
        "-DSWAT_EDGE_PREDICT=motor_predict",
        "-DSWAT_EDGE_PREDICT_BATCH=motor_predict_batch",
        "-DSWAT_EDGE_N_INPUTS=MOTOR_N_INPUTS",
        "-DSWAT_EDGE_N_OUTPUTS=MOTOR_N_OUTPUTS",
    )


def test_a_wheel_ships_the_harness() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    assert "swat_edge.measure" in setuptools["packages"]
    assert HARNESS_FILE in setuptools["package-data"]["swat_edge.measure"]
