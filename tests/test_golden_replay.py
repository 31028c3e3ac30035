"""Golden replay: every generated artefact (C text, ONNX graph structure and weights, int8 graphs) for a
handful of models is compared with tests/golden/. A refactor that changes output fails here with a diff;
an intended change is regenerated with `python tests/golden/regenerate.py` and reviewed."""
from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def _load_regenerate():
    spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN / "regenerate.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


REGENERATE = _load_regenerate()
FILES = REGENERATE.expected_files()


def test_every_golden_file_is_replayed() -> None:
    on_disk = {p.name for p in GOLDEN.iterdir() if p.suffix in (".c", ".h", ".txt")}
    assert on_disk == set(FILES), "tests/golden holds files regenerate.py does not make, or misses some"


@pytest.mark.parametrize("name", sorted(FILES))
def test_artefact_matches_golden(name: str) -> None:
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    actual = FILES[name]()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "now", n=1))
        pytest.fail(f"tests/golden/{name} changed (regenerate with tests/golden/regenerate.py if intended):\n{diff[:4000]}")


def test_replay_notices_a_changed_weight() -> None:
    # The replay must be able to fail: one weight nudged by 1e-3 changes the C text and the ONNX weights.
    import dataclasses

    model = REGENERATE.MODELS["mixed"]()
    first = model.hidden[0]
    weight = first.weight.copy()
    weight[0, 0] += 1e-3
    nudged = model.replace(hidden=(dataclasses.replace(first, weight=weight), *model.hidden[1:]))
    assert REGENERATE.to_c(nudged, prefix="mlp").source != REGENERATE.to_c(model, prefix="mlp").source
    assert REGENERATE.describe_onnx(REGENERATE.to_onnx(nudged)) != REGENERATE.describe_onnx(REGENERATE.to_onnx(model))
