"""The search run's card (card.json: every figure, machine-readable) and report.html (the same, with plots).

The plots are small hand-written SVG (line charts, a scatter, bars, the network drawn), embedded in one HTML
file with no scripts and no external resources: no plotting dependency, byte-stable output, opens anywhere.
"""
from __future__ import annotations

import datetime as _dt
import html
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .. import __version__
from ..model import SparseMLP, model_stats

if TYPE_CHECKING:
    from ..data import Dataset
    from ..search.objective import Budgets
    from ..search.run import SearchResult, SearchSettings
    from ..device.targets import TargetProfile

__all__ = ["CARD_FORMAT", "CARD_SCHEMA_VERSION", "METRIC_NOTE", "build_card", "render_report", "front_indices",
           "front_file", "front_svg", "line_chart_svg",
           "scatter_svg", "bars_svg", "architecture_svg"]

CARD_FORMAT = "swat-edge.search-card"
CARD_SCHEMA_VERSION = 2  # 2: selection.front, candidates' origin and on_front, budget-first rule
METRIC_NOTE = (
    "MSE on the target scaled to [-1, 1] with the training rows' min and max (the SWAT-NN/CORNN protocol); "
    "R^2 per output, averaged"
)
# Activation colours (colour-blind-safe palette), used in the architecture drawing and its legend.
_ACT_COLORS = {"identity": "#999999", "relu": "#0072B2", "leaky_relu": "#56B4E9", "tanh": "#D55E00",
               "sigmoid": "#009E73"}
_SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999", "#000000")


def _num(v: Any) -> Any:
    """JSON-safe number: NaN/inf become None."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _figures_dict(fig: Any, targets: Any = ()) -> dict[str, Any]:
    out = {"mse": _num(fig.mse), "r2": _num(fig.r2), "rows": int(fig.rows)}
    if len(fig.mse_per_target) > 1:
        out["per_target"] = {name: {"mse": _num(m), "r2": _num(r)}
                             for name, m, r in zip(targets, fig.mse_per_target, fig.r2_per_target)}
    return out


def _candidate_dict(c: Any) -> dict[str, Any]:
    return {
        "depth": c.depth, "start": c.start, "step": c.step, "val_mse": _num(c.val_mse),
        "finetuned_val_mse": _num(c.finetuned_val_mse), "latency_us": _num(c.latency_us),
        "size_bytes": _num(c.size_bytes), "nonzero_params": c.nonzero_params, "active_neurons": c.active_neurons,
        "budget_violation": _num(c.violation), "projected": c.projected, "chosen": c.chosen,
        "origin": c.origin, "on_front": c.on_front, "polished": c.polished,
    }


def front_indices(candidates: Sequence[Any]) -> list[int]:
    """Indices of the candidates on the Pareto front, cheapest predicted latency first: front point K is the
    K-th of them (what `swat-edge export --candidate K` exports)."""
    on_front = [i for i, c in enumerate(candidates) if c.on_front]
    return sorted(on_front, key=lambda i: (candidates[i].latency_us, candidates[i].finetuned_val_mse, i))


def front_file(k: int) -> str:
    """The model file of front point k inside a run folder."""
    return f"candidates/front-{k}.safetensors"


def _front(result: "SearchResult") -> list[dict[str, Any]]:
    return [
        {"k": k, "candidate": i, "origin": c.origin, "depth": c.depth, "val_mse": _num(c.finetuned_val_mse),
         "latency_us": _num(c.latency_us), "size_bytes": _num(c.size_bytes), "nonzero_params": c.nonzero_params,
         "chosen": c.chosen, "polished": c.polished, "file": front_file(k)}
        for k, i in enumerate(front_indices(result.candidates)) for c in (result.candidates[i],)
    ]


_RULES = {
    "budget-first": "every fine-tuned candidate meets the budgets; among those whose validation MSE is within "
                    "{tolerance:.0%} of the best, the cheapest on the target (predicted latency, then validation MSE)",
    "weighted": "every fine-tuned candidate meets the budgets; the lowest validation score wins (log MSE + the "
                "objective's size and latency terms, --latency-weight)",
}


def _model_dict(model: SparseMLP) -> dict[str, Any]:
    s = model_stats(model)
    return {
        "widths": list(s.widths), "depth": len(model.hidden), "active_neurons": s.active_neurons,
        "active_widths": [int(layer.mask.sum()) for layer in model.hidden],
        "nonzero_weights": s.nonzero_weights, "nonzero_params": s.nonzero_params, "sparse_macs": s.sparse_macs,
        "dense_macs": s.dense_macs, "bytes_fp32": s.bytes_fp32, "bytes_int8": s.bytes_int8,
        "activations": dict(s.activation_counts),
    }


def build_card(
    result: "SearchResult",
    *,
    dataset: "Dataset",
    test: "Dataset | None",
    target: "TargetProfile",
    embedding: dict[str, Any],
    settings: "SearchSettings",
    budgets: "Budgets",
    compiled_widths: Sequence[int],
    onnx_bytes: int,
    int8: dict[str, Any],
    measured: dict[str, Any] | None,
    by_target: dict[str, dict[str, Any]],
    files: dict[str, str],
    timings_s: dict[str, float],
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """card.json's content: data fingerprint, embedding, target, settings and seed, accuracy (latent-only and
    fine-tuned), structure, predicted and measured latency, int8, files, timings."""
    assert result.model is not None and result.estimate is not None, "bug: a card needs a found model"
    est = result.estimate
    model_info = _model_dict(result.model)
    model_info["compiled_widths"] = list(compiled_widths)
    model_info["onnx_bytes"] = int(onnx_bytes)
    return {
        "format": CARD_FORMAT,
        "schema_version": CARD_SCHEMA_VERSION,
        "swat_edge_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": list(command) if command is not None else None,
        "data": {
            "file": dataset.path, "sha256": dataset.sha256, "rows": dataset.n_rows,
            "features": list(dataset.feature_names), "targets": list(dataset.target_names),
            "split_rows": dict(result.split_rows), "validation_fraction": settings.validation_fraction,
            "scaling": "inputs and target min-max scaled to [-1, 1] on the training rows; folded into the model",
            "test": None if test is None else {"file": test.path, "sha256": test.sha256, "rows": test.n_rows,
                                               "missing_values": test.missing_note or None},
            "missing_values": {
                "note": dataset.missing_note or None,
                "fill": None if dataset.input_fill is None else dict(zip(dataset.feature_names,
                                                                         map(float, dataset.input_fill))),
            },
            "outliers_dropped": dataset.outlier_note or None,
            "input_columns": list(dataset.feature_names),
            "input_stage": result.input_stage,
        },
        "embedding": embedding,
        "target": {
            "name": target.name, "description": target.description, "provenance": target.provenance.kind,
            "int8_policy": target.int8_policy, "deployed_dtype": result.dtype,
        },
        "seed": settings.seed,
        "settings": settings.to_dict(),
        "budgets": {"latency_us": budgets.latency_us, "size_bytes": budgets.size_bytes, "met": result.met_budgets,
                    "checked_on": f"predicted {result.dtype} latency at batch 1 and model bytes on {target.name}"},
        "metrics": {
            "metric": METRIC_NOTE,
            **{stage: {split: _figures_dict(f, dataset.target_names) for split, f in splits.items()}
               for stage, splits in result.metrics.items()},
        },
        "classification": None if result.classification is None else {
            "classes": list(result.model.classes),
            "outputs": "logits (one, of the second class, for two classes; else one per class)",
            **{split: f.to_dict(result.model.classes) for split, f in result.classification.items()},
        },
        "model": model_info,
        "selection": {
            "rule": _RULES[settings.choice].format(tolerance=settings.tolerance),
            "pool": "per depth, the best start of the latent search within the budgets (the best depths, and their "
                    "one-activation-per-layer projections), the least-squares linear model and dense tanh references",
            "figures": "validation figures choose; a test file is only evaluated",
            "candidates": [_candidate_dict(c) for c in result.candidates],
            "front": _front(result),
        },
        "predicted": {
            "target": target.name, "dtype": est.dtype, "latency_us": est.latency_us[0], "model_bytes": est.model_bytes,
            # what model_bytes counts (and a --size-budget limits) on this target
            "bytes_are": "flash: code and constants" if target.code_size is not None else "weights and biases",
            "nodes": est.nodes, "provenance": est.provenance, "by_target": by_target,
        },
        "measured": measured,
        "int8": int8,
        "files": files,
        "timings_s": {k: round(float(v), 3) for k, v in timings_s.items()},
        "notes": list(result.notes),
    }


# ---------------------------------------------------------------------------------------------------------
# SVG plots


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    if abs(v) < 1e6 and float(v).is_integer():
        return str(int(v))
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f"{v:.1e}"
    return f"{v:.3g}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Decades within [lo, hi] (log10 values); 2x and 5x marks too when the range spans under two decades."""
    ticks = [float(k) for k in range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)]
    if len(ticks) < 3:
        extra = [k + math.log10(m) for k in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
        ticks = sorted(t for t in extra if lo - 1e-9 <= t <= hi + 1e-9)
    return ticks or [lo]


class _Frame:
    """A plot area mapping data coordinates to SVG pixels (optionally log10 on y)."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_range: tuple[float, float],
                 *, log_y: bool = False, margin: tuple[int, int, int, int] = (30, 20, 40, 70)) -> None:
        self.w, self.h = width, height
        self.top, self.right, self.bottom, self.left = margin
        self.log_y = log_y
        self.x0, self.x1 = x_range if x_range[1] > x_range[0] else (x_range[0] - 1, x_range[0] + 1)
        y0, y1 = (math.log10(y_range[0]), math.log10(y_range[1])) if log_y else y_range
        self.y0, self.y1 = (y0, y1) if y1 > y0 else (y0 - 1, y0 + 1)

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right)

    def py(self, y: float) -> float:
        v = math.log10(max(y, 1e-300)) if self.log_y else y
        return self.h - self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.h - self.top - self.bottom)

    def axes(self, title: str, xlabel: str, ylabel: str) -> list[str]:
        left, right, bottom, top = self.left, self.w - self.right, self.h - self.bottom, self.top
        out = [f'<text x="{(left + right) / 2:.0f}" y="18" text-anchor="middle" font-weight="bold">{_e(title)}</text>']
        for x in _nice_ticks(self.x0, self.x1):
            px = self.px(x)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>')
            out.append(f'<text x="{px:.1f}" y="{bottom + 15}" text-anchor="middle">{_fmt(x)}</text>')
        for v in (_log_ticks(self.y0, self.y1) if self.log_y else _nice_ticks(self.y0, self.y1)):
            y = 10**v if self.log_y else v
            py = self.py(y)
            out.append(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e6e6e6"/>')
            out.append(f'<text x="{left - 4}" y="{py + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
                   'stroke="#888"/>')
        out.append(f'<text x="{(left + right) / 2:.0f}" y="{self.h - 6}" text-anchor="middle">{_e(xlabel)}</text>')
        out.append(f'<text x="12" y="{(top + bottom) / 2:.0f}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {(top + bottom) / 2:.0f})">{_e(ylabel)}</text>')
        return out


def _svg(width: int, height: int, body: list[str]) -> str:
    # Styles are attributes, not CSS, so each SVG also renders on its own (copied out of the report).
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>")


def line_chart_svg(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *, title: str, xlabel: str, ylabel: str, log_y: bool = True, width: int = 620, height: int = 300,
) -> str:
    """Lines (label, xs, ys); non-finite or (with log_y) non-positive points are skipped."""
    def ok(y: float) -> bool:
        return y is not None and math.isfinite(y) and (y > 0 or not log_y)

    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys) if ok(y)]
    if not pts:
        return _svg(width, 40, [f'<text x="4" y="20">{_e(title)}: no data</text>'])
    xs_all, ys_all = [p[0] for p in pts], [p[1] for p in pts]
    legend_w = 190
    frame = _Frame(width, height, (min(xs_all), max(xs_all)), (min(ys_all), max(ys_all)), log_y=log_y,
                   margin=(30, legend_w, 40, 70))
    body = frame.axes(title, xlabel, ylabel)
    for i, (label, xs, ys) in enumerate(series):
        color = _SERIES_COLORS[i % len(_SERIES_COLORS)]
        path = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in zip(xs, ys) if ok(y))
        if path:
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        lx, ly = width - legend_w + 10, frame.top + 10 + 15 * i
        body.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" stroke-width="2"/>')
        body.append(f'<text x="{lx + 20}" y="{ly}">{_e(label)}</text>')
    return _svg(width, height, body)


def scatter_svg(
    groups: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str, xlabel: str, ylabel: str,
    width: int = 420, height: int = 380,
) -> str:
    """Predicted (y) against actual (x) per group, with the identity line."""
    vals = [v for _, a, p in groups for v in (*np.ravel(a), *np.ravel(p)) if math.isfinite(v)]
    if not vals:
        return _svg(width, 40, [f'<text x="4" y="20">{_e(title)}: no data</text>'])
    lo, hi = min(vals), max(vals)
    pad = 0.02 * (hi - lo or 1.0)
    frame = _Frame(width, height, (lo - pad, hi + pad), (lo - pad, hi + pad))
    body = frame.axes(title, xlabel, ylabel)
    body.append(f'<line x1="{frame.px(lo):.1f}" y1="{frame.py(lo):.1f}" x2="{frame.px(hi):.1f}" '
                f'y2="{frame.py(hi):.1f}" stroke="#444" stroke-dasharray="4 3"/>')
    for i, (label, actual, pred) in enumerate(groups):
        color = _SERIES_COLORS[i % len(_SERIES_COLORS)]
        for a, p in zip(np.ravel(actual), np.ravel(pred)):
            if math.isfinite(a) and math.isfinite(p):
                body.append(f'<circle cx="{frame.px(a):.1f}" cy="{frame.py(p):.1f}" r="1.8" fill="{color}" '
                            'fill-opacity="0.5"/>')
        ly = frame.top + 14 + 14 * i
        body.append(f'<circle cx="{frame.left + 10}" cy="{ly - 4}" r="3" fill="{color}"/>')
        body.append(f'<text x="{frame.left + 18}" y="{ly}">{_e(label)}</text>')
    return _svg(width, height, body)


def front_svg(card: dict[str, Any], *, width: int = 620, height: int = 320) -> str:
    """Validation MSE against predicted latency for every candidate: the front joined, the chosen one ringed,
    the latency budget drawn."""
    cands = [c for c in card["selection"]["candidates"]
             if c["latency_us"] is not None and c["finetuned_val_mse"] is not None and c["finetuned_val_mse"] > 0]
    title = f"candidates on {card['target']['name']}"
    if not cands:
        return _svg(width, 40, [f'<text x="4" y="20">{_e(title)}: no data</text>'])
    budget = card["budgets"]["latency_us"]
    xs = [c["latency_us"] for c in cands] + ([budget] if budget else [])
    ys = [c["finetuned_val_mse"] for c in cands]
    pad = 0.05 * (max(xs) - min(xs) or 1.0)
    frame = _Frame(width, height, (min(xs) - pad, max(xs) + pad), (min(ys) / 1.5, max(ys) * 1.5), log_y=True)
    body = frame.axes(title, "predicted latency at batch 1 (us)", "validation MSE (scaled target)")
    front = sorted((c for c in cands if c["on_front"]), key=lambda c: c["latency_us"])
    if len(front) > 1:
        path = " ".join(f"{frame.px(c['latency_us']):.1f},{frame.py(c['finetuned_val_mse']):.1f}" for c in front)
        body.append(f'<polyline points="{path}" fill="none" stroke="{_SERIES_COLORS[0]}" stroke-width="1.5"/>')
    colors = {"search": _SERIES_COLORS[0], "dense": _SERIES_COLORS[1], "linear": _SERIES_COLORS[2],
              "pruned": _SERIES_COLORS[3]}
    for c in cands:
        x, y = frame.px(c["latency_us"]), frame.py(c["finetuned_val_mse"])
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4 if c["on_front"] else 3}" '
                    f'fill="{colors.get(c["origin"], "#888")}" fill-opacity="{1.0 if c["on_front"] else 0.4}"/>')
        if c["chosen"]:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#000" stroke-width="1.5"/>')
    if budget:
        bx = frame.px(budget)
        body.append(f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{frame.top}" y2="{height - frame.bottom}" '
                    'stroke="#c00" stroke-dasharray="5 3"/>')
        body.append(f'<text x="{bx + 3:.1f}" y="{frame.top + 12}" fill="#c00">budget</text>')
    for i, (label, color) in enumerate(colors.items()):  # bottom left: a front falls from top left to bottom right
        ly = height - frame.bottom - 8 - 14 * (len(colors) - 1 - i)
        body.append(f'<circle cx="{frame.left + 10}" cy="{ly - 4}" r="3" fill="{color}"/>')
        body.append(f'<text x="{frame.left + 18}" y="{ly}">{_e(label)}</text>')
    return _svg(width, height, body)


def bars_svg(rows: Sequence[tuple[str, float, str]], *, title: str, unit: str, highlight: str | None = None,
             width: int = 560) -> str:
    """Horizontal bars (label, value, note); the highlighted label is drawn darker."""
    height = 40 + 22 * len(rows) + 10
    if not rows:
        return _svg(width, 40, [f'<text x="4" y="20">{_e(title)}: no data</text>'])
    top = max(v for _, v, _ in rows) or 1.0
    left, bar_w = 130, width - 130 - 170
    body = [f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-weight="bold">{_e(title)}</text>']
    for i, (label, value, note) in enumerate(rows):
        y = 32 + 22 * i
        w = max(bar_w * value / top, 1.0)
        color = "#0072B2" if label == highlight else "#9ecae1"
        body.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{_e(label)}</text>')
        body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="16" fill="{color}"/>')
        body.append(f'<text x="{left + w + 6:.1f}" y="{y + 13}">{_e(_fmt(value))} {_e(unit)} {_e(note)}</text>')
    return _svg(width, height, body)


def architecture_svg(model: SparseMLP, *, width: int = 640, height: int = 300) -> str:
    """The network drawn: inputs, active hidden neurons coloured by activation, outputs; one line per non-zero
    weight between kept neurons (opacity by magnitude)."""
    columns: list[list[tuple[str, str]]] = [[(name, "#ffffff") for name in model.feature_names]]
    keep_idx = []
    for layer in model.hidden:
        idx = [i for i in range(layer.n_out) if layer.mask[i]]
        keep_idx.append(idx)
        columns.append([(layer.activations[i], _ACT_COLORS.get(layer.activations[i], "#cccccc")) for i in idx])
    columns.append([(name, "#ffffff") for name in model.target_names])
    n_cols = len(columns)
    label_w = 7 * max(len(n) for n in (*model.feature_names, *model.target_names)) + 20
    xs = [label_w + (width - 2 * label_w) * c / max(n_cols - 1, 1) for c in range(n_cols)]
    legend_h = 24

    def ys(n: int) -> list[float]:
        span = height - 40 - legend_h
        return [30 + span * (i + 0.5) / max(n, 1) for i in range(n)]

    pos = [[(xs[c], y) for y in ys(len(col))] for c, col in enumerate(columns)]
    body = []
    rows_in = list(range(model.n_inputs))
    for l, layer in enumerate(model.layers):
        rows = rows_in if l == 0 else keep_idx[l - 1]
        cols = keep_idx[l] if l < len(model.hidden) else list(range(layer.n_out))
        w = layer.weight[np.ix_(rows, cols)] if rows and cols else np.zeros((0, 0))
        peak = float(np.abs(w).max()) if w.size else 1.0
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                if w[i, j] != 0.0:
                    (x1, y1), (x2, y2) = pos[l][i], pos[l + 1][j]
                    color = "#444" if w[i, j] > 0 else "#c33"
                    alpha = 0.15 + 0.85 * abs(w[i, j]) / (peak or 1.0)
                    body.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                                f'stroke-opacity="{alpha:.2f}" stroke-width="1.2"/>')
    for c, col in enumerate(columns):
        for (label, fill), (x, y) in zip(col, pos[c]):
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{fill}" stroke="#222"><title>{_e(label)}'
                        "</title></circle>")
            if c == 0:
                body.append(f'<text x="{x - 13:.1f}" y="{y + 4:.1f}" text-anchor="end">{_e(label)}</text>')
            elif c == n_cols - 1:
                body.append(f'<text x="{x + 13:.1f}" y="{y + 4:.1f}">{_e(label)}</text>')
    widths = "-".join(str(len(col)) for col in columns)
    body.insert(0, f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-weight="bold">active network {widths} '
                   '(line colour: sign, opacity: |weight|)</text>')
    used = sorted({a for layer in model.hidden for a, m in zip(layer.activations, layer.mask) if m})
    for i, name in enumerate(used):
        x = 20 + 110 * i
        body.append(f'<circle cx="{x}" cy="{height - 12}" r="6" fill="{_ACT_COLORS.get(name, "#ccc")}" stroke="#222"/>')
        body.append(f'<text x="{x + 10}" y="{height - 8}">{_e(name)}</text>')
    return _svg(width, height, body)


# ---------------------------------------------------------------------------------------------------------
# HTML

_CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1180px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{border-bottom:1px solid #ddd;padding:3px 10px;"
    "text-align:right}th:first-child,td:first-child{text-align:left}h1{font-size:20px}h2{font-size:16px;"
    "margin-top:28px}.plots{display:flex;flex-wrap:wrap;gap:16px}"
    ".note{color:#666;font-size:12px}code{background:#f4f4f4;padding:1px 4px}"
)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _g(v: Any, spec: str = ".4g") -> str:
    return "n/a" if v is None else format(v, spec)


def _report_heading(card: dict[str, Any]) -> list[str]:
    """The page head, the title, where the data came from, and the predicted figures against the budgets."""
    pred, tgt = card["predicted"], card["target"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>swat-edge search: {_e(tgt['name'])}</title>"
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>swat-edge search: {_e(', '.join(card['data']['targets']))} from "
                 f"{_e(', '.join(card['data']['features']))} for {_e(tgt['name'])}</h1>")
    parts.append(f"<p>{_e(card['data']['file'])} (sha256 {_e(card['data']['sha256'][:16])}...), "
                 f"{card['data']['rows']} rows; embedding {_e(card['embedding'].get('source', ''))}; "
                 f"seed {card['seed']}; swat-edge {_e(card['swat_edge_version'])}, {_e(card['created_utc'])}</p>")
    budgets = card["budgets"]
    limits = [f"latency <= {budgets['latency_us']:g} us" if budgets["latency_us"] is not None else None,
              f"size <= {budgets['size_bytes']:g} bytes" if budgets["size_bytes"] is not None else None]
    limits_text = "; ".join(x for x in limits if x) or "none"
    parts.append(f"<p>Predicted on {_e(tgt['name'])} ({_e(pred['provenance'])} profile, {_e(pred['dtype'])}): "
                 f"<b>{pred['latency_us']:.1f} us</b> per call at batch 1, {pred['model_bytes']} bytes "
                 f"({_e(pred.get('bytes_are', 'weights and biases'))}); "
                 f"budgets: {_e(limits_text)}.</p>")
    return parts


def _report_accuracy(card: dict[str, Any]) -> list[str]:
    parts = ["<h2>Accuracy</h2>"]
    rows = []
    for stage in ("latent_only", "fine_tuned"):
        for split, f in card["metrics"].get(stage, {}).items():
            rows.append((stage.replace("_", " "), split, f["rows"], _g(f["mse"]), _g(f["r2"], ".4f")))
    parts.append(_table(["model", "split", "rows", "MSE", "R^2"], rows))
    parts.append(f"<p class='note'>{_e(card['metrics']['metric'])}. Latent only: the hard-pruned network decoded "
                 "from the latent; fine-tuned: its surviving weights trained further with the masks frozen.</p>")
    return parts


def _report_model(card: dict[str, Any], model: SparseMLP) -> list[str]:
    m = card["model"]
    parts = ["<h2>Model</h2>"]
    parts.append(_table(
        ["widths (physical)", "active widths", "compiled widths", "active neurons", "non-zero params",
         "sparse MACs", "dense MACs", "fp32 bytes (uncompiled)", "int8 bytes (uncompiled)", "ONNX bytes"],
        [("-".join(map(str, m["widths"])), "-".join(map(str, m["active_widths"])),
          "-".join(map(str, m["compiled_widths"])), m["active_neurons"], m["nonzero_params"], m["sparse_macs"],
          m["dense_macs"], m["bytes_fp32"], m["bytes_int8"], m["onnx_bytes"])],
    ))
    acts = ", ".join(f"{k} {v}" for k, v in m["activations"].items()) or "none"
    parts.append(f"<p>Active neurons by activation: {_e(acts)}.</p>")
    parts.append(f"<div class='plots'>{architecture_svg(model)}</div>")
    return parts


def _report_search(card: dict[str, Any], result: "SearchResult") -> list[str]:
    """Loss curves of the latent search and the fine-tuning, and every candidate with the one chosen."""
    parts = ["<h2>Search and fine-tuning</h2>"]
    hist = result.history
    steps = [h["step"] for h in hist]
    series = [("train (relaxed, best start)", steps, [h["train_mse"] for h in hist]),
              ("validation (hard, chosen)", steps, [h["best_val_mse"] for h in hist])]
    depths = sorted({d for h in hist for d in h["val_mse_by_depth"]}, key=int)
    for d in depths:
        series.append((f"depth {d} validation (hard)", steps, [h["val_mse_by_depth"].get(d) for h in hist]))
    # (validation curves: the best start's hard network at each evaluation; "chosen" is the leader so far)
    charts = [line_chart_svg(series, title="latent search", xlabel="step", ylabel="MSE (scaled target)")]
    if result.finetune_history:
        fs = [s for s, _ in result.finetune_history]
        charts.append(line_chart_svg([("validation MSE", fs, [v for _, v in result.finetune_history])],
                                     title="fine-tuning (masks frozen)", xlabel="step", ylabel="MSE (scaled target)"))
    parts.append(f"<div class='plots'>{''.join(charts)}</div>")
    parts.append(f"<div class='plots'>{front_svg(card)}</div>")
    parts.append(_table(
        ["origin", "depth", "start", "val MSE before fine-tuning", "val MSE fine-tuned", "latency us", "bytes",
         "non-zero params", "active neurons", "front", "chosen"],
        [(c["origin"], c["depth"], c["start"], _g(c["val_mse"]), _g(c["finetuned_val_mse"]),
          _g(c["latency_us"], ".1f"), _g(c["size_bytes"], ".0f"), c["nonzero_params"], c["active_neurons"],
          "yes" if c["on_front"] else "", "yes" if c["chosen"] else "")
         for c in card["selection"]["candidates"]],
    ))
    parts.append(f"<p class='note'>{_e(card['selection']['rule'])}.</p>")
    return parts


def _report_predictions(card: dict[str, Any], result: "SearchResult") -> list[str]:
    groups = [(split, a, p) for split, (a, p) in result.predictions.items()]
    target_name = card["data"]["targets"][0]
    return ["<h2>Predicted versus actual</h2>",
            f"<div class='plots'>{scatter_svg(groups, title='fine-tuned model', xlabel=f'actual {target_name}', ylabel=f'predicted {target_name}')}</div>"]


def _report_deployment(card: dict[str, Any]) -> list[str]:
    """Predicted latency on every target, the measurement here, the int8 model, notes and the files written."""
    tgt = card["target"]
    parts = ["<h2>Latency per target</h2>"]
    bars = [(name, info["latency_us"], f"({info['dtype']}, {info['provenance']})")
            for name, info in sorted(card["predicted"]["by_target"].items(), key=lambda kv: kv[1]["latency_us"])]
    parts.append(f"<div class='plots'>{bars_svg(bars, title='predicted latency at batch 1', unit='us', highlight=tgt['name'])}</div>")
    measured = card.get("measured")
    if measured:
        parts.append(f"<p>Measured here ({_e(measured['processor'])}, onnxruntime {_e(measured['onnxruntime'])}, "
                     f"{measured['runs']} runs): median {measured['p50_us']:.1f} us, p99 {measured['p99_us']:.1f} us. "
                     f"<span class='note'>{_e(measured['note'])}.</span></p>")
    int8 = card["int8"]
    if int8.get("written"):
        d = int8.get("drift") or {}
        parts.append(f"<p>int8: {_e(int8['file'])} ({_e(int8['reason'])}); drift vs fp32 on {d.get('rows')} validation "
                     f"rows: relative MSE {_g(d.get('relative_mse'), '.3g')}, max abs error "
                     f"{_g(d.get('max_abs_error'), '.3g')}.</p>")
    else:
        parts.append(f"<p>int8: not written ({_e(int8.get('reason', ''))}).</p>")
    if card.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in card["notes"]) + "</ul>")
    files = ", ".join(f"<code>{_e(f)}</code>" for f in card["files"].values())
    parts.append(f"<p class='note'>Files: {files}. Timings (s): "
                 f"{_e(', '.join(f'{k} {v}' for k, v in card['timings_s'].items()))}.</p></body></html>")
    return parts


def render_report(card: dict[str, Any], result: "SearchResult") -> str:
    """report.html: the card's figures in tables, plus loss curves, predicted vs actual, the architecture drawn
    and the predicted latency on every target."""
    assert result.model is not None, "bug: a report needs a found model"
    parts = [
        *_report_heading(card),
        *_report_accuracy(card),
        *_report_model(card, result.model),
        *_report_search(card, result),
        *_report_predictions(card, result),
        *_report_deployment(card),
    ]
    return "".join(parts) + "\n"
