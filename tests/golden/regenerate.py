"""Golden replay of generated artefacts: python tests/golden/regenerate.py rewrites them, the tests diff them.

A refactor that changes what users get (C text, ONNX graph structure or weights, int8 graphs) shows up as a
diff in tests/golden/, as tinygrad's process replay does. If a change is intended, regenerate and review the
diff before committing it: every change in it is a change in what users' compilers and runtimes see.
The tool version is stored as @VERSION@ so a version bump alone does not break the replay.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import helper  # noqa: E402

from swat_edge import __version__  # noqa: E402
from swat_edge.export.c import to_c  # noqa: E402
from swat_edge.export.onnx import to_onnx  # noqa: E402,F401 (the replay test uses it)
from swat_edge.export.pipeline import export_onnx_file  # noqa: E402
from swat_edge.model import SparseMLP, load_model, random_model  # noqa: E402


def _mixed() -> SparseMLP:
    return random_model((2, 7, 7, 7, 1), seed=0)  # every activation, mixed inside layers


def _pruned() -> SparseMLP:
    return random_model((3, 6, 5, 2), sparsity=0.3, dead_fraction=0.2, seed=4)  # dead neurons, two outputs


def _linear() -> SparseMLP:
    return random_model((3, 1), seed=2)  # no hidden layer


def _motor() -> SparseMLP:
    return load_model(REPO / "examples" / "motor.safetensors")  # the bundled example, with calibration rows


def _timestamp() -> SparseMLP:
    # a unix-time feature (1.7e9 +/- 3000) next to an ordinary one: the exports take double rows
    model = random_model((2, 4, 1), seed=5)
    return model.replace(input_scale=np.array([1.0 / 3000.0, 2.0]), input_offset=np.array([-1.7e9 / 3000.0, -1.0]),
                         feature_names=("unix_time", "load"))


MODELS: dict[str, Callable[[], SparseMLP]] = {"mixed": _mixed, "pruned": _pruned, "linear": _linear, "motor": _motor,
                                              "timestamp": _timestamp}

# name -> (model, to_c options). mlp_* keep their historical names (the first golden files).
C_CASES: dict[str, tuple[str, dict[str, object]]] = {
    "mlp_float": ("mixed", {"dtype": "float", "fast_math": False}),
    "mlp_float_fast": ("mixed", {"dtype": "float", "fast_math": True}),
    "mlp_int8": ("mixed", {"dtype": "int8", "fast_math": False}),
    "pruned_float": ("pruned", {"dtype": "float", "fast_math": False}),
    "motor_float": ("motor", {"dtype": "float", "fast_math": False}),
    "motor_int8": ("motor", {"dtype": "int8", "fast_math": False}),
    "timestamp_float": ("timestamp", {"dtype": "float", "fast_math": False}),
}

# name -> (model, export_onnx_file options): the whole export pipeline (passes, emit, onnxsim, quantize).
ONNX_CASES: dict[str, tuple[str, dict[str, object]]] = {
    "mixed": ("mixed", {}),
    "mixed_plain": ("mixed", {"simplify": False}),
    "pruned": ("pruned", {}),
    "linear": ("linear", {}),
    "motor": ("motor", {}),
    "motor_int8": ("motor", {"quantization": "static"}),
    "timestamp": ("timestamp", {}),
}


def versionless(text: str) -> str:
    return text.replace(f"swat-edge {__version__};", "swat-edge @VERSION@;").replace(__version__, "@VERSION@")


def render_c(case: str) -> dict[str, str]:
    """{".c": source, ".h": header} for one C case, as to_c writes them (include name = the golden file's)."""
    model_name, options = C_CASES[case]
    csrc = to_c(MODELS[model_name](), prefix="mlp", header_name=f"{case}.h", **options)  # type: ignore[arg-type]
    return {".c": versionless(csrc.source), ".h": versionless(csrc.header)}


def _value_info(v: onnx.ValueInfoProto) -> str:
    tensor = v.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) for d in tensor.shape.dim]
    return f"{v.name} {onnx.TensorProto.DataType.Name(tensor.elem_type)} [{', '.join(dims)}]"


def describe_onnx(proto: onnx.ModelProto) -> str:
    """The graph as stable text: opsets, signature, metadata, initializers (shape + hash of bytes), nodes."""
    lines = [f"ir_version {proto.ir_version}"]
    lines += [f"opset {o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import]
    lines += [f"producer {proto.producer_name} {proto.producer_version}"]
    lines += [f"input {_value_info(v)}" for v in proto.graph.input]
    lines += [f"output {_value_info(v)}" for v in proto.graph.output]
    lines += [f"metadata {p.key} = {p.value}" for p in proto.metadata_props]
    for init in proto.graph.initializer:
        raw = onnx.numpy_helper.to_array(init).tobytes()
        dtype = onnx.TensorProto.DataType.Name(init.data_type)
        lines.append(f"initializer {init.name} {dtype} {list(init.dims)} sha256:{hashlib.sha256(raw).hexdigest()[:16]}")
    lines += [f"node {helper.printable_node(node)}" for node in proto.graph.node]
    return versionless("\n".join(lines) + "\n")


def render_onnx(case: str) -> str:
    model_name, options = ONNX_CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{case}.onnx"
        export_onnx_file(MODELS[model_name](), path, **options)  # type: ignore[arg-type]
        return describe_onnx(onnx.load(str(path)))


def expected_files() -> dict[str, Callable[[], str]]:
    """golden file name -> function rendering its current content."""
    files: dict[str, Callable[[], str]] = {}
    for case in C_CASES:
        files[f"{case}.c"] = lambda case=case: render_c(case)[".c"]
        files[f"{case}.h"] = lambda case=case: render_c(case)[".h"]
    for case in ONNX_CASES:
        files[f"{case}.onnx.txt"] = lambda case=case: render_onnx(case)
    return files


def main() -> None:
    for name, render in expected_files().items():
        (HERE / name).write_text(render(), encoding="utf-8")
        print(f"wrote tests/golden/{name}")


if __name__ == "__main__":
    main()
