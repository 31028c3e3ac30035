"""benchmarks/cost_accuracy.py: the refit's accuracy is scored on networks the refit did not see."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_cost_accuracy", REPO / "benchmarks" / "cost_accuracy.py")
cost_accuracy = importlib.util.module_from_spec(_spec)
sys.modules["bench_cost_accuracy"] = cost_accuracy
_spec.loader.exec_module(cost_accuracy)


def test_a_model_that_fits_every_network_scores_perfectly_in_and_out_of_sample():
    rng = np.random.default_rng(0)
    feats = rng.uniform(0.5, 2.0, size=(40, 3))
    lat = feats @ np.array([1.0, 2.0, 0.5])
    networks = np.repeat(np.arange(20), 2)
    assert np.abs(cost_accuracy.refit_errors(feats, lat)).max() < 1e-9
    assert np.abs(cost_accuracy.refit_out_of_sample(feats, lat, networks)).max() < 1e-9


def test_out_of_sample_scores_each_half_with_the_other_halfs_coefficients():
    """Even networks only use term 0, odd ones only term 1: in sample the refit is exact; out of sample each half
    was fitted without ever seeing its own term, so it predicts nothing (error -1)."""
    networks = np.arange(10)
    feats = np.where((networks % 2 == 0)[:, None], [1.0, 0.0], [0.0, 1.0]) * np.arange(1, 11)[:, None]
    lat = feats @ np.array([3.0, 5.0])
    assert np.abs(cost_accuracy.refit_errors(feats, lat)).max() < 1e-9
    assert cost_accuracy.refit_out_of_sample(feats, lat, networks) == pytest.approx(-np.ones(10))
