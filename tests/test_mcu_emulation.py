"""`bench model.c --target cortex-m4`: the generated C built for the MCU and run in an emulator.

The pricing is checked against Arm's Cortex-M4 timing table on hand-built instruction streams (an oracle that
does not go through objdump or the emulator); the emulation is checked against the model's forward pass, for
determinism, and for counts that follow from the network (one multiply per non-zero weight, more flash for more
weights, no divisions without tanh)."""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from clirun import run_cli

from swat_edge.device.targets import load_target
from swat_edge.export.c import to_c, write_c
from swat_edge.measure.mcu import (CORES, FlashModel, Instruction, instruction_cycles, literal_address, load_address,
                                  price_blocks)
from swat_edge.model import random_model, save_model

M4 = CORES["cortex-m4"]


def _i(address: int, mnemonic: str, operands: str = "", size: int = 4) -> Instruction:
    return Instruction(address, size, mnemonic, operands)


def test_instruction_timings_follow_the_cortex_m4_table() -> None:
    cases = [  # (mnemonic, operands, after a load/store, cycles, class)
        ("vmul.f32", "s0, s1, s2", False, 1, "fp add/multiply"),
        ("vfma.f32", "s0, s1, s2", False, 3, "fp multiply-add"),
        ("vdiv.f32", "s0, s1, s2", False, 14, "fp divide/sqrt"),
        ("vldr", "s0, [pc, #8]", False, 2, "load"),
        ("vldr", "s1, [r0, #4]", True, 1, "load"),  # neighbouring loads pipeline
        ("vldr", "d8, [r0]", False, 3, "load"),
        ("ldr.w", "r3, [r0]", False, 2, "load"),
        ("push", "{r4, r5, r6, lr}", False, 5, "store"),
        ("vpush", "{d8-d15}", False, 17, "store"),  # 16 words
        ("pop", "{r4, pc}", False, 3, "load"),
        ("mla", "r0, r1, r2, r3", False, 2, "integer multiply"),
        ("udiv", "r0, r1, r2", False, 12, "integer divide"),
        ("adds", "r0, #1", False, 1, "integer/other"),
        ("beq.n", "8000010", False, 1, "branch"),
        ("vldrlt", "s15, [pc, #8]", False, 2, "load"),  # inside an IT block: the condition does not change it
        ("vmullt.f32", "s0, s1, s2", False, 1, "fp add/multiply"),
        ("bics", "r0, r1", False, 1, "integer/other"),  # ends like a condition ("cs"), is not one
    ]
    for mnemonic, operands, after, cycles, kind in cases:
        assert instruction_cycles(M4, _i(0, mnemonic, operands), after_load_store=after) == (cycles, kind), mnemonic


def test_load_addresses_follow_the_addressing_modes() -> None:
    registers = {"r3": 0x20000000, "r1": 0x08001000, "r2": 3, "sp": 0x2000F000}
    cases = [("vldr", "s15, [r3, #8]", 0x20000008), ("ldr.w", "r0, [r1, r2, lsl #2]", 0x0800100C),
             ("ldr", "r0, [r1], #4", 0x08001000),  # post-indexed: the base, then the base moves
             ("vldmia", "r3!, {s14-s15}", 0x20000000), ("ldmdb", "r1, {r4, r5}", 0x08000FF8),
             ("pop", "{r4, pc}", 0x2000F000), ("vldr", "s0, [pc, #12]", 0x08000110), ("str", "r0, [r1]", None)]
    for mnemonic, operands, expected in cases:
        assert load_address(_i(0x08000100, mnemonic, operands), registers.__getitem__) == expected, mnemonic


def test_blocks_are_priced_with_refills_and_flash_wait_states() -> None:
    # one block of 14 bytes: vldr, vldr (pipelined), vmul, bx lr (taken: +P=2), at 0 wait states: 2+1+1+1+2 = 7
    block = [_i(0x100, "vldr", "s0, [r0]"), _i(0x104, "vldr", "s1, [r0, #4]"), _i(0x108, "vmul.f32", "s0, s0, s1"),
             _i(0x10C, "bx", "lr", size=2)]
    assert price_blocks(M4, [block], FlashModel(wait_states=0)).cycles == 7
    # 4 wait states: fetching 2 lines of 8 bytes costs 2 x 5 = 10 > 7 execution cycles: fetch-bound
    cost = price_blocks(M4, [block], FlashModel(wait_states=4))
    assert cost.cycles == 10 and cost.instructions == 4 and cost.fetch_stall_cycles == 3
    # constants read PC-relative from flash (Align(pc + 4, 4) + offset): a line not in the constant cache (here
    # just the last line read) costs the wait states; 0x08000102 reads 0x08000104 + 12 = 0x08000110, then
    # 0x08000114 (the same line) and 0x0800011C (the next): 2 x 4 more execution cycles, 7 + 8 = 15 > 10 fetch
    literals = [_i(0x08000102, "vldr", "s0, [pc, #12]"), _i(0x08000106, "vldr", "s1, [pc, #12]"),
                _i(0x0800010A, "vldr", "s2, [pc, #16]"), _i(0x0800010E, "bx", "lr", size=2)]
    assert [literal_address(i) for i in literals[:3]] == [0x08000110, 0x08000114, 0x0800011C]
    outside = FlashModel(wait_states=4, base=0x09000000, size=1024)  # the constants are not in flash
    assert price_blocks(M4, [literals], outside).cycles == 10
    in_flash = price_blocks(M4, [literals], FlashModel(wait_states=4))
    assert in_flash.cycles == 15 and in_flash.flash_data_reads == 3
    # a conditional branch costs its refill only when the next block does not follow it
    fall = [_i(0x200, "cmp", "r0, #0", 2), _i(0x202, "bne.n", "210", 2)]
    after, target = [_i(0x204, "nop", "", 2)], [_i(0x210, "nop", "", 2)]
    assert price_blocks(M4, [fall, after], FlashModel(wait_states=0)).cycles == 3
    assert price_blocks(M4, [fall, target], FlashModel(wait_states=0)).cycles == 5


def test_an_instruction_cache_makes_a_loop_fetch_its_code_once() -> None:
    # a 16-byte loop body (two 8-byte lines) run 3 times: 6 execution cycles and a taken branch back each time
    body = [_i(0x300, "vldr", "s0, [r0]"), _i(0x304, "vadd.f32", "s1, s1, s0"), _i(0x308, "adds", "r0, #4"),
            _i(0x30C, "bne.w", "300")]
    loop = [body, body, body]
    cold = price_blocks(M4, loop, FlashModel(wait_states=4))  # no cache: every pass fetches 2 x 5 cycles
    cached = price_blocks(M4, loop, FlashModel(wait_states=4, icache_bytes=1024))
    # pass 1: fetch 10 vs execute 5 + 2 (refill) = 7 -> 10; then both lines hit: max(7, 2) = 7, twice (the
    # stream ends after the last pass: its branch counts as taken)
    assert cached.cycles == 10 + 7 + 7
    # without a cache each pass waits 4 for its branch target's line (7 + 4 = 11 > 10 fetch)
    assert cold.cycles == 10 + 11 + 11


needs_toolchain = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or importlib.util.find_spec("unicorn") is None,
    reason="needs arm-none-eabi-gcc (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi) and the mcu extra")


def _csrc(model):
    return to_c(model, prefix="net")


@needs_toolchain
def test_emulated_outputs_match_the_forward_pass_and_counts_are_reproducible() -> None:
    from swat_edge.measure.mcu import emulate_c

    model = random_model((3, 6, 5, 1), activations=("tanh", "relu"), sparsity=0.3, seed=4)
    target = load_target("cortex-m4")
    first = emulate_c(_csrc(model), target, reference=model, n_rows=8)
    again = emulate_c(_csrc(model), target, reference=model, n_rows=8)
    assert first.cycles == again.cycles  # to the cycle
    assert first.reference == "the model's forward pass" and first.rows == 8
    assert first.max_abs_error <= 1e-4
    nonzero = sum(int(np.count_nonzero(layer.weight)) for layer in model.layers)
    multiplies = first.by_class.get("fp add/multiply", 0) + first.by_class.get("fp multiply-add", 0)
    assert multiplies >= nonzero
    assert first.by_class.get("fp divide/sqrt", 0) > 0  # newlib's tanhf divides
    assert first.stack_bytes > 0 and first.flash_bytes > first.model_object_bytes > 0  # libm comes with tanh
    assert first.latency_us == pytest.approx(np.median(first.cycles) / 80.0)
    # the profile was fitted to emulations like this one: its latency and flash predictions are close
    from swat_edge.device.cost import estimate

    predicted = estimate(model, target)
    assert predicted.latency_us[0] == pytest.approx(first.latency_us, rel=0.25)
    assert predicted.model_bytes == pytest.approx(first.flash_bytes, rel=0.25)


@needs_toolchain
def test_conditional_loads_inside_it_blocks_are_emulated_right() -> None:
    """gcc emits leaky ReLU as an IT block with a conditional load (vldrlt); Unicorn gets it wrong when a memory
    hook is installed, which the emulator therefore does not use."""
    from swat_edge.measure.calibrate import _compiled, random_family_model
    from swat_edge.measure.mcu import emulate_c
    from swat_edge.model import sample_inputs

    rng = np.random.default_rng(0)  # the 24th network `calibrate --emulate` draws: a 5-10-10-4 leaky ReLU one
    for seed in range(24):
        drawn = random_family_model(rng, seed=seed, max_depth=4, max_width=16)
    model = _compiled(drawn, "fp32")
    assert {a for layer in model.hidden for a in layer.activations} == {"leaky_relu"}
    result = emulate_c(_csrc(model), load_target("cortex-m4"), rows=sample_inputs(model, 8, seed=1),
                       reference=model, sizes=False)
    assert result.max_abs_error < 1e-4


@needs_toolchain
def test_more_weights_cost_more_flash_and_cycles_and_relu_needs_no_libm() -> None:
    from swat_edge.measure.mcu import emulate_c

    target = load_target("cortex-m4")
    small = random_model((2, 4, 1), activations="relu", seed=1)
    large = random_model((2, 8, 8, 1), activations="relu", seed=1)
    a = emulate_c(_csrc(small), target, reference=small, n_rows=4)
    b = emulate_c(_csrc(large), target, reference=large, n_rows=4)
    assert b.flash_bytes > a.flash_bytes and min(b.cycles) > max(a.cycles)
    assert "fp divide/sqrt" not in a.by_class and a.flash_bytes <= a.model_object_bytes + 64  # no libm linked


@needs_toolchain
def test_loop_layers_are_smaller_and_slower_on_the_m4_as_the_profile_predicts() -> None:
    from swat_edge.device.cost import estimate
    from swat_edge.measure.mcu import emulate_c

    target = load_target("cortex-m4")
    model = random_model((2, 8, 8, 8, 1), activations="relu", per_layer=True, seed=3)
    straight = emulate_c(to_c(model, prefix="net"), target, reference=model, n_rows=4)
    loops = emulate_c(to_c(model, prefix="net", loop_layers=[1, 2, 3]), target, reference=model, n_rows=4)
    assert loops.max_abs_error <= 1e-4
    assert loops.flash_bytes < 0.7 * straight.flash_bytes and min(loops.cycles) > max(straight.cycles)
    predicted = estimate(model, target, dtype="fp32", loop_layers=[1, 2, 3])
    assert predicted.latency_us[0] == pytest.approx(loops.latency_us, rel=0.25)
    assert predicted.model_bytes == pytest.approx(loops.flash_bytes, rel=0.25)


@needs_toolchain
def test_cli_emulates_generated_c_and_refuses_what_it_cannot(tmp_path, capsys) -> None:
    model = random_model((2, 5, 1), activations="tanh", seed=2)
    save_model(model, tmp_path / "m.safetensors")
    write_c(_csrc(model), tmp_path / "net.c")
    out = tmp_path / "mcu.json"
    code, stdout, err = run_cli(["bench", tmp_path / "net.c", "--target", "cortex-m4", "--model",
                                 tmp_path / "m.safetensors", "--json", out], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["median_cycles"] > 0 and data["predicted_latency_us"] > 0 and data["core"] == "cortex-m4"
    assert "cycles/inference" in stdout
    code, _, err = run_cli(["bench", tmp_path / "net.c", "--target", "raspi4"], capsys)
    assert code == 2 and "no [mcu] section" in err and len(err.strip().splitlines()) == 1
    save_model(random_model((2, 5, 1), activations="tanh", seed=3), tmp_path / "other.safetensors")
    code, _, err = run_cli(["bench", tmp_path / "net.c", "--target", "cortex-m4", "--model",
                            tmp_path / "other.safetensors"], capsys)
    assert code == 2 and "generated from model" in err


@needs_toolchain
def test_calibrate_emulate_writes_an_emulated_profile_that_loads(tmp_path, capsys) -> None:
    from swat_edge.measure.calibrate_mcu import C_TERMS, calibrate_emulated, write_emulated_profile

    m4 = load_target("cortex-m4")
    result = calibrate_emulated(m4, n_fit=len(C_TERMS), n_check=2, seed=1)
    assert len(result.fitted) == len(C_TERMS) and len(result.checked) == 2
    profile = result.profile
    assert profile.provenance.kind == "emulated" and profile.mcu == m4.mcu and profile.code_size is not None
    assert profile.cost.node_us == 0.0 and profile.cost.mac_fp32_ns > 0  # only the C terms are fitted
    path = write_emulated_profile(result, tmp_path / "m4.toml", force=False)
    again = load_target(path)
    assert again.cost == profile.cost and again.code_size == profile.code_size
    assert "calibrate --emulate --target cortex-m4" in path.read_text()
    # the CLI refuses --emulate without a target, before any work
    code, _, err = run_cli(["calibrate", "--emulate", "--out", tmp_path / "x.toml"], capsys)
    assert code == 2 and "--emulate and --target go together" in err and not (tmp_path / "x.toml").exists()
