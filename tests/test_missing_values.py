"""Missing values (issue 14, part 6): `--missing error|drop|median` when reading data, and a model that fills a
missing input with the training median, in the reference forward pass, the ONNX graph (IsNaN + Where) and the C
(isnan), each checked against the others on rows with gaps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from swat_edge.data import load_dataset, load_train_and_test
from swat_edge.errors import DataError, UsageError
from swat_edge.export.c import INT8_MAX_RELATIVE_MSE, relative_mse, run_c_rows
from swat_edge.export.cc import which_c_compiler
from swat_edge.export.onnx import run_onnx
from swat_edge.export.pipeline import export_c_file, export_onnx_file
from swat_edge.model import forward, model_from_bytes, model_to_bytes, random_model

needs_cc = pytest.mark.skipif(which_c_compiler() is None, reason="no C compiler found (set CC)")


def _csv(path: Path, rows: list[list[float]], header: str = "a,b,y") -> Path:
    text = "\n".join(",".join("" if np.isnan(v) else repr(v) for v in row) for row in rows)
    path.write_text(f"{header}\n{text}\n")
    return path


NAN = float("nan")
ROWS = [[1.0, 10.0, 0.1], [2.0, NAN, 0.2], [NAN, 30.0, 0.3], [4.0, 40.0, NAN], [5.0, 50.0, 0.5], [9.0, 20.0, 0.6]]


def test_error_is_the_default_and_names_the_cell_and_the_way_forward(tmp_path: Path) -> None:
    # the target is checked first (a missing target is the likelier mistake)
    with pytest.raises(DataError, match=r"row 4, column 'y': empty cell or NaN; .*--missing drop\|median"):
        load_dataset(_csv(tmp_path / "d.csv", ROWS))


def test_drop_drops_every_row_with_a_gap_and_says_how_many(tmp_path: Path) -> None:
    data = load_dataset(_csv(tmp_path / "d.csv", ROWS), missing="drop")
    assert data.x.tolist() == [[1.0, 10.0], [5.0, 50.0], [9.0, 20.0]] and data.input_fill is None
    assert data.missing_note == "dropped 3 of 6 rows with a missing value"


def test_median_fills_features_with_the_training_median_and_drops_missing_targets(tmp_path: Path) -> None:
    data = load_dataset(_csv(tmp_path / "d.csv", ROWS), missing="median")
    # the row with a missing target goes; medians over the remaining rows: a of 1,2,5,9 -> 3.5; b of 10,30,50,20 -> 25
    np.testing.assert_array_equal(data.input_fill, [3.5, 25.0])
    assert data.x.tolist() == [[1.0, 10.0], [2.0, 25.0], [3.5, 30.0], [5.0, 50.0], [9.0, 20.0]]
    assert data.missing_note.startswith("dropped 1 of 6 rows with a missing target; filled 2 missing value(s) in a, b")


def test_a_test_file_is_filled_with_the_training_medians_not_its_own(tmp_path: Path) -> None:
    test_rows = [[NAN, NAN, 1.0], [100.0, 100.0, 2.0], [200.0, 300.0, 3.0]]
    train, test = load_train_and_test(_csv(tmp_path / "d.csv", ROWS), _csv(tmp_path / "t.csv", test_rows),
                                      missing="median")
    assert test is not None and test.x[0].tolist() == [3.5, 25.0]
    np.testing.assert_array_equal(test.input_fill, train.input_fill)


@pytest.mark.parametrize("rows, message", [
    ([[NAN, 1.0, 1.0], [NAN, 2.0, 2.0]], "column 'a': no value to take a median of"),
    ([[1.0, 1.0, NAN], [2.0, 2.0, NAN]], "every row has a missing target"),
    ([[1.0, float("inf"), 1.0], [2.0, 2.0, 2.0]], "row 1, column 'b': inf; values must be finite"),
])
def test_what_no_policy_can_fix_is_refused(tmp_path: Path, rows, message) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(_csv(tmp_path / "d.csv", rows), missing="median")


def test_an_unknown_policy_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--missing sometimes: use error, drop, median"):
        load_dataset(_csv(tmp_path / "d.csv", ROWS), missing="sometimes")


def _filled_model():
    model = random_model((3, 6, 2), seed=3)
    return model.replace(input_fill=np.array([0.25, NAN, -0.5]), calibration=np.random.default_rng(0).normal(size=(64, 3)))


def _rows_with_gaps() -> np.ndarray:
    x = np.random.default_rng(1).uniform(-1, 1, size=(40, 3))
    x[::3, 0] = NAN
    x[1::4, 2] = NAN
    return x


def test_the_reference_fills_and_the_file_keeps_the_fill() -> None:
    model, x = _filled_model(), _rows_with_gaps()
    filled = np.where(np.isnan(x), [0.25, 0.0, -0.5], x)
    np.testing.assert_array_equal(forward(model, x), forward(model.replace(input_fill=None), filled))
    again = model_from_bytes(model_to_bytes(model))
    np.testing.assert_array_equal(again.input_fill, model.input_fill)


def test_onnx_fills_missing_inputs_like_the_reference(tmp_path: Path) -> None:
    model, x = _filled_model(), _rows_with_gaps()
    export_onnx_file(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [n.op_type for n in proto.graph.node][:2] == ["IsNaN", "Where"]
    np.testing.assert_allclose(run_onnx(proto, x), forward(model, x), atol=1e-5)


@needs_cc
@pytest.mark.parametrize("dtype", ["float", "int8"])
def test_c_fills_missing_inputs_like_the_reference(tmp_path: Path, dtype: str) -> None:
    model, x = _filled_model(), _rows_with_gaps()
    result = export_c_file(model, tmp_path / "m.c", dtype=dtype)
    assert "isnan(in[0])" in result.code.source and "isnan(in[1])" not in result.code.source
    single, batch, _ = run_c_rows(result.code, x)
    assert np.array_equal(single, batch)
    if dtype == "float":
        np.testing.assert_allclose(single, forward(model, x), atol=1e-5 * np.abs(forward(model, x)).max())
    else:
        assert relative_mse(single.astype(np.float64), forward(model, x)) < INT8_MAX_RELATIVE_MSE


@pytest.mark.parametrize("output", ["m.c", "m.int8.onnx"])
def test_a_holdout_file_with_gaps_checks_a_filled_model(tmp_path: Path, output: str) -> None:
    from swat_edge.export.pipeline import export_file
    from swat_edge.model import save_model

    if output.endswith(".c") and which_c_compiler() is None:
        pytest.skip("no C compiler found (set CC)")
    model = _filled_model().replace(feature_names=("a", "b", "c"), target_names=("y", "z"))
    x = _rows_with_gaps()
    x[:, 1] = np.nan_to_num(x[:, 1])  # b has no fill: its gaps would be the data's fault
    rows = [[*row, *out] for row, out in zip(x.tolist(), forward(model, x).tolist())]
    holdout = _csv(tmp_path / "holdout.csv", rows, header="a,b,c,y,z")
    result = export_file(save_model(model, tmp_path / "m.safetensors"), tmp_path / output, holdout=holdout)
    assert result.written and result.rows.heldout is not None and np.isnan(result.rows.heldout).any()
