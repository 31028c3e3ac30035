import numpy as np
import pytest

from swat_edge.data import check_finite, model_rows, read_table, select_columns
from swat_edge.errors import DataError, MissingFileError


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_csv_with_header(tmp_path):
    t = read_table(_csv(tmp_path, "a,b,y\n1,2,3\n4,5.5,-6e-1\n\n"))
    assert t.columns == ("a", "b", "y")
    np.testing.assert_array_equal(t.values, [[1, 2, 3], [4, 5.5, -0.6]])


def test_semicolon_and_tab_separated_files_read_as_the_comma_separated_one(tmp_path):
    comma = read_table(_csv(tmp_path, "a,b,y\n1.5,-2,3e-1\n4,5.25,-6\n", "comma.csv"))
    # a spreadsheet in a decimal-comma locale writes semicolons and decimal commas
    semicolon = read_table(_csv(tmp_path, "a;b;y\n1,5;-2;3e-1\n4;5,25;-6\n", "semicolon.csv"))
    tab = read_table(_csv(tmp_path, "a\tb\ty\n1.5\t-2\t0.3\n4\t5.25\t-6\n", "tab.csv"))
    for table in (semicolon, tab):
        assert table.columns == comma.columns
        np.testing.assert_array_equal(table.values, comma.values)


def test_decimal_commas_only_where_the_columns_are_not_comma_separated(tmp_path):
    with pytest.raises(DataError, match=r"row 1: has 3 cells, the header has 2 columns"):
        read_table(_csv(tmp_path, "a,y\n1,5,2\n"))
    labels = read_table(_csv(tmp_path, "a;y\n1,5;yes, maybe\n2;no\n"), text=True)
    assert labels.text == {"y": ("yes, maybe", "no")}
    with pytest.raises(DataError, match=r"row 1, column 'a': '1,5,0' is not a number"):
        read_table(_csv(tmp_path, "a;y\n1,5,0;2\n", "two_commas.csv"))
    # a feature column holding text after decimal commas: the error names the text's row, not the first comma's
    table = read_table(_csv(tmp_path, "a;y\n1,5;1\nred;2\n", "text_feature.csv"), text=True)
    with pytest.raises(DataError, match=r"row 2, column 'a': 'red' is not a number; feature cells must be numeric "
                                        r"\(encode categories as numbers, or leave the column out with --features\)"):
        select_columns(table, ["a"])


def test_non_numeric_cell_names_row_and_column(tmp_path):
    with pytest.raises(DataError, match=r"d.csv row 2, column 'b': 'abc' is not a number"):
        read_table(_csv(tmp_path, "a,b\n1,2\n3,abc\n"))


def test_nan_and_inf_name_row_and_column(tmp_path):
    t = read_table(_csv(tmp_path, "a,b\n1,2\n3,nan\n"))
    with pytest.raises(DataError, match=r"row 2, column 'b': empty cell or NaN; values must be finite"):
        check_finite(t)
    t = read_table(_csv(tmp_path, "a,b\n1,inf\n", "e.csv"))
    with pytest.raises(DataError, match=r"e.csv row 1, column 'b': inf"):
        check_finite(t)


def test_ragged_row_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="row 1: has 3 cells, the header has 2 columns"):
        read_table(_csv(tmp_path, "a,b\n1,2,3\n"))
    with pytest.raises(DataError, match="empty file"):
        read_table(_csv(tmp_path, "", "empty.csv"))
    with pytest.raises(DataError, match="no data rows"):
        read_table(_csv(tmp_path, "a,b\n", "header.csv"))
    with pytest.raises(MissingFileError, match="no such data file"):
        read_table(tmp_path / "missing.csv")


def test_npz_never_unpickles(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, X=np.array([[1, {"a": 1}]], dtype=object))
    with pytest.raises(DataError, match="not a readable NPZ"):
        read_table(p)
    np.savez(p, X=np.ones((4, 2)), y=np.arange(4.0))
    t = read_table(p)
    assert t.columns == ("x0", "x1", "y") and t.values.shape == (4, 3)


def test_model_rows_by_name_then_by_position(tmp_path):
    t = read_table(_csv(tmp_path, "y,b,a\n9,2,1\n"))
    x, y = model_rows(t, ("a", "b"), ("y",))
    np.testing.assert_array_equal(x, [[1, 2]])
    np.testing.assert_array_equal(y, [[9]])
    t = read_table(_csv(tmp_path, "p,q\n1,2\n", "pos.csv"))
    x, y = model_rows(t, ("a", "b"), ("y",))
    assert y is None and x.shape == (1, 2)


def test_wrong_number_of_columns(tmp_path):
    t = read_table(_csv(tmp_path, "p,q,r,s\n1,2,3,4\n"))
    with pytest.raises(DataError, match="has 4 columns .* the model takes 2 inputs"):
        model_rows(t, ("a", "b"), ("y",))
