"""Calibration: the fit recovers known coefficients; noisy timings and broken sessions write nothing; no torch."""
from __future__ import annotations

import numpy as np
import pytest
from clirun import python_without_torch, run_cli

from swat_edge.device.cost import LOOP_TERMS, TERMS, coefficient_vector, count_model, feature_vector, latency_us
from swat_edge.device.targets import CostCoefficients, load_target, profile_from_toml, profile_to_toml
from swat_edge.errors import ModelFileError, ToolchainError, UnstableTimingError, UsageError
from swat_edge.measure import calibrate as calibrate_module
from swat_edge.measure.calibrate import (
    calibrate,
    fit_coefficients,
    host_hardware,
    measure_probes,
    nnls,
    probe_suite,
)

SIZES = (1, 16, 256)
TRUTH = load_target("raspi5").cost  # any plausible, fully non-zero set of coefficients
TRUTH_BLOCK = 16


@pytest.fixture(scope="module")
def suite():
    return probe_suite()


def synthetic(cost: CostCoefficients, block: int, *, noise: float = 0.0, busy_share: float = 0.0, seed: int = 0):
    """A `measure` function timing every probe with the cost model itself, plus noise and busy rounds."""

    def measure(probes, batch_sizes, rounds):
        rng = np.random.default_rng(seed)
        clean = np.array(
            [[latency_us(count_model(p.model, dtype=p.dtype, gemm_column_block=block), cost, b) for b in batch_sizes]
             for p in probes]
        )
        out = clean[:, :, None] * (1.0 + noise * rng.random((len(probes), len(batch_sizes), rounds)))
        busy = rng.random(rounds) < busy_share  # whole rounds slowed by another process, as on a shared machine
        out[:, :, busy] *= 1.6
        return out

    return measure




# ---------------------------------------------------------------------------------------------------------
# Fit


def test_nnls_matches_least_squares_when_the_solution_is_positive():
    rng = np.random.default_rng(0)
    a = rng.random((40, 5))
    x_true = np.array([1.0, 0.5, 2.0, 0.1, 3.0])
    np.testing.assert_allclose(nnls(a, a @ x_true), x_true, rtol=1e-9)


def test_nnls_clamps_at_zero_and_ignores_empty_columns():
    rng = np.random.default_rng(1)
    a = rng.random((30, 4))
    a[:, 2] = 0.0
    b = a @ np.array([1.0, -2.0, 0.0, 0.5]) + 0.01 * rng.random(30)
    x = nnls(a, b)
    assert (x >= 0).all() and x[2] == 0.0 and x[1] == 0.0
    # no non-negative x does better than the one found (check against random feasible points)
    best = np.linalg.norm(a @ x - b)
    for _ in range(200):
        assert np.linalg.norm(a @ np.abs(rng.normal(size=4)) - b) >= best - 1e-12


def test_probe_features_determine_every_coefficient(suite):
    features = np.array([feature_vector(count_model(p.model, dtype=p.dtype, gemm_column_block=16), b)
                         for p in suite for b in SIZES])
    loop = np.array([t in LOOP_TERMS for t in TERMS])  # generated C's loops: no onnxruntime graph has them
    assert (features[:, loop] == 0).all()
    assert np.linalg.matrix_rank(features[:, ~loop] / features[:, ~loop].max(axis=0)) == len(TERMS) - loop.sum()


def test_fit_recovers_synthetic_coefficients(suite):
    result = calibrate(measure=synthetic(TRUTH, TRUTH_BLOCK), probes=suite, rounds=5)
    assert result.profile.runtime.gemm_column_block == TRUTH_BLOCK
    np.testing.assert_allclose(coefficient_vector(result.profile.cost), coefficient_vector(TRUTH), rtol=1e-3)
    assert result.fit_rmspe < 1e-3


def test_fit_survives_noise_and_busy_rounds(suite):
    # 3% jitter and a third of the rounds 1.6x slower: the best round median still recovers the truth.
    result = calibrate(measure=synthetic(TRUTH, 8, noise=0.03, busy_share=0.3, seed=3), probes=suite, rounds=12)
    assert result.profile.runtime.gemm_column_block == 8
    assert result.fit_rmspe < 0.03
    for m in result.measurements:
        assert m.predicted_us == pytest.approx(m.measured_us, rel=0.06)
    fitted = result.profile.cost
    for term in ("call_us", "node_us", "mac_fp32_ns", "tanh_ns"):
        assert getattr(fitted, term) == pytest.approx(getattr(TRUTH, term), rel=0.1), term


def test_fit_coefficients_rejects_bad_timings():
    x = np.ones((3, len(TERMS)))
    with pytest.raises(UnstableTimingError, match=r"non-positive or non-finite"):
        fit_coefficients(x, np.array([1.0, np.nan, 2.0]))


# ---------------------------------------------------------------------------------------------------------
# The calibrated profile


def test_calibrated_profile_is_measured_and_round_trips(suite):
    result = calibrate(name="my-device", measure=synthetic(TRUTH, TRUTH_BLOCK), probes=suite, rounds=4)
    profile = result.profile
    assert profile.name == "my-device"
    assert profile.provenance.kind == "measured"
    assert profile.provenance.measurements == len(suite) * len(SIZES) == len(result.measurements)
    assert profile.provenance.date and profile.provenance.machine
    assert profile.runtime.name == "onnxruntime" and profile.int8_policy == "when_faster"
    assert profile_from_toml(profile_to_toml(profile)) == profile


def test_host_hardware_is_plausible():
    hw = host_hardware()
    assert hw.cores >= 1 and hw.isa
    assert hw.simd_bits in (0, 128, 256, 512)


# ---------------------------------------------------------------------------------------------------------
# Refusals: nothing is written


def test_unstable_timings_are_refused(suite):
    def chaos(probes, batch_sizes, rounds):
        rng = np.random.default_rng(0)
        return rng.uniform(5.0, 500.0, size=(len(probes), len(batch_sizes), rounds))

    with pytest.raises(UnstableTimingError, match=r"timings too unstable to calibrate: \d+ of \d+ probe timings never"):
        calibrate(measure=chaos, probes=suite, rounds=10)


def test_a_fit_the_cost_model_cannot_explain_is_refused(suite):
    def upside_down(probes, batch_sizes, rounds):  # stable, but bigger networks faster: no non-negative fit
        flops = np.array([[float(count_model(p.model).macs_fp32 * b + 1) for b in batch_sizes] for p in probes])
        return np.repeat((1e4 / flops)[:, :, None], rounds, axis=2)

    with pytest.raises(UnstableTimingError, match=r"calibration fit too poor: relative RMS error .* exceeds 20%"):
        calibrate(measure=upside_down, probes=suite, rounds=3)


def test_a_session_that_cannot_be_created_is_a_toolchain_error(monkeypatch, suite):
    def broken(data):
        raise ModelFileError("<bytes>: onnxruntime cannot load it (simulated)")

    monkeypatch.setattr(calibrate_module, "_make_session", broken)
    with pytest.raises(ToolchainError, match=r"calibration cannot create an onnxruntime session for probe 'floor 1-1'"):
        measure_probes(suite[:2], (1,), 3)


def test_bad_arguments(suite):
    with pytest.raises(UsageError, match=r"rounds=2: need at least 3 rounds"):
        calibrate(rounds=2, probes=suite)
    with pytest.raises(UsageError, match=r"batch sizes must be integers >= 1"):
        calibrate(batch_sizes=(0,), probes=suite)


# ---------------------------------------------------------------------------------------------------------
# Real onnxruntime timing (shape and sanity only: never a wall-clock assertion)


def test_measure_probes_times_real_sessions(suite):
    chosen = [p for p in suite if p.name in ("floor 1-1", "split 4-16-1 all", "int8 8-64-1 all")]
    rounds = measure_probes(chosen, (1, 8), 3, calls_per_round=3, pause_s=0.0)
    assert rounds.shape == (3, 2, 3)
    assert np.all(np.isfinite(rounds)) and np.all(rounds > 0)


def test_calibration_never_imports_torch():
    proc = python_without_torch("""
        from swat_edge.measure.calibrate import measure_probes, probe_suite
        suite = [p for p in probe_suite(n_random=0) if p.name in ('floor 1-1', 'int8 8-64-1 all')]
        r = measure_probes(suite, (1,), 3, calls_per_round=2, pause_s=0.0)
        assert r.shape == (2, 1, 3)
    """)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------------------
# CLI


def test_cli_calibrate_writes_a_loadable_profile(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(calibrate_module, "measure_probes", lambda p, b, r, **kw: synthetic(TRUTH, 16)(p, b, r))
    out = tmp_path / "my-device.toml"
    code, stdout, _ = run_cli(["calibrate", "--out", str(out), "--rounds", "3"], capsys)
    assert code == 0
    profile = load_target(out)
    assert profile.name == "my-device" and profile.provenance.kind == "measured"
    assert out.read_text().startswith("# Target profile written by `swat-edge calibrate`")
    assert f"wrote {out}" in stdout and "fit: relative RMS error" in stdout


def test_cli_calibrate_writes_nothing_when_timings_are_unstable(monkeypatch, tmp_path, capsys):
    def chaos(probes, batch_sizes, rounds, **kw):
        return np.random.default_rng(1).uniform(5.0, 500.0, size=(len(probes), len(batch_sizes), rounds))

    monkeypatch.setattr(calibrate_module, "measure_probes", chaos)
    out = tmp_path / "dev.toml"
    code, _, err = run_cli(["calibrate", "--out", str(out), "--rounds", "5"], capsys)
    assert code == 1 and not out.exists()
    assert err.splitlines()[-1].startswith("error: timings too unstable to calibrate")
    assert list(tmp_path.iterdir()) == []  # no temp file left either


def test_cli_calibrate_writes_nothing_when_no_session_can_be_created(monkeypatch, tmp_path, capsys):
    def broken(data):
        raise ModelFileError("<bytes>: onnxruntime cannot load it (simulated)")

    monkeypatch.setattr(calibrate_module, "_make_session", broken)
    out = tmp_path / "dev.toml"
    code, _, err = run_cli(["calibrate", "--out", str(out)], capsys)
    assert code == 1 and list(tmp_path.iterdir()) == []
    assert err.splitlines()[-1] == (
        "error: calibration cannot create an onnxruntime session for probe 'floor 1-1': "
        "<bytes>: onnxruntime cannot load it (simulated)"
    )


def test_cli_calibrate_refuses_before_measuring(monkeypatch, tmp_path, capsys):
    def must_not_run(*args, **kw):
        raise AssertionError("measured although the output is refused")

    monkeypatch.setattr(calibrate_module, "measure_probes", must_not_run)
    existing = tmp_path / "dev.toml"
    existing.write_text("keep me")
    code, _, err = run_cli(["calibrate", "--out", str(existing)], capsys)
    assert code == 2 and existing.read_text() == "keep me"
    assert "already exists; pass --force to overwrite it" in err
    code, _, err = run_cli(["calibrate", "--out", str(tmp_path / "dev.json")], capsys)
    assert code == 2 and "a target profile is a .toml file" in err
