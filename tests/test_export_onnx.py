"""to_onnx/run_onnx/check_onnx/load_onnx: graph shape rules, numerics against forward(), files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from clirun import python_without_torch
from onnx import numpy_helper

from swat_edge.errors import DataError, InputError, MissingFileError, ModelFileError, NumericsError, UsageError
from swat_edge.export import onnx as export_onnx
from swat_edge.export.onnx import (
    CheckReport,
    check_onnx,
    load_onnx,
    read_metadata,
    run_onnx,
    to_onnx,
    verify_onnx,
)
from swat_edge.model import ACTIVATIONS, Layer, SparseMLP, model_hash, random_model, sample_inputs

HIDDEN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a != "identity")
ACTIVATION_OPS = {"Relu", "LeakyRelu", "Tanh", "Sigmoid"}


def ops(proto: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in proto.graph.node]


def mlp(layers: list[tuple[np.ndarray, tuple[str, ...], np.ndarray | None]], n_outputs: int = 1, seed: int = 0,
        **scaling: np.ndarray) -> SparseMLP:
    """A model from (weight, activations, mask) per hidden layer plus a random linear output layer."""
    rng = np.random.default_rng(seed)
    hidden = [Layer.make(w, rng.normal(0.0, 0.5, w.shape[1]), acts, mask) for w, acts, mask in layers]
    n_last = layers[-1][0].shape[1]
    output = Layer.make(rng.normal(0.0, 1.0, (n_last, n_outputs)), rng.normal(0.0, 0.1, n_outputs))
    return SparseMLP.make(hidden, output, **scaling)


def weights(n_in: int, n_out: int, seed: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, (n_in, n_out))


def assert_matches_forward(proto: onnx.ModelProto, model: SparseMLP) -> CheckReport:
    report = check_onnx(proto, model, rows=256)
    assert report.passed, report
    return report


# --- graph structure ------------------------------------------------------------------------------------


@pytest.mark.parametrize("naive", [False, True])
@pytest.mark.parametrize("simplify", [False, True])
def test_checker_passes_with_full_check(naive: bool, simplify: bool) -> None:
    model = random_model([3, 6, 5, 2], seed=1, dead_fraction=0.3)
    proto = to_onnx(model, naive=naive, simplify=simplify)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_single_activation_layer_is_gemm_then_one_op(activation: str) -> None:
    model = mlp([(weights(3, 5, 0), (activation,) * 5, None), (weights(5, 4, 1), (activation,) * 4, None)])
    proto = to_onnx(model)
    act_ops = [op for op in ops(proto) if op in ACTIVATION_OPS]
    assert ops(proto)[:2] == ["Gemm", act_ops[0]]  # the activation directly follows its Gemm: fusable
    assert len(act_ops) == 2 and "Split" not in ops(proto) and "Concat" not in ops(proto)
    assert_matches_forward(proto, model)


def test_identity_layer_emits_no_activation_op() -> None:
    model = mlp([(weights(3, 5, 0), ("identity",) * 5, None)])
    assert ops(to_onnx(model)) == ["Gemm", "Gemm"]
    assert_matches_forward(to_onnx(model), model)


def test_leaky_relu_has_the_model_slope() -> None:
    model = mlp([(weights(2, 3, 0), ("leaky_relu",) * 3, None)])
    node = next(n for n in to_onnx(model).graph.node if n.op_type == "LeakyRelu")
    assert onnx.helper.get_attribute_value(node.attribute[0]) == pytest.approx(0.01)


def test_mixed_layer_splits_into_contiguous_runs() -> None:
    acts = ("relu", "relu", "tanh", "tanh", "tanh", "identity", "sigmoid", "relu")
    model = mlp([(weights(3, 8, 0, scale=2.0), acts, None)])
    proto = to_onnx(model)
    split = next(n for n in proto.graph.node if n.op_type == "Split")
    sizes = numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == split.input[1]))
    assert sizes.tolist() == [2, 3, 1, 1, 1]
    assert len(split.output) == 5
    # identity slices go straight from Split to Concat
    assert sorted(op for op in ops(proto) if op in ACTIVATION_OPS) == ["Relu", "Relu", "Sigmoid", "Tanh"]
    concat = next(n for n in proto.graph.node if n.op_type == "Concat")
    assert split.output[2] in concat.input
    assert_matches_forward(proto, model)


def test_split_sizes_are_an_attribute_before_opset_13() -> None:
    model = mlp([(weights(3, 4, 0), ("relu", "tanh", "tanh", "sigmoid"), None)])
    proto = to_onnx(model, opset=12)
    split = next(n for n in proto.graph.node if n.op_type == "Split")
    assert len(split.input) == 1
    assert list(onnx.helper.get_attribute_value(split.attribute[1] if split.attribute[0].name == "axis"
                                                else split.attribute[0])) == [1, 2, 1]
    assert_matches_forward(proto, model)


@pytest.mark.parametrize("opset", [10, 99])
def test_unsupported_opset_is_refused(opset: int) -> None:
    with pytest.raises(UsageError, match=rf"opset {opset} is not supported; use an opset from 11 to \d+"):
        to_onnx(random_model([2, 3, 1], seed=0), opset=opset)


def test_non_contiguous_activations_match_forward() -> None:
    model = random_model([4, 12, 12, 12, 2], seed=3)  # per-neuron random activations: many short runs
    proto = to_onnx(model)
    assert ops(proto).count("Split") == 3
    assert_matches_forward(proto, model)


def test_gated_off_neuron_takes_a_neighbours_activation() -> None:
    acts = ("relu", "relu", "tanh", "relu")
    model = mlp([(weights(3, 4, 0), acts, np.array([True, True, False, True]))])
    proto = to_onnx(model)
    assert "Split" not in ops(proto) and ops(proto).count("Relu") == 1
    assert_matches_forward(proto, model)


def test_gated_off_neurons_output_zero_in_every_layer() -> None:
    # Large weights and biases make a gated-off neuron's value matter if it leaked into the next layer.
    masks = [np.array([1, 0, 1, 0, 1, 1], bool), np.array([0, 1, 1, 0, 1], bool), np.array([1, 0, 0, 1], bool)]
    acts = [("identity", "tanh", "relu", "sigmoid", "leaky_relu", "relu"),
            ("relu", "sigmoid", "tanh", "identity", "relu"),
            ("identity", "identity", "tanh", "leaky_relu")]
    model = mlp([(weights(3, 6, 0, 3.0), acts[0], masks[0]), (weights(6, 5, 1, 3.0), acts[1], masks[1]),
                 (weights(5, 4, 2, 3.0), acts[2], masks[2])], n_outputs=2)
    for naive in (False, True):
        assert_matches_forward(to_onnx(model, naive=naive), model)
    # Same model with the gated-off neurons' weights zeroed (their inputs, bias and outgoing weights) gives the
    # same ONNX outputs: what a gated-off neuron holds never reaches the output.
    layers = [(np.array(layer.weight), np.array(layer.bias)) for layer in model.layers]
    for i, layer in enumerate(model.hidden):
        off = ~layer.mask
        layers[i][0][:, off], layers[i][1][off], layers[i + 1][0][off, :] = 0.0, 0.0, 0.0
    zeroed = model.replace(
        hidden=tuple(Layer.make(w, b, layer.activations, layer.mask) for (w, b), layer in zip(layers, model.hidden)),
        output=Layer.make(*layers[-1], model.output.activations, model.output.mask),
    )
    assert not np.array_equal(zeroed.hidden[0].weight, model.hidden[0].weight)  # the variant differs
    x = sample_inputs(model, 64, seed=5)
    for naive in (False, True):
        y, y_zeroed = run_onnx(to_onnx(model, naive=naive), x), run_onnx(to_onnx(zeroed, naive=naive), x)
        np.testing.assert_allclose(y, y_zeroed, rtol=1e-5, atol=1e-4)


def test_fully_gated_off_layer() -> None:
    model = mlp([(weights(3, 4, 0), ("tanh",) * 4, np.zeros(4, bool))])
    assert_matches_forward(to_onnx(model), model)


def test_model_without_hidden_layers() -> None:
    output = Layer.make(weights(3, 2, 0), np.array([0.5, -1.0]))
    model = SparseMLP.make([], output, input_scale=np.array([2.0, 1.0, 0.5]), output_offset=np.array([1.0, 2.0]))
    proto = to_onnx(model)
    assert ops(proto) == ["Mul", "Gemm", "Add"]
    assert_matches_forward(proto, model)


def test_multiple_outputs_with_normalisation() -> None:
    model = random_model([5, 9, 7, 4], seed=7)
    proto = to_onnx(model)
    assert ops(proto)[:2] == ["Mul", "Add"] and ops(proto)[-2:] == ["Mul", "Add"]
    y = run_onnx(proto, sample_inputs(model, 10))
    assert y.shape == (10, 4) and y.dtype == np.float32
    report = assert_matches_forward(proto, model)
    assert report.worst_output in model.target_names


def test_identity_normalisation_emits_no_scaling_ops() -> None:
    model = random_model([3, 5, 2], seed=2, normalization=False)
    proto = to_onnx(model)
    assert ops(proto)[0] == "Gemm" and ops(proto)[-1] == "Gemm"
    assert_matches_forward(proto, model)


def test_only_the_non_identity_half_of_the_scaling_is_emitted() -> None:
    model = random_model([3, 5, 2], seed=2, normalization=False)
    model = model.replace(input_offset=np.array([1.0, 0.0, -2.0]), output_scale=np.array([3.0, 0.5]))
    proto = to_onnx(model)
    assert ops(proto)[0] == "Add" and ops(proto)[-1] == "Mul"
    assert_matches_forward(proto, model)


@pytest.mark.parametrize("seed", [0, 1])
def test_naive_export_mixes_with_masks_and_matches_forward(seed: int) -> None:
    model = random_model([4, 10, 10, 3], seed=seed, dead_fraction=0.2)
    naive = to_onnx(model, naive=True)
    assert "Split" not in ops(naive) and "Concat" not in ops(naive)
    present = {a for layer in model.hidden for a in layer.activations} - {"identity"}
    assert ops(naive).count("Mul") >= len(present)
    assert_matches_forward(naive, model)
    # both graphs compute the same function
    x = sample_inputs(model, 100, seed=3)
    assert np.allclose(run_onnx(naive, x), run_onnx(to_onnx(model), x), rtol=1e-5, atol=1e-5)


# --- batch, determinism, metadata -------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 1000])
def test_dynamic_batch(rows: int) -> None:
    model = random_model([3, 8, 8, 2], seed=4)
    proto = to_onnx(model)
    for value in (*proto.graph.input, *proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    x = sample_inputs(model, rows, seed=1)
    assert run_onnx(proto, x).shape == (rows, 2)
    assert check_onnx(proto, model, x=x).passed


@pytest.mark.parametrize("options", [{}, {"naive": True}, {"simplify": False}])
def test_re_export_is_byte_identical(options: dict) -> None:
    model = random_model([3, 7, 7, 1], seed=5, dead_fraction=0.2)
    first = to_onnx(model, **options).SerializeToString()
    assert to_onnx(model, **options).SerializeToString() == first
    assert export_onnx.to_onnx_bytes(model, **options) == first


def test_metadata_is_present() -> None:
    model = random_model([3, 4, 2], seed=0).replace(feature_names=("rpm", "load", "temp"),
                                                    target_names=("power", "torque"))
    proto = to_onnx(model)
    meta = read_metadata(proto)
    assert proto.producer_name == "swat-edge" and proto.producer_version
    assert meta["producer"] == "swat-edge" and meta["producer_version"] == proto.producer_version
    assert meta["model_sha256"] == model_hash(model)
    assert meta["feature_names"] == ["rpm", "load", "temp"] and meta["target_names"] == ["power", "torque"]
    assert meta["n_inputs"] == 3 and meta["n_outputs"] == 2
    assert meta["export_style"] == "grouped" and meta["simplifier"] == "onnxsim"
    assert read_metadata(to_onnx(model, naive=True, simplify=False))["export_style"] == "naive"
    assert read_metadata(to_onnx(model, simplify=False))["simplifier"] == "none"
    raw = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(raw["feature_names"]) == ["rpm", "load", "temp"]


def test_unvalidated_onnxsim_result_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    with export_onnx._torch_blocked():
        import onnxsim
    model = random_model([3, 5, 1], seed=0)

    def broken(proto: onnx.ModelProto, **_: object) -> tuple[onnx.ModelProto, bool]:
        bad = onnx.ModelProto()
        bad.CopyFrom(proto)
        del bad.graph.node[:]
        return bad, False

    monkeypatch.setattr(onnxsim, "simplify", broken)
    proto = to_onnx(model)
    assert read_metadata(proto)["simplifier"] == "onnxsim-unvalidated"
    assert ops(proto) == ops(to_onnx(model, simplify=False))
    assert_matches_forward(proto, model)


def test_export_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    model = random_model([3, 5, 1], seed=0)
    check_onnx(to_onnx(model), model)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_export_and_run_do_not_import_torch() -> None:
    # torch importable: onnxsim imports it when it can, and the export must keep it from doing so
    done = python_without_torch("""
        from swat_edge.model import random_model
        from swat_edge.export.onnx import to_onnx, check_onnx
        m = random_model([2, 4, 1], seed=0)
        p = to_onnx(m)
        assert check_onnx(p, m).passed
        assert dict((q.key, q.value) for q in p.metadata_props)['simplifier'] == 'onnxsim'
    """, block=False, timeout=120)
    assert done.returncode == 0, done.stderr


# --- checks against the reference ------------------------------------------------------------------------


def test_verify_onnx_raises_on_a_different_model() -> None:
    model = random_model([3, 6, 1], seed=0)
    other = model.replace(output=Layer.make(model.output.weight * 1.01, model.output.bias))
    assert verify_onnx(to_onnx(model), model).passed
    with pytest.raises(NumericsError, match=r"max abs error \S+ on output 'y0' exceeds tolerance \S+ over 512 rows"):
        verify_onnx(to_onnx(other), model)
    report = check_onnx(to_onnx(other), model, rows=32, seed=1)
    assert not report.passed and report.rows == 32 and report.max_abs_error > report.tolerance


def test_check_accepts_bytes_and_given_rows() -> None:
    model = random_model([3, 6, 1], seed=0)
    x = sample_inputs(model, 17, seed=9)
    report = check_onnx(to_onnx(model).SerializeToString(), model, x=x)
    assert report.passed and report.rows == 17


def test_input_columns_compare_a_model_without_unused_inputs() -> None:
    full = random_model([4, 6, 1], seed=0, normalization=False)
    w = full.hidden[0].weight.copy()
    w[[1, 3], :] = 0.0  # inputs 1 and 3 are unused
    full = full.replace(hidden=(Layer.make(w, full.hidden[0].bias, full.hidden[0].activations),))
    small = SparseMLP.make([Layer.make(w[[0, 2]], full.hidden[0].bias, full.hidden[0].activations)], full.output)
    proto = to_onnx(small)
    assert check_onnx(proto, full, input_columns=[0, 2]).passed
    assert not check_onnx(proto, full, input_columns=[0, 1]).passed


# --- files -----------------------------------------------------------------------------------------------


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(random_model([3, 6, 1], seed=0)).SerializeToString())
    return path


def test_load_onnx_round_trip(onnx_file: Path) -> None:
    proto = load_onnx(onnx_file)
    assert proto.SerializeToString() == onnx_file.read_bytes()


def test_load_onnx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.onnx: no such ONNX file"):
        load_onnx(tmp_path / "nope.onnx")


@pytest.mark.parametrize("content", [b"", b"hello, this is a CSV\n1,2,3\n", b"\x08" + bytes(range(256)) * 4])
def test_load_onnx_refuses_a_file_that_is_not_onnx(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"model\.onnx: (empty file, )?not an ONNX model"):
        load_onnx(path)


def test_load_onnx_refuses_a_swat_edge_model_file(tmp_path: Path) -> None:
    from swat_edge.model import save_model

    path = save_model(random_model([2, 3, 1], seed=0), tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match=r"not an ONNX model"):
        load_onnx(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_load_onnx_refuses_a_truncated_file(onnx_file: Path, keep: float) -> None:
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match=r"model\.onnx: .*truncated"):
        load_onnx(onnx_file)


def test_load_onnx_refuses_a_file_cut_between_metadata_entries(onnx_file: Path) -> None:
    proto = onnx.load(str(onnx_file))
    cut = len(proto.metadata_props[-1].SerializeToString()) + 2  # tag + length byte + the last entry
    data = onnx_file.read_bytes()
    onnx_file.write_bytes(data[:-cut])
    with pytest.raises(ModelFileError, match=r"truncated swat-edge ONNX file \(metadata 'n_outputs' missing\)"):
        load_onnx(onnx_file)


def test_rows_of_the_wrong_width_are_refused() -> None:
    model = random_model([3, 6, 1], seed=0)
    proto = to_onnx(model)
    with pytest.raises(DataError, match=r"input rows: shape \(4, 2\), expected \(rows, 3\)"):
        run_onnx(proto, np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"check rows: shape \(4,\), expected \(rows, 3\)"):
        check_onnx(proto, model, x=np.zeros(4))
    with pytest.raises(InputError, match=r"input_columns \[0, 3\]: each must lie in \[0, 3\)"):
        check_onnx(proto, model, input_columns=[0, 3])
