"""Cost model: counts follow what onnxruntime runs; numpy and torch faces agree; monotonic; estimates add up."""
from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from clirun import python_without_torch

from swat_edge.compile import PIPELINE, PIPELINE_INT8, run_passes
from swat_edge.device.cost import (
    DTYPES,
    TERMS,
    affine_nodes,
    choose_dtype,
    choose_loop_layers,
    coefficient_vector,
    count_for,
    count_model,
    deployed_bytes,
    estimate,
    feature_vector,
    latency_us,
    loop_eligible_layers,
    terms_us,
)
from swat_edge.device.targets import CostCoefficients, list_targets, load_target
from swat_edge.errors import UsageError
from swat_edge.measure.calibrate import random_family_model
from swat_edge.model import ACTIVATIONS, Layer, SparseMLP, model_stats, random_model, sample_inputs

PROFILES = {name: load_target(name) for name in list_targets()}
BATCHES = (1, 7, 64, 256)


def compiled(model: SparseMLP) -> SparseMLP:
    return run_passes(model, check_rows=32).model


def family(n: int, seed: int) -> list[SparseMLP]:
    rng = np.random.default_rng(seed)
    return [compiled(random_family_model(rng, seed=seed * 1000 + k)) for k in range(n)]


def optimized_ops(proto: onnx.ModelProto) -> Counter:
    """The op histogram onnxruntime actually executes (after its graph optimisations)."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return Counter(node.op_type for node in onnx.load(opts.optimized_model_filepath).graph.node)


def mlp(widths, acts_per_layer, seed=0) -> SparseMLP:
    rng = np.random.default_rng(seed)
    hidden = [
        Layer.make(rng.normal(size=(n_in, n_out)), rng.normal(size=n_out), acts)
        for n_in, n_out, acts in zip(widths[:-2], widths[1:-1], acts_per_layer)
    ]
    output = Layer.make(rng.normal(size=(widths[-2], widths[-1])), rng.normal(size=widths[-1]), "identity")
    return SparseMLP.make(hidden, output)


# ---------------------------------------------------------------------------------------------------------
# Counts follow the graph onnxruntime runs


def exported(model: SparseMLP, dtype: str, folder: Path) -> tuple[SparseMLP, Path]:
    """What `swat-edge export` writes for model in dtype, and the compiled model it exported."""
    from swat_edge.export.pipeline import export_onnx_file

    path = folder / ("model.int8.onnx" if dtype == "int8" else "model.onnx")
    result = export_onnx_file(model, path, force=True, quantization="static" if dtype == "int8" else "none",
                              calibration_rows=sample_inputs(model, 128))
    return result.compiled.model, path


def optimized_file_ops(path: Path) -> Counter:
    return optimized_ops(onnx.load(str(path)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_counts_match_the_graph_onnxruntime_runs_after_export(dtype, tmp_path):
    rng = np.random.default_rng(1)
    models = [random_family_model(rng, seed=k) for k in range(8)]
    # onnxruntime treats ReLU-only and identity-only layers specially after quantization: cover them.
    models += [mlp((3, 9, 6, 3, 1), [("relu",) * 9, ("relu", "identity") * 3, ("relu",) * 3]),
               mlp((4, 8, 8, 2), [("relu",) * 8, ("sigmoid", "tanh") * 4]),
               mlp((4, 8, 8, 2), [("leaky_relu",) * 8, ("relu",) * 8]),
               mlp((7, 2, 30, 3), [("identity",) * 2, ("leaky_relu",) * 30])]
    checked = 0
    for model in models:
        if dtype == "int8" and not compiled(model).hidden:
            continue  # nothing to quantize
        deployed, path = exported(model, dtype, tmp_path)
        ops = optimized_file_ops(path)
        counts = count_model(deployed, dtype=dtype)
        where = (model.widths, [sorted(set(layer.activations)) for layer in deployed.hidden], ops)
        assert counts.nodes == sum(ops.values()), where
        assert counts.gemm_rows == ops["Gemm"] + ops["FusedGemm"], where
        assert counts.qgemm_rows == ops["QGemm"], where
        assert counts.slices == 2 * (ops["Split"] and sum(
            len(set(layer.activations)) for layer in deployed.hidden if len(set(layer.activations)) > 1)), where
        if dtype == "fp32":
            assert counts.macs_fp32 == model_stats(deployed).dense_macs  # no column block by default
        checked += 1
    assert checked >= 8


def test_a_lone_activation_is_fused_and_mixed_ones_split():
    one = count_model(mlp((2, 6, 1), [("tanh",) * 6]))
    two = count_model(mlp((2, 6, 1), [("tanh",) * 3 + ("relu",) * 3]))
    ident = count_model(mlp((2, 6, 1), [("identity",) * 3 + ("relu",) * 3]))
    assert one.nodes == 2  # FusedGemm + Gemm
    assert two.nodes == 2 + 2 + 2  # + Split, Concat, Tanh, Relu
    assert ident.nodes == 2 + 2 + 1  # identity slices emit no node
    assert (one.tanh, two.tanh, two.relu) == (6, 3, 3)
    assert (one.copied, two.copied) == (0, 12)


# ---------------------------------------------------------------------------------------------------------
# The numpy face


def test_latency_is_the_dot_product_of_features_and_coefficients():
    model = family(1, 4)[0]
    for profile in PROFILES.values():
        counts = count_model(model, dtype="fp32", gemm_column_block=profile.runtime.gemm_column_block)
        for batch in BATCHES:
            direct = latency_us(counts, profile.cost, batch)
            assert feature_vector(counts, batch) @ coefficient_vector(profile.cost) == pytest.approx(direct)
            assert sum(terms_us(counts, profile.cost, batch).values()) == pytest.approx(direct)
    assert set(TERMS) == {f.name for f in dataclasses.fields(CostCoefficients)}


def test_estimate_fields_add_up():
    model = random_model((3, 12, 9, 2), sparsity=0.3, seed=5)
    est = estimate(model, "host", dtype="fp32", batch_sizes=(1, 64))
    assert est.target == "host" and est.provenance == "measured"
    assert est.throughput_rows_per_s(64) == pytest.approx(64 / (est.latency_at(64) * 1e-6))
    assert est.latency_at(64) > est.latency_at(1)
    assert est.peak_activation_bytes[1] == 64 * est.peak_activation_bytes[0]
    stats = model_stats(compiled(model))
    assert est.model_bytes == est.model_bytes_fp32 == stats.bytes_fp32
    # int8 keeps the last layer float (as swat_edge.export.quantize does): fp32 bytes of the output layer
    last = compiled(model).output
    assert est.model_bytes_int8 == stats.bytes_int8 - (last.n_in * last.n_out + 4 * last.n_out + 8) + 4 * (
        last.n_in * last.n_out + last.n_out
    )
    with pytest.raises(KeyError):
        est.latency_at(2)


def test_estimate_compiles_like_export():
    model = random_model((4, 10, 10, 1), sparsity=0.4, dead_fraction=0.3, seed=2)
    assert estimate(model, "host") == estimate(compiled(model), "host", compile=False)
    # dead neurons and folded scaling cost nothing once compiled
    assert estimate(model, "host").nodes <= count_model(model).nodes


def test_zero_weights_are_free_in_onnxruntime_but_not_in_generated_code():
    dense = random_model((6, 16, 16, 2), activations="relu", seed=1, normalization=False)
    checkerboard = (np.arange(16)[:, None] + np.arange(16)[None, :]) % 2 == 0  # no row or column all zero
    sparse = dense.replace(hidden=(dense.hidden[0], dataclasses.replace(
        dense.hidden[1], weight=np.where(checkerboard, dense.hidden[1].weight, 0.0))))
    assert compiled(sparse).widths == compiled(dense).widths
    for name in ("host", "raspi4"):
        assert estimate(sparse, name, dtype="fp32").latency_us == estimate(dense, name, dtype="fp32").latency_us
    m4_dense = estimate(dense, "cortex-m4", dtype="fp32")
    m4_sparse = estimate(sparse, "cortex-m4", dtype="fp32")
    assert m4_sparse.latency_us[0] < m4_dense.latency_us[0]
    assert m4_sparse.model_bytes < m4_dense.model_bytes


def test_column_block_rounds_the_mac_count_up():
    model = mlp((4, 17, 1), [("relu",) * 17])
    assert count_model(model, gemm_column_block=16).macs_fp32 == 4 * 32 + 17 * 16
    assert count_model(model, gemm_column_block=1).macs_fp32 == 4 * 17 + 17 * 1
    assert count_model(model, gemm_column_block=16, sparse_kernel=True).macs_fp32 == 4 * 17 + 17


def test_int8_policy():
    model = random_model((8, 64, 64, 1), activations="tanh", seed=0, normalization=False)
    assert choose_dtype(model, "raspi4") == "fp32"  # never
    assert estimate(model, "raspi4").dtype == "fp32"
    always = PROFILES["host"].replace(int8_policy="always")
    assert choose_dtype(model, always) == "int8"
    assert choose_dtype(mlp((3, 2), []), always) == "fp32"  # nothing to quantize without a hidden layer
    cheap_int8 = PROFILES["host"].replace(
        cost=dataclasses.replace(PROFILES["host"].cost, mac_int8_ns=0.0, qgemm_row_ns=0.0, quantize_ns=0.0, node_us=0.0)
    )
    dear_int8 = PROFILES["host"].replace(cost=dataclasses.replace(PROFILES["host"].cost, mac_int8_ns=10.0))
    assert choose_dtype(model, cheap_int8, batch_size=256) == "int8"
    assert choose_dtype(model, dear_int8, batch_size=256) == "fp32"


def test_bad_arguments():
    model = mlp((2, 3, 1), [("relu",) * 3])
    with pytest.raises(UsageError, match=r"dtype 'int4' is not supported; use one of fp32, int8"):
        estimate(model, "host", dtype="int4")
    with pytest.raises(UsageError, match=r"batch sizes must be integers >= 1, got \[0\]"):
        estimate(model, "host", batch_sizes=(0,))


# ---------------------------------------------------------------------------------------------------------
# Properties (every profile, every batch size)


def _widen(model: SparseMLP, layer: int, act: str, rng) -> SparseMLP:
    """The same network with one more neuron (activation `act`) in hidden layer `layer`."""
    layers = list(model.layers)
    h, nxt = layers[layer], layers[layer + 1]
    layers[layer] = Layer.make(np.hstack([h.weight, rng.normal(size=(h.n_in, 1))]), np.append(h.bias, 0.1),
                               (*h.activations, act))
    layers[layer + 1] = Layer.make(np.vstack([nxt.weight, rng.normal(size=(1, nxt.n_out))]), nxt.bias,
                                   nxt.activations, nxt.mask)
    return model.replace(hidden=tuple(layers[:-1]), output=layers[-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_more_neurons_are_never_cheaper(dtype):
    rng = np.random.default_rng(7)
    # int8: ReLU-only layers change how onnxruntime runs the network (see cost.py), which can make a wider
    # int8 network cheaper at large batch; the property is about regular layers.
    acts = ACTIVATIONS if dtype == "fp32" else ("identity", "leaky_relu", "tanh", "sigmoid")
    for k in range(25):
        widths = [int(rng.integers(1, 9))] + [int(rng.integers(1, 40)) for _ in range(int(rng.integers(1, 4)))] + [2]
        model = random_model(widths, activations=acts, seed=k, normalization=False)
        layer = int(rng.integers(len(model.hidden)))
        bigger = _widen(model, layer, str(rng.choice(acts)), rng)
        for profile in PROFILES.values():
            small = estimate(model, profile, dtype=dtype, batch_sizes=BATCHES, compile=False)
            big = estimate(bigger, profile, dtype=dtype, batch_sizes=BATCHES, compile=False)
            assert all(b >= s for b, s in zip(big.latency_us, small.latency_us)), (profile.name, widths)
            assert big.model_bytes >= small.model_bytes


def test_more_nodes_are_never_cheaper():
    rng = np.random.default_rng(8)
    for k in range(20):
        width = int(rng.integers(2, 40))
        one_type = mlp((3, width, 1), [("leaky_relu",) * width], seed=k)
        deeper = mlp((3, width, width, 1), [("leaky_relu",) * width] * 2, seed=k)
        for profile in PROFILES.values():
            # Split -> two activation nodes -> Concat; the new neuron's activation costs no less per element
            # (on a microcontroller tanh is dearer than sigmoid, on a vector unit the other way round).
            dearer = max(("tanh", "sigmoid"), key=lambda a: getattr(profile.cost, f"{a}_ns"))
            split = mlp((3, width, 1), [("leaky_relu",) * (width - 1) + (dearer,)], seed=k)
            for dtype in DTYPES:
                base = estimate(one_type, profile, dtype=dtype, batch_sizes=BATCHES, compile=False).latency_us
                for other in (split, deeper):
                    more = estimate(other, profile, dtype=dtype, batch_sizes=BATCHES, compile=False).latency_us
                    assert all(m >= b for m, b in zip(more, base)), (profile.name, dtype, width)


def test_sigmoid_costs_more_than_relu_on_the_microcontroller():
    relu = estimate(mlp((2, 8, 1), [("relu",) * 8]), "cortex-m4", dtype="fp32", compile=False)
    sigmoid = estimate(mlp((2, 8, 1), [("sigmoid",) * 8]), "cortex-m4", dtype="fp32", compile=False)
    assert sigmoid.latency_us[0] > relu.latency_us[0] + 8 * 1.0  # tens of cycles per neuron at 80 MHz


# ---------------------------------------------------------------------------------------------------------
# The torch face


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_and_torch_faces_agree_on_hard_networks(dtype):
    torch = pytest.importorskip("torch")
    from swat_edge.search.cost import estimate_soft, layers_from_model

    passes = PIPELINE_INT8 if dtype == "int8" else PIPELINE  # int8 keeps the input scaling: Mul/Add nodes
    rng = np.random.default_rng(11)
    originals = [random_family_model(rng, seed=k) for k in range(6)]
    originals.append(mlp((3, 9, 6, 3, 1), [("relu",) * 9, ("relu", "identity") * 3, ("relu",) * 3]))
    for model in (run_passes(m, passes=passes, check_rows=32).model for m in originals):
        hidden, output_nonzero = layers_from_model(model)
        affine = {"input_affine": affine_nodes(model.input_scale, model.input_offset),
                  "output_affine": affine_nodes(model.output_scale, model.output_offset)}
        for profile in PROFILES.values():
            for batch in (1, 256):
                # the soft face counts straight-line C (the search's relaxation has no loop layers)
                hard = estimate(model, profile, dtype=dtype, batch_sizes=(batch,), compile=False, loop_layers=())
                soft = estimate_soft(hidden, n_inputs=model.n_inputs, n_outputs=model.n_outputs, target=profile,
                                     dtype=dtype, batch_size=batch, output_nonzero=output_nonzero, **affine)
                assert float(soft.latency_us) == pytest.approx(hard.latency_us[0], rel=1e-12)
                assert float(soft.model_bytes) == pytest.approx(hard.model_bytes, abs=0.5)  # the estimate rounds to bytes
                assert float(soft.peak_activation_bytes) == pytest.approx(hard.peak_activation_bytes[0], rel=1e-12)
                assert isinstance(soft.latency_us, torch.Tensor)


def _soft_network(torch, widths, seed=0):
    """Random soft quantities (leaf tensors that require grad), as the search's relaxation produces."""
    gen = torch.Generator().manual_seed(seed)
    leaves, hidden = [], []
    from swat_edge.search.cost import soft_layer

    for n_in, n in zip(widths[:-2], widths[1:-1]):
        gate_logits = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)
        act_logits = torch.randn(n, len(ACTIVATIONS), generator=gen, dtype=torch.float64, requires_grad=True)
        nz_logits = torch.randn(n_in, n, generator=gen, dtype=torch.float64, requires_grad=True)
        leaves += [gate_logits, act_logits, nz_logits]
        hidden.append(soft_layer(torch.sigmoid(gate_logits), torch.softmax(act_logits, dim=1), torch.sigmoid(nz_logits)))
    out_logits = torch.randn(widths[-2], widths[-1], generator=gen, dtype=torch.float64, requires_grad=True)
    leaves.append(out_logits)
    return hidden, torch.sigmoid(out_logits), leaves


@pytest.mark.torch
@pytest.mark.parametrize("target", ["host", "raspi4", "cortex-m4"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_face_is_differentiable_in_every_soft_quantity(target, dtype):
    torch = pytest.importorskip("torch")
    from swat_edge.search.cost import estimate_soft

    hidden, out_nz, leaves = _soft_network(torch, (3, 6, 5, 2))
    est = estimate_soft(hidden, n_inputs=3, n_outputs=2, target=target, dtype=dtype, batch_size=16,
                        output_nonzero=out_nz)
    (est.latency_us + 1e-3 * est.model_bytes + 1e-3 * est.peak_activation_bytes).backward()
    sparse = load_target(target).runtime.sparse_kernel
    # leaves: per hidden layer (gate logits, activation logits, non-zero logits), then the output non-zeros.
    # A dense Gemm runs zeros like any weight, so on onnxruntime targets only the first layer's non-zeros
    # matter (an input nobody reads is dropped); generated C skips every zero weight.
    priced = {0, 1, 2, 3, 4} | ({5, 6} if sparse else set())
    for i, leaf in enumerate(leaves):
        if i in priced:
            assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), i
            assert leaf.grad.abs().sum() > 0, f"leaf {i} gets no gradient on {target}"
        else:
            assert leaf.grad is None or not leaf.grad.any(), f"leaf {i} should be free on {target}"
    assert torch.isfinite(est.latency_us) and est.latency_us > 0


@pytest.mark.torch
def test_torch_gradients_point_the_right_way():
    torch = pytest.importorskip("torch")
    from swat_edge.search.cost import estimate_soft, soft_layer

    gates = torch.full((8,), 0.7, dtype=torch.float64, requires_grad=True)
    probs = torch.full((8, len(ACTIVATIONS)), 0.2, dtype=torch.float64, requires_grad=True)
    est = estimate_soft([soft_layer(gates, probs)], n_inputs=4, n_outputs=1, target="cortex-m4", batch_size=1)
    est.latency_us.backward()
    assert (gates.grad > 0).all()  # a more likely neuron costs more
    sig, relu = ACTIVATIONS.index("sigmoid"), ACTIVATIONS.index("relu")
    assert (probs.grad[:, sig] > probs.grad[:, relu]).all()  # shifting mass to sigmoid costs more on an MCU


@pytest.mark.torch
def test_soft_layer_checks_shapes():
    torch = pytest.importorskip("torch")
    from swat_edge.search.cost import soft_layer

    with pytest.raises(UsageError, match=r"activation_probs must have shape \(3, 5\)"):
        soft_layer(torch.ones(3), torch.ones(3, 4))
    with pytest.raises(UsageError, match=r"gates must be 1-D"):
        soft_layer(torch.ones(3, 1), torch.ones(3, 5))


def test_the_numpy_face_does_not_import_torch():
    proc = python_without_torch("""
        from swat_edge.device.cost import estimate
        from swat_edge.model import random_model
        assert estimate(random_model((2, 5, 1)), 'raspi4').latency_us[0] > 0
    """)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------------------
# Generated C: layers emitted as loops


def test_loop_layers_move_their_multiply_adds_and_keep_the_weights() -> None:
    model = random_model((2, 8, 8, 8, 1), activations="relu", per_layer=True, sparsity=0.4, seed=3)
    profile = PROFILES["cortex-m4"]
    straight = count_for(model, profile, "fp32")
    loops = count_for(model, profile, "fp32", frozenset({1, 3}))
    dense_entries = 8 * 8 + 8 * 1  # layer 1 (8 x 8) and the output layer (8 x 1), zeros included
    assert loops.loop_layers == 2 and loops.loop_rows == 9 and loops.loop_macs == dense_entries
    kept = int(np.count_nonzero(model.layers[1].weight) + np.count_nonzero(model.layers[3].weight))
    assert straight.macs_fp32 - loops.macs_fp32 == kept
    assert straight.gemm_outputs - loops.gemm_outputs == 9 and straight.relu == loops.relu
    assert loops.weight_bytes == straight.weight_bytes + 4 * (dense_entries - kept)  # the tables keep their zeros
    # on onnxruntime (dense kernels) nothing is a loop, and an int8 count ignores loops
    assert count_for(model, PROFILES["raspi4"], "int8", frozenset({1})).loop_layers == 0


def test_loop_choice_is_the_fastest_within_the_budget_by_the_cost_model() -> None:
    profile = PROFILES["cortex-m4"]
    model = random_model((2, 8, 8, 8, 1), activations="tanh", per_layer=True, seed=1)
    eligible = loop_eligible_layers(model)
    assert eligible == (1, 2, 3)
    options = {}
    for bits in range(8):
        loops = frozenset(li for k, li in enumerate(eligible) if bits >> k & 1)
        counts = count_for(model, profile, "fp32", loops)
        options[loops] = (latency_us(counts, profile.cost), deployed_bytes(counts, profile))
    straight_us, straight_bytes = options[frozenset()]
    # on the M4 a loop is smaller and slower: no budget, no loops
    assert all(us > straight_us and b < straight_bytes for k, (us, b) in options.items() if k)
    assert choose_loop_layers(model, profile) == frozenset()
    for budget in (straight_bytes * 0.95, straight_bytes * 0.7, straight_bytes * 0.5):
        chosen = choose_loop_layers(model, profile, budget)
        fits = {k: v for k, v in options.items() if v[1] <= budget}
        if fits:
            assert chosen == min(fits, key=lambda k: fits[k][0])
        else:  # the budget cannot be met: the smallest code
            assert chosen == min(options, key=lambda k: options[k][1])
        est = estimate(model, profile, dtype="fp32", compile=False, size_budget_bytes=budget)
        assert est.loop_layers == tuple(sorted(chosen))
        assert est.model_bytes == round(options[chosen][1])
    # a profile without the loop terms (every runtime, a hand-written MCU profile) never chooses loops
    bare = dataclasses.replace(profile, code_size=dataclasses.replace(profile.code_size, loop_weight_bytes=0.0))
    assert choose_loop_layers(model, bare, straight_bytes * 0.5) == frozenset()
    assert choose_loop_layers(model, PROFILES["raspi4"], 100.0) == frozenset()
