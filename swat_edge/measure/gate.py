"""The CI latency gate: compare a benchmark with a saved baseline or an interleaved A/B run -> Verdict."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, UsageError
from ..files import check_input_file, check_output_path, read_json
from .bench import BENCH_FORMAT, BENCH_SCHEMA_VERSION, BenchResult, PairResult

__all__ = [
    "METRICS",
    "Verdict",
    "parse_percent",
    "load_baseline",
    "check_baseline",
    "compare",
    "compare_pair",
    "to_github_benchmark",
    "GateRequest",
    "check_onnx_model",
    "check_bench_outputs",
    "refuse_gate_for_c",
    "check_gate_flags",
    "judge",
]

METRICS: tuple[str, ...] = ("p50", "p90", "p99", "mean")


@dataclass(frozen=True)
class Verdict:
    """A gate result (a result, not an error): the CLI prints `message` on one line and exits 1 if not passed."""

    passed: bool
    message: str
    worst_change_pct: float  # largest slowdown seen (negative: faster); for pairs, from the median ratio


def parse_percent(text: str | float, *, flag: str = "--max-regression") -> float:
    """'10%', '10' or 10 -> 10.0. UsageError for anything that is not a finite number >= 0."""
    raw = str(text).strip()
    number = raw[:-1].strip() if raw.endswith("%") else raw
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"{flag}: expected a percentage such as 10% or 10, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{flag}: must be a finite percentage >= 0, got {raw!r}")
    return value


def check_baseline(payload: Any, *, source: str = "baseline") -> dict[int, dict[str, float]]:
    """Validate a saved `swat-edge bench --json` payload -> {batch size: {"p50_us": ..., ...}}."""
    if not isinstance(payload, dict):
        raise InputError(f"{source}: baseline must be a JSON object written by `swat-edge bench --json`")
    if payload.get("format") != BENCH_FORMAT:
        raise InputError(
            f"{source}: not a swat-edge benchmark (format {payload.get('format')!r}, expected {BENCH_FORMAT!r}); "
            "write one with `swat-edge bench MODEL.onnx --json FILE`"
        )
    if payload.get("schema_version") != BENCH_SCHEMA_VERSION:
        raise InputError(
            f"{source}: benchmark schema version {payload.get('schema_version')!r} is not supported "
            f"(this swat-edge reads {BENCH_SCHEMA_VERSION}); re-record the baseline"
        )
    if payload.get("kind") != "single":
        raise InputError(
            f"{source}: is a {payload.get('kind')!r} benchmark (e.g. from --against); a baseline is a "
            "single-model run: `swat-edge bench MODEL.onnx --json FILE`"
        )
    results = payload.get("results")
    if not isinstance(results, list) or not results:
        raise InputError(f"{source}: field 'results' must be a non-empty list")
    out: dict[int, dict[str, float]] = {}
    for i, entry in enumerate(results):
        where = f"{source}: results[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: must be an object")
        batch = entry.get("batch_size")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise InputError(f"{where}: field 'batch_size' must be an integer >= 1, got {batch!r}")
        values: dict[str, float] = {}
        for metric in METRICS:
            key = f"{metric}_us"
            v = entry.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise InputError(f"{where}: field {key!r} must be a positive number, got {v!r}")
            values[key] = float(v)
        out[batch] = values
    return out


def load_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a baseline file; MissingFileError if absent, InputError if it is not a baseline."""
    payload = read_json(path, "baseline file")
    check_baseline(payload, source=str(Path(path)))
    return payload


def _differences(current: BenchResult, baseline: dict[str, Any]) -> list[str]:
    # Settings that change latency by themselves: a gate across them compares apples with oranges.
    machine = baseline.get("machine") if isinstance(baseline.get("machine"), dict) else {}
    settings = baseline.get("settings") if isinstance(baseline.get("settings"), dict) else {}
    pairs = (
        ("onnxruntime", machine.get("onnxruntime"), current.machine.onnxruntime),
        ("processor", machine.get("processor"), current.machine.processor),
        ("threads", settings.get("threads"), current.settings.threads),
        ("io_binding", settings.get("io_binding"), current.settings.io_binding),
    )
    return [f"{name} {old} vs {new}" for name, old, new in pairs if old is not None and old != new]


def _fmt_pct(x: float) -> str:
    return f"{x:+.1f}%"


def compare(
    current: BenchResult,
    baseline_json: dict[str, Any],
    *,
    max_regression_pct: float,
    metric: str = "p50",
    source: str = "baseline",
) -> Verdict:
    """Fail when, at any batch size of `current`, `metric` is more than max_regression_pct above the baseline.

    The baseline was measured in another run, possibly on a busier machine: pick a threshold well above the
    run-to-run noise of the runner (compare_pair, which interleaves both models in one run, is tighter).
    """
    if metric not in METRICS:
        raise UsageError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not (math.isfinite(max_regression_pct) and max_regression_pct >= 0):
        raise UsageError(f"max_regression_pct must be a finite number >= 0, got {max_regression_pct!r}")
    table = check_baseline(baseline_json, source=source)
    key = f"{metric}_us"
    items = []
    for stats in current.latencies:
        base = table.get(stats.batch_size)
        if base is None:
            have = ", ".join(str(b) for b in sorted(table))
            raise InputError(
                f"{source}: has no batch size {stats.batch_size} (it has {have}); re-record the baseline with "
                f"--batch {stats.batch_size}, or drop that batch size"
            )
        now, then = float(getattr(stats, key)), base[key]
        change_pct = (now / then - 1.0) * 100.0
        failed = change_pct > max_regression_pct + 1e-9  # at the limit passes, float rounding aside
        sign = ">" if failed else "<="
        text = (
            f"batch {stats.batch_size} {metric} {now:.1f} us vs baseline {then:.1f} us "
            f"({_fmt_pct(change_pct)} {sign} {max_regression_pct:.1f}%)"
        )
        items.append((failed, change_pct, text))
    failures = [text for failed, _, text in items if failed]
    passed = not failures
    message = ("ok: " + "; ".join(t for _, _, t in items)) if passed else ("REGRESSION: " + "; ".join(failures))
    diffs = _differences(current, baseline_json)
    if diffs:
        message += f" [baseline differs: {', '.join(diffs)}]"
    return Verdict(passed=passed, message=message, worst_change_pct=max(c for _, c, _ in items))


def compare_pair(pair: PairResult, max_regression_pct: float) -> Verdict:
    """Gate B (the candidate) against A (the reference) from one interleaved run.

    Fails only when the lower bound of the 95% CI of the ratio B/A exceeds 1 + threshold, i.e. when B is
    slower by more than the threshold with confidence. Gating on the median ratio alone would flip between
    pass and fail from run to run whenever the true slowdown sits near the threshold, and a noisy CI runner
    would then fail builds at random; with the CI, noise widens the interval and can only delay a failure.
    A median above the limit with a CI that reaches below it passes as "inconclusive" (rerun with more
    --runs): a real regression shows up as more blocks narrow the interval.
    """
    if not (math.isfinite(max_regression_pct) and max_regression_pct >= 0):
        raise UsageError(f"max_regression_pct must be a finite number >= 0, got {max_regression_pct!r}")
    limit = 1.0 + max_regression_pct / 100.0
    b_name, a_name = Path(pair.b.source).name, Path(pair.a.source).name
    failures, inconclusive, items = [], [], []
    for p in pair.pairs:
        text = (
            f"batch {p.batch_size} {b_name}/{a_name} = {p.ratio:.3f}x "
            f"(95% CI {p.ratio_ci_low:.3f}x-{p.ratio_ci_high:.3f}x"
        )
        if p.ratio_ci_low > limit:
            failures.append(f"{text}, all above {limit:.3f}x = +{max_regression_pct:.1f}%)")
        elif p.ratio > limit:
            inconclusive.append(f"{text} reaches below {limit:.3f}x; rerun with more --runs)")
        items.append(f"{text}; limit {limit:.3f}x)")
    worst = max((p.ratio - 1.0) * 100.0 for p in pair.pairs)
    if failures:
        return Verdict(False, "REGRESSION: " + "; ".join(failures), worst)
    if inconclusive:
        return Verdict(True, "ok (inconclusive): " + "; ".join(inconclusive), worst)
    return Verdict(True, "ok: " + "; ".join(items), worst)


def _label(source: str) -> str:
    return Path(source).name if source != "<bytes>" else "model"


def _entries(label: str, latencies: Sequence[Any], threads: int, extra: dict[int, str] | None = None) -> list[dict]:
    out = []
    for s in latencies:
        lines = [f"p90 {s.p90_us:.2f} us", f"p99 {s.p99_us:.2f} us", f"runs {s.runs}", f"threads {threads}"]
        if extra and s.batch_size in extra:
            lines.append(extra[s.batch_size])
        out.append(
            {
                "name": f"{label} batch {s.batch_size} p50",
                "unit": "us",
                "value": round(s.p50_us, 3),
                "extra": "\n".join(lines),
            }
        )
    return out


def to_github_benchmark(result: BenchResult | PairResult) -> list[dict[str, Any]]:
    """Entries for benchmark-action/github-action-benchmark with `tool: customSmallerIsBetter` (p50 in us)."""
    threads = result.settings.threads
    if isinstance(result, BenchResult):
        return _entries(_label(result.model.source), result.latencies, threads)
    label_a, label_b = _label(result.a.source), _label(result.b.source)
    if label_a == label_b:  # same file name in two folders: names must stay distinct on the chart
        label_a, label_b = result.a.source, result.b.source
    if label_a == label_b:
        label_a, label_b = f"{label_a} [a]", f"{label_b} [b]"
    ratios = {
        p.batch_size: f"ratio vs {label_a} {p.ratio:.3f}x (95% CI {p.ratio_ci_low:.3f}-{p.ratio_ci_high:.3f})"
        for p in result.pairs
    }
    return _entries(label_a, [p.a for p in result.pairs], threads) + _entries(
        label_b, [p.b for p in result.pairs], threads, ratios
    )


@dataclass(frozen=True)
class GateRequest:
    """`bench`'s gate flags, checked together: no gate, a saved baseline, or a model timed alongside (--against)."""

    max_regression_pct: float | None  # None: time only, no verdict
    baseline: dict[str, Any] | None  # the validated `bench --json` payload of a baseline gate
    baseline_source: str  # how the verdict names the baseline (the path as given)


def check_onnx_model(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a model bench can time with onnxruntime: an existing .onnx file (UsageError otherwise)."""
    p = check_input_file(path, "model file")
    if p.suffix.lower() != ".onnx":
        raise UsageError(
            f"{flag} {p}: bench measures .onnx models, and generated C as MODEL (`swat-edge bench model.c "
            "--against model.onnx`); export one with `swat-edge export MODEL -o model.onnx`"
        )
    return p


def check_bench_outputs(json_out: Path | None, github_json: Path | None, *, force: bool) -> None:
    """Refuse the --json / --github-json files before the timing: existing without force, or both the same file."""
    for out in (json_out, github_json):
        if out is not None:
            check_output_path(out, force=force)
    if json_out is not None and github_json is not None and json_out.resolve() == github_json.resolve():
        raise UsageError(f"--json and --github-json: both name {json_out}; give two files")


def refuse_gate_for_c(*, baseline: object, max_regression: str | None, github_json: object) -> None:
    """UsageError when a gate flag comes with generated C: baselines and chart entries are ONNX results only."""
    if baseline is not None or max_regression is not None or github_json is not None:
        raise UsageError("--baseline/--max-regression/--github-json: the CI gate compares ONNX results only; "
                         "gate the model's .onnx export (swat-edge bench model.onnx --baseline ...)")


def check_gate_flags(
    *,
    baseline: str | os.PathLike | None,
    max_regression: str | None,
    against: bool,
    batch_sizes: Sequence[int],
) -> GateRequest:
    """Check the gate flags before any timing, so a wrong flag fails in milliseconds, and load the baseline.

    UsageError for a flag combination that cannot gate (both a baseline and --against, a baseline without a
    limit, a limit with nothing to compare) or a baseline that lacks one of `batch_sizes`; the baseline file's
    own errors come from load_baseline.
    """
    if baseline is not None and against:
        raise UsageError("--baseline and --against: use one of them (a saved baseline, or a model timed alongside)")
    if baseline is not None and max_regression is None:
        raise UsageError("--baseline needs --max-regression (e.g. --max-regression 10%)")
    if max_regression is not None and baseline is None and not against:
        raise UsageError("--max-regression needs --baseline FILE or --against MODEL.onnx to compare with")
    limit_pct = parse_percent(max_regression) if max_regression is not None else None
    baseline_json = load_baseline(baseline) if baseline is not None else None
    if baseline_json is not None:
        # compare() would find a missing batch size only after the timing; this flag error comes first.
        have = {entry["batch_size"] for entry in baseline_json["results"]}
        missing = [b for b in batch_sizes if b not in have]
        if missing:
            raise UsageError(
                f"--baseline {baseline}: has no batch size {missing[0]} (it has {', '.join(map(str, sorted(have)))}); "
                "drop that --batch or re-record the baseline"
            )
    source = str(baseline) if baseline is not None else "baseline"
    return GateRequest(max_regression_pct=limit_pct, baseline=baseline_json, baseline_source=source)


def judge(result: BenchResult | PairResult, request: GateRequest) -> Verdict | None:
    """The verdict `request` asks for on `result`: None without a limit, else compare_pair or compare."""
    if request.max_regression_pct is None:
        return None
    if isinstance(result, PairResult):
        return compare_pair(result, request.max_regression_pct)
    if request.baseline is None:
        raise UsageError("a single-model benchmark is gated against a saved baseline: pass --baseline FILE")
    return compare(result, request.baseline, max_regression_pct=request.max_regression_pct,
                   source=request.baseline_source)
