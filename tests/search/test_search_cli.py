"""`swat-edge search` and `swat-edge export` of a search run, through swat_edge.cli.main: artefacts, card, latest
run, budgets and every bad input as one line with its exit code."""
import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from clirun import run_cli

from swat_edge.cli import main  # noqa: E402
from swat_edge.model import forward, load_model  # noqa: E402

FAST = ["--steps", "40", "--starts", "3", "--finetune-steps", "20", "--no-measure"]




def _write_csv(path, n=120, seed=0, header="a,b,y"):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 2))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2
    np.savetxt(path, np.c_[x, y], delimiter=",", header=header, comments="", fmt="%.6f")
    return path


@pytest.fixture(scope="module")
def searched(tiny_run, tmp_path_factory):
    """One search run in a fresh working folder (so runs/latest lands there), with a test file and budgets."""
    import os

    work = tmp_path_factory.mktemp("work")
    data = _write_csv(work / "train.csv")
    test = _write_csv(work / "test.csv", n=40, seed=1)
    old = os.getcwd()
    os.chdir(work)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["search", "--data", "train.csv", "--test", "test.csv", "--target", "raspi4", "--embedding",
                  str(tiny_run), "--latency-budget", "1ms", "--size-budget", "4KB", "--fit-rows", "5000", "--out",
                  "run1", *FAST])
    finally:
        os.chdir(old)
    assert exc.value.code == 0
    return work, data, test


def test_search_writes_the_run_folder_and_points_latest_at_it(searched):
    work, _, _ = searched
    run = work / "run1"
    assert sorted(p.name for p in run.iterdir()) == ["candidates", "card.json", "model.onnx", "model.safetensors",
                                                     "report.html"]
    card = json.loads((run / "card.json").read_text())
    front = card["selection"]["front"]
    assert sorted(p.name for p in (run / "candidates").iterdir()) == [f"front-{k}.safetensors" for k in range(len(front))]
    assert (work / "runs" / "latest").resolve() == run.resolve()
    assert not [p for p in work.iterdir() if p.name.startswith(".run1")]  # no temporary folder left
    html = (run / "report.html").read_text()
    for part in ("<svg", "latent search", "fine-tuning", "predicted latency at batch 1", "active network",
                 "candidates on raspi4"):
        assert part in html
    model = load_model(run / "model.safetensors")
    assert model.feature_names == ("a", "b") and model.target_names == ("y",)


def test_card_has_the_figures_the_issue_lists(searched):
    work, data, test = searched
    card = json.loads((work / "run1" / "card.json").read_text())
    assert card["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert card["data"]["test"]["sha256"] == hashlib.sha256(test.read_bytes()).hexdigest()
    # 120 rows: the latent search's 96/24 split; the candidates chosen by 5-fold cross-validation over all rows
    assert card["data"]["split_rows"] == {"train": 120, "validation": 120, "test": 40, "folds": 5}
    assert card["data"]["input_stage"] is None  # 2 features: no input stage
    assert len(card["embedding"]["weights_sha256"]) == 64 and card["embedding"]["steps"] == 20
    assert card["target"]["name"] == "raspi4" and card["target"]["deployed_dtype"] == "fp32"
    assert card["seed"] == 0 and card["settings"]["latent"]["steps"] == 40 and card["settings"]["lm_max_rows"] == 5000
    assert card["data"]["outliers_dropped"] is None
    assert card["budgets"] == {"latency_us": 1000.0, "size_bytes": 4000.0, "met": True,
                               "checked_on": "predicted fp32 latency at batch 1 and model bytes on raspi4"}
    assert [card["metrics"]["latent_only"][s]["rows"] for s in ("train", "validation", "test")] == [96, 24, 40]
    assert [card["metrics"]["fine_tuned"][s]["rows"] for s in ("train", "validation", "test")] == [120, 120, 40]
    assert any("cross-validation" in note for note in card["notes"])
    m = card["model"]
    for key in ("active_neurons", "nonzero_params", "sparse_macs", "dense_macs", "bytes_fp32", "bytes_int8"):
        assert isinstance(m[key], int)
    assert 0 < card["predicted"]["latency_us"] <= 1000.0 and card["predicted"]["model_bytes"] <= 4000
    assert set(card["predicted"]["by_target"]) >= {"raspi4", "host", "cortex-m4"}
    assert card["measured"] is None  # --no-measure
    assert card["int8"]["written"] is False and "int8 policy is 'never'" in card["int8"]["reason"]
    assert sum(c["chosen"] for c in card["selection"]["candidates"]) == 1


def test_card_figures_are_the_saved_models_figures_and_beat_the_mean(searched):
    # Recomputed here from the run's model file and the data files with the reference forward pass: the
    # protocol's split (seeded shuffle, card's seed and validation fraction) and its units (target scaled to
    # [-1, 1] by the training rows' min and max).
    from swat_edge.data import holdout_split

    work, data, test = searched
    card = json.loads((work / "run1" / "card.json").read_text())
    model = load_model(work / "run1" / "model.safetensors")
    rows, test_rows = np.loadtxt(data, delimiter=",", skiprows=1), np.loadtxt(test, delimiter=",", skiprows=1)
    train, val = holdout_split(len(rows), fraction=card["data"]["validation_fraction"], seed=card["seed"])
    assert (len(train), len(val)) == (96, 24)
    y_scale = 2.0 / np.ptp(rows[train, 2])
    # the model was refitted on all 120 rows (cross-validation chose it; its validation figure is out-of-fold,
    # which the saved model cannot reproduce): "train" is all rows
    splits = {"train": rows, "test": test_rows}
    for split, part in splits.items():
        x, y = part[:, :2], part[:, 2]
        err = forward(model, x)[:, 0] - y
        fig = card["metrics"]["fine_tuned"][split]
        # the model file stores float32 weights: figures agree to ~1e-6 relative, not bit for bit
        assert fig["mse"] == pytest.approx(np.mean((err * y_scale) ** 2), rel=1e-4), split
        assert fig["r2"] == pytest.approx(1.0 - np.sum(err**2) / np.sum((y - y.mean()) ** 2), rel=1e-4, abs=1e-6)
    # Baseline on the same test rows, same units: predicting the training rows' mean. (Before the search fitted
    # with Levenberg-Marquardt and competed with dense references, the tiny embedding ended near-constant here:
    # 0.2740 against the mean's 0.2744.)
    mean_mse = np.mean(((rows[train, 2].mean() - test_rows[:, 2]) * y_scale) ** 2)
    assert card["metrics"]["fine_tuned"]["test"]["mse"] <= 0.1 * mean_mse, mean_mse


def test_export_without_a_model_exports_the_latest_run(searched, capsys, monkeypatch):
    work, _, _ = searched
    monkeypatch.chdir(work)
    code, out, err = run_cli(["export", "latest.onnx"], capsys)
    assert code == 0, err
    assert "search run" in out and (work / "latest.onnx").stat().st_size > 0
    code, out, err = run_cli(["export", "-o", "picked.onnx", "--run", "run1"], capsys)
    assert code == 0 and (work / "picked.onnx").exists()
    code, _, err = run_cli(["export", "run1/model.safetensors", "-o", "x.onnx", "--run", "run1"], capsys)
    assert code == 2 and "not both" in err


def test_every_front_point_is_listed_and_exports_with_candidate(searched, capsys, monkeypatch):
    import onnxruntime as ort

    work, _, test = searched
    monkeypatch.chdir(work)
    card = json.loads((work / "run1" / "card.json").read_text())
    front, candidates = card["selection"]["front"], card["selection"]["candidates"]
    assert [p["k"] for p in front] == list(range(len(front))) and len(front) >= 2
    assert [p["latency_us"] for p in front] == sorted(p["latency_us"] for p in front)
    assert sum(p["chosen"] for p in front) == 1  # the chosen network is never dominated
    assert all(p["polished"] == candidates[p["candidate"]]["polished"] for p in front)
    for p in front:  # nothing listed on the front is dominated by another candidate
        c = candidates[p["candidate"]]
        assert c["on_front"] and not any(
            o["finetuned_val_mse"] <= c["finetuned_val_mse"] and o["latency_us"] <= c["latency_us"]
            and o["size_bytes"] <= c["size_bytes"] and o is not c
            and (o["finetuned_val_mse"], o["latency_us"], o["size_bytes"]) != (c["finetuned_val_mse"], c["latency_us"],
                                                                             c["size_bytes"])
            for o in candidates)
    x = np.loadtxt(test, delimiter=",", skiprows=1)[:, :2]
    for p in front:
        code, _, err = run_cli(["export", f"front{p['k']}.onnx", "--run", "run1", "--candidate", str(p["k"])], capsys)
        assert code == 0, err
        session = ort.InferenceSession(str(work / f"front{p['k']}.onnx"))
        kept = [("a", "b").index(name) for name in json.loads(session.get_modelmeta().custom_metadata_map[
            "feature_names"])]  # an unused input is dropped from the signature (issue "Real data" changes that)
        exported = session.run(None, {session.get_inputs()[0].name: x[:, kept].astype(np.float32)})[0]
        model = load_model(work / "run1" / p["file"])
        np.testing.assert_allclose(exported, forward(model, x), rtol=1e-4, atol=1e-4)
        assert len(model.hidden) == (0 if p["origin"] == "linear" else p["depth"])
    code, _, err = run_cli(["export", "x.onnx", "--run", "run1", "--candidate", str(len(front))], capsys)
    assert code == 2 and f"front points 0-{len(front) - 1}" in err and not (work / "x.onnx").exists()


def test_default_run_folder_is_a_timestamp_under_runs(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _write_csv(tmp_path / "d.csv")
    code, out, err = run_cli(["search", "--data", data, "--target", "raspi4", "--embedding", tiny_run, *FAST], capsys)
    assert code == 0, err
    run = (tmp_path / "runs" / "latest").resolve()
    assert run.parent == (tmp_path / "runs").resolve() and run.name[:8].isdigit()  # runs/<timestamp>
    assert (run / "model.onnx").exists() and "wrote runs/" in out


def test_export_with_no_run_yet_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["export", "model.onnx"], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: no search run found (runs/latest is missing); run `swat-edge search` first, or give the model file "
        "(swat-edge export MODEL -o model.onnx) or a run folder (--run DIR)"
    ]


def test_an_unmet_budget_exits_1_with_the_closest_candidate_and_writes_nothing(tiny_run, tmp_path, capsys,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _write_csv(tmp_path / "d.csv")
    code, out, err = run_cli(["search", "--data", data, "--target", "raspi4", "--embedding", tiny_run,
                              "--latency-budget", "2us", "--out", "r", *FAST], capsys)
    assert code == 1
    # what is reachable is printed, cheapest first, so the user sees which budget would be met
    assert "reachable on raspi4" in out and "linear" in out
    line = err.strip().splitlines()[-1]
    assert line.startswith("FAILED: no candidate met the budgets (latency <= 2 us) on raspi4; closest: depth ")
    assert "us and " in line and "non-zero parameter" in line and line.endswith("nothing written")
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


def _bad_embedding(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "embedding.json").write_text("{not json")
    return d


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("inputs", 2, r"--inputs pca: use auto, select or project"),
        ("missing-policy", 2, r"--missing sometimes: use error, drop, median"),
        ("outlier-policy", 2, r"--outliers clip: use error, drop, keep"),
        ("outlier", 1, r"d.csv row 3, column 'y': 1e\+06 is a gross outlier: .* \(fix or drop the row, or search with "
                       r"--outliers drop\|keep\)"),
        ("nan", 1, r"d.csv row 3, column 'b': empty cell or NaN; values must be finite"),
        ("text", 1, r"d.csv row 2, column 'a': 'abc' is not a number"),
        ("rows", 1, r"d.csv: has 10 rows; the search needs at least 20"),
        ("constant", 1, r"d.csv column 'y': the target is constant \(3\) on all \d+ training rows"),
        ("target", 2, r"unknown target 'pluto'; available: .*raspi4"),
        ("embedding", 1, r"broken/embedding.json: not valid JSON .*the embedding file is corrupted"),
        ("no-embedding", 2, r"no such embedding file"),
        ("budget", 2, r"--latency-budget '20 parsecs': give a positive number with a unit \(us, µs, ms, s\), e.g. 20us"),
        ("outputs", 1, r"d.csv: column 'y' is both a feature and the target"),
        ("exists", 2, r"already exists; pass --force to overwrite it"),
        ("missing", 2, r"no such data file"),
    ],
)
def test_bad_input_is_one_line_with_an_exit_code(case, code, message, tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _write_csv(tmp_path / "d.csv")
    extra: list = []
    embedding = tiny_run
    target = "raspi4"
    if case == "inputs":
        extra = ["--inputs", "pca"]
    elif case == "missing-policy":
        extra = ["--missing", "sometimes"]
    elif case == "outlier-policy":
        extra = ["--outliers", "clip"]
    elif case == "outlier":
        data.write_text("a,b,y\n1,2,3\n2,3,4\n3,4,1e6\n" + "".join(f"{i},{i},{i}\n" for i in range(40)))
    elif case == "nan":
        data.write_text("a,b,y\n1,2,3\n2,3,4\n3,,5\n" + "".join(f"{i},{i},{i}\n" for i in range(40)))
    elif case == "text":
        data.write_text("a,b,y\n1,2,3\nabc,3,4\n")
    elif case == "rows":
        _write_csv(data, n=10)
    elif case == "constant":
        data.write_text("a,b,y\n" + "".join(f"{i},{i * 2},3\n" for i in range(40)))
    elif case == "target":
        target = "pluto"
    elif case == "embedding":
        embedding = _bad_embedding(tmp_path)
    elif case == "no-embedding":
        embedding = tmp_path / "nowhere" / "embedding.json"
    elif case == "budget":
        extra = ["--latency-budget", "20 parsecs"]
    elif case == "outputs":
        extra = ["--target-col", "a,y", "--features", "b,y"]
    elif case == "exists":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "card.json").write_text("{}")
    elif case == "missing":
        data = tmp_path / "nope.csv"
    got, _, err = run_cli(["search", "--data", data, "--target", target, "--embedding", embedding, "--out", "out",
                           *extra, *FAST], capsys)
    lines = err.strip().splitlines()
    assert got == code, err
    assert len(lines) == 1 and lines[0].startswith("error: ")
    import re

    assert re.search(message, lines[0]), lines[0]


def test_an_int8_run_writes_the_int8_model_with_its_drift(tmp_path):
    """write_run on a known model (the tiny test embedding finds networks too degenerate to quantize)."""
    from swat_edge.data import Dataset
    from swat_edge.device.cost import estimate
    from swat_edge.device.targets import load_target
    from swat_edge.model import random_model
    from swat_edge.runs.folder import write_run
    from swat_edge.search.objective import Budgets
    from swat_edge.search.run import Candidate, Figures, SearchResult, SearchSettings

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(200, 2))
    model = random_model([2, 6, 4, 1], seed=3).replace(calibration=x[:100])
    y = forward(model, x)
    fig = Figures(mse=0.01, r2=0.9, rows=100)
    cand = Candidate(depth=2, start=0, step=10, val_mse=0.02, latency_us=30.0, size_bytes=200.0, nonzero_params=40,
                     active_neurons=10, violation=0.0, finetuned_val_mse=0.01, chosen=True)
    target = load_target("raspi4")
    result = SearchResult(candidate_models=(),
        met_budgets=True, model=model, latent_model=model, chosen=cand, candidates=(cand,), closest=None,
        metrics={s: {"train": fig, "validation": fig} for s in ("latent_only", "fine_tuned")}, dtype="int8",
        estimate=estimate(model, target, dtype="int8"), history=({"step": 10, "train_mse": 0.1, "best_val_mse": 0.1,
                                                                  "val_mse_by_depth": {"2": 0.1}},),
        finetune_history=((0, 0.02), (10, 0.01)), predictions={"validation": (y[100:], y[100:])},
        split_rows={"train": 100, "validation": 100, "test": 0}, validation_rows=np.arange(100, 200), timings_s={},
    )
    data = Dataset("d.csv", x, y, ("x0", "x1"), ("y0",), "0" * 64)
    files = write_run(result, tmp_path / "run", dataset=data, test=None, target=target, embedding={"source": "e"},
                      settings=SearchSettings(int8=True), budgets=Budgets(), heldout=(x[100:], y[100:]),
                      measure=False, latest_root=None)
    assert (tmp_path / "run" / "model.int8.onnx").stat().st_size > 0 and files.latest is None
    int8 = files.card["int8"]
    assert int8["written"] and int8["reason"] == "--int8" and int8["drift"]["rows"] == 100
    assert 0 <= int8["drift"]["relative_mse"] < 1e-2


def test_missing_median_searches_and_the_exported_model_fills_like_the_reference(tiny_run, tmp_path, capsys):
    from swat_edge.export.onnx import run_onnx

    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(150, 2))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2
    x[rng.random(x.shape) < 0.1] = np.nan
    lines = [",".join("" if np.isnan(v) else f"{v:.6f}" for v in row) for row in np.c_[x, y]]
    (tmp_path / "gaps.csv").write_text("a,b,y\n" + "\n".join(lines) + "\n")
    code, stdout, _ = run_cli(["search", "--data", tmp_path / "gaps.csv", "--target", "raspi4", "--embedding",
                               tiny_run, "--out", tmp_path / "run", "--missing", "median", *FAST], capsys)
    assert code == 0 and "missing values: filled" in stdout
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    medians = np.nanmedian(x, axis=0)
    assert card["data"]["missing_values"]["fill"] == pytest.approx({"a": medians[0], "b": medians[1]}, abs=1e-6)
    model = load_model(tmp_path / "run" / "model.safetensors")
    y_onnx = run_onnx((tmp_path / "run" / "model.onnx").read_bytes(), x)  # rows with gaps, as the device sees them
    np.testing.assert_allclose(y_onnx, forward(model, x), atol=1e-4)
    assert np.isfinite(y_onnx).all()
