import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.errors import InputError  # noqa: E402
from swat_edge.model import forward, forward_normalized, sample_inputs  # noqa: E402
from swat_edge.search.embedding.autoencoder import build_autoencoder, to_torch, true_forward  # noqa: E402
from swat_edge.search.embedding.decode import (  # noqa: E402
    NetLayout,
    decode_soft,
    harden,
    soft_forward,
    split_output,
    to_sparse_mlp,
    with_temperature,
)
from swat_edge.search.embedding.family import Family  # noqa: E402
from swat_edge.search.embedding.generator import Distribution, sample_batch, training_seed  # noqa: E402
from swat_edge.search.latent import from_sparse_mlp  # noqa: E402

FAMILY = Family()


def _random_net(depth, batch=6, seed=0, scale=1.5):
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randn(batch, NetLayout(FAMILY, depth).size, generator=gen, dtype=torch.float64) * scale
    return split_output(flat, FAMILY, depth)


def test_layout_sizes_and_split_shapes():
    net = _random_net(3)
    assert NetLayout(FAMILY, 3).size == 8 * 8 + 2 * 64 + 3 * 8 + 3 * 8 * 5 + 3 * 8 + 8 + 1
    assert [tuple(w.shape[1:]) for w in net.weights] == [(8, 8), (8, 8), (8, 8), (8, 1)]
    assert net.activation_probs.shape == (6, 3, 8, 5) and net.gate_probs.shape == (6, 3, 8)
    torch.testing.assert_close(net.activation_probs.sum(-1), torch.ones(6, 3, 8, dtype=torch.float64))
    with pytest.raises(InputError, match=r"depth 2 needs \(batch, "):
        split_output(torch.zeros(2, 5), FAMILY, 2)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("n_inputs", [2, 8])
def test_hard_decode_to_sparse_mlp_matches_the_torch_forward(depth, n_inputs):
    net = _random_net(depth, seed=depth)
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, n_inputs))
    hard = harden(net, weight_threshold=0.3)
    y_torch = soft_forward(hard, torch.as_tensor(x)).numpy()  # padded columns are zeros
    for i in range(net.batch_size):
        model = to_sparse_mlp(net, i, n_inputs=n_inputs, weight_threshold=0.3)
        assert model.n_inputs == n_inputs and len(model.hidden) == depth
        np.testing.assert_allclose(forward(model, x), y_torch[i], rtol=1e-9, atol=1e-9)
    mixed = to_sparse_mlp(net, 0)
    assert len(set(a for layer in mixed.hidden for a in layer.activations)) > 1  # per-neuron activations survive
    assert any(not layer.mask.all() for layer in mixed.hidden) or depth == 1


def test_to_sparse_mlp_float32_latents_and_scaling():
    net = split_output(torch.randn(1, NetLayout(FAMILY, 2).size), FAMILY, 2)
    model = to_sparse_mlp(net, n_inputs=3, output_scale=[2.0], output_offset=[1.0], feature_names=["a", "b", "c"])
    x = np.random.default_rng(1).uniform(-1, 1, size=(20, 3))
    y = soft_forward(harden(net), torch.as_tensor(x, dtype=torch.float32)).numpy()[0]
    np.testing.assert_allclose(forward(model, x), y * 2.0 + 1.0, rtol=1e-5, atol=1e-5)
    assert model.feature_names == ("a", "b", "c")


def test_to_sparse_mlp_refuses_bad_arguments():
    net = _random_net(1, batch=2)
    with pytest.raises(InputError, match=r"index 2: the batch holds 2 networks"):
        to_sparse_mlp(net, 2)
    with pytest.raises(InputError, match=r"n_inputs is 9; this network takes 1\.\.8"):
        to_sparse_mlp(net, 0, n_inputs=9)
    with pytest.raises(InputError, match=r"inputs have 9 columns"):
        soft_forward(net, torch.zeros(4, 9, dtype=torch.float64))
    with pytest.raises(InputError, match=r"temperature is 0"):
        with_temperature(net, 0.0)


def test_low_temperature_approaches_the_hard_network():
    net = _random_net(2)
    x = torch.rand(30, 8, dtype=torch.float64) * 2 - 1
    cold = soft_forward(with_temperature(net, 1e-4), x)
    # gates stay soft in `cold`: compare with argmax activations and the same soft gates
    argmax_acts = dataclasses.replace(net, activation_probs=harden(net).activation_probs)
    torch.testing.assert_close(cold, soft_forward(argmax_acts, x), rtol=1e-6, atol=1e-6)


def test_straight_through_forward_is_hard_and_gradients_flow():
    flat = torch.randn(3, NetLayout(FAMILY, 2).size, dtype=torch.float64, requires_grad=True)
    net = split_output(flat, FAMILY, 2)
    x = torch.rand(10, 8, dtype=torch.float64)
    st = soft_forward(harden(net, straight_through=True), x)
    torch.testing.assert_close(st, soft_forward(harden(net), x))
    st.sum().backward()
    grad = NetLayout(FAMILY, 2).split(flat.grad)
    assert grad["activation_logits"].abs().sum() > 0 and grad["gate_logits"].abs().sum() > 0


def test_torch_forward_of_generated_mlps_matches_their_outputs():
    batch = sample_batch(FAMILY, Distribution(), 32, 40, training_seed(1, 0))
    tb = to_torch(batch)
    y = true_forward(tb, tb.x)
    np.testing.assert_allclose(y.numpy(), batch.y, rtol=1e-4, atol=1e-4)


def test_from_sparse_mlp_computes_the_model(mixed_model):
    net = from_sparse_mlp(mixed_model)
    x = sample_inputs(mixed_model, 40, seed=3)
    x_n = x * mixed_model.input_scale + mixed_model.input_offset
    y = soft_forward(net, torch.as_tensor(x_n)).numpy()[0]
    np.testing.assert_allclose(y, forward_normalized(mixed_model, x_n), rtol=1e-9, atol=1e-9)


def test_decode_soft_checks_depth_and_latent_shape(tiny_config):
    module = build_autoencoder(tiny_config)
    z = torch.randn(3, tiny_config.architecture.latent_dim)
    net = decode_soft(module, z, 2, temperature=0.5)
    assert net.depth == 2 and net.batch_size == 3 and net.max_inputs == tiny_config.family.max_inputs
    with pytest.raises(InputError, match=r"depth 3: this embedding decodes depths 1\.\.2"):
        decode_soft(module, z, 3)
    with pytest.raises(InputError, match=r"latents have shape \(3, 4\); expected \(batch, 8\)"):
        decode_soft(module, z[:, :4], 1)
