"""examples/cortex-m4: the bare-metal project builds with one `make` (the model exported by swat-edge, checked on
the host, then linked for a Cortex-M4F with a start-up file and a linker script), and the image is laid out as
the board boots it: the vector table at the start of flash, the stack at the top of SRAM1."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cortex-m4"
TOOLS = ("make", "arm-none-eabi-gcc", "arm-none-eabi-nm", "arm-none-eabi-objdump")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs make and arm-none-eabi-gcc (Debian: gcc-arm-none-eabi)")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("m4")
    proc = subprocess.run(["make", "-C", str(EXAMPLE), f"BUILD={build}", f"SWAT_EDGE={sys.executable} -m swat_edge"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return build


def test_one_make_builds_the_image_with_the_model_and_the_start_up_code(built: Path) -> None:
    symbols = subprocess.run(["arm-none-eabi-nm", str(built / "motor.elf")], capture_output=True, text=True,
                             check=True).stdout
    defined = {line.split()[-1] for line in symbols.splitlines() if len(line.split()) == 3}
    assert {"Reset_Handler", "main", "model_predict", "model_result"} <= defined
    assert not list(EXAMPLE.glob("*.su"))  # nothing written into the sources


def test_the_vector_table_boots_the_board(built: Path) -> None:
    dump = subprocess.run(["arm-none-eabi-objdump", "-s", "-j", ".isr_vector", str(built / "motor.elf")],
                          capture_output=True, text=True, check=True).stdout
    first = next(line for line in dump.splitlines() if line.strip().startswith("8000000"))
    words = [int.from_bytes(bytes.fromhex(w), "little") for w in first.split()[1:3]]
    assert words[0] == 0x20000000 + 96 * 1024  # initial stack pointer: the top of SRAM1
    nm = subprocess.run(["arm-none-eabi-nm", str(built / "motor.elf")], capture_output=True, text=True, check=True)
    reset = next(int(line.split()[0], 16) for line in nm.stdout.splitlines() if line.endswith(" Reset_Handler"))
    assert words[1] == reset | 1  # the reset vector, with the Thumb bit


def test_the_generated_function_needs_little_stack(built: Path) -> None:
    # -fstack-usage: straight-line code keeps its values in registers and a small frame
    usage = (built / "motor.elf-model.su").read_text()
    frame = next(int(line.split()[-2]) for line in usage.splitlines() if "model_predict\t" in line)
    assert frame < 256
