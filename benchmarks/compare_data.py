"""The benchmark's tasks: CORNN functions, scikit-learn's bundled regression sets and CSV train/test pairs.

Every task reaches the harness (benchmarks/compare_task.py) in one form: training rows and test rows, the target
scaled to [-1, 1] by the training rows' min and max (the SWAT-NN protocol, so test MSEs are comparable across
tasks; the test rows use the same constants), at most the embedding's input count of features.

- CORNN (../shared/cornn, GPL data read in place): swat_edge.search.compare_decoders.load_cornn_task, inputs mapped
  from the manifest's domain to [-1, 1].
- scikit-learn's bundled sets, each with a fixed data seed (0) and a fixed 75/25 train/test split (seed 0),
  whatever --seed is: load_diabetes (442 rows, 10 features); make_friedman1 (2,000 rows, 10 features of which 5
  are noise, noise sd 1), make_friedman2 (2,000 rows, noise sd 125) and make_friedman3 (2,000 rows, noise sd
  0.1), the noise levels of Friedman (1991) as Breiman (1996) used them (about 3:1 signal to noise for 2 and 3).
- CSV pairs from a folder: <name>.train.csv and <name>.test.csv with a header line, the target in the last column.

Feature selection: the default embedding takes at most 8 inputs (issue 14 lifts the limit). A data set with more
features keeps the 8 with the highest mutual information with the target on its *training* rows
(sklearn.feature_selection.mutual_info_regression, random_state 0; it sees a quadratic effect, which absolute
correlation misses, e.g. friedman1's 20 (x3 - 0.5)^2), and every method, the reference rows included, sees only
those. The task's notes say which were kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

DATA_SEED = 0  # the bundled sets' generator seed and train/test split seed, fixed for every --seed
TEST_FRACTION = 0.25
FRIEDMAN_ROWS = 2000
BUNDLED = ("diabetes", "friedman1", "friedman2", "friedman3")


@dataclass(frozen=True)
class Task:
    """One regression problem as every method sees it (target scaled to [-1, 1] by the training rows)."""

    name: str
    kind: str  # "cornn" or "real"
    x_train: np.ndarray
    y_train: np.ndarray  # (rows,)
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    notes: tuple[str, ...] = ()


def scale_target(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both targets mapped by the training rows' min and max to [-1, 1] (on the training rows)."""
    lo, hi = float(np.min(y_train)), float(np.max(y_train))
    span = max(hi - lo, 1e-12)
    return 2.0 * (y_train - lo) / span - 1.0, 2.0 * (y_test - lo) / span - 1.0


def most_informative_features(x_train: np.ndarray, y_train: np.ndarray, keep: int) -> np.ndarray:
    """Indices (ascending) of the `keep` features with the highest mutual information with the target on the
    training rows; all of them when there are no more than `keep`."""
    if x_train.shape[1] <= keep:
        return np.arange(x_train.shape[1])
    from sklearn.feature_selection import mutual_info_regression

    information = mutual_info_regression(x_train, y_train, random_state=0)
    order = np.argsort(-information, kind="stable")
    return np.sort(order[:keep])


def real_task(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              feature_names: tuple[str, ...], max_inputs: int, source: str) -> Task:
    """A real-data task: features selected on the training rows when there are too many, target scaled."""
    kept = most_informative_features(x_train, y_train, max_inputs)
    notes = [source]
    if len(kept) < x_train.shape[1]:
        dropped = [feature_names[i] for i in range(x_train.shape[1]) if i not in set(kept.tolist())]
        notes.append(f"{x_train.shape[1]} features, the embedding takes {max_inputs}: kept the {max_inputs} with the "
                     f"highest mutual information with the target on the training rows, dropped {', '.join(dropped)}")
    y_tr, y_te = scale_target(np.asarray(y_train, float), np.asarray(y_test, float))
    return Task(name, "real", np.asarray(x_train, float)[:, kept], y_tr, np.asarray(x_test, float)[:, kept], y_te,
                tuple(feature_names[i] for i in kept), tuple(notes))


def _bundled_arrays(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn import datasets

    if name == "diabetes":
        bunch = datasets.load_diabetes()
        return bunch.data, bunch.target, "sklearn.datasets.load_diabetes (442 rows)"
    if name == "friedman1":
        x, y = datasets.make_friedman1(n_samples=FRIEDMAN_ROWS, n_features=10, noise=1.0, random_state=DATA_SEED)
        return x, y, f"make_friedman1({FRIEDMAN_ROWS} rows, 10 features of which 5 noise, noise 1.0, seed {DATA_SEED})"
    if name == "friedman2":
        x, y = datasets.make_friedman2(n_samples=FRIEDMAN_ROWS, noise=125.0, random_state=DATA_SEED)
        return x, y, f"make_friedman2({FRIEDMAN_ROWS} rows, noise 125, seed {DATA_SEED})"
    if name == "friedman3":
        x, y = datasets.make_friedman3(n_samples=FRIEDMAN_ROWS, noise=0.1, random_state=DATA_SEED)
        return x, y, f"make_friedman3({FRIEDMAN_ROWS} rows, noise 0.1, seed {DATA_SEED})"
    raise ValueError(f"no bundled data set {name!r}; known: {', '.join(BUNDLED)}")


def load_bundled(name: str, max_inputs: int) -> Task:
    """A scikit-learn data set with its fixed 75/25 train/test split."""
    from sklearn.model_selection import train_test_split

    x, y, source = _bundled_arrays(name)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=DATA_SEED)
    names = tuple(f"x{i}" for i in range(x.shape[1]))
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        names = tuple(load_diabetes().feature_names)
    return real_task(name, x_tr, y_tr, x_te, y_te, names, max_inputs,
                     f"{source}, train/test {len(x_tr)}/{len(x_te)} (train_test_split seed {DATA_SEED})")


def csv_pairs(folder: Path) -> list[str]:
    """Names of the <name>.train.csv / <name>.test.csv pairs in a folder (a lone half is an error)."""
    trains = {p.name[: -len(".train.csv")] for p in folder.glob("*.train.csv")}
    tests = {p.name[: -len(".test.csv")] for p in folder.glob("*.test.csv")}
    lone = sorted(trains ^ tests)
    if lone:
        raise ValueError(f"{folder}: {', '.join(lone)} has only one of <name>.train.csv and <name>.test.csv")
    return sorted(trains)


def load_csv_pair(folder: str, name: str, max_inputs: int) -> Task:
    """<folder>/<name>.train.csv and .test.csv (same header, target last)."""
    from swat_edge.data import read_table

    train = read_table(Path(folder) / f"{name}.train.csv")
    test = read_table(Path(folder) / f"{name}.test.csv")
    if train.columns != test.columns:
        raise ValueError(f"{name}: the train and test files have different headers")
    for table in (train, test):
        if not np.isfinite(table.values).all():
            raise ValueError(f"{table.path}: empty or non-finite cells; the benchmark needs complete rows")
    return real_task(name, train.values[:, :-1], train.values[:, -1], test.values[:, :-1], test.values[:, -1],
                     train.columns[:-1], max_inputs, f"{folder}/{name}.{{train,test}}.csv, train/test "
                     f"{train.n_rows}/{test.n_rows}, target {train.columns[-1]!r}")


def load_cornn(cornn_dir: str, slug: str, max_inputs: int) -> Task:
    from swat_edge.search.compare_decoders import load_cornn_task

    task = load_cornn_task(cornn_dir, slug)
    return Task(slug, "cornn", task.x_train, task.y_train, task.x_test, task.y_test, ("x", "y"))


# How a worker process loads a task from picklable arguments: LOADERS[kind](*args, max_inputs)
LOADERS: dict[str, Callable[..., Task]] = {"cornn": load_cornn, "bundled": load_bundled, "csv": load_csv_pair}
