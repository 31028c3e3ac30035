"""Generated C: compiled with the host compiler and checked against forward(); names, files, bench, and the CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli, run_without_torch

from swat_edge import __version__
from swat_edge.errors import InputError, ModelFileError, NumericsError, OutputExistsError, ToolchainError, UsageError
from swat_edge.export.c import (
    FAST_SIGMOID_MAX_ABS_ERROR,
    FAST_TANH_MAX_ABS_ERROR,
    INT8_MAX_RELATIVE_MSE,
    VERIFY_CFLAGS,
    c_float_literal,
    check_prefix,
    loop_layers_allowed,
    read_c,
    run_c_rows,
    to_c,
    verify_c,
    write_c,
)
from swat_edge.export.cc import compile_c, find_c_compiler, which_c_compiler
from swat_edge.export.onnx import to_onnx
from swat_edge.export.pipeline import export_c_file
from swat_edge.measure.bench import DEFAULT_BLOCK_RUNS
from swat_edge.measure.bench_c import measure_c, measure_c_pair
from swat_edge.model import (
    ACTIVATIONS,
    Layer,
    SparseMLP,
    forward,
    model_stats,
    random_model,
    sample_inputs,
)

REPO = Path(__file__).resolve().parent.parent  # not imported from conftest: tests/search has one too
EXAMPLES = REPO / "examples"



def _cc() -> str | None:
    try:
        return find_c_compiler()[0]
    except ToolchainError:
        return None


needs_cc = pytest.mark.skipif(_cc() is None, reason="no C compiler found (set CC); generated C not compiled")

# Products in generated code: "<literal> * in[..]" / "* h.._.." (float), "<int> * q.._.." (int8).
_FLOAT_PRODUCT = re.compile(r"\d[\w.+-]*f\s+\*\s+(?:in\[\d+\]|h\d+_\d+)")
_INT_PRODUCT = re.compile(r"\b\d+\s+\*\s+q\d+_\d+")


def _model(hidden: list[Layer], output: Layer, **scaling) -> SparseMLP:
    return SparseMLP.make(hidden, output, **scaling)


def _dense_model(seed: int = 5) -> SparseMLP:
    """2-4-3-2 with every hidden neuron live and reading at least one non-zero weight (no constants)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(2, 4))
    w1[0, 1] = 0.0
    w2 = rng.normal(size=(4, 3))
    w2[2, 0] = w2[3, 2] = 0.0
    w3 = rng.normal(size=(3, 2))
    w3[1, 1] = 0.0
    return _model(
        [Layer.make(w1, rng.normal(size=4), ("relu", "tanh", "sigmoid", "leaky_relu")),
         Layer.make(w2, rng.normal(size=3), ("tanh", "identity", "relu"))],
        Layer.make(w3, rng.normal(size=2), "identity"),
        input_scale=[0.5, 2.0], input_offset=[-0.3, 0.7], output_scale=[3.0, 0.25], output_offset=[10.0, -1.0],
    )


# ---------------------------------------------------------------------------------------------------------
# Pure parts (no compiler)


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 3.0, -2.5, 1e-5, 1e30, -1.17549435e-38, 1.4e-45, 0.1, 123456789.0])
def test_float_literal_round_trips_float32(value: float) -> None:
    text = c_float_literal(value)
    assert text.endswith("f") and re.fullmatch(r"-?\d+(\.\d*)?(e[+-]\d+)?f", text)
    assert np.float32(float(text[:-1])) == np.float32(value)


def test_float_literal_round_trips_random_float32() -> None:
    values = np.random.default_rng(0).standard_normal(2000).astype(np.float32) * np.float32(1e3)
    assert all(np.float32(float(c_float_literal(v)[:-1])) == v for v in values)


def test_float_literal_refuses_what_float32_cannot_hold() -> None:
    with pytest.raises(NumericsError, match="does not fit in float32"):
        c_float_literal(1e39)


@pytest.mark.parametrize(
    ("given", "expected", "why"),
    [
        ("motor", "motor", None),
        ("int", "int_model", "keyword"),
        ("class", "class_model", "keyword"),
        ("main", "main_model", "library name"),
        ("my-model v2", "my_model_v2", "not a valid C identifier"),
        ("3d_fit", "m_3d_fit", "starts with a digit"),
        ("__secret", "secret", "not a valid C identifier"),
        ("a__b_", "a_b", "not a valid C identifier"),
        ("", "model", None),
        ("Motör", "Mot_r", "not a valid C identifier"),
        ("x" * 60, "x" * 40, "longer than 40"),
    ],
)
def test_prefix_is_sanitised_and_said(given: str, expected: str, why: str | None) -> None:
    name, notes = check_prefix(given)
    assert name == expected
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) and "__" not in name
    if given == expected:
        assert notes == ()
    else:
        assert len(notes) == 1 and repr(given) in notes[0] and repr(expected) in notes[0]
        if why:
            assert why in notes[0]


def test_to_c_reports_sanitised_prefix_in_notes_and_code() -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0), prefix="static")
    assert csrc.prefix == "static_model"
    assert any("'static'" in n for n in csrc.notes)
    assert "void static_model_predict(const float *in, float *out)" in csrc.source
    assert "#define STATIC_MODEL_N_INPUTS 2" in csrc.header


def test_regeneration_is_byte_identical() -> None:
    model = random_model((3, 6, 5, 2), sparsity=0.3, dead_fraction=0.2, seed=4)
    for dtype in ("float", "int8"):
        a = to_c(model, prefix="m", dtype=dtype, fast_math=True)
        b = to_c(model, prefix="m", dtype=dtype, fast_math=True)
        assert a.source.encode() == b.source.encode() and a.header.encode() == b.header.encode()


def test_zero_weights_emit_no_code() -> None:
    model = _dense_model()
    csrc = to_c(model, prefix="m")
    assert len(_FLOAT_PRODUCT.findall(csrc.source)) == model_stats(model).nonzero_weights == csrc.macs


def test_normalisation_is_folded_not_computed() -> None:
    # Folding the scaling into the weights adds no multiplications and no input_scale constants.
    model = _dense_model()
    csrc = to_c(model, prefix="m")
    assert "in[0] *" not in csrc.source and len(_FLOAT_PRODUCT.findall(csrc.source)) == model_stats(model).nonzero_weights


def test_neurons_are_grouped_by_activation() -> None:
    model = random_model((2, 12, 1), seed=1)  # per-neuron mixed activations
    csrc = to_c(model, prefix="m")
    order = [m.group(1) for m in re.finditer(r"/\* hidden layer 1: (\w+) x\d+ \*/", csrc.source)]
    assert order == [a for a in ACTIVATIONS if a in order] and len(order) == len(set(order)) >= 3


def test_int8_code_uses_integer_products() -> None:
    model = _dense_model()
    csrc = to_c(model, prefix="m", dtype="int8")
    assert "#include <stdint.h>" in csrc.source and "int32_t" in csrc.source
    assert not _FLOAT_PRODUCT.findall(csrc.source)  # every weight is an integer
    assert 0 < len(_INT_PRODUCT.findall(csrc.source)) == csrc.macs <= model_stats(model).nonzero_weights
    assert csrc.int8 is not None and 0.0 < csrc.int8.relative_mse < INT8_MAX_RELATIVE_MSE


def test_int8_without_rows_says_it_used_synthetic_calibration() -> None:
    csrc = to_c(random_model((2, 4, 1), seed=0), prefix="m", dtype="int8")
    assert csrc.int8 is not None and csrc.int8.calibration_source == "synthetic rows"
    assert any("synthetic" in n for n in csrc.notes)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (np.zeros((10, 3)), r"shape \(10, 3\), expected \(rows, 2\)"),
        (np.zeros((1, 2)), "at least 2"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), "row 1, column 'x0' is not finite"),
    ],
)
def test_bad_calibration_rows_are_refused(rows: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        to_c(random_model((2, 3, 1), seed=0), dtype="int8", calibration_rows=rows)


def test_unknown_dtype_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="dtype 'int4'"):
        to_c(random_model((2, 3, 1), seed=0), dtype="int4")  # type: ignore[arg-type]


def test_fast_math_is_said_in_banner_and_notes() -> None:
    model = random_model((2, 4, 1), activations="tanh", per_layer=True, seed=0)
    plain, fast = to_c(model, prefix="m"), to_c(model, prefix="m", fast_math=True)
    assert "tanh_fast" not in plain.source and "tanhf(" in plain.source
    assert "tanh_fast" in fast.source and "tanhf(" not in fast.source
    assert f"tanh max abs error {FAST_TANH_MAX_ABS_ERROR:g}" in fast.source
    assert any("fast_math" in n for n in fast.notes) and fast.activation_max_abs_error == {"tanh": FAST_TANH_MAX_ABS_ERROR}


def test_feature_names_become_safe_macros_and_comments() -> None:
    model = random_model((3, 4, 2), seed=0).replace(
        feature_names=("rpm (1/min)", "*/ evil ??/", "rpm (1/min)"), target_names=("temp °C", "2nd")
    )
    csrc = to_c(model, prefix="m")
    for line in ("#define M_IN_RPM_1_MIN 0", "#define M_IN_EVIL 1", "#define M_IN_RPM_1_MIN_2 2",
                 "#define M_OUT_TEMP_C 0", "#define M_OUT_2ND 1"):
        assert line in csrc.header
    # Only our own comment terminators: a name cannot close a comment or form a trigraph.
    assert csrc.source.count("*/") == csrc.source.count("/*") and "??" not in csrc.source + csrc.header
    assert any("macro form" in n for n in csrc.notes)


# ---------------------------------------------------------------------------------------------------------
# Writing files


def test_write_c_writes_both_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0), prefix="m")
    path_c, path_h = write_c(csrc, tmp_path / "out.c")
    assert path_h == tmp_path / "out.h"
    # The include follows the header's file name, whatever the prefix.
    assert '#include "out.h"' in path_c.read_text() and path_h.read_text() == csrc.header
    before = path_c.read_bytes()
    with pytest.raises(OutputExistsError, match="pass --force"):
        write_c(csrc, path_c)
    assert path_c.read_bytes() == before
    write_c(to_c(random_model((2, 3, 1), seed=1), prefix="m"), path_c, force=True)
    assert path_c.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.c", "out.h"]


def test_write_c_refuses_when_only_the_header_exists(tmp_path: Path) -> None:
    (tmp_path / "out.h").write_text("/* mine */\n")
    with pytest.raises(OutputExistsError, match="out.h"):
        write_c(to_c(random_model((2, 3, 1), seed=0)), tmp_path / "out.c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h"]
    assert (tmp_path / "out.h").read_text() == "/* mine */\n"


def test_write_c_needs_a_dot_c_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"must end in \.c"):
        write_c(to_c(random_model((2, 3, 1), seed=0)), tmp_path / "model.txt")


def test_write_c_leaves_nothing_when_the_source_cannot_be_placed(tmp_path: Path, monkeypatch) -> None:
    real_replace = os.replace

    def failing_replace(src, dst):  # the header lands, then placing the source fails (disk full, ...)
        if str(dst).endswith(".c"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_c(to_c(random_model((2, 3, 1), seed=0)), tmp_path / "out.c")
    assert list(tmp_path.iterdir()) == []


def test_read_c_round_trip_and_refusals(tmp_path: Path) -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0), prefix="motor", dtype="int8", fast_math=True)
    path_c, path_h = write_c(csrc, tmp_path / "gen.c")
    back = read_c(path_c)
    assert (back.prefix, back.dtype, back.fast_math, back.n_inputs, back.n_outputs, back.model_hash) == (
        "motor", "int8", True, 2, 1, csrc.model_hash
    )
    assert back.header_name == "gen.h" and back.macs == csrc.macs and back.tool_version == __version__
    (tmp_path / "plain.c").write_text("int main(void) { return 0; }\n")
    with pytest.raises(ModelFileError, match="not a C file generated by swat-edge"):
        read_c(tmp_path / "plain.c")
    path_h.unlink()
    with pytest.raises(ModelFileError, match="header .* is missing"):
        read_c(path_c)


# ---------------------------------------------------------------------------------------------------------
# Toolchain errors


def test_no_compiler_is_a_clear_toolchain_error(monkeypatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolchainError, match=r"no C compiler found \(set CC"):
        find_c_compiler()


def test_missing_cc_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    with pytest.raises(ToolchainError, match=r"CC='/nonexistent/bin/cc': not found"):
        find_c_compiler()


@needs_cc
def test_compiler_error_is_one_line_with_the_first_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where verify_c builds
    model = random_model((2, 3, 1), seed=0)
    csrc = to_c(model, prefix="m")
    broken = dataclasses.replace(csrc, source=csrc.source.replace("(const float *in, float *out)\n{", "(const float *in, float *out)\n{ int unused;", 1))
    with pytest.raises(ToolchainError) as info:
        verify_c(broken, model)
    message = str(info.value)
    assert "\n" not in message and "failed to compile" in message and "unused" in message and "-Werror" in message
    assert list(tmp_path.iterdir()) == []  # the build folder is gone, nothing half-built is left


# ---------------------------------------------------------------------------------------------------------
# Numerics: compile, run, compare with forward()


@needs_cc
@pytest.mark.parametrize(
    ("activation", "fast_math"),
    [*((a, False) for a in ACTIVATIONS), ("tanh", True), ("sigmoid", True)],  # fast_math changes only these two
)
def test_every_activation_matches_forward(activation: str, fast_math: bool) -> None:
    model = random_model((3, 6, 5, 2), activations=activation, per_layer=True, seed=2)
    csrc = to_c(model, prefix=f"act_{activation}", fast_math=fast_math)
    report = verify_c(csrc, model, rows=200)
    assert report.batch_matches_single and report.rows == 200
    assert all(e <= t for e, t in zip(report.max_abs_error, report.tolerance))


@needs_cc
def test_mixed_sparse_masked_model_all_variants(mixed_model: SparseMLP) -> None:
    for dtype in ("float", "int8"):
        for fast_math in (False, True):
            report = verify_c(to_c(mixed_model, prefix="mixed", dtype=dtype, fast_math=fast_math), mixed_model)
            assert report.batch_matches_single
            if dtype == "int8":
                assert 0.0 < report.relative_mse <= report.max_relative_mse == INT8_MAX_RELATIVE_MSE
            else:
                assert report.relative_mse < 1e-9


@needs_cc
@pytest.mark.parametrize("fast_math", [False, True])
def test_loop_layers_compute_what_straight_line_code_computes(mixed_model: SparseMLP, fast_math: bool) -> None:
    """Every subset of the loop-able layers, on a dense, a sparse (zeros in the tables) and a masked model."""
    dense = random_model((3, 6, 5, 4, 2), activations="tanh", per_layer=True, seed=5)
    sparse = random_model((2, 7, 7, 1), activations="relu", per_layer=True, sparsity=0.5, seed=6)
    for model in (dense, sparse):
        allowed = loop_layers_allowed(model)
        assert allowed == tuple(range(1, len(model.layers)))  # every layer that reads a hidden layer
        for bits in range(2 ** len(allowed)):
            loops = [li for k, li in enumerate(allowed) if bits >> k & 1]
            csrc = to_c(model, prefix="lp", loop_layers=loops, fast_math=fast_math)
            assert csrc.loop_layers == tuple(loops) and ("for (int j" in csrc.source) == bool(loops)
            report = verify_c(csrc, model, rows=64)
            assert report.batch_matches_single
            assert all(e <= t for e, t in zip(report.max_abs_error, report.tolerance))
    # a loop multiplies its zeros: the MAC count grows by the zeros of its table
    full = to_c(sparse, prefix="lp", loop_layers=[1])
    table = re.search(r"static const float lp_w2\[(\d+)\]\[(\d+)\] = \{(.*?)\};", full.source, flags=re.S)
    assert table is not None
    entries = re.findall(r"-?[0-9][^,{}\s]*", table.group(3))
    assert len(entries) == int(table.group(1)) * int(table.group(2))
    zeros = sum(float(e.rstrip("f")) == 0.0 for e in entries)
    assert zeros > 0 and full.macs - to_c(sparse, prefix="lp").macs == zeros
    # mixed activations in one layer: that layer cannot be a loop
    allowed = loop_layers_allowed(mixed_model)
    assert verify_c(to_c(mixed_model, prefix="mx", loop_layers=allowed), mixed_model).batch_matches_single


def test_loop_layers_that_cannot_be_loops_are_refused(mixed_model: SparseMLP) -> None:
    model = random_model((3, 6, 5, 1), activations="tanh", per_layer=True, seed=5)
    with pytest.raises(UsageError, match="layer 0 cannot be emitted as a loop.*loop-able layers of this model: \\[1, 2\\]"):
        to_c(model, loop_layers=[0])
    with pytest.raises(UsageError, match="float C only"):
        to_c(model, dtype="int8", loop_layers=[1])
    refused = [li for li in range(len(mixed_model.layers)) if li not in loop_layers_allowed(mixed_model)]
    assert len(refused) > 1  # the first layer and a layer with two activation types
    with pytest.raises(UsageError, match=f"layer {refused[-1]} cannot"):
        to_c(mixed_model, loop_layers=[refused[-1]])


def test_read_c_recovers_the_loop_layers_and_the_mac_count(tmp_path: Path) -> None:
    model = random_model((2, 5, 4, 1), activations="relu", per_layer=True, sparsity=0.3, seed=3)
    csrc = to_c(model, prefix="rl", loop_layers=[2])
    write_c(csrc, tmp_path / "rl.c")
    back = read_c(tmp_path / "rl.c")
    assert back.loop_layers == (2,) and back.macs == csrc.macs
    assert "Layers 3 (1 = first hidden) are loops" in csrc.source
    write_c(to_c(model, prefix="st"), tmp_path / "st.c")
    assert read_c(tmp_path / "st.c").loop_layers == ()


@needs_cc
def test_fast_math_error_bound_holds() -> None:
    """Measure the emitted fast tanh/sigmoid on a dense grid and at extremes against float64."""
    layer = Layer.make(np.ones((1, 2)), np.zeros(2), ("tanh", "sigmoid"))
    model = _model([layer], Layer.make(np.ones((2, 1)), np.zeros(1), "identity"))
    z = np.concatenate([np.arange(-30.0, 30.0, 1e-4), [-1e30, -100.0, -9.0, 0.0, 9.0, 100.0, 1e30]])
    # Row = one input; hidden neuron 0 is tanh(z), neuron 1 sigmoid(z): read them back through two
    # single-output models so the check runs the very functions emitted into the file.
    for k, (name, bound) in enumerate((("tanh", FAST_TANH_MAX_ABS_ERROR), ("sigmoid", FAST_SIGMOID_MAX_ABS_ERROR))):
        w_out = np.zeros((2, 1))
        w_out[k, 0] = 1.0
        probe = model.replace(output=Layer.make(w_out, np.zeros(1), "identity"))
        single, _, _ = run_c_rows(to_c(probe, prefix="fm", fast_math=True), z[:, None])
        ref = forward(probe, z.astype(np.float32)[:, None].astype(np.float64))[:, 0]
        err = np.abs(single[:, 0].astype(np.float64) - ref)
        assert np.all(np.isfinite(single)) and err.max() <= bound, f"{name}: max abs error {err.max():.3g} > {bound:g}"
        low = -1.0 if name == "tanh" else 0.0
        assert np.all(single[:, 0] <= 1.0 + bound) and np.all(single[:, 0] >= low - bound)


@needs_cc
def test_whole_layer_of_zeros_gives_constant_code() -> None:
    model = random_model((3, 5, 4, 2), seed=0)
    dead = dataclasses.replace(model.hidden[1], weight=np.zeros_like(model.hidden[1].weight))
    model = model.replace(hidden=(model.hidden[0], dead))
    csrc = to_c(model, prefix="zeros")
    assert "in[" not in csrc.source.split("_predict(const float *in, float *out)\n{")[1].split("}")[0]
    assert "(void)in;" in csrc.source and csrc.macs == 0
    verify_c(csrc, model)
    int8 = to_c(model, prefix="zeros", dtype="int8")
    assert int8.macs == 0
    verify_c(int8, model)


@needs_cc
def test_single_path_network() -> None:
    # in[1] -> neuron 2 -> neuron 0 -> output 0; every other weight zero (a single chain of three MACs).
    w1, w2, w3 = np.zeros((3, 4)), np.zeros((4, 3)), np.zeros((3, 1))
    w1[1, 2], w2[2, 0], w3[0, 0] = 1.5, -0.8, 2.0
    model = _model(
        [Layer.make(w1, np.full(4, 0.2), "tanh"), Layer.make(w2, np.full(3, -0.1), "sigmoid")],
        Layer.make(w3, np.array([0.3]), "identity"),
        input_scale=[1.0, 0.5, 2.0], input_offset=[0.0, 1.0, -1.0], output_scale=[4.0], output_offset=[2.0],
    )
    csrc = to_c(model, prefix="path")
    assert csrc.macs == 3 and csrc.activation_counts == {"tanh": 1, "sigmoid": 1}
    assert "in[0]" not in csrc.source and "in[2]" not in csrc.source and "in[1]" in csrc.source
    verify_c(csrc, model)
    verify_c(to_c(model, prefix="path", dtype="int8"), model)


@needs_cc
def test_masked_neurons_output_zero() -> None:
    base = random_model((2, 6, 1), activations="sigmoid", per_layer=True, seed=7)  # sigmoid(0) != 0
    mask = np.array([True, False, True, False, False, True])
    model = base.replace(hidden=(dataclasses.replace(base.hidden[0], mask=mask),))
    csrc = to_c(model, prefix="masked")
    assert csrc.activation_counts == {"sigmoid": 3}
    verify_c(csrc, model)


@needs_cc
def test_multiple_outputs_no_hidden_layer_and_normalisation() -> None:
    for widths in ((4, 3), (3, 8, 5)):
        model = random_model(widths, seed=11, sparsity=0.2)
        assert not np.allclose(model.input_scale, 1.0) and not np.allclose(model.output_offset, 0.0)
        csrc = to_c(model, prefix="multi")
        assert f"#define MULTI_N_OUTPUTS {widths[-1]}" in csrc.header
        report = verify_c(csrc, model)
        assert len(report.max_abs_error) == widths[-1]
        verify_c(to_c(model, prefix="multi", dtype="int8"), model)


@needs_cc
def test_batched_function_equals_per_row_calls() -> None:
    model = random_model((3, 7, 7, 2), seed=9, sparsity=0.2)
    x = sample_inputs(model, 333, seed=5)
    for dtype in ("float", "int8"):
        single, batch, _ = run_c_rows(to_c(model, prefix="b", dtype=dtype), x)
        assert single.shape == (333, 2) and np.array_equal(single, batch)


@needs_cc
def test_int8_declared_drift_matches_compiled_code() -> None:
    model = random_model((2, 7, 7, 7, 1), seed=0)
    rows = sample_inputs(model, 512, seed=3)
    csrc = to_c(model, prefix="q", dtype="int8", calibration_rows=rows)
    assert csrc.int8 is not None and csrc.int8.calibration_source == "calibration_rows argument"
    report = verify_c(csrc, model, rows=rows)
    # The float32 simulation and the compiled code differ only where libm and numpy round differently.
    assert report.relative_mse == pytest.approx(csrc.int8.relative_mse, rel=0.1)


@needs_cc
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_int8_relu_networks_stay_in_integers_between_layers(activation: str) -> None:
    """A core without an FPU runs the hidden stack without float: only the inputs are quantized from float and
    only the outputs dequantized; the declared drift is that of the compiled code (no libm on the way)."""
    model = random_model((12, 9, 9, 9, 2), activations=activation, per_layer=True, seed=4)  # wide: large sums
    rows = sample_inputs(model, 512, seed=3)
    csrc = to_c(model, prefix="iq", dtype="int8", calibration_rows=rows)
    body = csrc.source[csrc.source.index("void iq_predict("):]
    assert body.count("(float)(") == 2  # the two outputs
    assert body.count("iq_q8(") == 12 and body.count("iq_rq(") >= 20  # the inputs; the hidden neurons kept
    assert "const float h" not in body  # no hidden neuron in float
    report = verify_c(csrc, model, rows=rows)
    assert report.relative_mse == pytest.approx(csrc.int8.relative_mse, rel=1e-3)
    assert report.relative_mse < INT8_MAX_RELATIVE_MSE


@needs_cc
def test_int8_drift_beyond_the_limit_fails_loudly() -> None:
    model = random_model((2, 7, 7, 1), seed=0)
    csrc = to_c(model, prefix="q", dtype="int8")
    far = sample_inputs(model, 200, seed=1) * 25.0  # far outside the calibrated ranges: saturation
    with pytest.raises(NumericsError, match=r"relative MSE .* > 0.001 on 200 given rows"):
        verify_c(csrc, model, rows=far)


@needs_cc
def test_wrong_code_is_caught() -> None:
    model = _dense_model()
    csrc = to_c(model, prefix="w")
    literal = _FLOAT_PRODUCT.search(csrc.source).group(0).split()[0]  # type: ignore[union-attr]
    tampered = dataclasses.replace(csrc, source=csrc.source.replace(literal, "1.25f", 1))
    with pytest.raises(NumericsError, match=r"disagrees with the reference forward pass: output 'y\d', row \d+"):
        verify_c(tampered, model)


def test_verifying_against_another_model_is_refused() -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0))
    with pytest.raises(UsageError, match="generated from model"):
        verify_c(csrc, random_model((2, 3, 1), seed=1))


@needs_cc
def test_example_model_exports_and_verifies(example_model: SparseMLP) -> None:
    verify_c(to_c(example_model, prefix="motor"), example_model)
    verify_c(to_c(example_model, prefix="motor", dtype="int8"), example_model)


@needs_cc
def test_code_is_clean_under_stricter_warnings(tmp_path: Path) -> None:
    """Users build with their own flags: no warning from the usual strict set, and none about double math."""
    cc = find_c_compiler()
    strict = (*VERIFY_CFLAGS, "-Wconversion", "-Wdouble-promotion", "-Wshadow", "-Wstrict-prototypes",
              "-Wmissing-prototypes", "-Wcast-qual", "-Wfloat-conversion", "-c")
    model = random_model((3, 6, 5, 2), seed=1, sparsity=0.2, dead_fraction=0.2)
    for dtype in ("float", "int8"):
        for fast in (False, True):
            csrc = to_c(model, prefix="s", dtype=dtype, fast_math=fast)
            write_c(csrc, tmp_path / f"{dtype}{int(fast)}.c")
            compile_c(cc, [tmp_path / f"{dtype}{int(fast)}.c"], tmp_path / f"{dtype}{int(fast)}.o", flags=strict, libs=())


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (apt: gcc-arm-none-eabi)")
def test_cortex_m4_cross_compile(tmp_path: Path) -> None:
    flags = ("-std=c99", "-O2", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
             "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wdouble-promotion", "-c")
    model = random_model((2, 7, 7, 7, 1), seed=0)
    for dtype in ("float", "int8"):
        for fast in (False, True):
            path_c, _ = write_c(to_c(model, prefix="m4", dtype=dtype, fast_math=fast), tmp_path / f"m4_{dtype}{int(fast)}.c")
            compile_c(["arm-none-eabi-gcc"], [path_c], path_c.with_suffix(".o"), flags=flags, libs=())


# ---------------------------------------------------------------------------------------------------------
# Timing harness


@needs_cc
def test_measure_c_reports_ordered_percentiles() -> None:
    csrc = to_c(random_model((2, 5, 1), seed=0), prefix="bench")
    result = measure_c(csrc, batch_sizes=(1, 8, 1), n_samples=20, target_sample_us=20.0)
    assert [s.batch_size for s in result.latencies] == [1, 8]
    for stats, calls in zip(result.latencies, result.calls_per_sample):
        assert 0.0 < stats.min_us <= stats.p50_us <= stats.p90_us <= stats.p99_us and stats.runs == 20
        assert calls >= 1
    p50, p90, p99 = result.row_latency_us(8)
    assert p50 == pytest.approx(result.latency(8).p50_us / 8) and p50 <= p90 <= p99
    doc = result.to_json()
    assert doc["kind"] == "c" and doc["source"]["model_sha256"] == csrc.model_hash
    assert doc["results"][1]["throughput_rows_per_s"] > 0 and doc["settings"]["chained"] is True


def test_measure_c_refuses_bad_settings() -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0))
    with pytest.raises(InputError, match="batch sizes must be >= 1"):
        measure_c(csrc, batch_sizes=(0,))
    with pytest.raises(InputError, match=r"expected finite rows of shape \(rows, 2\)"):
        measure_c(csrc, rows=np.zeros((4, 3)))


@needs_cc
def test_measure_c_pair_alternates_rounds_and_reports_the_ratio(tmp_path: Path) -> None:
    model = random_model((2, 5, 1), seed=0)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(to_onnx(model, simplify=False).SerializeToString())  # no onnxsim: keeps the test fast
    csrc = to_c(model, prefix="pair")
    result = measure_c_pair(csrc, onnx_path, batch_sizes=(1, 4), min_rounds=4, min_time_s=0.0, samples_per_round=3,
                            target_sample_us=20.0)
    assert [p.batch_size for p in result.pairs] == [1, 4]
    for p in result.pairs:
        assert p.rounds == 4 and p.c.runs == 4 * 3 and p.onnx.runs >= 4 * DEFAULT_BLOCK_RUNS
        assert p.ratio_ci_low <= p.ratio <= p.ratio_ci_high and p.calls_per_sample >= 1
        assert p.speedup == pytest.approx(1.0 / p.ratio)
        assert p.speedup_ci == pytest.approx((1.0 / p.ratio_ci_high, 1.0 / p.ratio_ci_low))
    doc = result.to_json()
    assert doc["kind"] == "c-pair" and "alternate" in doc["method"] and doc["settings"]["min_rounds"] == 4
    assert doc["results"][0]["ratio_c_over_onnx"] == result.pairs[0].ratio


def test_measure_c_pair_refuses_bad_settings(tmp_path: Path) -> None:
    csrc = to_c(random_model((2, 3, 1), seed=0))
    with pytest.raises(InputError, match="min_rounds >= 2"):
        measure_c_pair(csrc, tmp_path / "unused.onnx", min_rounds=1)


# ---------------------------------------------------------------------------------------------------------
# build.export_c_file and the CLI: `export -o model.c`, `bench model.c [--against model.onnx]`




def test_which_c_compiler_is_none_only_when_nothing_is_configured(monkeypatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")
    assert which_c_compiler() is None
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    with pytest.raises(ToolchainError, match="CC='/nonexistent/bin/cc'"):  # asked for and missing: an error
        which_c_compiler()


@needs_cc
def test_export_c_file_defaults_the_prefix_to_the_file_name(tmp_path: Path) -> None:
    model = random_model((3, 5, 2), seed=2)
    rows = sample_inputs(model, 40, seed=7)
    result = export_c_file(model, tmp_path / "fan-speed.c", heldout_rows=rows, heldout_source="my rows")
    assert result.code.prefix == "fan_speed" and any("'fan-speed'" in n for n in result.code.notes)
    assert result.check is not None and result.check.rows == 40 and result.check_rows_source == "my rows"
    assert result.not_verified is None and result.header_path == tmp_path / "fan-speed.h"
    assert '#include "fan-speed.h"' in result.path.read_text()
    assert result.size_bytes == result.path.stat().st_size + result.header_path.stat().st_size


@needs_cc
def test_cli_export_c_float_is_verified_and_written(example_model_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "motor.c"
    code, stdout, err = run_cli(["export", example_model_path, "-o", out], capsys)
    assert (code, err) == (0, "")
    assert "C code: motor_predict and motor_predict_batch, float32; per row 62 multiply-adds" in stdout
    assert re.search(r"verified with \S+ -std=c99 .*-Werror.* on \d+ .*rows: max abs error \S+ <= tolerance", stdout)
    assert f"wrote {out} and {tmp_path / 'motor.h'}" in stdout
    assert read_c(out).prefix == "motor" and sorted(os.listdir(tmp_path)) == ["motor.c", "motor.h"]


@needs_cc
def test_cli_export_c_size_budget_makes_layers_loops_on_a_microcontroller(tmp_path: Path, capsys) -> None:
    from swat_edge.device.cost import estimate
    from swat_edge.model import save_model

    model = random_model((2, 8, 8, 8, 1), activations="tanh", per_layer=True, seed=4)
    path = tmp_path / "dense.safetensors"
    save_model(model, path)
    straight = estimate(model, "cortex-m4", dtype="fp32")
    assert straight.loop_layers == ()  # without a budget loops do not pay on the M4: slower
    budget = int(straight.model_bytes * 0.7)
    code, stdout, err = run_cli(["export", path, "-o", tmp_path / "d.c", "--target", "cortex-m4", "--size-budget",
                                 str(budget)], capsys)
    assert (code, err) == (0, "")
    loops = read_c(tmp_path / "d.c").loop_layers
    assert loops and "are loops over weight tables" in stdout
    fitted = estimate(model, "cortex-m4", dtype="fp32", size_budget_bytes=budget)
    assert fitted.loop_layers == loops and fitted.model_bytes <= budget < straight.model_bytes
    assert fitted.latency_us[0] > straight.latency_us[0]
    code, stdout, err = run_cli(["export", path, "-o", tmp_path / "n.c", "--target", "cortex-m4"], capsys)
    assert code == 0 and read_c(tmp_path / "n.c").loop_layers == ()
    code, stdout, err = run_cli(["export", path, "-o", tmp_path / "a.c", "--loops", "all"], capsys)
    assert code == 0 and read_c(tmp_path / "a.c").loop_layers == (1, 2, 3)
    for bad, message in ((["-o", tmp_path / "x.c", "--size-budget", "3KB"], "--size-budget needs --target"),
                         (["-o", tmp_path / "x.onnx", "--loops", "all"], "for C output"),
                         (["-o", tmp_path / "x.c", "--loops", "some"], "--loops 'some': use auto, none or all")):
        code, _, err = run_cli(["export", path, *bad], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.c").exists() and not (tmp_path / "x.onnx").exists()


@needs_cc
def test_cli_export_c_from_a_run_uses_the_target_and_size_budget_it_searched_for(tmp_path: Path, capsys) -> None:
    from swat_edge.device.cost import estimate
    from swat_edge.model import save_model

    model = random_model((2, 8, 8, 8, 1), activations="relu", per_layer=True, seed=4)
    run = tmp_path / "run"
    run.mkdir()
    save_model(model, run / "model.safetensors")
    budget = int(estimate(model, "cortex-m4", dtype="fp32").model_bytes * 0.6)
    card = {"target": {"name": "cortex-m4"}, "budgets": {"size_bytes": budget, "latency_us": None}}
    (run / "card.json").write_text(json.dumps(card))
    code, stdout, err = run_cli(["export", "--run", run, "-o", tmp_path / "r.c"], capsys)
    assert (code, err) == (0, "")
    expected = estimate(model, "cortex-m4", dtype="fp32", size_budget_bytes=budget).loop_layers
    assert expected and read_c(tmp_path / "r.c").loop_layers == expected
    # flags win over the card; a run searched without a size budget exports straight-line code
    code, _, _ = run_cli(["export", "--run", run, "-o", tmp_path / "s.c", "--loops", "none"], capsys)
    assert code == 0 and read_c(tmp_path / "s.c").loop_layers == ()
    (run / "card.json").write_text(json.dumps({**card, "budgets": {"size_bytes": None, "latency_us": None}}))
    code, _, _ = run_cli(["export", "--run", run, "-o", tmp_path / "t.c"], capsys)
    assert code == 0 and read_c(tmp_path / "t.c").loop_layers == ()


@needs_cc
def test_cli_export_c_int8_reports_drift_on_heldout_rows(example_model_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "motor-q.c"
    code, stdout, err = run_cli(
        ["export", example_model_path, "-o", out, "--dtype", "int8", "--fast-math", "--calibration",
         EXAMPLES / "motor.csv", "--holdout", EXAMPLES / "motor_holdout.csv"],
        capsys,
    )
    assert (code, err) == (0, "")
    assert "int8 weights, int32 sums, fast_math" in stdout
    assert "note: prefix 'motor-q' is not a valid C identifier; using 'motor_q' (from the output file name" in stdout
    assert "note: fast_math: approximate activations, max abs error tanh" in stdout
    m = re.search(r"on 500 held-out rows from \S+motor_holdout.csv: int8 drift vs the float model, relative MSE "
                  r"(\S+) <= 0.001 \(calibrated on 512 rows of \S+motor.csv\)", stdout)
    assert m and 0.0 < float(m.group(1)) < 1e-3
    back = read_c(out)
    assert (back.prefix, back.dtype, back.fast_math) == ("motor_q", "int8", True)


@needs_cc
def test_cli_export_c_drift_over_the_limit_writes_nothing(example_model_path: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["export", example_model_path, "-o", tmp_path / "q.c", "--dtype", "int8",
                            "--max-drift", "1e-12"], capsys)
    assert code == 1 and err.count("\n") == 1 and "drifts from the float model" in err and "> 1e-12" in err
    assert os.listdir(tmp_path) == []


def test_cli_export_c_refuses_existing_outputs_without_force(example_model_path: Path, tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")  # no compiler needed to be refused, nor to overwrite with --force
    (tmp_path / "m.h").write_text("/* mine */\n")
    code, out, err = run_cli(["export", example_model_path, "-o", tmp_path / "m.c"], capsys)
    assert (code, out) == (2, "") and err == f"error: {tmp_path / 'm.h'}: already exists; pass --force to overwrite it\n"
    assert sorted(os.listdir(tmp_path)) == ["m.h"] and (tmp_path / "m.h").read_text() == "/* mine */\n"
    code, _, _ = run_cli(["export", example_model_path, "-o", tmp_path / "m.c", "--force"], capsys)
    assert code == 0 and "m_predict" in (tmp_path / "m.h").read_text()


def test_cli_export_c_without_a_compiler_writes_unverified_files(example_model_path: Path, tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", "")
    code, out, err = run_cli(["export", example_model_path, "-o", tmp_path / "m.c"], capsys)
    assert code == 0
    assert err == "warning: not verified: no C compiler found (set CC); the files were written unchecked\n"
    assert "verified with" not in out and sorted(os.listdir(tmp_path)) == ["m.c", "m.h"]


def test_cli_export_c_compiler_error_exits_nonzero_and_writes_nothing(example_model_path: Path, tmp_path: Path,
                                                                      capsys, monkeypatch) -> None:
    tools, out_dir = tmp_path / "bin", tmp_path / "out"
    tools.mkdir()
    out_dir.mkdir()
    fake = tools / "fakecc"
    fake.write_text('#!/bin/sh\necho "m.c:3:1: error: simulated compiler failure" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    code, out, err = run_cli(["export", example_model_path, "-o", out_dir / "m.c"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {fake} failed to compile the generated C: m.c:3:1: error: simulated compiler failure")
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "m.c", "--quantize", "static"], "--quantize/--quantize-last: for ONNX output; for C int8 use --dtype int8"),
        (["-o", "m.c", "--dtype", "int4"], "--dtype 'int4': use float or int8"),
        (["-o", "m.onnx", "--dtype", "int8"], "--dtype/--fast-math/--prefix: for C output"),
        (["-o", "m.onnx", "--fast-math"], "--dtype/--fast-math/--prefix: for C output"),
    ],
)
def test_cli_export_c_flag_mismatches_are_usage_errors(example_model_path: Path, tmp_path: Path, capsys, monkeypatch,
                                                       args: list, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["export", example_model_path, *args], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err
    assert os.listdir(tmp_path) == []


@needs_cc
def test_cli_bench_c_prints_per_call_and_per_row_figures(tmp_path: Path, capsys) -> None:
    write_c(to_c(random_model((2, 5, 1), seed=0), prefix="b"), tmp_path / "b.c")
    code, out, err = run_cli(["bench", tmp_path / "b.c", "--batch", "1", "--batch", "4", "--runs", "5", "--json",
                              tmp_path / "r.json"], capsys)
    assert (code, err) == (0, "")
    assert all(h in out for h in ("samples", "calls/sample", "p50 us/call", "p50 ns/row", "throughput rows/s"))
    assert "b.c: b_predict (batch > 1: b_predict_batch), float, 15 multiply-adds per row" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["kind"] == "c" and [r["batch_size"] for r in doc["results"]] == [1, 4]
    assert all(r["runs"] == 5 for r in doc["results"])


@needs_cc
def test_cli_bench_c_against_onnx_gives_the_ratio_in_one_run(tmp_path: Path, capsys) -> None:
    model = random_model((2, 5, 1), seed=0)
    write_c(to_c(model, prefix="b"), tmp_path / "b.c")
    (tmp_path / "a.onnx").write_bytes(to_onnx(model, simplify=False).SerializeToString())
    code, out, err = run_cli(["bench", tmp_path / "b.c", "--against", tmp_path / "a.onnx", "--runs", "3", "--json",
                              tmp_path / "p.json"], capsys)
    assert (code, err) == (0, "")
    assert f"a = {tmp_path / 'a.onnx'} (onnxruntime, 1 thread(s)), b = {tmp_path / 'b.c'} (C: float" in out
    assert "interleaved: rounds alternate between the C timing harness" in out
    assert all(h in out for h in ("b/a", "95% CI", "a/b (speed-up)", "rounds"))
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["kind"] == "c-pair" and doc["results"][0]["rounds"] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--baseline", "base.json", "--max-regression", "10%"], "the CI gate compares ONNX results only"),
        (["--github-json", "gh.json"], "the CI gate compares ONNX results only"),
        (["--against", "other.c"], "--against other.c: bench measures .onnx models, and generated C as MODEL"),
    ],
)
def test_cli_bench_c_refusals_are_one_line(tmp_path: Path, capsys, monkeypatch, extra: list, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    write_c(to_c(random_model((2, 3, 1), seed=0), prefix="b"), tmp_path / "b.c")
    (tmp_path / "other.c").write_text("int x;\n")
    code, out, err = run_cli(["bench", "b.c", *extra], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err


@needs_cc
def test_c_export_and_bench_run_without_torch(example_model_path: Path, tmp_path: Path) -> None:
    # the C path needs no ONNX tooling either (bench --against: tests/test_cli.py)
    proc = run_without_torch([["export", example_model_path, "-o", tmp_path / "m.c", "--dtype", "int8"],
                              ["bench", tmp_path / "m.c", "--runs", "2"]], never_imported=("torch", "onnxsim"))
    assert proc.returncode == 0, proc.stderr[-2000:]
