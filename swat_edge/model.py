"""The sparse-MLP model format: dataclasses, safetensors+JSON file I/O, and the numpy reference forward pass.

Every compile pass, every export and generated code is checked against `forward()`; keep it plain.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ModelFileError, SchemaVersionError
from .files import atomic_path, check_input_file

__all__ = [
    "ACTIVATIONS",
    "SCHEMA_VERSION",
    "FORMAT_NAME",
    "Layer",
    "SparseMLP",
    "apply_activation",
    "forward",
    "forward_normalized",
    "fill_missing",
    "logit_count",
    "class_probabilities",
    "hidden_activations",
    "with_missing_rows",
    "sample_inputs",
    "save_model",
    "load_model",
    "model_to_bytes",
    "model_from_bytes",
    "model_hash",
    "output_tolerance",
    "ModelStats",
    "model_stats",
    "random_model",
]

# Order matters: it is the canonical order the grouping pass lays activation slices out in.
ACTIVATIONS: tuple[str, ...] = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")
LEAKY_RELU_SLOPE = 0.01
SCHEMA_VERSION = 1
FORMAT_NAME = "swat-edge.sparse-mlp"
_META_KEY = "swat_edge"


@dataclass(frozen=True)
class Layer:
    """One dense layer y = act(x @ weight + bias) * mask, with one activation per output neuron.

    weight: (n_in, n_out) float; a zero entry is an absent connection (sparsity).
    mask: (n_out,) bool; False means the neuron is gated off (outputs 0).
    """

    weight: np.ndarray
    bias: np.ndarray
    activations: tuple[str, ...]
    mask: np.ndarray

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])

    @staticmethod
    def make(
        weight: np.ndarray,
        bias: np.ndarray,
        activations: Sequence[str] | str = "identity",
        mask: np.ndarray | None = None,
    ) -> "Layer":
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2:
            raise ModelFileError(f"layer weight must be 2-D (n_in, n_out), got shape {weight.shape}")
        n_out = weight.shape[1]
        bias = np.asarray(bias, dtype=np.float64).reshape(-1)
        if isinstance(activations, str):
            activations = (activations,) * n_out
        activations = tuple(activations)
        mask = np.ones(n_out, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
        layer = Layer(weight=weight, bias=bias, activations=activations, mask=mask)
        layer.check()
        return layer

    def check(self, where: str = "layer") -> None:
        n_out = self.n_out
        if self.bias.shape != (n_out,):
            raise ModelFileError(f"{where}: bias has shape {self.bias.shape}, expected ({n_out},)")
        if len(self.activations) != n_out:
            raise ModelFileError(f"{where}: {len(self.activations)} activations for {n_out} neurons")
        if self.mask.shape != (n_out,):
            raise ModelFileError(f"{where}: mask has shape {self.mask.shape}, expected ({n_out},)")
        bad = sorted(set(self.activations) - set(ACTIVATIONS))
        if bad:
            raise ModelFileError(f"{where}: unknown activation {bad[0]!r}; known: {', '.join(ACTIVATIONS)}")
        if not (np.all(np.isfinite(self.weight)) and np.all(np.isfinite(self.bias))):
            raise ModelFileError(f"{where}: weights or biases contain NaN or inf")


@dataclass(frozen=True)
class SparseMLP:
    """A sparse MLP with per-neuron activations and the affine scaling it was trained with.

    The network sees x_n = x * input_scale + input_offset and its raw output y_n is returned as
    y = y_n * output_scale + output_offset. The output layer is linear (all activations identity).
    `calibration` holds optional raw input rows (for int8 calibration and export checks).
    `input_fill` (optional, per input; NaN: none) replaces a missing (NaN) raw input before anything else: the
    training median under `search --missing median`, and the exported ONNX and C do the same.
    """

    hidden: tuple[Layer, ...]
    output: Layer
    input_scale: np.ndarray
    input_offset: np.ndarray
    output_scale: np.ndarray
    output_offset: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    calibration: np.ndarray | None = None
    input_fill: np.ndarray | None = None
    # a classifier's class names: its outputs are logits, one for two classes (of the second class), else one per
    # class; () for regression
    classes: tuple[str, ...] = ()

    @property
    def n_inputs(self) -> int:
        return int(self.input_scale.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.output_scale.shape[0])

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (*self.hidden, self.output)

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_inputs, *(layer.n_out for layer in self.hidden), self.n_outputs)

    def replace(self, **changes: Any) -> "SparseMLP":
        return dataclasses.replace(self, **changes)

    @staticmethod
    def make(
        hidden: Sequence[Layer],
        output: Layer,
        *,
        input_scale: np.ndarray | None = None,
        input_offset: np.ndarray | None = None,
        output_scale: np.ndarray | None = None,
        output_offset: np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        provenance: dict[str, Any] | None = None,
        calibration: np.ndarray | None = None,
        input_fill: np.ndarray | None = None,
        classes: Sequence[str] = (),
    ) -> "SparseMLP":
        hidden = tuple(hidden)
        n_in = hidden[0].n_in if hidden else output.n_in
        n_out = output.n_out

        def vec(v: np.ndarray | None, n: int, default: float) -> np.ndarray:
            return np.full(n, default, dtype=np.float64) if v is None else np.asarray(v, np.float64).reshape(-1)

        model = SparseMLP(
            hidden=hidden,
            output=output,
            input_scale=vec(input_scale, n_in, 1.0),
            input_offset=vec(input_offset, n_in, 0.0),
            output_scale=vec(output_scale, n_out, 1.0),
            output_offset=vec(output_offset, n_out, 0.0),
            feature_names=tuple(feature_names) if feature_names is not None else tuple(f"x{i}" for i in range(n_in)),
            target_names=tuple(target_names) if target_names is not None else tuple(f"y{i}" for i in range(n_out)),
            provenance=dict(provenance or {}),
            calibration=None if calibration is None else np.asarray(calibration, dtype=np.float64),
            input_fill=None if input_fill is None else np.asarray(input_fill, dtype=np.float64).reshape(-1),
            classes=tuple(str(c) for c in classes),
        )
        model.check()
        return model

    def check(self) -> None:
        """Raise ModelFileError if shapes, names or values are inconsistent."""
        prev = self.n_inputs
        for i, layer in enumerate(self.layers):
            where = f"hidden layer {i}" if i < len(self.hidden) else "output layer"
            layer.check(where)
            if layer.n_in != prev:
                raise ModelFileError(f"{where}: takes {layer.n_in} inputs but the previous layer gives {prev}")
            prev = layer.n_out
        if any(a != "identity" for a in self.output.activations) or not self.output.mask.all():
            raise ModelFileError("output layer: must be linear (identity activations, no gated-off outputs)")
        for name, vec, n in (
            ("input_scale", self.input_scale, self.n_inputs),
            ("input_offset", self.input_offset, self.n_inputs),
            ("output_scale", self.output_scale, self.output.n_out),
            ("output_offset", self.output_offset, self.output.n_out),
        ):
            if vec.shape != (n,):
                raise ModelFileError(f"{name}: shape {vec.shape}, expected ({n},)")
            if not np.all(np.isfinite(vec)):
                raise ModelFileError(f"{name}: contains NaN or inf")
        if len(self.feature_names) != self.n_inputs:
            raise ModelFileError(f"{len(self.feature_names)} feature names for {self.n_inputs} inputs")
        if len(self.target_names) != self.n_outputs:
            raise ModelFileError(f"{len(self.target_names)} target names for {self.n_outputs} outputs")
        if self.classes and self.n_outputs != logit_count(len(self.classes)):
            raise ModelFileError(f"{len(self.classes)} classes need {logit_count(len(self.classes))} logit output(s), "
                                 f"the model has {self.n_outputs}")
        if self.input_fill is not None:
            if self.input_fill.shape != (self.n_inputs,):
                raise ModelFileError(f"input_fill: shape {self.input_fill.shape}, expected ({self.n_inputs},)")
            if np.any(np.isinf(self.input_fill)):
                raise ModelFileError("input_fill: contains inf (NaN marks an input without a fill value)")
        if self.calibration is not None and (
            self.calibration.ndim != 2 or self.calibration.shape[1] != self.n_inputs
        ):
            raise ModelFileError(
                f"calibration rows: shape {self.calibration.shape}, expected (rows, {self.n_inputs})"
            )


@dataclass(frozen=True)
class ModelStats:
    """Counts that size and cost follow. Sparse counts skip zero weights and gated-off neurons."""

    widths: tuple[int, ...]  # physical widths: inputs, hidden..., outputs
    active_neurons: int  # hidden neurons with mask on
    nonzero_weights: int  # non-zero weights into active neurons (and the output layer)
    nonzero_params: int  # nonzero_weights + biases of active neurons + output biases (the paper's count)
    sparse_macs: int  # multiply-adds a sparsity-aware kernel does per row (= nonzero_weights)
    dense_macs: int  # multiply-adds a dense Gemm does per row (what onnxruntime executes)
    activation_counts: dict[str, int]  # active hidden neurons by activation
    bytes_fp32: int  # dense weight+bias storage in float32
    bytes_int8: int  # dense weights in int8 + biases in int32 + per-layer scale/zero-point


def model_stats(model: "SparseMLP") -> ModelStats:
    active_neurons = 0
    nonzero_weights = 0
    nonzero_params = 0
    dense_macs = 0
    bytes_fp32 = 0
    bytes_int8 = 0
    counts: dict[str, int] = {name: 0 for name in ACTIVATIONS}
    source_live = np.ones(model.n_inputs, dtype=bool)
    for i, layer in enumerate(model.layers):
        is_hidden = i < len(model.hidden)
        live = layer.mask
        # A weight counts only between two live neurons: a gated-off neuron's in- and out-weights do no work.
        nz = int(np.count_nonzero(layer.weight[np.ix_(source_live, live)]))
        source_live = live
        nonzero_weights += nz
        nonzero_params += nz + (int(live.sum()) if is_hidden else layer.n_out)
        dense_macs += layer.n_in * layer.n_out
        bytes_fp32 += 4 * (layer.n_in * layer.n_out + layer.n_out)
        bytes_int8 += layer.n_in * layer.n_out + 4 * layer.n_out + 8
        if is_hidden:
            active_neurons += int(live.sum())
            for name, on in zip(layer.activations, live):
                counts[name] += int(on)
    return ModelStats(
        widths=model.widths,
        active_neurons=active_neurons,
        nonzero_weights=nonzero_weights,
        nonzero_params=nonzero_params,
        sparse_macs=nonzero_weights,
        dense_macs=dense_macs,
        activation_counts={k: v for k, v in counts.items() if v},
        bytes_fp32=bytes_fp32,
        bytes_int8=bytes_int8,
    )


# ---------------------------------------------------------------------------------------------------------
# Reference forward pass (float64 numpy: the oracle every compiled artefact is compared with)


def apply_activation(name: str, z: np.ndarray) -> np.ndarray:
    if name == "identity":
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z >= 0.0, z, LEAKY_RELU_SLOPE * z)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1/(1+exp(-z))
    raise ValueError(f"bug: unknown activation {name!r}")


def _layer_forward(layer: Layer, h: np.ndarray) -> np.ndarray:
    z = h @ layer.weight + layer.bias
    out = np.empty_like(z)
    acts = np.asarray(layer.activations)
    for name in set(layer.activations):
        cols = acts == name
        out[:, cols] = apply_activation(name, z[:, cols])
    return out * layer.mask


def forward_normalized(model: SparseMLP, x_normalized: np.ndarray) -> np.ndarray:
    """Forward pass in the network's own scaled space (no input/output scaling)."""
    h = np.asarray(x_normalized, dtype=np.float64)
    for layer in model.layers:
        h = _layer_forward(layer, h)
    return h


def fill_missing(model: SparseMLP, x: np.ndarray) -> np.ndarray:
    """x with each missing (NaN) raw input replaced by the model's input_fill (where it has one)."""
    if model.input_fill is None:
        return x
    return np.where(np.isnan(x), model.input_fill, x)


def logit_count(n_classes: int) -> int:
    """A classifier's outputs: one logit for two classes (the second's; the first's is 0), else one per class."""
    return 1 if n_classes == 2 else n_classes


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    """(rows, n_classes) probabilities from a classifier's logits: sigmoid for one logit, else softmax."""
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[1] == 1:
        z = np.hstack([np.zeros_like(z), z])
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def hidden_activations(model: SparseMLP, x: np.ndarray) -> np.ndarray:
    """The last hidden layer's outputs (gated-off neurons 0) for raw rows x; the scaled inputs without hidden
    layers. What the linear output layer reads."""
    h = fill_missing(model, np.asarray(x, dtype=np.float64)) * model.input_scale + model.input_offset
    for layer in model.hidden:
        h = _layer_forward(layer, h)
    return h


def forward(model: SparseMLP, x: np.ndarray) -> np.ndarray:
    """Raw features (rows, n_inputs) -> raw targets (rows, n_outputs), float64. A missing (NaN) input is
    replaced by the model's input_fill first, when it has one."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != model.n_inputs:
        raise ValueError(f"expected inputs of shape (rows, {model.n_inputs}), got {x.shape}")
    x = fill_missing(model, x)
    y_n = forward_normalized(model, x * model.input_scale + model.input_offset)
    return y_n * model.output_scale + model.output_offset


def sample_inputs(model: SparseMLP, n_rows: int, seed: int = 0) -> np.ndarray:
    """Raw input rows whose normalised values cover [-1.5, 1.5]: a bit beyond the training range."""
    rng = np.random.default_rng(seed)
    x_n = rng.uniform(-1.5, 1.5, size=(n_rows, model.n_inputs))
    safe_scale = np.where(model.input_scale == 0.0, 1.0, model.input_scale)
    return (x_n - model.input_offset) / safe_scale


def with_missing_rows(model: SparseMLP, x: np.ndarray, per_column: int = 8) -> np.ndarray:
    """x plus, for each input the model fills (input_fill), `per_column` copies of its first rows with that input
    missing (NaN): export checks run these so the exported fill path is checked like the rest."""
    if model.input_fill is None or len(x) == 0:
        return x
    extra = []
    for j in np.flatnonzero(np.isfinite(model.input_fill)):
        rows = np.array(x[:per_column], dtype=np.float64)
        rows[:, j] = np.nan
        extra.append(rows)
    return np.vstack([x, *extra]) if extra else x


# A classifier's logits are checked to 1e-4 of their scale (a probability moves by at most a quarter of a logit's
# error: 2.5e-5 of the scale): onnxruntime's float32 tanh, through hidden weights of ~15 that saturate neurons
# and a logit map that multiplies the indicator outputs by ~4-10, put logits 2e-4 off at magnitude 8 on iris.
CLASSIFIER_REL_TOLERANCE = 1e-4


def output_tolerance(model: SparseMLP, y_reference: np.ndarray, rel: float = 1e-5) -> np.ndarray:
    """Per-output absolute tolerance: rel x the output's scale (its de-normalisation scale or magnitude);
    CLASSIFIER_REL_TOLERANCE instead of the default rel for a classifier's logits."""
    if model.classes and rel == 1e-5:
        rel = CLASSIFIER_REL_TOLERANCE
    magnitude = np.max(np.abs(y_reference), axis=0) if len(y_reference) else np.zeros(model.n_outputs)
    return rel * np.maximum(np.maximum(np.abs(model.output_scale), magnitude), 1e-6)


# ---------------------------------------------------------------------------------------------------------
# File format: one safetensors file; tensors are float32 (int8 lives in ONNX), metadata is JSON with a version.


def _tensors_and_meta(model: SparseMLP) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    tensors: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.hidden):
        tensors[f"hidden.{i}.weight"] = f32(layer.weight)
        tensors[f"hidden.{i}.bias"] = f32(layer.bias)
        tensors[f"hidden.{i}.mask"] = np.ascontiguousarray(layer.mask, dtype=np.uint8)
    tensors["output.weight"] = f32(model.output.weight)
    tensors["output.bias"] = f32(model.output.bias)
    # The scaling and the stored rows stay float64: a feature such as a unix timestamp (1.7e9 +/- a few thousand)
    # has a float32 spacing of 128 s, and an offset rounded to float32 moved a model's outputs by 0.03.
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    tensors["input.scale"] = f64(model.input_scale)
    tensors["input.offset"] = f64(model.input_offset)
    tensors["output.scale"] = f64(model.output_scale)
    tensors["output.offset"] = f64(model.output_offset)
    if model.calibration is not None:
        tensors["calibration"] = f64(model.calibration)
    if model.input_fill is not None:
        tensors["input.fill"] = f64(model.input_fill)
    meta = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "n_inputs": model.n_inputs,
        "n_outputs": model.n_outputs,
        "hidden_activations": [list(layer.activations) for layer in model.hidden],
        "feature_names": list(model.feature_names),
        "target_names": list(model.target_names),
        "provenance": model.provenance,
    }
    if model.classes:
        meta["classes"] = list(model.classes)
    return tensors, meta


def model_to_bytes(model: SparseMLP) -> bytes:
    from safetensors.numpy import save

    model.check()
    tensors, meta = _tensors_and_meta(model)
    return save(tensors, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})


def model_hash(model: SparseMLP) -> str:
    """sha256 of the canonical file bytes: identifies a model across exports and reports."""
    return hashlib.sha256(model_to_bytes(model)).hexdigest()


def save_model(model: SparseMLP, path: str | os.PathLike, *, force: bool = False) -> Path:
    data = model_to_bytes(model)
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _read_header(data: bytes, source: str) -> dict[str, Any]:
    # Parse the header ourselves first so a non-model or truncated file gets a precise message.
    if len(data) < 8:
        raise ModelFileError(f"{source}: not a swat-edge model (file is {len(data)} bytes; truncated?)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ModelFileError(f"{source}: not a swat-edge model (not a safetensors file, or truncated)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{source}: not a swat-edge model (unreadable safetensors header)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{source}: not a swat-edge model (unreadable safetensors header)")
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > len(data):
        raise ModelFileError(f"{source}: truncated ({len(data)} bytes, header promises {8 + n + end})")
    raw_meta = (header.get("__metadata__") or {}).get(_META_KEY)
    if raw_meta is None:
        raise ModelFileError(f"{source}: a safetensors file, but not a swat-edge model (no {_META_KEY!r} metadata)")
    try:
        meta = json.loads(raw_meta)
    except json.JSONDecodeError:
        raise ModelFileError(f"{source}: model metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{source}: metadata does not describe a {FORMAT_NAME} model")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{source}: model schema version {version!r} is not supported; this swat-edge reads version "
            f"{SCHEMA_VERSION} (upgrade swat-edge, or re-export the model with this version)"
        )
    return meta


def model_from_bytes(data: bytes, source: str = "<bytes>") -> SparseMLP:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    meta = _read_header(data, source)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"{source}: corrupt tensor data ({exc})") from None

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise ModelFileError(f"{source}: missing tensor {name!r}")
        return tensors[name]

    try:
        activations = meta["hidden_activations"]
        hidden = tuple(
            Layer.make(
                get(f"hidden.{i}.weight"),
                get(f"hidden.{i}.bias"),
                tuple(acts),
                get(f"hidden.{i}.mask").astype(bool),
            )
            for i, acts in enumerate(activations)
        )
        output = Layer.make(get("output.weight"), get("output.bias"), "identity")
        model = SparseMLP.make(
            hidden,
            output,
            input_scale=get("input.scale"),
            input_offset=get("input.offset"),
            output_scale=get("output.scale"),
            output_offset=get("output.offset"),
            feature_names=meta["feature_names"],
            target_names=meta["target_names"],
            provenance=meta.get("provenance", {}),
            calibration=tensors.get("calibration"),
            input_fill=tensors.get("input.fill"),
            classes=meta.get("classes", ()),
        )
    except KeyError as exc:
        raise ModelFileError(f"{source}: metadata lacks field {exc.args[0]!r}") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    return model


def load_model(path: str | os.PathLike) -> SparseMLP:
    p = check_input_file(path, "model file")
    return model_from_bytes(p.read_bytes(), str(p))


def random_model(
    widths: Sequence[int],
    *,
    activations: Sequence[str] | str = ("relu", "leaky_relu", "tanh", "sigmoid"),
    per_layer: bool = False,
    sparsity: float = 0.0,
    dead_fraction: float = 0.0,
    seed: int = 0,
    normalization: bool = True,
) -> SparseMLP:
    """A random network of the given widths (inputs, hidden..., outputs), for tests, benchmarks and calibration.

    activations: the set to draw from, per neuron (or per layer when per_layer=True).
    sparsity: share of weights set to zero; dead_fraction: share of hidden neurons gated off.
    """
    rng = np.random.default_rng(seed)
    choices = (activations,) if isinstance(activations, str) else tuple(activations)
    hidden = []
    for n_in, n_out in zip(widths[:-2], widths[1:-1]):
        w = rng.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, n_out))
        w[rng.random(w.shape) < sparsity] = 0.0
        if per_layer:
            acts = (choices[int(rng.integers(len(choices)))],) * n_out
        else:
            acts = tuple(choices[int(i)] for i in rng.integers(len(choices), size=n_out))
        mask = rng.random(n_out) >= dead_fraction
        hidden.append(Layer.make(w, rng.normal(0.0, 0.5, size=n_out), acts, mask))
    n_last = widths[-2]
    out_w = rng.normal(0.0, 1.0 / np.sqrt(n_last), size=(n_last, widths[-1]))
    output = Layer.make(out_w, rng.normal(0.0, 0.1, size=widths[-1]), "identity")
    scaling = {}
    if normalization:
        scaling = dict(
            input_scale=rng.uniform(0.2, 3.0, widths[0]),
            input_offset=rng.uniform(-1.0, 1.0, widths[0]),
            output_scale=rng.uniform(0.5, 20.0, widths[-1]),
            output_offset=rng.uniform(-10.0, 10.0, widths[-1]),
        )
    return SparseMLP.make(hidden, output, provenance={"generator": "random_model", "seed": seed}, **scaling)
