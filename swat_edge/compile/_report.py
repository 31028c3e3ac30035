"""PassReport: what one compile pass changed, in model_stats numbers, plus the error run_passes measured."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..model import SparseMLP, model_stats

__all__ = ["PassReport", "make_report"]


@dataclass(frozen=True)
class PassReport:
    """One pass's effect on a model. `*_before`/`*_after` come from model_stats of its input and output.

    kept_inputs: indices of the pass's input features that its output model takes (all of them unless the
    pass drops inputs); dropped_inputs: the names of those it dropped.
    max_abs_error: largest |output difference| run_passes measured for this pass; None when the pass was
    called directly and nobody measured it.
    """

    name: str
    summary: str
    changed: bool
    widths_before: tuple[int, ...]
    widths_after: tuple[int, ...]
    active_neurons_before: int
    active_neurons_after: int
    nonzero_params_before: int
    nonzero_params_after: int
    dense_macs_before: int
    dense_macs_after: int
    kept_inputs: tuple[int, ...]
    dropped_inputs: tuple[str, ...] = ()
    max_abs_error: float | None = None


def make_report(
    name: str,
    before: SparseMLP,
    after: SparseMLP,
    summary: str,
    *,
    changed: bool,
    kept_inputs: Sequence[int] | None = None,
    dropped_inputs: Sequence[str] = (),
) -> PassReport:
    stats_before, stats_after = model_stats(before), model_stats(after)
    return PassReport(
        name=name,
        summary=summary,
        changed=changed,
        widths_before=stats_before.widths,
        widths_after=stats_after.widths,
        active_neurons_before=stats_before.active_neurons,
        active_neurons_after=stats_after.active_neurons,
        nonzero_params_before=stats_before.nonzero_params,
        nonzero_params_after=stats_after.nonzero_params,
        dense_macs_before=stats_before.dense_macs,
        dense_macs_after=stats_after.dense_macs,
        kept_inputs=tuple(range(before.n_inputs)) if kept_inputs is None else tuple(int(i) for i in kept_inputs),
        dropped_inputs=tuple(dropped_inputs),
    )
