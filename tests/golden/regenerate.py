"""Regenerate the golden C files that tests/test_export_c.py replays: python tests/golden/regenerate.py

Review the diff before committing it: every change in it is a change in what users' compilers see.
The tool version in the banner is stored as @VERSION@ so a version bump alone does not break the replay.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from swat_edge import __version__  # noqa: E402
from swat_edge.export_c import to_c  # noqa: E402
from swat_edge.model import random_model  # noqa: E402

# name -> to_c options; the model is always the 2-7-7-7-1 mixed-activation random model, seed 0.
CASES: dict[str, dict[str, object]] = {
    "mlp_float": {"dtype": "float", "fast_math": False},
    "mlp_float_fast": {"dtype": "float", "fast_math": True},
    "mlp_int8": {"dtype": "int8", "fast_math": False},
}


def render(dtype: str, fast_math: bool) -> dict[str, str]:
    """{".c": source, ".h": header} for one case, as to_c writes them (include name = the golden file's)."""
    model = random_model((2, 7, 7, 7, 1), seed=0)
    name = next(k for k, v in CASES.items() if v == {"dtype": dtype, "fast_math": fast_math})
    csrc = to_c(model, prefix="mlp", dtype=dtype, fast_math=fast_math, header_name=f"{name}.h")  # type: ignore[arg-type]
    return {".c": csrc.source, ".h": csrc.header}


def versionless(text: str) -> str:
    return text.replace(f"swat-edge {__version__};", "swat-edge @VERSION@;")


def main() -> None:
    for name, options in CASES.items():
        for suffix, text in render(**options).items():  # type: ignore[arg-type]
            (HERE / f"{name}{suffix}").write_text(versionless(text), encoding="utf-8")
            print(f"wrote tests/golden/{name}{suffix}")


if __name__ == "__main__":
    main()
