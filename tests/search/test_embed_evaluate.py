import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.errors import InputError  # noqa: E402
from swat_edge.model import random_model  # noqa: E402
from swat_edge.search.compare_decoders import compare_with_untrained, load_cornn_task  # noqa: E402
from swat_edge.search.embedding.evaluate import evaluate_embedding, quadratic_r2, spearman  # noqa: E402
from swat_edge.search.embedding.family import Family  # noqa: E402
from swat_edge.search.embedding.generator import Distribution, heldout_seed, sample_batch  # noqa: E402
from swat_edge.search.embedding.storage import load_embedding  # noqa: E402
from swat_edge.search.latent import fine_tune, mse, search_latent  # noqa: E402


def test_quadratic_baseline_is_exact_on_quadratics_and_poor_on_noise():
    batch = sample_batch(Family(max_inputs=3, max_depth=1), Distribution(), 4, 200, heldout_seed(0))
    x = batch.x
    n = batch.n_inputs[:, None]
    quad = 1.0 + x[:, 0] - 2 * x[:, 0] ** 2 + np.where(n > 1, x[:, 1] * x[:, 0], 0.0)  # (4, 200)
    noise = np.random.default_rng(0).normal(size=(4, 200))
    assert np.allclose(quadratic_r2(dataclasses.replace(batch, y=quad[..., None]), 100), 1.0)
    assert np.all(quadratic_r2(dataclasses.replace(batch, y=noise[..., None]), 100) < 0.2)


def test_spearman():
    a = np.arange(20.0)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_evaluate_embedding_report(tiny_run):
    emb = load_embedding(tiny_run)
    report = evaluate_embedding(emb, n_per_depth=10, n_points=32, n_pairs=100, seed=1)
    assert [r.depth for r in report.rows] == [1, 2] and all(r.n_mlps == 10 for r in report.rows)
    for r in report.rows:
        assert 0.0 <= r.share_above_0_9 <= 1.0 and 0.0 <= r.right_depth_share <= 1.0
        assert r.quadratic_median_r2 > r.median_r2  # 20 tiny steps do not beat a quadratic: the report says so
    assert -1.0 <= report.spearman_latent_vs_function <= 1.0
    assert evaluate_embedding(emb, n_per_depth=10, n_points=32, n_pairs=100, seed=1) == report  # deterministic
    with pytest.raises(InputError, match="n_points >= 8"):
        evaluate_embedding(emb, n_points=4)


def test_latent_search_and_fine_tune_on_a_synthetic_task(tiny_run):
    emb = load_embedding(tiny_run)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(300, 2))
    y = np.tanh(2 * x[:, 0]) - x[:, 1] ** 2
    result = search_latent(emb, x[:200], y[:200], x[200:], y[200:], steps=20, starts_per_depth=2, eval_every=10)
    assert result.model.n_inputs == 2 and result.depth in (1, 2) and result.latent.shape == (8,)
    assert result.val_mse == pytest.approx(mse(result.model, x[200:], y[200:]))
    assert all(p.requires_grad for p in emb.module.parameters())  # the decoder is left as it was found
    tuned = fine_tune(result.model, x[:200], y[:200], x_val=x[200:], y_val=y[200:], steps=50)
    assert mse(tuned, x[200:], y[200:]) <= result.val_mse  # best-on-validation iterate, never worse
    for a, b in zip(tuned.layers, result.model.layers):
        assert np.array_equal(a.weight == 0, b.weight == 0) and np.array_equal(a.mask, b.mask)  # masks frozen
    with pytest.raises(InputError, match=r"inputs have shape \(300, 3\)"):
        search_latent(emb, rng.uniform(size=(300, 3)), y, x, y)


def test_fine_tune_improves_a_perturbed_model():
    model = random_model((2, 5, 1), activations="tanh", normalization=False, seed=1)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(400, 2))
    from swat_edge.model import forward

    y = forward(model, x)[:, 0]
    noisy = model.replace(output=dataclasses.replace(model.output, bias=model.output.bias + 0.5))
    tuned = fine_tune(noisy, x, y, steps=200, lr=0.02)
    assert mse(tuned, x, y) < 0.1 * mse(noisy, x, y)


def test_cornn_task_scaling(cornn_dir):
    task = load_cornn_task(cornn_dir, "himmelblau")
    assert task.x_train.shape == (3750, 2) and task.x_test.shape == (1250, 2)
    assert task.x_train.min() >= -1.0 and task.x_train.max() <= 1.0
    assert task.y_train.min() == pytest.approx(-1.0) and task.y_train.max() == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"no task 'nope'; available: ackley"):
        load_cornn_task(cornn_dir, "nope")


def test_trained_vs_untrained_comparison_smoke(tiny_run, cornn_dir):
    emb = load_embedding(tiny_run)
    rows = compare_with_untrained(emb, cornn_dir, ["sphere"], search_steps=10, finetune_steps=10,
                                  starts_per_depth=1)
    (row,) = rows
    assert row.task == "sphere" and row.trained_depth in (1, 2) and row.untrained_depth in (1, 2)
    values = [row.trained_mse, row.untrained_mse, row.trained_finetuned_mse, row.untrained_finetuned_mse]
    assert all(np.isfinite(v) and v > 0 for v in values)
