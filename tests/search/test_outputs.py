"""Several targets (issue 14, part 3) with a single-output embedding: the latent search fits the targets' first
principal component, each decoded network gets a least-squares output layer for every target, fine-tuning trains
them all; figures per target; the exported ONNX gives every target."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from clirun import run_cli  # noqa: E402

from swat_edge.export.onnx import run_onnx  # noqa: E402
from swat_edge.model import forward, load_model  # noqa: E402

FAST = ["--steps", "40", "--starts", "3", "--no-measure"]


def test_two_targets_on_different_scales_are_both_learned(tiny_run, tmp_path, capsys):
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size=(300, 2))
    u = np.sin(2 * x[:, 0]) + x[:, 1] ** 2  # two targets on unrelated scales and offsets
    v = 1000.0 + 300.0 * x[:, 0] * x[:, 1]
    np.savetxt(tmp_path / "two.csv", np.c_[x, u, v], delimiter=",", header="a,b,u,v", comments="")
    code, stdout, _ = run_cli(["search", "--data", tmp_path / "two.csv", "--target-col", "u,v", "--target", "raspi4",
                               "--embedding", tiny_run, "--out", tmp_path / "run", *FAST], capsys)
    assert code == 0 and "per target, fine-tuned" in stdout
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.n_outputs == 2 and model.target_names == ("u", "v")
    pred = forward(model, x)
    for k, y in enumerate((u, v)):  # each target explained far better than by its mean
        assert np.mean((pred[:, k] - y) ** 2) < 0.2 * np.var(y)
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    per_target = card["metrics"]["fine_tuned"]["validation"]["per_target"]
    assert set(per_target) == {"u", "v"} and all(0.8 < t["r2"] <= 1.0 for t in per_target.values())
    y_onnx = run_onnx((tmp_path / "run" / "model.onnx").read_bytes(), x[:40]).astype(np.float64)
    np.testing.assert_allclose(y_onnx, pred[:40], rtol=1e-4, atol=1e-3)
    for path in sorted((tmp_path / "run" / "candidates").iterdir()):  # every point of the front predicts both
        assert load_model(path).n_outputs == 2
