"""Tabular data: read CSV (with a header) or NPZ into a checked float table; select features and targets."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataError, UsageError
from .files import check_input_file

__all__ = [
    "Table",
    "read_table",
    "check_finite",
    "select_columns",
    "model_rows",
    "Dataset",
    "MISSING_POLICIES",
    "OUTLIER_POLICIES",
    "gross_outliers",
    "TASKS",
    "load_dataset",
    "load_train_and_test",
    "holdout_split",
    "minmax_scaling",
    "column_list",
]


@dataclass(frozen=True)
class Table:
    """A numeric table: `values` is (rows, columns) float64, `columns` the header names, `path` the source."""

    path: str
    columns: tuple[str, ...]
    values: np.ndarray
    # read_table(text=True): every cell of each column holding a non-number (its values are NaN), e.g. labels
    text: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])


def column_list(names: tuple[str, ...] | list[str], head: int = 10, tail: int = 3) -> str:
    """Input column names for one line: all of them, or for many the first and last few and how many between
    (a 1,000-feature model's full list is in its metadata, not on the terminal)."""
    if len(names) <= head + tail + 3:
        return ", ".join(names)
    skipped = len(names) - head - tail
    return f"{', '.join(names[:head])}, ... ({skipped} more), {', '.join(names[-tail:])}"


# Separators a CSV's header may use: comma, then what spreadsheets write in locales whose decimal mark is a comma
_DELIMITERS = (",", ";", "\t")


def _delimiter(header_line: str) -> str:
    """The column separator of a CSV: the one of _DELIMITERS its header line uses most (a header holds names, not
    numbers, so no decimal comma confuses the count); a comma when it uses none (one column)."""
    counts = [header_line.count(d) for d in _DELIMITERS]
    return _DELIMITERS[counts.index(max(counts))] if max(counts) > 0 else ","


def _decimal_comma(text: str) -> str:
    """A cell as written with a decimal comma ("-1,5e3", as a semicolon-separated file from a spreadsheet in such a
    locale holds it) with a decimal point instead; other text as it is."""
    if text.count(",") == 1 and "." not in text:
        return text.replace(",", ".")
    return text


def _parse_cell(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan if text.strip() == "" else _NOT_A_NUMBER


_NOT_A_NUMBER = object()


def _read_csv(path: Path, text: bool = False) -> Table:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            delimiter = _delimiter(fh.readline())
            fh.seek(0)
            reader = csv.reader(fh, delimiter=delimiter)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(path, "empty file; expected a header line and numeric rows") from None
            header = [h.strip() for h in header]
            if not header or all(h == "" for h in header):
                raise DataError(path, "first line is empty; expected a header with column names")
            rows: list[list[float]] = []
            raw_rows: list[list[str]] = []
            text_columns: set[int] = set()
            for row_number, raw in enumerate(reader, start=1):
                if not raw or all(c.strip() == "" for c in raw):
                    continue  # blank line
                if len(raw) != len(header):
                    raise DataError(
                        path,
                        f"has {len(raw)} cells, the header has {len(header)} columns",
                        row=row_number,
                    )
                parsed = []
                for j, (col, cell) in enumerate(zip(header, raw)):
                    value = _parse_cell(cell if delimiter == "," else _decimal_comma(cell))
                    if value is _NOT_A_NUMBER:
                        if not text:
                            raise DataError(path, f"{cell.strip()!r} is not a number; cells must be numeric",
                                            row=row_number, column=col)
                        text_columns.add(j)
                        value = math.nan
                    parsed.append(value)
                rows.append(parsed)
                if text:
                    raw_rows.append([c.strip() for c in raw])
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file; expected a CSV with a header") from None
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV ({exc})") from None
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    texts = {header[j]: tuple(r[j] for r in raw_rows) for j in sorted(text_columns)}
    return Table(str(path), tuple(header), values, texts)


def _read_npz(path: Path) -> Table:
    try:
        # allow_pickle=False: an NPZ can carry pickled objects; we never unpickle user files.
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "X" not in keys:
                raise DataError(path, f"no array 'X' (found: {', '.join(sorted(keys)) or 'none'}); expected X and optional y")
            x = np.asarray(npz["X"])
            y = np.asarray(npz["y"]) if "y" in keys else None
            feature_names = [str(s) for s in npz["feature_names"]] if "feature_names" in keys else None
            target_names = [str(s) for s in npz["target_names"]] if "target_names" in keys else None
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"not a readable NPZ file ({exc})") from None
    if x.ndim != 2:
        raise DataError(path, f"array 'X' has shape {x.shape}; expected (rows, features)")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(path, f"array 'X' has dtype {x.dtype}; expected numbers")
    parts = [x.astype(np.float64)]
    names = feature_names or [f"x{i}" for i in range(x.shape[1])]
    if y is not None:
        y2 = y.reshape(len(y), -1).astype(np.float64)
        if len(y2) != len(x):
            raise DataError(path, f"'y' has {len(y2)} rows but 'X' has {len(x)}")
        parts.append(y2)
        names += target_names or (["y"] if y2.shape[1] == 1 else [f"y{i}" for i in range(y2.shape[1])])
    if len(names) != sum(p.shape[1] for p in parts):
        raise DataError(path, "feature_names/target_names do not match the array widths")
    return Table(str(path), tuple(names), np.concatenate(parts, axis=1))


def read_table(path: str | os.PathLike, *, text: bool = False) -> Table:
    """Read a CSV with a header line, or an NPZ with arrays X (and optional y, feature_names, target_names).
    text=True keeps CSV columns holding non-numbers (class labels) as text in Table.text instead of refusing."""
    p = check_input_file(path, "data file")
    table = _read_npz(p) if p.suffix.lower() == ".npz" else _read_csv(p, text)
    if table.n_rows == 0:
        raise DataError(p, "has a header but no data rows")
    return table


def check_finite(table: Table, columns: Sequence[int] | None = None,
                 fix: str = "drop or impute the row") -> None:
    """Raise DataError naming the first row and column that holds NaN, inf or an empty cell."""
    cols = list(range(len(table.columns))) if columns is None else list(columns)
    block = table.values[:, cols]
    bad = ~np.isfinite(block)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        value = block[r, c]
        what = "empty cell or NaN" if np.isnan(value) else str(value)
        raise DataError(
            table.path,
            f"{what}; values must be finite ({fix})",
            row=int(r) + 1,
            column=table.columns[cols[c]],
        )


# What load_dataset's error says a user can do about an empty cell
_MISSING_FIX = "drop or impute the row, or search with --missing drop|median"


def select_columns(table: Table, names: Sequence[str], *, role: str = "feature", finite: bool = True,
                   fix: str = "drop or impute the row") -> np.ndarray:
    """The (rows, len(names)) block of the named columns; a missing name is a DataError listing what exists.
    finite=False lets empty cells (NaN) through; inf is refused either way."""
    index = {name: i for i, name in enumerate(table.columns)}
    missing = [n for n in names if n not in index]
    if missing:
        raise DataError(
            table.path,
            f"no {role} column {missing[0]!r} (the file has: {', '.join(table.columns)})",
        )
    for name in names:
        if name in table.text:
            # the first cell read as NaN that is no number as written (decimal commas were read as numbers)
            row = next(i for i, cell in enumerate(table.text[name])
                       if math.isnan(table.values[i, index[name]]) and _parse_cell(cell) is _NOT_A_NUMBER)
            hint = " (encode categories as numbers, or leave the column out with --features)" if role == "feature" else ""
            raise DataError(table.path, f"{table.text[name][row]!r} is not a number; {role} cells must be "
                                        f"numeric{hint}", row=row + 1, column=name)
    cols = [index[n] for n in names]
    if finite:
        check_finite(table, cols, fix)
    else:
        _check_no_inf(table, cols)
    return table.values[:, cols]


def _check_no_inf(table: Table, cols: Sequence[int]) -> None:
    bad = np.isinf(table.values[:, cols])
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(table.path, f"{table.values[r, cols[c]]}; values must be finite", row=int(r) + 1,
                        column=table.columns[cols[c]])


def model_rows(
    table: Table, feature_names: Sequence[str], target_names: Sequence[str], *, allow_missing: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows for a model: inputs (and targets when present), matched by column name, else by position.

    By position only when the table has exactly n_inputs or n_inputs + n_outputs columns; anything else is a
    DataError that names the counts, so a file for another model is not silently misread. allow_missing: empty
    feature cells pass as NaN (for a model that fills its missing inputs). Columns of text (a classifier's label
    column) are never read as targets.
    """
    n_in, n_out = len(feature_names), len(target_names)
    if all(name in table.columns for name in feature_names):
        x = select_columns(table, feature_names, finite=not allow_missing)
        numeric = all(n in table.columns and n not in table.text for n in target_names)
        y = select_columns(table, target_names, role="target") if numeric else None
        return x, y
    if table.values.shape[1] in (n_in, n_in + n_out) and not table.text:
        check_finite(table)
        x = table.values[:, :n_in]
        y = table.values[:, n_in:] if table.values.shape[1] == n_in + n_out else None
        return x, y
    raise DataError(
        table.path,
        f"has {table.values.shape[1]} columns ({column_list(tuple(table.columns))}); the model takes {n_in} inputs "
        f"({column_list(tuple(feature_names))}): name them in the header or give exactly {n_in} (or {n_in + n_out}) columns",
    )


# ---------------------------------------------------------------------------------------------------------
# Datasets for the search: features and targets chosen by name, a seeded validation split, min-max scaling.


MISSING_POLICIES = ("error", "drop", "median")
TASKS = ("auto", "regress", "classify")
# --task auto treats an integer target with at most this many distinct values as class labels
MAX_DETECTED_CLASSES = 10
DETECTED_ROWS_PER_CLASS = 5  # ... and at least this many rows per distinct value on average


@dataclass(frozen=True)
class Dataset:
    """Features x (rows, n_features) and targets y (rows, n_targets) read from `path`, with the file's sha256.

    input_fill: per feature, the value a missing input is replaced by (`--missing median`: the training file's
    medians; the model and its exports carry it); missing_note says what was dropped or imputed.
    """

    path: str
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    sha256: str
    input_fill: np.ndarray | None = None
    missing_note: str = ""
    # classification: the class names, y holds each row's class index (one target column); () for regression
    classes: tuple[str, ...] = ()
    task_note: str = ""  # how the task was decided, when it was detected
    outlier_note: str = ""  # rows dropped as gross outliers (--outliers drop)

    @property
    def is_classification(self) -> bool:
        return bool(self.classes)

    @property
    def n_rows(self) -> int:
        return int(self.x.shape[0])


def _split_names(names: str | Sequence[str] | None) -> list[str] | None:
    if names is None:
        return None
    parts = names.split(",") if isinstance(names, str) else list(names)
    return [p.strip() for p in parts if p.strip()]


def load_dataset(
    path: str | os.PathLike,
    *,
    target_cols: str | Sequence[str] | None = None,
    features: str | Sequence[str] | None = None,
    missing: str = "error",
    input_fill: np.ndarray | None = None,
    task: str = "auto",
    classes: Sequence[str] | None = None,
    outliers: str = "keep",
) -> Dataset:
    """Read a CSV/NPZ and pick targets (default: the last column) and features (default: every other column).

    Names may be given as a list or one comma-separated string. Only the chosen columns are checked.
    missing (an empty cell or NaN in a chosen column): "error" (a DataError naming the row and column), "drop"
    (drop those rows), or "median" (drop rows with a missing target; fill missing features with the medians of
    this file's rows, or with `input_fill` when given: a test file is filled with the training medians).
    outliers (gross_outliers in a feature or a regression target): "error" (a DataError naming the first), "drop"
    (drop those rows, said in outlier_note), or "keep".
    task: "regress", "classify" (one target column of labels: text, or numbers taken as names), or "auto":
    classify when the target holds text, or integers with at most MAX_DETECTED_CLASSES distinct values and
    DETECTED_ROWS_PER_CLASS rows per value on average (said in task_note). `classes` fixes the class names (a test file takes the training file's; an unknown label is an
    error naming the row).
    """
    import hashlib

    if task not in TASKS:
        raise UsageError(f"--task {task}: use {', '.join(TASKS)}")
    table = read_table(path, text=True)
    targets = _split_names(target_cols) or [table.columns[-1]]
    chosen = _split_names(features)
    if chosen is None:
        chosen = [c for c in table.columns if c not in targets]
    overlap = [c for c in chosen if c in targets]
    if overlap:
        raise DataError(table.path, f"column {overlap[0]!r} is both a feature and the target; drop it from --features")
    if not chosen:
        raise DataError(table.path, f"no feature columns left besides the target {', '.join(targets)}; "
                                    "the file needs at least one input column")
    for names, role in ((chosen, "feature"), (targets, "target")):
        seen = [n for i, n in enumerate(names) if n in names[:i]]
        if seen:
            raise DataError(table.path, f"{role} column {seen[0]!r} is named twice; name each column once")
    if missing not in MISSING_POLICIES:
        raise UsageError(f"--missing {missing}: use {', '.join(MISSING_POLICIES)}")
    if outliers not in OUTLIER_POLICIES:
        raise UsageError(f"--outliers {outliers}: use {', '.join(OUTLIER_POLICIES)}")
    strict = missing == "error"
    found, task_note = _classes_of(table, targets, task, classes)
    # a missing target is the likelier mistake: checked first
    if found is None:
        y = select_columns(table, targets, role="target", finite=strict, fix=_MISSING_FIX)
    else:
        y = _class_indices(table, targets[0], found, strict)
    x = select_columns(table, chosen, role="feature", finite=strict, fix=_MISSING_FIX)
    x, y, outlier_note = _handle_outliers(table.path, x, y, tuple(chosen), () if found else tuple(targets), outliers)
    x, y, fill, note = _handle_missing(table.path, x, y, tuple(chosen), missing, input_fill)
    digest = hashlib.sha256(Path(table.path).read_bytes()).hexdigest()
    return Dataset(table.path, x, y, tuple(chosen), tuple(targets), digest, fill, note, found or (), task_note,
                   outlier_note)


# How far beyond the middle rows of its column a value is a gross outlier, in multiples of their range: scaled to
# [-1, 1] with such a value, the other rows share less than 1% of the range (and an MSE fit bends to it)
OUTLIER_SPREADS = 100.0
# ... and only a few such values in a column: more of them make a heavy tail the data has (CORNN's easom: a spike
# on 1.3% of its rows), not glitches
OUTLIER_MAX_SHARE, OUTLIER_MAX_ROWS = 0.005, 3
OUTLIER_POLICIES = ("error", "drop", "keep")


def _middle_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per column: the quantiles that leave out the 1% of rows at each end, and at least 2 rows."""
    tail = max(0.01, 2.0 / max(len(values), 1))
    low, high = np.nanquantile(values, [tail, 1.0 - tail], axis=0)
    return low, high


def gross_outliers(values: np.ndarray) -> np.ndarray:
    """(rows, columns) bool: values more than OUTLIER_SPREADS times the range of their column's middle rows
    (_middle_range) beyond it, in a column with at most max(OUTLIER_MAX_ROWS, OUTLIER_MAX_SHARE x rows) of them. A
    column whose middle rows all hold one value (an indicator, a sparse count) has no outliers: its few other
    values are what it says. NaN is no outlier."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 4:
        return np.zeros(values.shape, dtype=bool)
    low, high = _middle_range(values)
    spread = high - low
    with np.errstate(invalid="ignore"):
        beyond = np.maximum(low - values, values - high)
        hits = (spread > 0) & (beyond > OUTLIER_SPREADS * spread)
    few = hits.sum(axis=0) <= max(OUTLIER_MAX_ROWS, OUTLIER_MAX_SHARE * len(values))
    return hits & few


def _handle_outliers(path: str, x: np.ndarray, y: np.ndarray, features: tuple[str, ...], targets: tuple[str, ...],
                     policy: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, note) after the outlier policy (see load_dataset); targets names the columns of y to check (none for
    class indices)."""
    if policy == "keep":
        return x, y, ""
    block = np.hstack([x, y[:, : len(targets)]]) if targets else x
    hits = gross_outliers(block)
    if not hits.any():
        return x, y, ""
    names = (*features, *targets)
    if policy == "error":
        row, col = np.argwhere(hits)[0]
        low, high = _middle_range(block[:, [col]])
        spread = float(high[0] - low[0])
        value = float(block[row, col])
        times = max(float(low[0]) - value, value - float(high[0])) / spread
        raise DataError(path, f"{value:g} is a gross outlier: {times:.3g} times the range of the column's middle "
                              f"rows ({float(low[0]):g} to {float(high[0]):g}) beyond it; scaled to [-1, 1] with it, "
                              "the other rows would share under 1% of the range (fix or drop the row, or search "
                              "with --outliers drop|keep)", row=int(row) + 1, column=names[col])
    drop = hits.any(axis=1)
    columns = [n for n, hit in zip(names, hits.any(axis=0)) if hit]
    note = (f"dropped {int(drop.sum())} of {len(x)} rows with a gross outlier (more than {OUTLIER_SPREADS:g} times "
            f"the range of its column's middle rows beyond it) in {', '.join(columns)}")
    return x[~drop], y[~drop], note


def _label_cells(table: Table, name: str) -> list[str]:
    """Each row's label as text ("" where the cell is empty); numbers written as integers where they are."""
    if name in table.text:
        return list(table.text[name])
    column = table.values[:, table.columns.index(name)]
    return ["" if np.isnan(v) else str(int(v)) if float(v).is_integer() else repr(float(v)) for v in column]


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    """Numerically when every label is a number, else as text."""
    try:
        return tuple(sorted(labels, key=float))
    except ValueError:
        return tuple(sorted(labels))


def _classes_of(table: Table, targets: list[str], task: str, given: Sequence[str] | None
                ) -> tuple[tuple[str, ...] | None, str]:
    """(class names, note) for a classification task, (None, "") for regression (see load_dataset's task)."""
    name = targets[0]
    if name not in table.columns:
        return None, ""  # select_columns names the missing column
    if task == "regress" or (task == "auto" and given is None and name not in table.text):
        values = table.values[:, table.columns.index(name)]
        present = values[~np.isnan(values)]
        distinct = np.unique(present)
        if task == "regress" or len(distinct) > MAX_DETECTED_CLASSES or len(distinct) < 2 or \
                len(present) < DETECTED_ROWS_PER_CLASS * len(distinct) or not np.all(np.equal(np.mod(distinct, 1), 0)):
            return None, ""
        note = (f"target {name!r} holds {len(distinct)} integer values: classification "
                "(--task regress fits it as a number)")
    else:
        note = f"target {name!r} holds labels: classification" if task == "auto" and given is None else ""
    if len(targets) != 1:
        raise DataError(table.path, f"classification takes one target column, got {len(targets)} "
                                    f"({', '.join(targets)}); pass one with --target-col")
    if given is not None:
        return tuple(given), note
    found = _sorted_labels({label for label in _label_cells(table, name) if label != ""})
    if len(found) < 2:
        raise DataError(table.path, f"the target has {len(found)} class(es); classification needs at least 2",
                        column=name)
    return found, note


def _class_indices(table: Table, name: str, classes: tuple[str, ...], strict: bool) -> np.ndarray:
    """(rows, 1): each row's class index (NaN where the label is missing; an error there when strict)."""
    index = {label: k for k, label in enumerate(classes)}
    out = np.empty((table.n_rows, 1))
    for row, label in enumerate(_label_cells(table, name)):
        if label == "":
            if strict:
                raise DataError(table.path, f"empty cell; values must be finite ({_MISSING_FIX})", row=row + 1,
                                column=name)
            out[row, 0] = math.nan
        elif label not in index:
            raise DataError(table.path, f"label {label!r} is not one of the training classes "
                                        f"({', '.join(classes)})", row=row + 1, column=name)
        else:
            out[row, 0] = index[label]
    return out


def load_train_and_test(
    data: str | os.PathLike, test: str | os.PathLike | None, *, target_cols: str | Sequence[str] | None = None,
    features: str | Sequence[str] | None = None, missing: str = "error", task: str = "auto", outliers: str = "error",
) -> tuple[Dataset, Dataset | None]:
    """The training file and an optional test file with the same columns and missing-value policy; under
    "median" the test file's missing features get the training medians, as the deployed model does. The outlier
    policy applies to the training file: test rows are only evaluated, whatever they hold."""
    dataset = load_dataset(data, target_cols=target_cols, features=features, missing=missing, task=task,
                           outliers=outliers)
    if test is None:
        return dataset, None
    return dataset, load_dataset(test, target_cols=list(dataset.target_names), features=list(dataset.feature_names),
                                 missing=missing, input_fill=dataset.input_fill,
                                 task="classify" if dataset.is_classification else "regress",
                                 classes=dataset.classes or None)


def _handle_missing(path: str, x: np.ndarray, y: np.ndarray, names: tuple[str, ...], missing: str,
                    input_fill: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """(x, y, input_fill, note) after the missing-value policy (see load_dataset)."""
    if missing == "error":
        return x, y, None, ""
    lost_x, lost_y = np.isnan(x).any(axis=1), np.isnan(y).any(axis=1)
    drop = lost_x | lost_y if missing == "drop" else lost_y
    if drop.all():
        raise DataError(path, f"every row has a missing {'value' if missing == 'drop' else 'target'}; "
                              "nothing is left to learn from")
    notes = []
    if drop.any():
        what = "a missing value" if missing == "drop" else "a missing target"
        notes.append(f"dropped {int(drop.sum())} of {len(x)} rows with {what}")
    x, y = x[~drop], y[~drop]
    fill = None
    if missing == "median":
        if input_fill is None:
            empty = [n for n, column in zip(names, x.T) if np.isnan(column).all()]
            if empty:
                raise DataError(path, f"no value to take a median of", column=empty[0])
            input_fill = np.nanmedian(x, axis=0)
        fill = np.asarray(input_fill, dtype=np.float64)
        gaps = np.isnan(x)
        if gaps.any():
            columns = [n for n, hit in zip(names, gaps.any(axis=0)) if hit]
            notes.append(f"filled {int(gaps.sum())} missing value(s) in {', '.join(columns)} with the training "
                         "median (the model and its exports do the same)")
        x = np.where(gaps, fill, x)
    return x, y, fill, "; ".join(notes)


def holdout_split(n_rows: int, *, fraction: float, seed: int, min_rows: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of row indices into (train, validation); the validation part has at least min_rows rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"bug: validation fraction {fraction} outside (0, 1)")
    n_val = max(int(round(fraction * n_rows)), min_rows)
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def minmax_scaling(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) per column so that values * scale + offset spans [-1, 1] (the SWAT-NN protocol).

    A constant column gets scale 0 and offset 0: the model sees 0 for it, and export drops that input.
    """
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = hi - lo
    constant = span <= 1e-12 * np.maximum(np.abs(hi), 1.0)
    scale = np.where(constant, 0.0, 2.0 / np.where(constant, 1.0, span))
    offset = np.where(constant, 0.0, -1.0 - lo * scale)
    return scale, offset
