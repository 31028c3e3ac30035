"""summary.py: per-layer rows of a swat-edge model, ONNX graph facts, and `swat-edge inspect`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from clirun import run_cli
from onnx import TensorProto, helper, numpy_helper

from swat_edge.errors import MissingFileError, ModelFileError
from swat_edge.measure.summary import summarize_file, summarize_model, summarize_onnx
from swat_edge.model import SparseMLP, model_stats, random_model, save_model

_ONNX_ACT = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": "Identity"}


def onnx_from_model(model: SparseMLP) -> onnx.ModelProto:
    """A plain Gemm chain of the model's weights (one activation per layer; scaling left out): enough for summary."""
    nodes, inits, h = [], [], "x"
    for i, layer in enumerate(model.layers):
        inits += [
            numpy_helper.from_array(layer.weight.astype(np.float32), f"w{i}"),
            numpy_helper.from_array(layer.bias.astype(np.float32), f"b{i}"),
        ]
        nodes.append(helper.make_node("Gemm", [h, f"w{i}", f"b{i}"], [f"z{i}"], name=f"gemm{i}"))
        act = _ONNX_ACT[layer.activations[0]]
        nodes.append(helper.make_node(act, [f"z{i}"], [f"h{i}"], name=f"act{i}"))
        h = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", model.n_inputs])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, ["batch", model.n_outputs])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    helper.set_model_props(proto, {"swat_edge.model_sha256": "abc", "swat_edge.version": "0.1.0"})
    return proto


def qdq_model() -> onnx.ModelProto:
    """x -> Q -> DQ -> Gemm(W int8 via DQ, transB=1) : the shape onnxruntime's QDQ quantizer produces."""
    w_int8 = np.array([[1, 0, -3], [0, 0, 5]], dtype=np.int8)  # (n_out=2, n_in=3) with transB
    inits = [
        numpy_helper.from_array(w_int8, "w_q"),
        numpy_helper.from_array(np.array(0.1, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(np.zeros(2, np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"]),
        helper.make_node("Gemm", ["x_dq", "w_dq", "bias"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# ---------------------------------------------------------------------------------------------------------
# swat-edge models


def test_rows_sum_to_model_stats(mixed_model):
    s = summarize_model(mixed_model, "mixed")
    stats = model_stats(mixed_model)
    assert [r.layer for r in s.layers] == ["hidden 0", "hidden 1", "hidden 2", "output"]
    for field in ("nonzero_weights", "dense_macs", "sparse_macs", "bytes_fp32", "bytes_int8"):
        assert sum(getattr(r, field) for r in s.layers) == getattr(s.total, field) == getattr(stats, field)
    assert sum(r.n_active for r in s.layers[:-1]) == s.total.n_active == stats.active_neurons
    summed: dict[str, int] = {}
    for r in s.layers:
        for act, n in r.activations.items():
            summed[act] = summed.get(act, 0) + n
    assert summed == s.total.activations == stats.activation_counts
    assert s.nonzero_params == stats.nonzero_params


def test_rows_follow_masks_and_zero_weights():
    model = random_model((4, 6, 3), activations="tanh", sparsity=0.5, dead_fraction=0.5, seed=11)
    hidden, output = summarize_model(model).layers
    layer = model.hidden[0]
    assert (hidden.n_in, hidden.n_out, hidden.n_active) == (4, 6, int(layer.mask.sum()))
    assert hidden.n_active < 6  # the seed gates some neurons off
    assert hidden.nonzero_weights == np.count_nonzero(layer.weight[:, layer.mask]) == hidden.sparse_macs
    assert output.nonzero_weights == np.count_nonzero(model.output.weight[layer.mask, :])  # from live neurons only
    assert hidden.dense_macs == 24 and hidden.activations == {"tanh": hidden.n_active}
    assert (output.n_active, output.activations) == (3, {})


def test_names_provenance_and_hash(mixed_model):
    s = summarize_model(mixed_model, "m.safetensors")
    assert s.feature_names == mixed_model.feature_names and s.target_names == mixed_model.target_names
    assert s.provenance == {"generator": "random_model", "seed": 3}
    assert len(s.sha256) == 64 and s.source == "m.safetensors" and s.calibration_rows == 0


# ---------------------------------------------------------------------------------------------------------
# ONNX files


def test_onnx_summary_of_a_gemm_chain(tmp_path):
    model = random_model((3, 5, 4, 2), activations="relu", per_layer=True, sparsity=0.4, seed=2)
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_from_model(model).SerializeToString())
    s = summarize_onnx(path)
    assert s.source == str(path) and s.size_bytes == path.stat().st_size and s.node_count == 6
    assert s.op_histogram == {"Gemm": 3, "Relu": 2, "Identity": 1}
    assert [(t.name, t.dtype, t.shape) for t in s.inputs] == [("x", "float", ("batch", 3))]
    assert [(t.name, t.shape) for t in s.outputs] == [("h2", ("batch", 2))]
    assert [(w.node, w.n_in, w.n_out, w.weight_shape) for w in s.weights] == [
        ("gemm0", 3, 5, (3, 5)),
        ("gemm1", 5, 4, (5, 4)),
        ("gemm2", 4, 2, (4, 2)),
    ]
    assert [w.nonzero_weights for w in s.weights] == [int(np.count_nonzero(l.weight)) for l in model.layers]
    assert not s.is_int8
    assert s.metadata == {"swat_edge.model_sha256": "abc", "swat_edge.version": "0.1.0"}
    assert s.opsets == {"ai.onnx": 17} and s.producer == "test"


def test_onnx_summary_detects_int8_and_follows_dequantize():
    s = summarize_onnx(qdq_model().SerializeToString())
    assert s.source == "<bytes>" and s.is_int8
    (w,) = s.weights
    assert (w.weight, w.weight_dtype, w.weight_shape) == ("w_q", "int8", (2, 3))
    assert (w.n_in, w.n_out, w.nonzero_weights) == (3, 2, 3)  # transB: stored (out, in)
    assert s.op_histogram == {"DequantizeLinear": 2, "Gemm": 1, "QuantizeLinear": 1}


def test_onnx_with_external_weights(tmp_path):
    model = random_model((3, 4, 1), activations="relu", per_layer=True, seed=0)
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        onnx_from_model(model), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location="ext.onnx.data", size_threshold=0,
    )
    s = summarize_onnx(path)
    assert [w.nonzero_weights for w in s.weights] == [int(np.count_nonzero(l.weight)) for l in model.layers]
    with pytest.raises(ModelFileError, match="external data file; pass the .onnx path"):
        summarize_onnx(path.read_bytes())
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(ModelFileError, match="cannot read its external weight data"):
        summarize_onnx(path)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"int main(void) { return 0; }\n", "not an ONNX model \\(protobuf parse failed"),
        (b"", "not an ONNX model \\(no IR version or no graph outputs\\)"),
    ],
)
def test_not_onnx(data, match):
    with pytest.raises(ModelFileError, match=match):
        summarize_onnx(data)


# ---------------------------------------------------------------------------------------------------------
# summarize_file dispatch


def test_summarize_file_by_suffix(tmp_path, mixed_model):
    saved = save_model(mixed_model, tmp_path / "m.safetensors")
    assert summarize_file(saved).total.n_in == 2
    (tmp_path / "q.onnx").write_bytes(qdq_model().SerializeToString())
    assert summarize_file(tmp_path / "q.onnx").is_int8
    # any other suffix is read as a swat-edge model file, so ONNX bytes under it are refused as such
    (tmp_path / "q.bin").write_bytes(qdq_model().SerializeToString())
    with pytest.raises(ModelFileError, match=r"q\.bin: not a swat-edge model"):
        summarize_file(tmp_path / "q.bin")
    with pytest.raises(MissingFileError, match="no such model file"):
        summarize_file(tmp_path / "absent.safetensors")


# ---------------------------------------------------------------------------------------------------------
# `swat-edge inspect`




def test_cli_inspect_model(tmp_path, capsys, mixed_model):
    path = save_model(mixed_model, tmp_path / "m.safetensors")
    code, out, err = run_cli(["inspect", str(path)], capsys)
    assert (code, err) == (0, "")
    for text in ("swat-edge model", "hidden 0", "hidden 2", "output", "total", "sparse", "int8",
                 f"non-zero parameters: {model_stats(mixed_model).nonzero_params}", "features (2): x0, x1",
                 "targets (1): y0", 'provenance: generator="random_model", seed=3'):
        assert text in out, text


def test_cli_inspect_onnx(tmp_path, capsys):
    path = tmp_path / "q.onnx"
    path.write_bytes(qdq_model().SerializeToString())
    code, out, err = run_cli(["inspect", str(path)], capsys)
    assert (code, err) == (0, "")
    assert "int8 (quantized)" in out and "4 nodes: DequantizeLinear 2, Gemm 1, QuantizeLinear 1" in out
    assert "w_q" in out and "3 -> 2" in out
    assert "(N, 3)" in out and "(N, 2)" in out  # shapes survive rich markup


@pytest.mark.parametrize(
    "name, content, code, message",
    [
        ("absent.onnx", None, 2, "absent.onnx: no such model file"),
        ("bad.onnx", b"garbage", 1, "bad.onnx: not an ONNX model"),
        ("model.c", b"int main(void) { return 0; }\n", 1, "model.c: not a swat-edge model"),
    ],
)
def test_cli_inspect_errors(tmp_path, capsys, name, content, code, message):
    path = Path(tmp_path / name)
    if content is not None:
        path.write_bytes(content)
    got, out, err = run_cli(["inspect", str(path)], capsys)
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
