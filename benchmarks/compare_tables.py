"""The budgeted comparison over benchmark rows (benchmarks/compare_task.py): choices, aggregates, tables, plots.

Budgets (per task and target): the dense sweep's predicted-latency quartiles on that target (q1, median, q3) and
unbounded. Within a budget each method's network is the one with the best VALIDATION MSE among its points whose
predicted latency is at most the budget (ties: the faster); its TEST MSE is what is compared. swat-edge's points are
all fine-tuned candidates of its run for that target; the random search's are the networks it finished within that
target's search time. "all baselines" pools the dense sweep, the pruned networks, the random search and the Adam
network, and chooses among them on validation like any method.

Ratio = swat-edge test MSE / baseline test MSE (< 1: swat-edge better); within 5% is a tie. Where only one side has
a network within the budget, that side wins (the other has nothing to deploy); such tasks count in wins/ties/losses,
not in the ratio statistics. Front score (the area under the MSE-vs-latency front): the mean of log10 test MSE of
the validation choice over 32 log-spaced budgets from the fastest to the slowest dense-sweep network on that
target; a budget a method cannot meet counts the constant predictor's MSE (the training mean). Lower is better.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

TIE = 0.05
LEVELS = ("q1", "median", "q3", "unbounded")
LEVEL_QUANTILES = {"q1": 0.25, "median": 0.5, "q3": 0.75}
BASELINES = ("dense_sweep", "pruned", "random", "all_baselines")
POOLED = ("dense_sweep", "pruned", "random", "dense_adam")
SHORT_LABELS = {"swat": "swat-edge", "dense_sweep": "(a) dense sweep", "dense_adam": "(a') dense, Adam",
                "pruned": "(b) dense pruned", "random": "(d) random search", "all_baselines": "all baselines pooled"}


def labels(protocol: dict[str, Any]) -> dict[str, str]:
    """The tables' method names, with the protocol's sizes (the quick protocol sweeps fewer networks)."""
    sweep = len(protocol["sweep_depths"]) * len(protocol["sweep_widths"]) * len(protocol["sweep_activations"])
    adam = "-".join(str(w) for w in protocol["adam_widths"])
    return {**SHORT_LABELS, "dense_sweep": f"(a) dense sweep, {sweep} nets, search's fitter + restarts",
            "dense_adam": f"(a') dense {adam} tanh, Adam {protocol['adam_steps']:,} steps, 1 start",
            "pruned": "(b) dense pruned + refit", "random": "(d) random search, same fitter and time",
            "dense_8x4": "dense 8-8-8-8 tanh, search's fitter + restarts"}
FRONT_GRID = 32
FRONT_TASKS = ("himmelblau", "griewank", "egg-holder", "rastrigin", "diabetes", "friedman1")


# ---------------------------------------------------------------------------------------------------------
# Choices (pure: validation MSE and predicted latency only)

def points_for(row: dict[str, Any], method: str, target: str) -> list[dict[str, Any]]:
    """A method's points on a target ("swat": its run for that target; "random": what finished within that
    target's search time, at least one network; "all_baselines": the pooled baselines)."""
    if method == "swat":
        return row["methods"][f"swat@{target}"]
    if method == "random":
        drawn = row["methods"]["random"]
        within = [p for p in drawn if p["finished_s"] <= row["random_budget_s"][target]]
        return within or drawn[:1]
    if method == "all_baselines":
        return [p for m in POOLED for p in points_for(row, m, target)]
    return row["methods"][method]


def choose_within(points: Sequence[dict[str, Any]], target: str, budget_us: float) -> dict[str, Any] | None:
    """The point with the best validation MSE among those predicted within the budget on the target."""
    within = [p for p in points if p["latency_us"][target] <= budget_us]
    if not within:
        return None
    return min(within, key=lambda p: (p["val_mse"], p["latency_us"][target]))


def budget_levels(row: dict[str, Any], target: str) -> dict[str, float]:
    """Budgets in us: the dense sweep's predicted-latency quartiles on the target, and unbounded."""
    latencies = [p["latency_us"][target] for p in row["methods"]["dense_sweep"]]
    levels = {name: float(np.quantile(latencies, q)) for name, q in LEVEL_QUANTILES.items()}
    return {**levels, "unbounded": float("inf")}


def outcome(ratio: float) -> str:
    """'win', 'tie' or 'loss' for swat-edge's test MSE / a baseline's."""
    if ratio < 1.0 - TIE:
        return "win"
    if ratio > 1.0 + TIE:
        return "loss"
    return "tie"


def geometric_mean(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if len(values) else float("nan")


def compare(swat: dict[str, Any] | None, base: dict[str, Any] | None) -> tuple[str, float | None] | None:
    """(outcome, ratio) of two choices; a side with nothing within the budget loses (ratio None)."""
    if swat is None and base is None:
        return None
    if swat is None:
        return "loss", None
    if base is None:
        return "win", None
    ratio = max(swat["test_mse"], 1e-30) / max(base["test_mse"], 1e-30)
    return outcome(ratio), ratio


def summarise(results: Sequence[tuple[str, float | None]]) -> dict[str, Any]:
    ratios = [r for _, r in results if r is not None]
    kinds = [k for k, _ in results]
    return {"n": len(results), "wins": kinds.count("win"), "ties": kinds.count("tie"), "losses": kinds.count("loss"),
            "one_sided": len(results) - len(ratios),
            "median_ratio": float(np.median(ratios)) if ratios else None,
            "geomean_ratio": geometric_mean(ratios) if ratios else None}


def budgeted(rows: Sequence[dict[str, Any]], target: str) -> dict[str, Any]:
    """Per budget level and baseline: wins, ties, losses, ratio statistics; and the budgets' median in us."""
    out: dict[str, Any] = {}
    for level in LEVELS:
        per_base: dict[str, list[tuple[str, float | None]]] = {b: [] for b in BASELINES}
        budgets = []
        for row in rows:
            budget = budget_levels(row, target)[level]
            budgets.append(budget)
            swat = choose_within(points_for(row, "swat", target), target, budget)
            for base in BASELINES:
                result = compare(swat, choose_within(points_for(row, base, target), target, budget))
                if result is not None:
                    per_base[base].append(result)
        out[level] = {"budget_us_median": float(np.median(budgets)) if rows and level != "unbounded" else None,
                      "vs": {b: summarise(r) for b, r in per_base.items() if r}}
    return out


def front_score(row: dict[str, Any], method: str, target: str, grid: int = FRONT_GRID) -> float:
    """Mean log10 test MSE of the method's validation choice over log-spaced budgets spanning the dense sweep's
    latencies on the target (the constant predictor's MSE where it has nothing within a budget)."""
    latencies = [p["latency_us"][target] for p in row["methods"]["dense_sweep"]]
    budgets = np.geomspace(min(latencies), max(latencies), grid)
    points = points_for(row, method, target)
    fallback = row["constant_test_mse"]
    scores = []
    for budget in budgets:
        chosen = choose_within(points, target, float(budget))
        scores.append(np.log10(max(chosen["test_mse"] if chosen is not None else fallback, 1e-30)))
    return float(np.mean(scores))


def fronts(rows: Sequence[dict[str, Any]], target: str) -> dict[str, Any]:
    """Per method: the median front score over tasks; per baseline: how often swat-edge's is lower (by more than
    log10(1.05), a 5% MSE tie) and the median difference in decades (negative: swat-edge better)."""
    methods = ("swat", *BASELINES)
    scores = {m: [front_score(r, m, target) for r in rows] for m in methods}
    out: dict[str, Any] = {"median": {m: float(np.median(v)) for m, v in scores.items()}, "vs": {}}
    tie = np.log10(1.0 + TIE)
    for base in BASELINES:
        diff = np.array(scores["swat"]) - np.array(scores[base])
        out["vs"][base] = {"n": len(diff), "swat_lower": int(np.sum(diff < -tie)), "ties": int(np.sum(np.abs(diff) <= tie)),
                           "swat_higher": int(np.sum(diff > tie)), "median_difference": float(np.median(diff))}
    out["per_task"] = [{"task": r["task"], "seed": r["seed"], **{m: scores[m][i] for m in methods}}
                       for i, r in enumerate(rows)]
    return out


# ---------------------------------------------------------------------------------------------------------
# Headline, ablation, references, replication

def dense_8x4(row: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep's 2-8-8-8-8-1 tanh (the family's largest network, trained like the search's candidates)."""
    return next((p for p in row["methods"]["dense_sweep"] if p["label"] == "8-8-8-8 tanh"), None)


def chosen_point(row: dict[str, Any], target: str) -> dict[str, Any]:
    """The network the search itself returned for the target (budget-first choice, no budget)."""
    return next(p for p in row["methods"][f"swat@{target}"] if p["chosen"])


def headline(rows: Sequence[dict[str, Any]], target: str) -> dict[str, Any]:
    """swat-edge's own choice (unbounded) against the family's largest network, by the search's fitter and by
    Adam: test MSE ratios and the largest network's non-zero parameters / the chosen one's."""
    out = {}
    for name, get in (("dense_8x4", dense_8x4), ("dense_adam", lambda r: r["methods"]["dense_adam"][0])):
        pairs = [(chosen_point(r, target), get(r)) for r in rows if get(r) is not None]
        results = [compare(a, b) for a, b in pairs]
        out[name] = {**summarise([r for r in results if r is not None]),
                     "median_size_ratio": float(np.median([b["nonzero"] / a["nonzero"] for a, b in pairs]))
                     if pairs else None}
    chosen = [chosen_point(r, target) for r in rows]
    out["chosen_median_test_mse"] = float(np.median([p["test_mse"] for p in chosen])) if chosen else None
    out["chosen_median_nonzero"] = float(np.median([p["nonzero"] for p in chosen])) if chosen else None
    out["chosen_median_latency_us"] = float(np.median([p["latency_us"][target] for p in chosen])) if chosen else None
    return out


def ablation(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians of test-MSE ratios: fine-tuned / latent-only, and the untrained decoder's / the trained one's."""
    def ratios(a: str, b: str, x: str, y: str) -> list[float]:
        return [r["ablation"][a][x] / max(r["ablation"][b][y], 1e-30) for r in rows
                if r["ablation"][a][x] is not None and r["ablation"][b][y] is not None]

    pairs = {"chosen_over_latent_only": ratios("trained_decoder", "trained_decoder", "chosen_test_mse",
                                               "latent_only_test_mse"),
             "untrained_over_trained_chosen": ratios("untrained_decoder", "trained_decoder", "chosen_test_mse",
                                                     "chosen_test_mse"),
             "untrained_over_trained_best_searched": ratios("untrained_decoder", "trained_decoder",
                                                            "best_searched_test_mse", "best_searched_test_mse"),
             "untrained_over_trained_latent_only": ratios("untrained_decoder", "trained_decoder",
                                                          "latent_only_test_mse", "latent_only_test_mse")}
    return {name: summarise([(outcome(v), v) for v in values]) for name, values in pairs.items()}


def r2(row: dict[str, Any], mse: float) -> float:
    return 1.0 - mse / row["test_variance"] if row["test_variance"] > 0 else float("nan")


def wall_times(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    names = sorted({k for r in rows for k in r["wall_s"]})
    return {k: float(np.median([r["wall_s"][k] for r in rows if k in r["wall_s"]])) for k in names}


def aggregate(rows: Sequence[dict[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"tasks": len(rows), "targets": {}}
    for target in targets:
        out["targets"][target] = {"budgeted": budgeted(rows, target), "fronts": fronts(rows, target),
                                  "headline": headline(rows, target)}
    out["ablation"] = ablation(rows)
    out["wall_s_median"] = wall_times(rows)
    out["task_wall_s_total"] = float(sum(r["task_wall_s"] for r in rows))
    out["restarts_median"] = float(np.median([r["care"]["restarts"] for r in rows])) if rows else None
    return out


def replication(rows: Sequence[dict[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    """Per seed, the budgeted results against the dense sweep and the pooled baselines; and per task the spread
    of swat-edge's unbounded test MSE over seeds (max / min)."""
    seeds = sorted({r["seed"] for r in rows})
    per_seed = {s: aggregate([r for r in rows if r["seed"] == s], targets) for s in seeds}
    out: dict[str, Any] = {"seeds": seeds, "per_seed": {}, "task_spread": {}}
    for target in targets:
        table = {}
        for level in LEVELS:
            for base in ("dense_sweep", "all_baselines"):
                values = [per_seed[s]["targets"][target]["budgeted"][level]["vs"].get(base) for s in seeds]
                table[f"{level}/{base}"] = [v for v in values if v is not None]
        out["per_seed"][target] = table
        spread = {}
        for task in sorted({r["task"] for r in rows}):
            mses = [choose_within(points_for(r, "swat", target), target, float("inf"))["test_mse"]
                    for r in rows if r["task"] == task]
            spread[task] = {"min": float(min(mses)), "max": float(max(mses)), "n": len(mses)}
        out["task_spread"][target] = spread
    return out


# ---------------------------------------------------------------------------------------------------------
# Markdown

def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def _budget_table(agg: dict[str, Any], names: dict[str, str]) -> list[str]:
    lines = ["| budget (median over tasks) | against | tasks | wins | ties | losses | one side empty | median ratio | "
             "geo-mean ratio |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for level in LEVELS:
        entry = agg[level]
        budget = "unbounded" if level == "unbounded" else f"{level} ({_num(entry['budget_us_median'], '.1f')} us)"
        for base, v in entry["vs"].items():
            lines.append(f"| {budget} | {names[base]} | {v['n']} | {v['wins']} | {v['ties']} | {v['losses']} | "
                         f"{v['one_sided']} | {_num(v['median_ratio'])} | {_num(v['geomean_ratio'])} |")
    return lines


def _front_table(agg: dict[str, Any], names: dict[str, str]) -> list[str]:
    lines = ["| against | median front score, swat-edge | median front score, baseline | swat-edge lower | ties | "
             "swat-edge higher | median difference (decades) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for base, v in agg["vs"].items():
        lines.append(f"| {names[base]} | {agg['median']['swat']:.2f} | {agg['median'][base]:.2f} | {v['swat_lower']} | "
                     f"{v['ties']} | {v['swat_higher']} | {v['median_difference']:+.2f} |")
    return lines


def _headline_table(h: dict[str, Any], names: dict[str, str]) -> list[str]:
    lines = [f"swat-edge's own choice (budget-first, no budget): median test MSE {_num(h['chosen_median_test_mse'], '.2e')}, "
             f"{_num(h['chosen_median_nonzero'], '.0f')} non-zero parameters, {_num(h['chosen_median_latency_us'], '.1f')} us "
             "predicted (medians).", "",
             "| against | tasks | wins | ties | losses | median ratio | geo-mean ratio | its size / swat-edge's (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("dense_8x4", "dense_adam"):
        v = h[name]
        lines.append(f"| {names[name]} | {v['n']} | {v['wins']} | {v['ties']} | {v['losses']} | "
                     f"{_num(v['median_ratio'])} | {_num(v['geomean_ratio'])} | "
                     f"{'-' if v['median_size_ratio'] is None else format(v['median_size_ratio'], '.1f') + 'x'} |")
    return lines


def _ablation_table(ab: dict[str, Any], target: str) -> list[str]:
    names = {"chosen_over_latent_only": "fine-tuned choice / latent-only network (trained decoder)",
             "untrained_over_trained_chosen": "untrained decoder / trained decoder: the search's choice",
             "untrained_over_trained_best_searched": "untrained / trained decoder: best searched network (no references)",
             "untrained_over_trained_latent_only": "untrained / trained decoder: latent-only network"}
    lines = [f"Ablation on {target} (ratios of test MSE; < 1: the first is better; not baselines: the latent-only "
             "network is the fine-tuner's starting point).", "",
             "| ratio | tasks | first better | ties | second better | median | geo-mean |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, label in names.items():
        v = ab[key]
        lines.append(f"| {label} | {v['n']} | {v['wins']} | {v['ties']} | {v['losses']} | {_num(v['median_ratio'])} | "
                     f"{_num(v['geomean_ratio'])} |")
    return lines


def _per_task_table(rows: Sequence[dict[str, Any]], targets: Sequence[str]) -> list[str]:
    lines = ["| task | seed | target | swat-edge choice: test MSE | nz | us | best on validation, unbounded: swat-edge | "
             "dense sweep | pruned | random | Adam 8-8-8-8 | search s | sweep s | restarts |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for t in targets:
            c = chosen_point(r, t)
            best = {m: choose_within(points_for(r, m, t), t, float("inf")) for m in ("swat", "dense_sweep", "pruned",
                                                                                     "random", "dense_adam")}
            cells = " | ".join(f"{best[m]['test_mse']:.2e}" if best[m] else "-" for m in best)
            lines.append(f"| {r['task']} | {r['seed']} | {t} | {c['test_mse']:.2e} | {c['nonzero']} | "
                         f"{c['latency_us'][t]:.1f} | {cells} | {r['search'][t]['wall_s']:.1f} | "
                         f"{r['wall_s']['dense_sweep']:.1f} | {r['care']['restarts']} |")
    return lines


def _references_table(rows: Sequence[dict[str, Any]], target: str) -> list[str]:
    lines = ["Reference rows (not deployable in this toolchain: what the data allow), test MSE (R^2), against "
             f"swat-edge's own choice on {target} and the best dense-sweep network on validation:", "",
             "| data set | rows train/val/test | swat-edge | dense sweep (best) | linear regression | gradient boosting |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        best_dense = choose_within(points_for(r, "dense_sweep", target), target, float("inf"))
        mses = (chosen_point(r, target)["test_mse"], best_dense["test_mse"],
                r["references"]["linear_regression"]["test_mse"], r["references"]["hist_gradient_boosting"]["test_mse"])
        sizes = f"{r['rows']['train']}/{r['rows']['validation']}/{r['rows']['test']}"
        lines.append(f"| {r['task']} (seed {r['seed']}) | {sizes} | " +
                     " | ".join(f"{mse:.2e} ({r2(r, mse):.3f})" for mse in mses) + " |")
    return lines


def _replication_section(rep: dict[str, Any], names: dict[str, str]) -> list[str]:
    lines = ["", f"## Replication over seeds {', '.join(map(str, rep['seeds']))}", "",
             "Per seed, wins/ties/losses and the median ratio; the spread is min-max over seeds.", "",
             "| target | budget / against | per seed (wins/ties/losses, median ratio) | wins min-max | median ratio min-max |",
             "|---|---|---|---|---|"]
    for target, table in rep["per_seed"].items():
        for key, values in table.items():
            if not values:
                continue
            cells = "; ".join(f"{v['wins']}/{v['ties']}/{v['losses']}, {_num(v['median_ratio'])}" for v in values)
            wins = [v["wins"] for v in values]
            med = [v["median_ratio"] for v in values if v["median_ratio"] is not None]
            level, base = key.split("/")
            lines.append(f"| {target} | {level} / {names[base]} | {cells} | {min(wins)}-{max(wins)} | "
                         f"{_num(min(med) if med else None)}-{_num(max(med) if med else None)} |")
    lines += ["", "Per task, swat-edge's best-on-validation network (unbounded): test MSE over seeds.", "",
              "| task | target | min | max | max / min |", "|---|---|---:|---:|---:|"]
    for target, spread in rep["task_spread"].items():
        for task, s in spread.items():
            lines.append(f"| {task} | {target} | {s['min']:.2e} | {s['max']:.2e} | {s['max'] / max(s['min'], 1e-30):.1f} |")
    return lines


def _fitters(rows: Sequence[dict[str, Any]]) -> str:
    """Which fitter trained the rows: Levenberg-Marquardt (full batch up to the search's row sample) or Adam."""
    names = {"lm": "Levenberg-Marquardt, full batch", "adam": "Adam, mini-batches (networks too large for LM, or forced)"}
    counts = {f: sum(r["care"]["fitter"] == f for r in rows) for f in names}
    used = [f"{names[f]}{'' if n == len(rows) else f' on {n} rows'}" for f, n in counts.items() if n]
    return "; ".join(used) or "-"


def markdown(report: dict[str, Any]) -> str:
    agg, rows, targets = report["aggregate"], report["rows"], report["protocol"]["targets"]
    names = labels(report["protocol"])
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"# swat-edge, budgeted comparison: {report['title']}, {agg['tasks']} task rows, seed(s) "
             f"{', '.join(map(str, seeds))}", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {report['machine']}; {report['jobs']} process(es), 1 torch thread each; this invocation "
             f"{report['wall_s'] / 60:.1f} min ({report['cached_rows']} of {agg['tasks']} rows from the cache); all rows "
             f"took {agg['task_wall_s_total'] / 60:.1f} process-minutes.  ",
             f"Embedding: {report['embedding']['source']} (sha256 {report['embedding']['weights_sha256'][:12]}). "
             "Test MSE on the target scaled to [-1, 1] by the training rows.", "",
             f"Training care: every baseline network is fitted by the search's fitter ({_fitters(rows)}, early "
             "stopping on the search's validation rows, the best validation iterate kept) with the search's "
             "settings, restarted as often as the search fine-tuned candidates "
             f"(median {_num(agg['restarts_median'], '.0f')} restarts). Median wall time per task: " +
             ", ".join(f"{k} {v:.1f} s" for k, v in agg["wall_s_median"].items()) + ".", ""]
    notes = list(dict.fromkeys(f"{r['task']}: {n}" for r in rows for n in r["notes"]))
    if notes:
        lines += ["Data notes:", "", *[f"- {n}" for n in notes], ""]
    for target in targets:
        t = agg["targets"][target]
        lines += [f"## {target}: best test MSE within a predicted-latency budget", "",
                  "Budgets per task: the dense sweep's latency quartiles on this target. Ratio = swat-edge / baseline "
                  "(< 1: swat-edge better; within 5%: tie).", "", *_budget_table(t["budgeted"], names), "",
                  f"Front score on {target} (mean log10 test MSE of the validation choice over 32 budgets spanning the "
                  "dense sweep's latencies; lower is better):", "", *_front_table(t["fronts"], names), "",
                  f"Unbounded, swat-edge's own choice on {target} against the family's largest network:", "",
                  *_headline_table(t["headline"], names), ""]
    lines += _ablation_table(agg["ablation"], rows[0]["ablation"]["target"] if rows else "-")
    if any(r["kind"] == "real" for r in rows):
        lines += ["", *_references_table([r for r in rows if r["kind"] == "real"], targets[0])]
    if "replication" in report:
        lines += _replication_section(report["replication"], names)
    lines += ["", "## Per task", "", *_per_task_table(rows, targets)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Plots

COLORS = {"swat": "#d62728", "dense_sweep": "#1f77b4", "dense_adam": "#17becf", "pruned": "#2ca02c",
          "random": "#7f7f7f", "all_baselines": "#9467bd"}


def _save(fig: Any, path: Any) -> None:
    import matplotlib.pyplot as plt

    from swat_edge.files import atomic_path

    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def fronts_plot(rows: Sequence[dict[str, Any]], targets: Sequence[str], path: Any, title: str) -> None:
    """Per task (up to 4) and target: every method's points (test MSE vs predicted latency) and, as a step line,
    the test MSE of its validation choice as the budget grows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = [r for name in FRONT_TASKS for r in rows if r["task"] == name and r["seed"] == rows[0]["seed"]]
    shown = (named + [r for r in rows if r not in named])[:4]
    fig, axes = plt.subplots(len(targets), len(shown), figsize=(4.2 * len(shown), 3.6 * len(targets)), dpi=90,
                             squeeze=False)
    for i, target in enumerate(targets):
        for j, row in enumerate(shown):
            ax = axes[i][j]
            latencies = [p["latency_us"][target] for m in ("swat", *POOLED) for p in points_for(row, m, target)]
            budgets = np.geomspace(min(latencies), max(latencies), 64)
            for method in ("swat", *POOLED):
                pts = points_for(row, method, target)
                ax.scatter([p["latency_us"][target] for p in pts], [max(p["test_mse"], 1e-12) for p in pts], s=10,
                           alpha=0.35, color=COLORS[method], linewidths=0)
                chosen = [choose_within(pts, target, float(b)) for b in budgets]
                ax.step(budgets, [max(c["test_mse"], 1e-12) if c else np.nan for c in chosen], where="post",
                        color=COLORS[method], lw=1.6, label=SHORT_LABELS[method])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{row['task']}, {target}", fontsize=9)
            ax.set_xlabel("predicted latency (us)", fontsize=8)
            ax.set_ylabel("test MSE", fontsize=8)
            ax.grid(True, which="both", alpha=0.2)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def winrate_plot(agg: dict[str, Any], targets: Sequence[str], path: Any, title: str) -> None:
    """Per target: the share of tasks swat-edge wins (solid) and wins or ties (dashed) at each budget level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4.2), dpi=90, squeeze=False)
    for ax, target in zip(axes[0], targets):
        levels = agg["targets"][target]["budgeted"]
        for base in BASELINES:
            entries = [levels[level]["vs"].get(base) for level in LEVELS]
            wins = [e["wins"] / e["n"] if e and e["n"] else np.nan for e in entries]
            ties = [(e["wins"] + e["ties"]) / e["n"] if e and e["n"] else np.nan for e in entries]
            ax.plot(LEVELS, wins, marker="o", color=COLORS[base], label=SHORT_LABELS[base])
            ax.plot(LEVELS, ties, ls="--", color=COLORS[base], alpha=0.6)
        ax.axhline(2 / 3, color="black", lw=0.7, ls=":")
        ax.set_ylim(0, 1)
        ax.set_title(f"{target}: share of tasks swat-edge wins (solid) / wins or ties (dashed)", fontsize=9)
        ax.set_xlabel("budget: the dense sweep's latency quartile on the target")
        ax.grid(True, alpha=0.25)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
