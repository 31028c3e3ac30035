"""The family of MLPs an embedding covers: input count, hidden depth range, width, activations, outputs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ...errors import InputError
from ...model import ACTIVATIONS

__all__ = ["Family", "check_family", "family_from_dict", "DEFAULT_FAMILY"]

# Bounds past which the padded tensor layout stops being "small MLPs" (and the CPU budget breaks).
_MAX_INPUTS_LIMIT = 64
_MAX_DEPTH_LIMIT = 8
_MAX_WIDTH_LIMIT = 64
_MAX_OUTPUTS_LIMIT = 16


@dataclass(frozen=True)
class Family:
    """MLPs with 1..max_inputs inputs, min_depth..max_depth hidden layers of at most max_width neurons,
    per-neuron activations from `activations`, and n_outputs linear outputs.

    Physical layout is always max_width neurons per hidden layer; narrower layers come from on/off gates,
    fewer inputs from zero padding (the unused input columns are fed zeros).
    """

    max_inputs: int = 8
    min_depth: int = 1
    max_depth: int = 4
    max_width: int = 8
    n_outputs: int = 1
    activations: tuple[str, ...] = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(range(self.min_depth, self.max_depth + 1))

    @property
    def n_activations(self) -> int:
        return len(self.activations)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["activations"] = list(self.activations)
        return d


def _check_int(name: str, value: object, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: {name} is {value!r}; expected a whole number in {low}..{high}")
    if not low <= value <= high:
        raise InputError(f"{where}: {name} is {value}; it must lie in {low}..{high}")
    return value


def check_family(family: Family, where: str = "family") -> Family:
    """Return `family` if its bounds make sense, else raise InputError naming the field and the allowed range."""
    _check_int("max_inputs", family.max_inputs, 1, _MAX_INPUTS_LIMIT, where)
    _check_int("max_depth", family.max_depth, 1, _MAX_DEPTH_LIMIT, where)
    _check_int("min_depth", family.min_depth, 1, family.max_depth, where)
    _check_int("max_width", family.max_width, 1, _MAX_WIDTH_LIMIT, where)
    _check_int("n_outputs", family.n_outputs, 1, _MAX_OUTPUTS_LIMIT, where)
    acts = family.activations
    if isinstance(acts, str) or not isinstance(acts, (tuple, list)) or not acts:
        raise InputError(f"{where}: activations is {acts!r}; expected a non-empty list from {', '.join(ACTIVATIONS)}")
    unknown = [a for a in acts if a not in ACTIVATIONS]
    if unknown:
        raise InputError(f"{where}: unknown activation {unknown[0]!r}; choose from {', '.join(ACTIVATIONS)}")
    if len(set(acts)) != len(acts):
        raise InputError(f"{where}: activations {list(acts)} list one twice; give each once")
    return family


def family_from_dict(data: Mapping[str, Any], where: str = "family") -> Family:
    """Build and check a Family from JSON-like data; unknown keys are refused (a typo must not pass silently)."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected an object with fields {', '.join(Family.__dataclass_fields__)}")
    known = set(Family.__dataclass_fields__)
    extra = sorted(set(data) - known)
    if extra:
        raise InputError(f"{where}: unknown field {extra[0]!r}; known fields: {', '.join(sorted(known))}")
    values = dict(data)
    if "activations" in values and isinstance(values["activations"], list):
        values["activations"] = tuple(values["activations"])
    return check_family(Family(**values), where)


DEFAULT_FAMILY = Family()
