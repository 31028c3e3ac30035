"""Generated C on a microcontroller, emulated: cycles, flash and RAM of one inference
(`swat-edge bench model.c --target cortex-m4`).

How it is measured:
1. **Build.** The generated C and a bare-metal harness (mcu_harness.c: vector table, start-up, a loop calling
   the model on rows in RAM) are compiled and linked with arm-none-eabi-gcc for the profile's core
   (`[mcu] gcc_flags`, -O2, newlib nano's libm), once with the call and once without: the difference of the two
   linked images is the flash (text + rodata + initialised data) and static RAM the model costs, libm included.
2. **Run.** The image runs in Unicorn (QEMU's CPU emulation as a library: the real Thumb-2 / FPv4 instruction
   semantics, so the outputs are the MCU's own float arithmetic; no peripherals, which generated C does not
   use). Every basic block executed between the harness's begin and end markers is recorded per row, and so
   is the address every load reads (from its operands and the registers before it runs), so constants read
   from flash are known whether they sit in literal pools (where gcc keeps swat-edge's weights) or in arrays
   (emlearn's). The stack is painted before the run: its high-water mark below
   the stack pointer at the call is the model's stack use, libm's included.
3. **Price.** The executed instructions are priced with the core's published timing table (Arm's Cortex-M4
   technical reference manual: integer, load/store and FPU cycles, a pipeline refill of `pipeline_refill`
   cycles per taken branch) plus a flash model (FlashModel, from the profile's [mcu] table): code is read in
   `flash_line_bytes` lines at 1 + `flash_wait_states` cycles each unless an instruction cache of
   `icache_bytes` holds the line (1 cycle), overlapped with execution (a prefetch buffer), so a basic block costs
   the larger of its execution and its fetch; the first line of a branch target that misses waits the wait
   states; a literal-pool constant whose line the constant cache (`dcache_bytes`, at least the last line read)
   does not hold costs them too. Both caches start empty every inference (firmware runs other code between
   inferences), so straight-line model code is fetched once, while loops and libm's tanhf, called once per
   neuron, run from the cache after their first pass (STM32L4's ART accelerator: 1 KB and 256 bytes).

The cycle count is a model of the core, not a board measurement: exact for what executes (instruction counts
are the emulator's), an estimate for how long each instruction takes (within the table's ranges: division
2-12 cycles is counted 12, a refill 1-3 counted 2). It is deterministic: the same code and rows give the same
count to the cycle. The outputs are checked against the reference: the model's forward pass when the model is
given, else the same C compiled for the host.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..device.targets import TargetProfile
from ..errors import MissingExtraError, NumericsError, ToolchainError, UsageError
from ..export.c import CSource, run_c_rows
from ..export.cc import compile_c
from ..model import forward, model_hash, output_tolerance
from .bench_c import harness_defines

__all__ = [
    "ARM_GCC",
    "INSTALL_HINT",
    "CORES",
    "CoreTiming",
    "FlashModel",
    "Instruction",
    "McuResult",
    "emulate_c",
    "find_arm_gcc",
    "price_blocks",
    "instruction_cycles",
    "literal_address",
    "load_address",
]

ARM_GCC = "arm-none-eabi-gcc"
INSTALL_HINT = ("install the Arm cross compiler (Debian/Ubuntu: apt install gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi) or set SWAT_EDGE_ARM_GCC")
HARNESS_FILE = "mcu_harness.c"
MAX_ROWS = 64  # SWAT_EDGE_MAX_ROWS in mcu_harness.c
DEFAULT_ROWS = 32
FLASH_BASE = 0x08000000
RAM_BASE = 0x20000000
_SCS = (0xE000E000, 0x1000)  # the System Control Space (the harness enables the FPU through its CPACR)
_STACK_PAINT = 0xA5
_MAX_INSTRUCTIONS = 200_000_000  # a runaway program is stopped here


@dataclass(frozen=True)
class CoreTiming:
    """A core's published instruction timings (what instruction_cycles reads)."""

    name: str
    unicorn_cpu: str  # the CPU model Unicorn emulates (unicorn.arm_const.UC_CPU_ARM_<name>)
    pipeline_refill: int  # P: extra cycles of a taken branch (Arm: 1-3, by target alignment and width)
    pipelined_loads: bool  # neighbouring single loads/stores pipeline to one cycle each (Cortex-M4)
    divide_cycles: int  # SDIV/UDIV: data-dependent, counted at the table's worst case
    fp_mac_cycles: int  # VMLA/VFMA family
    fp_divide_cycles: int  # VDIV, VSQRT
    call_extra: int  # cycles a BL takes beyond a taken branch (Cortex-M0+: BL is 3 cycles, B 2)


# Arm Cortex-M4 TRM (r0p1) tables 3-1 (processor) and 7-1 (FPU); Cortex-M0+ TRM (r0p1) table 3-1.
CORES: dict[str, CoreTiming] = {
    "cortex-m4": CoreTiming("cortex-m4", "CORTEX_M4", pipeline_refill=2, pipelined_loads=True, divide_cycles=12,
                            fp_mac_cycles=3, fp_divide_cycles=14, call_extra=0),
    "cortex-m0plus": CoreTiming("cortex-m0plus", "CORTEX_M0", pipeline_refill=1, pipelined_loads=False,
                                divide_cycles=0, fp_mac_cycles=0, fp_divide_cycles=0, call_extra=1),
}

# Instruction classes reported per inference (mnemonic families, condition codes and widths stripped).
_FP_ARITH = {"vadd", "vsub", "vmul", "vnmul", "vneg", "vabs", "vcmp", "vcmpe", "vcvt", "vcvtr", "vmov", "vmrs",
             "vmsr", "vsel", "vmaxnm", "vminnm"}
_FP_MAC = {"vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"}
_FP_DIVIDE = {"vdiv", "vsqrt"}
_LOAD = re.compile(r"^ldr(b|h|sb|sh|ex|exb|exh)?$")
_STORE = re.compile(r"^str(b|h|ex|exb|exh)?$")
_CONDITIONS = "eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al"
_BRANCH = re.compile(rf"^(b|bl|blx|bx|cbz|cbnz)({_CONDITIONS})?$")
_CONDITIONAL_BRANCH = re.compile(rf"^((b|bl|blx|bx)({_CONDITIONS})|cbz|cbnz)$")
_MULTIPLY = {"mul", "muls", "smull", "umull", "smlal", "umlal", "smulbb", "smulbt", "smultb", "smultt", "smlabb",
             "smlad", "smuad"}


@dataclass(frozen=True)
class Instruction:
    address: int
    size: int
    mnemonic: str  # as objdump prints it, e.g. "vmul.f32", "ldr.w", "beq.n"
    operands: str

    @property
    def family(self) -> str:
        """The mnemonic without width or data-type suffixes ("vmul.f32" -> "vmul", "beq.n" -> "beq")."""
        return self.mnemonic.split(".")[0]


def _register_count(operands: str) -> int:
    """Registers named in a list like {r4, r5, lr} or {d8-d15} (a d register counts two 32-bit words)."""
    inside = re.search(r"\{([^}]*)\}", operands)
    if inside is None:
        return 1
    count = 0
    for part in inside.group(1).split(","):
        part = part.strip()
        m = re.fullmatch(r"([rsd])(\d+)-[rsd](\d+)", part)
        words = 2 if part.startswith("d") else 1
        count += (int(m.group(3)) - int(m.group(2)) + 1) * words if m else words
    return max(count, 1)


_STEMS = _FP_ARITH | _FP_MAC | _FP_DIVIDE | _MULTIPLY | {
    "vldr", "vstr", "ldr", "ldrb", "ldrh", "str", "strb", "strh", "mov", "movs", "mvn", "add", "adds", "sub", "subs",
    "rsb", "and", "orr", "eor", "bic", "lsl", "lsr", "asr", "mla", "mls", "sdiv", "udiv", "pop", "push"}


def _without_condition(family: str) -> str:
    """An instruction's family without the condition an IT block gives it ("vldrlt" -> "vldr")."""
    m = re.fullmatch(rf"(.+?)({_CONDITIONS})", family)
    return m.group(1) if m is not None and m.group(1) in _STEMS else family


def instruction_cycles(core: CoreTiming, instr: Instruction, *, after_load_store: bool) -> tuple[int, str]:
    """(cycles, class) of one executed instruction, branch refills excluded (price_blocks adds them when the
    branch is taken). after_load_store: the previous instruction was a single load or store."""
    fam = _without_condition(instr.family)
    single_mem = 1 if (core.pipelined_loads and after_load_store) else 2
    if fam in _FP_MAC:
        return core.fp_mac_cycles, "fp multiply-add"
    if fam in ("vadd", "vsub", "vmul", "vnmul"):
        return 1, "fp add/multiply"
    if fam in _FP_DIVIDE:
        return core.fp_divide_cycles, "fp divide/sqrt"
    if fam == "vmov" and instr.operands.count(",") >= 3:  # two core registers <-> a double or two singles
        return 2, "fp other"
    if fam in _FP_ARITH:
        return 1, "fp other"
    if fam in ("vldr", "vstr"):
        return (3 if re.match(r"\s*d", instr.operands) else single_mem), ("load" if fam == "vldr" else "store")
    if fam in ("vpush", "vpop", "vldmia", "vldmdb", "vstmia", "vstmdb", "vldm", "vstm"):
        return 1 + _register_count(instr.operands), "load" if fam in ("vpop", "vldmia", "vldmdb", "vldm") else "store"
    if fam in ("push", "stmia", "stmdb", "stm", "stmea"):
        return 1 + _register_count(instr.operands), "store"
    if fam in ("pop", "ldmia", "ldmdb", "ldm", "ldmfd"):
        return 1 + _register_count(instr.operands), "load"
    if fam in ("ldrd", "strd"):
        return 3, "load" if fam == "ldrd" else "store"
    if _LOAD.match(fam):
        return single_mem, "load"
    if _STORE.match(fam):
        return single_mem, "store"
    if _BRANCH.match(fam):
        return 1, "branch"
    if fam in ("sdiv", "udiv"):
        return core.divide_cycles, "integer divide"
    if fam in ("mla", "mls"):
        return 2, "integer multiply"
    if fam in _MULTIPLY:
        return 1, "integer multiply"
    return 1, "integer/other"


def _is_taken(instr: Instruction, next_address: int | None, fall_through: int) -> bool:
    """Whether a block's last instruction transferred control: an unconditional branch (or a write to pc)
    always, a conditional one when the next block does not start right after it."""
    fam = instr.family
    writes_pc = (fam.startswith("pop") and "pc" in instr.operands) or (
        fam.startswith("ldr") and instr.operands.startswith("pc"))
    if not (_BRANCH.match(fam) or writes_pc):
        return False
    if _CONDITIONAL_BRANCH.match(fam):
        return next_address is None or next_address != fall_through
    return True


@dataclass(frozen=True)
class RowCost:
    cycles: int
    instructions: int
    by_class: dict[str, int]  # instructions per class
    cycles_by_class: dict[str, int]
    fetch_stall_cycles: int  # cycles the flash fetch adds over execution
    flash_data_reads: int


_LOAD_FAMILIES = re.compile(r"^(v?ldr\w*|v?ldm\w*|v?pop)$")
_REGISTER = re.compile(r"^(r\d+|sp|lr|pc|ip|fp|sl|sb)$")


def is_load(instr: Instruction) -> bool:
    return bool(_LOAD_FAMILIES.match(instr.family))


def load_address(instr: Instruction, register: Any) -> int | None:
    """The first address a load instruction reads, from its operands and `register(name) -> value` (the
    registers before it executes); None when it is not a load or its addressing is not understood."""
    fam, ops = instr.family, instr.operands
    if not is_load(instr):
        return None
    if fam in ("pop", "vpop"):
        return register("sp")
    if fam.startswith("ldm") or fam.startswith("vldm"):
        base = re.match(r"\s*(\w+)!?,", ops)
        if base is None or not _REGISTER.match(base.group(1)):
            return None
        words = _register_count(ops)
        return register(base.group(1)) - (4 * words if fam.endswith("db") else 0)
    m = re.search(r"\[(\w+)(?:,\s*(#-?\d+|\w+)(?:,\s*lsl\s*#(\d+))?)?\]", ops)
    if m is None:
        return None
    base_name, offset, shift = m.group(1), m.group(2), m.group(3)
    base = ((instr.address + 4) & ~3) if base_name == "pc" else register(base_name)
    if offset is None or ops[m.end():].startswith(","):  # [rn] or post-indexed [rn], #imm: the base itself
        return base
    if offset.startswith("#"):
        return base + int(offset[1:])
    return base + (register(offset) << int(shift or 0))


def literal_address(instr: Instruction) -> int | None:
    """The address a PC-relative load reads (a literal pool constant: Align(PC + 4, 4) + offset), else None."""
    if not (instr.family.startswith("ldr") or instr.family.startswith("vldr")):
        return None
    m = re.search(r"\[pc,\s*#(-?\d+)\]", instr.operands)
    return None if m is None else ((instr.address + 4) & ~3) + int(m.group(1))


def _memory_bytes(target: TargetProfile) -> tuple[int, int]:
    """(flash, RAM) bytes of the target's microcontroller (1 MB and 64 KB where the profile does not say)."""
    return (target.hardware.flash_kib or 1024) * 1024, (target.hardware.ram_kib or 64) * 1024


@dataclass(frozen=True)
class FlashModel:
    """How code and constants come out of flash (see the module docstring): `line_bytes` per read at
    1 + `wait_states` cycles; an instruction cache of `icache_bytes` and a cache for constants of `dcache_bytes`
    (least recently used lines, empty at the start of every inference: firmware runs other code in between)."""

    wait_states: int
    line_bytes: int = 8
    icache_bytes: int = 0
    dcache_bytes: int = 0
    base: int = FLASH_BASE
    size: int = 1 << 24

    @classmethod
    def of(cls, target: TargetProfile) -> "FlashModel":
        mcu = target.mcu
        assert mcu is not None
        return cls(mcu.flash_wait_states, mcu.flash_line_bytes, mcu.icache_bytes, mcu.dcache_bytes,
                   FLASH_BASE, _memory_bytes(target)[0])


class _LineCache:
    """Which flash lines a cache of `lines` lines holds (least recently used evicted); 0 lines: none."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.held: OrderedDict[int, None] = OrderedDict()

    def hit(self, line: int) -> bool:
        """Whether `line` was held; it is held afterwards."""
        if line in self.held:
            self.held.move_to_end(line)
            return True
        if self.lines:
            self.held[line] = None
            if len(self.held) > self.lines:
                self.held.popitem(last=False)
        return False


def price_blocks(core: CoreTiming, blocks: Sequence[Sequence[Instruction]], flash: FlashModel,
                 reads: Sequence[tuple[int, int]] | None = None) -> RowCost:
    """The cycles of one inference from the instructions of its executed basic blocks, in order (see the module
    docstring for the flash model). reads: (instruction address, address read) of every load, in execution
    order, as the emulator traced them; None: the PC-relative loads of constants (literal pools) only."""
    traced = iter(reads) if reads is not None else None
    pending = next(traced, None) if traced is not None else None
    cycles = stall = n = n_reads = 0
    by_class: dict[str, int] = {}
    cycles_by_class: dict[str, int] = {}
    icache = _LineCache(flash.icache_bytes // flash.line_bytes)
    dcache = _LineCache(max(flash.dcache_bytes // flash.line_bytes, 1))  # at least the last line read
    wait, line = flash.wait_states, flash.line_bytes
    branched = False
    for i, block in enumerate(blocks):
        execute = 0
        previous_mem = False
        for instr in block:
            if traced is None:
                addresses = [a for a in (literal_address(instr),) if a is not None]
            else:
                addresses = []
                while pending is not None and pending[0] == instr.address:
                    addresses.append(pending[1])
                    pending = next(traced, None)
            for address in addresses:
                if flash.base <= address < flash.base + flash.size:
                    n_reads += 1
                    if not dcache.hit(address // line):
                        execute += wait
                        stall += wait
            c, kind = instruction_cycles(core, instr, after_load_store=previous_mem)
            previous_mem = kind in ("load", "store") and instr.family not in (
                "push", "pop", "vpush", "vpop", "ldmia", "stmia", "vldmia", "vstmia", "ldrd", "strd")
            execute += c
            n += 1
            by_class[kind] = by_class.get(kind, 0) + 1
            cycles_by_class[kind] = cycles_by_class.get(kind, 0) + c
        last = block[-1]
        start, end = block[0].address, last.address + last.size
        misses = [not icache.hit(unit) for unit in range(start // line, (end - 1) // line + 1)]
        if branched and misses[0]:  # a branch target is not prefetched: its first line is waited for
            execute += wait
            stall += wait
        next_address = blocks[i + 1][0].address if i + 1 < len(blocks) else None
        branched = _is_taken(last, next_address, end)
        if branched:
            refill = core.pipeline_refill + (core.call_extra if last.family in ("bl", "blx") else 0)
            execute += refill
            cycles_by_class["branch"] = cycles_by_class.get("branch", 0) + refill
        fetch = sum(1 + wait if miss else 1 for miss in misses)  # lines read, overlapped with execution
        stall += max(fetch - execute, 0)
        cycles += max(execute, fetch)
    return RowCost(cycles, n, by_class, cycles_by_class, stall, n_reads)


# ---------------------------------------------------------------------------------------------------------
# Build


def find_arm_gcc() -> list[str]:
    """The cross compiler: $SWAT_EDGE_ARM_GCC, else arm-none-eabi-gcc on PATH; ToolchainError saying how to
    install it."""
    spec = os.environ.get("SWAT_EDGE_ARM_GCC") or ARM_GCC
    if shutil.which(spec) is None:
        raise ToolchainError(f"{spec} not found: {INSTALL_HINT}")
    return [spec]


def _tool(gcc: Sequence[str], name: str) -> str:
    """A binutils program beside the compiler (arm-none-eabi-gcc -> arm-none-eabi-objdump)."""
    path = re.sub(r"gcc(-[\d.]+)?$", name, gcc[0])
    if shutil.which(path) is None:
        raise ToolchainError(f"{path} not found beside {gcc[0]}: {INSTALL_HINT}")
    return path


def _linker_script(target: TargetProfile) -> str:
    flash_kib, ram_kib = (size // 1024 for size in _memory_bytes(target))
    return f"""/* swat-edge MCU harness image for {target.name} */
ENTRY(Reset_Handler)
MEMORY
{{
    FLASH (rx)  : ORIGIN = {FLASH_BASE:#x}, LENGTH = {flash_kib}K
    RAM   (rwx) : ORIGIN = {RAM_BASE:#x}, LENGTH = {ram_kib}K
}}
_estack = ORIGIN(RAM) + LENGTH(RAM);
SECTIONS
{{
    .isr_vector : {{ KEEP(*(.isr_vector)) }} > FLASH
    .text : {{ *(.text*) *(.rodata*) . = ALIGN(4); }} > FLASH
    .ARM.exidx : {{ *(.ARM.exidx* .gnu.linkonce.armexidx.*) }} > FLASH
    _sidata = LOADADDR(.data);
    .data : {{ _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
    .bss (NOLOAD) : {{ _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > RAM
    .noinit (NOLOAD) : {{ *(.noinit*) . = ALIGN(8); _end_static = .; }} > RAM
}}
"""


@dataclass(frozen=True)
class _Image:
    elf: bytes
    symbols: dict[str, int]
    flash_bytes: int  # text + rodata + initialised data (its load image), the vector table included
    static_ram_bytes: int  # data + bss (the harness's row buffers in .noinit not included)
    segments: tuple[tuple[int, bytes], ...]  # (load address, bytes)


def _read_image(path: Path) -> _Image:
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as fh:
        elf = ELFFile(fh)
        symbols = {s.name: int(s["st_value"]) for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name}
        flash = ram = 0
        for sec in elf.iter_sections():
            flags = sec["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC or sec.name == ".noinit":
                continue
            if sec["sh_type"] == "SHT_NOBITS":
                ram += sec["sh_size"]
            elif flags & SH_FLAGS.SHF_WRITE:
                ram += sec["sh_size"]
                flash += sec["sh_size"]  # initialised data is stored in flash too
            else:
                flash += sec["sh_size"]
        segments = tuple((int(seg["p_paddr"]), seg.data()) for seg in elf.iter_segments()
                         if seg["p_type"] == "PT_LOAD" and seg["p_filesz"])
    return _Image(path.read_bytes(), symbols, flash, ram, segments)


def _build(gcc: Sequence[str], csrc: CSource, target: TargetProfile, folder: Path, *, with_model: bool,
           include_dirs: Sequence[Path] = ()) -> Path:
    mcu = target.mcu
    assert mcu is not None
    (folder / f"{csrc.prefix}.c").write_bytes(csrc.source.encode("utf-8"))
    (folder / csrc.header_name).write_bytes(csrc.header.encode("utf-8"))
    (folder / "swat_edge_mcu.c").write_text(Path(__file__).with_name(HARNESS_FILE).read_text(encoding="utf-8"),
                                            encoding="utf-8")
    (folder / "image.ld").write_text(_linker_script(target), encoding="utf-8")
    out = folder / ("model.elf" if with_model else "baseline.elf")
    flags = (*mcu.gcc_flags.split(), "-std=c99", "-O2", "-ffunction-sections", "-fdata-sections", "-fstack-usage",
             f"-I{folder}", *(f"-I{d}" for d in include_dirs), *harness_defines(csrc), *(() if with_model else ("-DSWAT_EDGE_NO_MODEL",)),
             f"-T{folder / 'image.ld'}", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
             "-Wl,--gc-sections")
    cwd = os.getcwd()
    try:  # -fstack-usage writes its .su files into the working directory
        os.chdir(folder)
        compile_c(gcc, [folder / f"{csrc.prefix}.c", folder / "swat_edge_mcu.c"], out, flags=flags,
                  what=f"the generated C for {target.name}")
    finally:
        os.chdir(cwd)
    return out


def _disassemble(gcc: Sequence[str], elf: Path) -> dict[int, Instruction]:
    """Every instruction of the image by address (objdump's lines: address, raw halfwords, mnemonic, operands)."""
    text = subprocess.run([_tool(gcc, "objdump"), "-d", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    out: dict[int, Instruction] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        m = re.fullmatch(r"\s*([0-9a-f]+):", parts[0])
        if m is None or len(parts) < 3 or parts[2].startswith("."):  # labels, blank lines, literal pool words
            continue
        halfwords = parts[1].split()
        if not halfwords or any(len(h) != 4 for h in halfwords):
            continue
        address = int(m.group(1), 16)
        operands = parts[3].split("@")[0].strip() if len(parts) > 3 else ""
        out[address] = Instruction(address, 2 * len(halfwords), parts[2].strip(), operands)
    return out


# ---------------------------------------------------------------------------------------------------------
# Run


@dataclass
class _Trace:
    blocks: list[list[tuple[int, int]]] = field(default_factory=list)  # per row: executed (address, size)
    reads: list[list[tuple[int, int]]] = field(default_factory=list)  # per row: (load's address, address read)
    stack_at_call: int = 0
    counting: bool = False


def _emulate(image: _Image, core: CoreTiming, rows: np.ndarray, n_outputs: int, target: TargetProfile,
             loads: dict[int, Instruction]) -> tuple[_Trace, np.ndarray, int]:
    """Run the harness image on rows; -> (trace, outputs as float32, stack bytes of one call)."""
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_MODE_MCLASS, UC_MODE_THUMB, Uc, UcError
    from unicorn import arm_const
    flash_size, ram_size = _memory_bytes(target)
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(arm_const, f"UC_CPU_ARM_{core.unicorn_cpu}"))
    uc.mem_map(FLASH_BASE, flash_size)
    uc.mem_map(RAM_BASE, ram_size)
    uc.mem_map(*_SCS)
    uc.mem_write(RAM_BASE, bytes([_STACK_PAINT]) * ram_size)
    for address, data in image.segments:
        uc.mem_write(address, data)
    sym = image.symbols
    uc.mem_write(sym["swat_edge_in"], np.ascontiguousarray(rows).tobytes())
    uc.mem_write(sym["swat_edge_rows"], struct.pack("<I", len(rows)))
    trace = _Trace()
    begin, end = sym["swat_edge_begin"] & ~1, sym["swat_edge_end"] & ~1

    def on_block(uc: Any, address: int, size: int, _: Any) -> None:
        if address == begin:
            trace.counting = True
            trace.blocks.append([])
            trace.reads.append([])
            trace.stack_at_call = uc.reg_read(arm_const.UC_ARM_REG_SP)
        elif address == end:
            trace.counting = False
        elif trace.counting:
            trace.blocks[-1].append((address, size))

    names = {"sp": "SP", "lr": "LR", "pc": "PC", "ip": "R12", "fp": "R11", "sl": "R10", "sb": "R9"}

    def register(name: str) -> int:
        return uc.reg_read(getattr(arm_const, f"UC_ARM_REG_{names.get(name, name.upper())}"))

    def on_code(uc: Any, address: int, size: int, _: Any) -> None:
        instr = loads.get(address)
        if trace.counting and instr is not None:
            read = load_address(instr, register)
            if read is not None:
                trace.reads[-1].append((address, read))

    # No memory hook: with one, Unicorn 2.1.4 executes loads inside IT blocks even when their condition fails
    # (measured: a leaky-ReLU network's `vldrlt` gave outputs off by 0.36). Each load's address is computed
    # from the registers before it runs instead (a load skipped by its IT condition still counts: a small
    # overestimate).
    uc.hook_add(UC_HOOK_BLOCK, on_block)
    uc.hook_add(UC_HOOK_CODE, on_code, begin=FLASH_BASE, end=FLASH_BASE + flash_size - 1)
    sp, reset = struct.unpack("<II", uc.mem_read(FLASH_BASE, 8))
    uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
    try:
        uc.emu_start(reset | 1, sym["swat_edge_done"] & ~1, count=_MAX_INSTRUCTIONS)
    except UcError as exc:
        pc = uc.reg_read(arm_const.UC_ARM_REG_PC)
        raise ToolchainError(f"the {target.name} image faulted in the emulator at pc {pc:#x}: {exc}") from None
    if len(trace.blocks) != len(rows):
        raise ToolchainError(f"the {target.name} image ran {len(trace.blocks)} of {len(rows)} rows "
                             f"(stopped at pc {uc.reg_read(arm_const.UC_ARM_REG_PC):#x})")
    outputs = np.frombuffer(bytes(uc.mem_read(sym["swat_edge_out"], 4 * len(rows) * n_outputs)),
                            dtype="<f4").reshape(len(rows), n_outputs)
    static_end = sym["_end_static"]
    stack = bytes(uc.mem_read(static_end, RAM_BASE + ram_size - static_end))
    lowest = static_end + len(stack) - len(stack.lstrip(bytes([_STACK_PAINT])))  # lowest byte ever written
    return trace, outputs, max(trace.stack_at_call - lowest, 0)


# ---------------------------------------------------------------------------------------------------------
# The measurement


@dataclass(frozen=True)
class McuResult:
    """One generated model on an emulated microcontroller: cycles per inference over the rows, what executed,
    flash and RAM, and the numerics check."""

    target: str
    core: str
    clock_mhz: float
    flash_wait_states: int
    compiler: str
    cflags: str
    rows: int
    rows_source: str
    cycles: tuple[int, ...]  # per row, in order
    instructions_per_inference: float  # mean over the rows
    by_class: dict[str, float]  # executed instructions per inference, mean over the rows
    cycles_by_class: dict[str, float]  # their execution cycles (before the flash model)
    fetch_stall_cycles: float  # mean cycles the flash adds (instruction fetch and constant reads)
    flash_bytes: int  # what the model adds to the image's flash: code, constants, libm (text + rodata + data)
    model_object_bytes: int  # the generated functions alone (text + rodata of their object)
    static_ram_bytes: int  # what the model adds to data + bss
    stack_bytes: int  # high-water mark of one call, libm included (measured by stack painting)
    max_abs_error: float  # emulated outputs against the reference
    reference: str  # what they were checked against

    @property
    def median_cycles(self) -> float:
        return float(np.median(self.cycles))

    @property
    def latency_us(self) -> float:
        return self.median_cycles / self.clock_mhz

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cycles"] = list(self.cycles)
        out.update(median_cycles=self.median_cycles, min_cycles=min(self.cycles), max_cycles=max(self.cycles),
                   latency_us=self.latency_us)
        return out


def _object_bytes(gcc: Sequence[str], folder: Path, csrc: CSource, flags: Sequence[str]) -> int:
    """text + rodata + data of the generated C's own object file."""
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    obj = folder / "model_only.o"
    compile_c(gcc, [folder / f"{csrc.prefix}.c"], obj, flags=(*flags, "-c"), libs=(), what="the generated C")
    with obj.open("rb") as fh:
        return sum(int(sec["sh_size"]) for sec in ELFFile(fh).iter_sections()
                   if sec["sh_flags"] & SH_FLAGS.SHF_ALLOC and sec["sh_type"] != "SHT_NOBITS")


def _rows(csrc: CSource, rows: np.ndarray | None, n_rows: int, seed: int, reference: Any
          ) -> tuple[np.ndarray, str]:
    """The rows to emulate: given ones, else the model's calibration rows (training rows: the input ranges a
    tanh's cost depends on), else seeded standard-normal rows."""
    if rows is None:
        if not 1 <= n_rows <= MAX_ROWS:
            raise UsageError(f"--rows {n_rows}: give 1 to {MAX_ROWS} rows to emulate")
        if reference is not None and reference.calibration is not None and len(reference.calibration):
            x = np.nan_to_num(reference.calibration[:n_rows])  # a gap in a row is the model's to fill: not here
            return x.astype(csrc.input_dtype), f"{len(x)} of the model's calibration rows (training rows)"
        x = np.random.default_rng(seed).standard_normal((n_rows, csrc.n_inputs))
        return x.astype(csrc.input_dtype), f"{n_rows} seeded standard-normal rows (seed {seed})"
    x = np.asarray(rows, dtype=csrc.input_dtype)
    if x.ndim != 2 or x.shape[1] != csrc.n_inputs or not 1 <= len(x) <= MAX_ROWS:
        raise UsageError(f"rows: shape {x.shape}, expected (1 to {MAX_ROWS}, {csrc.n_inputs})")
    return x, f"{len(x)} given rows"


def emulate_c(csrc: CSource, target: TargetProfile, *, rows: np.ndarray | None = None, n_rows: int = DEFAULT_ROWS,
              seed: int = 0, reference: Any = None, rows_source: str | None = None, sizes: bool = True,
              include_dirs: Sequence[Path] = (), rel_tolerance: float = 1e-5) -> McuResult:
    """Build `csrc` for `target`'s microcontroller, run it in the emulator on rows, and price it (module
    docstring). reference: the SparseMLP the code was generated from (its forward pass checks float code's
    outputs); without it, and for int8 code (whose drift export reports), the same C compiled for the host
    does. NumericsError when the outputs disagree. sizes=False
    skips the flash and static RAM figures (two more builds; calibration does not need them: reported as 0).
    include_dirs: more -I folders (benchmarks emulate other generators' C through the same harness, with a
    rel_tolerance of their own: 1e-5 x the output scale is what swat-edge's export guarantees)."""
    mcu = target.mcu
    if mcu is None:
        raise UsageError(f"target {target.name} has no [mcu] section: emulation needs a microcontroller profile "
                         "(e.g. --target cortex-m4)")
    if mcu.core not in CORES:
        raise UsageError(f"target {target.name}: core {mcu.core!r} has no timing table; known: {', '.join(CORES)}")
    if reference is not None and model_hash(reference) != csrc.model_hash:
        raise UsageError(f"the C code was generated from model {csrc.model_hash[:12]}, not from the given model "
                         f"({model_hash(reference)[:12]})")
    for package in ("unicorn", "elftools"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError("emulated MCU benchmarks", package=package.replace("elftools", "pyelftools"),
                                    extra="mcu")
    core = CORES[mcu.core]
    x, source = _rows(csrc, rows, n_rows, seed, reference)
    gcc = find_arm_gcc()
    with tempfile.TemporaryDirectory(prefix="swat-edge-mcu-") as tmp:
        folder = Path(tmp)
        model_elf = _build(gcc, csrc, target, folder, with_model=True, include_dirs=include_dirs)
        image = _read_image(model_elf)
        baseline = _read_image(_build(gcc, csrc, target, folder, with_model=False, include_dirs=include_dirs)
                               ) if sizes else image
        object_bytes = _object_bytes(gcc, folder, csrc, (
            *mcu.gcc_flags.split(), "-std=c99", "-O2", "-ffunction-sections", "-fdata-sections",
            *(f"-I{d}" for d in include_dirs))) if sizes else 0
        instructions = _disassemble(gcc, model_elf)
    loads = {address: instr for address, instr in instructions.items() if is_load(instr)}
    trace, outputs, stack = _emulate(image, core, x, csrc.n_outputs, target, loads)
    if reference is not None and csrc.dtype == "float":
        expected, what = forward(reference, x.astype(np.float64)), "the model's forward pass"
        tolerance = output_tolerance(reference, expected, rel=rel_tolerance)
    else:
        expected, what = run_c_rows(csrc, x, include_dirs=include_dirs)[0].astype(np.float64), \
            "the same C compiled for the host"
        tolerance = rel_tolerance * np.maximum(np.max(np.abs(expected), axis=0), 1.0)
    errors = np.max(np.abs(outputs.astype(np.float64) - expected), axis=0)
    if not np.all(np.isfinite(outputs)) or np.any(errors > tolerance):
        k = int(np.argmax(np.where(np.isfinite(errors), errors / tolerance, np.inf)))
        raise NumericsError(f"emulated {target.name} output {k} differs from {what}: max abs error "
                            f"{errors[k]:.3g} > tolerance {tolerance[k]:.3g}")
    error = float(np.max(errors))
    flash = FlashModel.of(target)
    costs = [price_blocks(core, [_block(instructions, a, n) for a, n in blocks], flash, reads)
             for blocks, reads in zip(trace.blocks, trace.reads)]
    classes = sorted({k for c in costs for k in c.by_class})
    return McuResult(
        target=target.name, core=mcu.core, clock_mhz=float(target.hardware.clock_mhz or 0.0),
        flash_wait_states=mcu.flash_wait_states, compiler=gcc[0], cflags=f"{mcu.gcc_flags} -O2",
        rows=len(x), rows_source=rows_source or source, cycles=tuple(c.cycles for c in costs),
        instructions_per_inference=float(np.mean([c.instructions for c in costs])),
        by_class={k: float(np.mean([c.by_class.get(k, 0) for c in costs])) for k in classes},
        cycles_by_class={k: float(np.mean([c.cycles_by_class.get(k, 0) for c in costs])) for k in classes},
        fetch_stall_cycles=float(np.mean([c.fetch_stall_cycles for c in costs])),
        flash_bytes=image.flash_bytes - baseline.flash_bytes, model_object_bytes=object_bytes,
        static_ram_bytes=image.static_ram_bytes - baseline.static_ram_bytes, stack_bytes=stack,
        max_abs_error=error, reference=what,
    )


def _block(instructions: dict[int, Instruction], address: int, size: int) -> list[Instruction]:
    """The instructions of one executed basic block."""
    out, at = [], address
    while at < address + size:
        instr = instructions.get(at)
        if instr is None:
            raise ToolchainError(f"the emulator executed {at:#x}, which the disassembly has no instruction at")
        out.append(instr)
        at += instr.size
    return out
