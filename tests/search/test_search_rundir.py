"""Torch-free parts of `swat-edge search`: dataset loading, split and scaling, run folders, export paths, plots."""
import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from clirun import python_without_torch

from swat_edge.data import holdout_split, load_dataset, minmax_scaling
from swat_edge.errors import DataError, MissingFileError, OutputExistsError, UsageError
from swat_edge.model import random_model
from swat_edge.runs.folder import (
    check_run_dir,
    default_run_dir,
    latest_run,
    record_latest,
    resolve_export_paths,
)
from swat_edge.runs.report import architecture_svg, bars_svg, line_chart_svg, scatter_svg


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_dataset_defaults_to_last_column_and_fingerprints_the_file(tmp_path):
    p = _csv(tmp_path, "a,b,c,y\n1,2,3,4\n5,6,7,8\n")
    ds = load_dataset(p)
    assert ds.feature_names == ("a", "b", "c") and ds.target_names == ("y",)
    np.testing.assert_array_equal(ds.x, [[1, 2, 3], [5, 6, 7]])
    np.testing.assert_array_equal(ds.y, [[4], [8]])
    assert ds.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    picked = load_dataset(p, target_cols="a", features="c, b")
    assert picked.feature_names == ("c", "b") and picked.target_names == ("a",)
    np.testing.assert_array_equal(picked.x[:, 0], [3, 7])


def test_load_dataset_refuses_bad_column_choices_with_the_column(tmp_path):
    p = _csv(tmp_path, "a,b,y\n1,2,3\n4,nan,6\n")
    with pytest.raises(DataError, match=r"row 2, column 'b': empty cell or NaN"):
        load_dataset(p)
    assert load_dataset(p, features="a").x.shape == (2, 1)  # only the chosen columns must be finite
    with pytest.raises(DataError, match=r"no target column 'z' \(the file has: a, b, y\)"):
        load_dataset(p, target_cols="z")
    with pytest.raises(DataError, match=r"column 'y' is both a feature and the target"):
        load_dataset(p, features="a,y")
    with pytest.raises(DataError, match=r"feature column 'a' is named twice"):
        load_dataset(p, features="a,a")


def test_holdout_split_is_seeded_disjoint_and_keeps_a_minimum():
    tr, va = holdout_split(100, fraction=0.2, seed=3)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    tr2, va2 = holdout_split(100, fraction=0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, holdout_split(100, fraction=0.2, seed=4)[1])
    assert len(holdout_split(10, fraction=0.1, seed=0, min_rows=4)[1]) == 4


def test_minmax_scaling_maps_to_unit_box_and_zeroes_constant_columns():
    x = np.array([[0.0, 5.0, 2.0], [10.0, 5.0, -2.0], [5.0, 5.0, 0.0]])
    scale, offset = minmax_scaling(x)
    z = x * scale + offset
    np.testing.assert_allclose(z[:, [0, 2]].min(axis=0), -1.0)
    np.testing.assert_allclose(z[:, [0, 2]].max(axis=0), 1.0)
    assert scale[1] == 0.0 and offset[1] == 0.0


def test_default_run_dir_is_a_timestamp_and_never_reuses_a_name(tmp_path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = default_run_dir(tmp_path, now=now)
    assert first.name == "20260102-030405"
    first.mkdir()
    assert default_run_dir(tmp_path, now=now).name == "20260102-030405-2"


def test_check_run_dir_refuses_a_non_empty_folder_without_force(tmp_path):
    run = tmp_path / "run"
    assert check_run_dir(run, force=False) == run  # missing: fine
    run.mkdir()
    check_run_dir(run, force=False)  # empty: fine
    (run / "card.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        check_run_dir(run, force=False)
    check_run_dir(run, force=True)
    with pytest.raises(UsageError, match="is a file"):
        check_run_dir(run / "card.json", force=True)


def test_latest_pointer_round_trip_and_replacement(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(UsageError, match=r"no search run found .*run `swat-edge search` first"):
        latest_run(root)
    a, b = root / "a", tmp_path / "elsewhere" / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    record_latest(a, root)
    assert latest_run(root) == a.resolve()
    record_latest(b, root)  # outside the root: still recorded, replaced atomically
    assert latest_run(root) == b.resolve()
    assert sorted(p.name for p in root.iterdir()) == ["a", "latest"]  # no temp file left


def test_resolve_export_paths(tmp_path):
    root = tmp_path / "runs"
    run = root / "r1"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"x")
    record_latest(run, root)
    # `swat-edge export model.onnx`: the single argument is the output, the model is the latest run's
    model, out, run_dir = resolve_export_paths(Path("model.onnx"), None, None, root=root)
    assert (model, out, run_dir) == (run.resolve() / "model.safetensors", Path("model.onnx"), run.resolve())
    assert resolve_export_paths(Path("m.c"), None, None, root=root)[1] == Path("m.c")
    # explicit model and -o: unchanged behaviour
    assert resolve_export_paths(Path("a.safetensors"), Path("b.onnx"), None, root=root)[:2] == (
        Path("a.safetensors"), Path("b.onnx"))
    # --run picks another run
    assert resolve_export_paths(None, Path("b.onnx"), run, root=root)[0] == run / "model.safetensors"
    with pytest.raises(UsageError, match=r"-o/--output: name the file to write.*swat-edge export a.safetensors -o"):
        resolve_export_paths(Path("a.safetensors"), None, None, root=root)
    with pytest.raises(UsageError, match="not both"):
        resolve_export_paths(Path("a.safetensors"), Path("b.onnx"), run, root=root)
    with pytest.raises(UsageError, match="not a search run"):
        resolve_export_paths(None, Path("b.onnx"), tmp_path, root=root)
    with pytest.raises(MissingFileError, match="no such run folder"):
        resolve_export_paths(None, Path("b.onnx"), tmp_path / "nope", root=root)


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML or it raises


def test_plots_are_well_formed_svg_and_escape_text():
    line = line_chart_svg([("a<b", [1, 2, 3], [1e-3, 5e-4, None]), ("c", [1, 2], [2e-3, 1e-3])],
                          title="t & u", xlabel="step", ylabel="MSE")
    root = _parse(line)
    assert root.tag.endswith("svg") and "a&lt;b" in line and len(root.findall(".//{*}polyline")) == 2
    assert "no data" in line_chart_svg([("a", [1], [float("nan")])], title="x", xlabel="", ylabel="")
    scat = scatter_svg([("validation", np.array([1.0, 2.0]), np.array([1.1, 1.9]))], title="s", xlabel="a", ylabel="p")
    assert len(_parse(scat).findall(".//{*}circle")) == 3  # two points + the legend marker
    bars = bars_svg([("raspi4", 20.0, "(fp32)"), ("host", 5.0, "")], title="b", unit="us", highlight="raspi4")
    assert len(_parse(bars).findall(".//{*}rect")) == 3  # background + two bars


def test_architecture_drawing_shows_active_neurons_and_nonzero_weights():
    model = random_model([3, 4, 2, 1], sparsity=0.3, dead_fraction=0.25, seed=5)
    root = _parse(architecture_svg(model))
    active = sum(int(layer.mask.sum()) for layer in model.hidden)
    legend = len({a for layer in model.hidden for a, m in zip(layer.activations, layer.mask) if m})
    assert len(root.findall(".//{*}circle")) == 3 + active + 1 + legend


def test_rundir_report_and_cli_do_not_import_torch():
    proc = python_without_torch("import swat_edge.runs.folder, swat_edge.runs.report, swat_edge.cli, swat_edge.data")
    assert proc.returncode == 0, proc.stderr


def test_load_dataset_reads_npz_with_y_as_the_target(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, X=np.arange(12.0).reshape(4, 3), y=np.arange(4.0), feature_names=np.array(["a", "b", "c"]))
    ds = load_dataset(p)
    assert ds.feature_names == ("a", "b", "c") and ds.target_names == ("y",)
    np.testing.assert_array_equal(ds.y[:, 0], np.arange(4.0))
