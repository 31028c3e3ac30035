import json

import numpy as np
import pytest

from swat_edge.errors import ModelFileError, OutputExistsError, SchemaVersionError
from swat_edge.model import (
    ACTIVATIONS,
    Layer,
    SparseMLP,
    apply_activation,
    forward,
    load_model,
    model_from_bytes,
    model_stats,
    model_to_bytes,
    random_model,
    sample_inputs,
    save_model,
)


def _rewrite_meta(data: bytes, edit) -> bytes:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["swat_edge"])
    edit(meta)
    header["__metadata__"]["swat_edge"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


def test_round_trip_preserves_function_and_metadata(mixed_model, tmp_path):
    path = save_model(mixed_model.replace(provenance={"run": "abc"}), tmp_path / "m.safetensors")
    loaded = load_model(path)
    x = sample_inputs(mixed_model, 200, seed=1)
    np.testing.assert_allclose(forward(loaded, x), forward(mixed_model, x), rtol=1e-5, atol=1e-5)
    assert loaded.provenance == {"run": "abc"}
    assert [l.activations for l in loaded.hidden] == [l.activations for l in mixed_model.hidden]
    assert all((a.mask == b.mask).all() for a, b in zip(loaded.hidden, mixed_model.hidden))
    assert model_to_bytes(loaded) == model_to_bytes(load_model(path))  # canonical bytes


def test_forward_matches_torch_oracle(mixed_model):
    torch = pytest.importorskip("torch")
    fns = {
        "identity": lambda z: z,
        "relu": torch.relu,
        "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }
    x = sample_inputs(mixed_model, 100, seed=2)
    h = torch.tensor(x * mixed_model.input_scale + mixed_model.input_offset)
    for layer in mixed_model.layers:
        z = h @ torch.tensor(layer.weight) + torch.tensor(layer.bias)
        h = torch.stack([fns[a](z[:, j]) for j, a in enumerate(layer.activations)], 1) * torch.tensor(layer.mask)
    y = h.numpy() * mixed_model.output_scale + mixed_model.output_offset
    np.testing.assert_allclose(forward(mixed_model, x), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_are_finite_at_extremes(name):
    z = np.array([-1e4, -1.0, 0.0, 1.0, 1e4])
    with np.errstate(all="raise"):
        out = apply_activation(name, z)
    assert np.all(np.isfinite(out))


def test_gated_off_neuron_outputs_zero():
    layer = Layer.make(np.ones((1, 2)), np.ones(2), ("relu", "relu"), np.array([True, False]))
    model = SparseMLP.make([layer], Layer.make(np.ones((2, 1)), [0.0]))
    assert forward(model, np.array([[1.0]]))[0, 0] == 2.0


def test_stats_count_the_papers_nonzero_params():
    w1 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    hidden = Layer.make(w1, [0.1, 0.2, 0.3], ("tanh", "relu", "sigmoid"), [True, False, True])
    model = SparseMLP.make([hidden], Layer.make(np.array([[1.0], [5.0], [0.0]]), [0.5]))
    stats = model_stats(model)
    # non-zero weights into active neurons: 1 + 2 (layer 1) + 1 (output; row 3 is zero), biases of 2 active + 1
    assert stats.nonzero_weights == 4 and stats.nonzero_params == 7
    assert stats.active_neurons == 2 and stats.dense_macs == 9
    assert stats.activation_counts == {"tanh": 1, "sigmoid": 1}


def test_unknown_schema_version_is_refused(mixed_model):
    data = _rewrite_meta(model_to_bytes(mixed_model), lambda m: m.update(schema_version=99))
    with pytest.raises(SchemaVersionError, match="schema version 99 is not supported"):
        model_from_bytes(data, "m.safetensors")


def test_truncated_and_foreign_files_are_refused(mixed_model, tmp_path):
    data = model_to_bytes(mixed_model)
    with pytest.raises(ModelFileError, match="truncated"):
        model_from_bytes(data[:-10], "m.safetensors")
    with pytest.raises(ModelFileError, match="not a swat-edge model"):
        model_from_bytes(b"ONNX\x00garbage" * 10, "m.onnx")
    from safetensors.numpy import save

    with pytest.raises(ModelFileError, match="not a swat-edge model"):
        model_from_bytes(save({"w": np.zeros(3, np.float32)}), "other.safetensors")


def test_inconsistent_metadata_is_refused(mixed_model):
    data = _rewrite_meta(model_to_bytes(mixed_model), lambda m: m["hidden_activations"][0].__setitem__(0, "gelu"))
    with pytest.raises(ModelFileError, match="unknown activation 'gelu'"):
        model_from_bytes(data, "m.safetensors")


def test_save_refuses_to_overwrite_without_force(mixed_model, tmp_path):
    path = save_model(mixed_model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        save_model(random_model((2, 3, 1), seed=9), path)
    assert path.read_bytes() == before
    save_model(random_model((2, 3, 1), seed=9), path, force=True)
    assert path.read_bytes() != before


def test_layer_shape_errors_name_the_layer():
    with pytest.raises(ModelFileError, match="output layer: takes 3 inputs but the previous layer gives 2"):
        SparseMLP.make([Layer.make(np.ones((2, 2)), np.zeros(2), "relu")], Layer.make(np.ones((3, 1)), [0.0]))
