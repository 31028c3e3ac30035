import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.errors import InputError  # noqa: E402
from swat_edge.model import forward  # noqa: E402
from swat_edge.search.embedding.evaluate import quadratic_r2  # noqa: E402
from swat_edge.search.embedding.family import Family  # noqa: E402
from swat_edge.search.embedding.generator import (  # noqa: E402
    Distribution,
    batch_forward,
    batch_to_sparse_mlp,
    heldout_seed,
    sample_batch,
    training_seed,
)

FAMILY = Family()
DIST = Distribution()


@pytest.fixture(scope="module")
def batch():
    return sample_batch(FAMILY, DIST, 64, 64, training_seed(0, 0))


def test_same_seed_same_batch_and_streams_differ(batch):
    again = sample_batch(FAMILY, DIST, 64, 64, training_seed(0, 0))
    assert np.array_equal(again.first_weight, batch.first_weight) and np.array_equal(again.y, batch.y)
    other = sample_batch(FAMILY, DIST, 64, 64, training_seed(0, 1))
    held = sample_batch(FAMILY, DIST, 64, 64, heldout_seed(0))
    assert not np.array_equal(other.first_weight, batch.first_weight)
    assert not np.array_equal(held.first_weight, batch.first_weight)
    assert training_seed(0, 0) != heldout_seed(0)


def test_outputs_match_the_reference_forward_of_each_mlp(batch):
    # y was computed before canonical ordering: this checks both the generator's forward and that the
    # sign flips and neuron sorting keep every function exactly
    for i in range(batch.size):
        model = batch_to_sparse_mlp(batch, i)
        assert model.n_inputs == batch.n_inputs[i] and len(model.hidden) == batch.depth[i]
        np.testing.assert_allclose(forward(model, batch.x[:, : model.n_inputs]), batch.y[i], atol=1e-9)
    np.testing.assert_allclose(batch_forward(batch, batch.x), batch.y, atol=1e-9)


def test_outputs_are_normalised_on_the_points(batch):
    np.testing.assert_allclose(batch.y.mean(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(batch.y.std(axis=1), 1.0, atol=1e-9)


def test_depth_stratified_and_inputs_sampled(batch):
    assert [int((batch.depth == k).sum()) for k in FAMILY.depths] == [16, 16, 16, 16]
    assert set(np.unique(batch.n_inputs)) <= set(range(1, FAMILY.max_inputs + 1))
    assert len(np.unique(batch.n_inputs)) >= 4
    padded = ~batch.input_mask
    assert np.all(batch.first_weight[padded] == 0.0)  # padding inputs carry no weight


def test_canonical_order(batch):
    names = FAMILY.activations
    odd = [names.index(n) for n in ("identity", "tanh", "sigmoid")]
    for i in range(batch.size):
        for l in range(batch.depth[i]):
            gate, bias = batch.gate[i, l], batch.bias[i, l]
            n = int(gate.sum())
            assert gate[:n].all() and not gate[n:].any()  # active neurons first
            assert np.all(np.diff(bias[:n]) >= 0)  # sorted by bias
            flippable = np.isin(batch.activation[i, l, :n], odd)
            assert np.all(bias[:n][flippable] >= 0)  # sign-canonical odd units
        assert not batch.gate[i, batch.depth[i]:].any()  # layers past the depth are off


def test_distribution_is_richer_than_a_quadratic():
    # The prototype's tamed distribution was nearly affine (quadratic fits R^2 0.88-0.98): ours must leave room.
    b = sample_batch(FAMILY, DIST, 400, 512, heldout_seed(123))
    r2 = quadratic_r2(b, 256)
    medians = [float(np.median(r2[b.depth == k])) for k in FAMILY.depths]
    assert medians[2] < 0.9 and medians[3] < 0.85
    assert medians == sorted(medians, reverse=True)  # deeper nets are less quadratic


def test_refuses_degenerate_requests():
    with pytest.raises(InputError, match="at least 1 MLP and 2 points"):
        sample_batch(FAMILY, DIST, 0, 16, 0)
