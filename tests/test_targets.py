"""Target profiles: every shipped profile loads and round-trips; each bad input names the file and the field."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import tomllib
from clirun import run_cli

from swat_edge.device.targets import (
    INT8_POLICIES,
    builtin_targets_dir,
    list_targets,
    load_target,
    profile_from_toml,
    profile_rows,
    profile_to_dict,
    profile_to_toml,
)
from swat_edge.errors import MissingFileError, TargetProfileError, UnknownTargetError

REPO = Path(__file__).resolve().parent.parent
PROFILE_FILES = sorted((REPO / "targets").glob("*.toml"))
REQUIRED = ("raspi4", "raspi5", "jetson-nano", "x86-avx2", "x86-avx512-vnni", "cortex-m4", "cortex-m0plus", "host")




def replace_line(text: str, key: str, new: str) -> str:
    """text with the first line assigning `key` (any value) replaced by `new`."""
    out, n = re.subn(rf"(?m)^{re.escape(key)} = .*$", new.replace("\\", "\\\\"), text, count=1)
    assert n == 1, key
    return out


def write(tmp_path: Path, text: str, name: str = "device.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def raspi4_text() -> str:
    return (REPO / "targets" / "raspi4.toml").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# The shipped profiles


def test_the_required_profiles_ship():
    assert builtin_targets_dir() == REPO / "targets"
    assert set(REQUIRED) <= set(list_targets())
    assert list_targets() == sorted(p.stem for p in PROFILE_FILES)


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_every_profile_loads_by_name_and_path_and_round_trips(path: Path):
    by_name = load_target(path.stem)
    by_path = load_target(path)
    assert by_name == by_path
    assert by_name.name == path.stem  # the file name is the target name
    again = profile_from_toml(profile_to_toml(by_name), source="round trip")
    assert again == by_name
    assert by_name.int8_policy in INT8_POLICIES


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.stem)
def test_estimated_profiles_explain_their_derivation(path: Path):
    profile = load_target(path)
    text = path.read_text(encoding="utf-8")
    if profile.provenance.kind == "estimated":
        comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
        assert len(comments) >= 5, "an estimated profile derives its coefficients in comments"
        assert "ESTIMATED" in text or "estimated" in text.lower()
    elif profile.provenance.kind == "emulated":  # the command that derived it, and its fit
        p = profile.provenance
        assert p.date and p.fit_rmspe is not None and p.measurements and profile.mcu is not None
        assert f"calibrate --emulate --target {profile.name}" in text and "calibrate --emulate" in p.method
    else:
        p = profile.provenance
        assert p.date and p.machine and p.fit_rmspe is not None and p.measurements


def test_host_is_measured_and_the_others_estimated():
    assert load_target("host").provenance.kind == "measured"
    for name in REQUIRED:
        if name != "host":  # microcontrollers are derived by emulation, the rest from public specifications
            expected = "emulated" if load_target(name).mcu is not None else "estimated"
            assert load_target(name).provenance.kind == expected, name


def test_int8_only_where_the_target_has_a_fast_path():
    # Cortex-A72 and A57 have no dot-product instructions: int8 is slower there.
    assert load_target("raspi4").int8_policy == "never"
    assert load_target("jetson-nano").int8_policy == "never"
    assert load_target("raspi5").hardware.int8_fast_path == "dotprod"
    assert load_target("raspi5").int8_policy == "when_faster"


def test_a_code_size_model_belongs_to_generated_c(tmp_path):
    text = (REPO / "targets" / "raspi4.toml").read_text(encoding="utf-8") + (
        "\n[code_size]\ncall_bytes = 1.0\nmac_bytes = 20.0\noutput_bytes = 10.0\nlibm_call_bytes = 0.0\n"
        "libm_bytes = 1000.0\n")
    with pytest.raises(TargetProfileError, match=r"code_size.*generated C"):
        profile_from_toml(text, source="x.toml")


def test_size_budgets_count_flash_bytes_of_generated_c_on_a_microcontroller():
    from swat_edge.device.cost import estimate
    from swat_edge.model import random_model

    m4 = load_target("cortex-m4")
    relu = random_model((2, 6, 1), activations="relu", seed=0, normalization=False)
    tanh = random_model((2, 6, 1), activations="tanh", seed=0, normalization=False)
    size = m4.code_size
    macs = sum(int(np.count_nonzero(layer.weight)) for layer in relu.layers)
    expected = size.call_bytes + size.mac_bytes * macs + size.output_bytes * 7
    assert estimate(relu, m4, compile=False).model_bytes == round(expected + size.relu_bytes)
    # tanh pulls in libm once, plus a call per neuron
    assert estimate(tanh, m4, compile=False).model_bytes == round(
        expected + size.libm_bytes + 6 * size.libm_call_bytes)
    assert estimate(relu, "raspi4", compile=False).model_bytes == 4 * (macs + 7)  # weights and biases


def test_cortex_m4_is_generated_code_without_a_runtime():
    m4 = load_target("cortex-m4")
    assert m4.runtime.name == "none"
    assert m4.runtime.sparse_kernel  # zero weights emit no code
    assert m4.hardware.ram_kib and m4.hardware.flash_kib  # budgets apply on a microcontroller
    assert m4.cost.node_us == 0.0


# ---------------------------------------------------------------------------------------------------------
# Bad input: each names the file and the field


def test_unknown_target_lists_the_available_ones():
    with pytest.raises(UnknownTargetError, match=r"unknown target 'raspi9'; available: cortex-m0plus, cortex-m4, host, ") as exc:
        load_target("raspi9")
    assert set(REQUIRED) <= set(exc.value.available)
    assert isinstance(exc.value, LookupError)


def test_a_missing_profile_path_is_a_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"nope\.toml: no such target profile"):
        load_target(tmp_path / "nope.toml")


def test_malformed_toml_names_the_file_and_line(tmp_path, raspi4_text):
    broken = raspi4_text.replace('isa = "aarch64"', 'isa = "aarch64', 1)
    path = write(tmp_path, broken)
    line = broken.splitlines().index('isa = "aarch64') + 1
    with pytest.raises(TargetProfileError, match=rf"device\.toml: not valid TOML: .*line {line}") as exc:
        load_target(path)
    assert isinstance(exc.value, ValueError)


def test_a_missing_field_is_named(tmp_path, raspi4_text):
    path = write(tmp_path, replace_line(raspi4_text, "call_us", ""))
    with pytest.raises(TargetProfileError, match=r"device\.toml: field 'cost\.call_us': missing; \[cost\] needs call_us") as exc:
        load_target(path)
    assert exc.value.key == "cost.call_us"


def _without_section(text: str, section: str) -> str:
    head, rest = text.split(f"\n[{section}]\n")
    return head + "\n" + rest[rest.index("\n[") :]


def test_a_missing_section_is_named():
    text = _without_section(profile_to_toml(load_target("raspi4")), "runtime")
    with pytest.raises(TargetProfileError, match=r"x\.toml: field 'runtime': missing; the profile needs a \[runtime\] table"):
        profile_from_toml(text, source="x.toml")


@pytest.mark.parametrize(
    "key, new, message",
    [
        ("cores", 'cores = "four"', r"field 'hardware\.cores': expected an integer, got 'four' \(string\)"),
        ("cores", "cores = 0", r"field 'hardware\.cores': must be >= 1, got 0"),
        ("node_us", "node_us = true", r"field 'cost\.node_us': expected a number, got True \(boolean\)"),
        ("node_us", "node_us = -0.5", r"field 'cost\.node_us': must be >= 0, got -0\.5"),
        ("node_us", "node_us = nan", r"field 'cost\.node_us': must be a finite number"),
        ("sparse_kernel", "sparse_kernel = 0", r"field 'runtime\.sparse_kernel': expected true or false"),
        ("int8_policy", 'int8_policy = "sometimes"', r"field 'int8_policy': 'sometimes' is not one of 'never'"),
        ("call_us", "cal_us = 1.0\ncall_us = 1.0", r"field 'cost\.cal_us': unknown field; known fields of \[cost\]"),
        ("schema_version", "schema_version = 2", r"field 'schema_version': version 2 is not supported"),
        ("kind", 'kind = "guessed"', r"field 'provenance\.kind': 'guessed' is not one of"),
    ],
)
def test_a_mistyped_field_is_named(tmp_path, raspi4_text, key, new, message):
    path = write(tmp_path, replace_line(raspi4_text, key, new))
    with pytest.raises(TargetProfileError, match=rf"device\.toml: {message}"):
        load_target(path)


def test_an_unknown_runtime_is_named(tmp_path, raspi4_text):
    path = write(tmp_path, raspi4_text.replace('name = "onnxruntime"', 'name = "tflite"', 1))
    with pytest.raises(TargetProfileError, match=r"field 'runtime\.name': 'tflite' is not one of 'onnxruntime', 'none'"):
        load_target(path)


def test_a_measured_profile_must_say_when_and_where(tmp_path):
    text = (REPO / "targets" / "host.toml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("machine = ")]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(TargetProfileError, match=r"field 'provenance\.machine': missing; a measured profile records it"):
        load_target(path)


def test_a_value_where_a_table_belongs_is_refused():
    text = 'cost = "cheap"\n' + _without_section(profile_to_toml(load_target("raspi4")), "cost")
    with pytest.raises(TargetProfileError, match=r"x\.toml: field 'cost': expected a \[cost\] table, got string"):
        profile_from_toml(text, source="x.toml")


# ---------------------------------------------------------------------------------------------------------
# Writer


def test_writer_round_trips_awkward_strings_and_numbers():
    base = load_target("raspi4")
    awkward = 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f unicode µs ☃ 😀'
    profile = base.replace(
        description=awkward,
        cost=dataclasses.replace(base.cost, call_us=1e-05, node_us=0.1, mac_fp32_ns=123456789.125, relu_ns=0.0),
        hardware=dataclasses.replace(base.hardware, l2_kib=None),
    )
    text = profile_to_toml(profile, comments=["first line", "second\nthird"])
    assert text.startswith("# first line\n# second\n# third\n")
    assert "l2_kib" not in text  # None fields are left out, and read back as None
    assert tomllib.loads(text) == profile_to_dict(profile)
    assert profile_from_toml(text) == profile


def test_rows_for_the_show_table_cover_every_section():
    keys = [key for key, _ in profile_rows(load_target("host"))]
    assert {"name", "int8_policy", "hardware.cpu", "runtime.name", "cost.call_us", "provenance.kind"} <= set(keys)


# ---------------------------------------------------------------------------------------------------------
# CLI


def test_cli_targets_list(capsys):
    code, out, err = run_cli(["targets", "list"], capsys)
    assert code == 0 and err == ""
    for name in REQUIRED:
        assert name in out
    assert "measured" in out and "estimated" in out


def test_cli_targets_show_includes_provenance(capsys):
    code, out, _ = run_cli(["targets", "show", "raspi4"], capsys)
    assert code == 0
    assert "cost.call_us" in out and f"{load_target('raspi4').cost.call_us:.4g}" in out
    assert "provenance: estimated from public specifications, not measured" in out
    code, out, _ = run_cli(["targets", "show", "host"], capsys)
    assert code == 0 and "provenance: measured on " in out


def test_cli_targets_show_by_path(capsys):
    code, out, _ = run_cli(["targets", "show", str(REPO / "targets" / "cortex-m4.toml")], capsys)
    assert code == 0 and "runtime.sparse_kernel" in out


def test_cli_unknown_target_is_one_line_exit_2(capsys):
    code, out, err = run_cli(["targets", "show", "raspi9"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: unknown target 'raspi9'; available: cortex-m0plus, cortex-m4, host, jetson-nano")


def test_cli_malformed_profile_is_one_line_exit_1(tmp_path, capsys, raspi4_text):
    path = write(tmp_path, raspi4_text.replace("cores = 4", 'cores = "four"'))
    code, _, err = run_cli(["targets", "show", str(path)], capsys)
    assert code == 1
    assert err.strip() == f"error: {path}: field 'hardware.cores': expected an integer, got 'four' (string)"
