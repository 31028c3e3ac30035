"""The CORNN benchmark: `swat-edge search` on the 54 CORNN tasks against the paper's baselines, in one run.

    .venv/bin/python benchmarks/cornn.py                      # all 54 tasks, 2 processes, results/cornn.*
    .venv/bin/python benchmarks/cornn.py --tasks sphere,levy  # a subset (written to cornn_subset.*)
    .venv/bin/python benchmarks/cornn.py --quick              # smoke run: 2 tasks, short schedules (CI)

Protocol (../shared/cornn/README.md): inputs mapped from the manifest's domain to [-1, 1], the target to [-1, 1]
by the training labels' min and max; test MSE on that scale. Every method sees the same 80/20 train/validation
split of the 3,750 training rows (the search's own split) and is scored once on the 1,250 test rows.

Methods, per task, in the same process one after the other:
  swat         swat_edge.search.run_search with default settings for --target raspi4, then written as
               `swat-edge search` writes a run (ONNX export and check, int8 where raspi4's policy picks it, a
               short host latency measurement, report). Its search wall time is the budget of `random`.
  latent_only  (c) the paper's procedure: the network decoded from the latent search, pruned, no fine-tuning.
  dense        (a) the family's largest network (2-8-8-8-8-1, tanh), Adam with cosine decay, 3,000 steps,
               early stopping on the validation split (the best validation iterate is kept).
  pruned       (b) dense pruned to the searched model's non-zero count by per-layer magnitude pruning (every
               layer keeps the same share, at least one weight each, so it stays connected; dead neurons
               folded away before counting), then fine-tuned with the masks frozen (1,000 steps).
  same_widths  (b2) a dense network of exactly the searched active widths and per-neuron activations,
               trained from scratch like (a).
  random       (d) random search over depth 1-4, widths 1-8 and one activation per layer for the same wall-clock
               time as swat's search, 400 steps per shape, shapes capped at the searched model's non-zero count
               (the same deployment budget); the best on validation.
All training uses swat_edge.search.latent.fine_tune (Adam, mini-batches of 256, cosine learning rate, best
validation iterate), so the baselines and the search's fine-tuning share one optimiser.

Host latency: the exported swat model and the exported dense model timed interleaved (`swat-edge bench`'s
measure_pair: 1 thread, batch 1, median per block, ratio with a bootstrap 95% CI). With --jobs 2 the other
process keeps the second core busy, so absolute microseconds carry that load; the ratio is taken under it.
Both models are also exported as C (`swat-edge export model.c`, compiled and checked) and timed in alternating
harness runs (no compiler: those columns stay empty).

Each finished task is cached as JSON in --cache (keyed by task, seed and a fingerprint of the embedding, the
settings and the code), so an interrupted run continues where it stopped and a finished one only rebuilds the tables.
Writes <out>/cornn{,_quick,_subset}.json and .md and the Pareto plot .png.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCHEMA = "swat-edge.benchmark.cornn/1"
METHODS = ("swat", "latent_only", "dense", "pruned", "same_widths", "random")
BASELINES = METHODS[1:]
LABELS = {"swat": "swat-edge search", "latent_only": "(c) latent only", "dense": "(a) dense 8-8-8-8",
          "pruned": "(b) dense pruned", "same_widths": "(b2) same widths", "random": "(d) random search"}
TIE = 0.05  # |MSE ratio - 1| within this counts as a tie
QUICK_TASKS = ("sphere", "himmelblau")


@dataclass(frozen=True)
class Protocol:
    """What decides every number in a row besides the task, the seed and the embedding."""

    target: str = "raspi4"
    search_steps: int | None = None  # None: the search's own defaults (SearchSettings), as `swat-edge search` runs
    finetune_steps: int | None = None
    dense_steps: int = 3000
    pruned_steps: int = 1000
    random_steps_per_shape: int = 400
    lr: float = 0.03
    final_lr: float = 0.0005
    batch_points: int = 256
    check_every: int = 50
    bench_min_time_s: float = 0.5
    c_rounds: int = 4
    c_samples: int = 200

    @classmethod
    def quick(cls) -> "Protocol":
        return cls(search_steps=150, finetune_steps=200, dense_steps=300, pruned_steps=150, random_steps_per_shape=100,
                   bench_min_time_s=0.1, c_rounds=2, c_samples=50)


# ---------------------------------------------------------------------------------------------------------
# Aggregates (pure functions over the rows; unit-tested without data)

def outcome(ratio: float) -> str:
    """'win', 'tie' or 'loss' for swat's test MSE / a baseline's."""
    if ratio < 1.0 - TIE:
        return "win"
    if ratio > 1.0 + TIE:
        return "loss"
    return "tie"


def geometric_mean(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if len(values) else float("nan")


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per baseline: MSE ratio swat/baseline (median, mean, geometric mean), wins/ties/losses; per method:
    median test MSE and non-zero parameters; totals."""
    out: dict[str, Any] = {"tasks": len(rows), "vs": {}, "methods": {}}
    for base in BASELINES:
        ratios = [r["methods"]["swat"]["test_mse"] / r["methods"][base]["test_mse"]
                  for r in rows if base in r["methods"] and r["methods"][base]["test_mse"] > 0]
        if not ratios:
            continue
        results = [outcome(x) for x in ratios]
        out["vs"][base] = {"n": len(ratios), "median_ratio": float(np.median(ratios)), "mean_ratio": float(np.mean(ratios)),
                           "geomean_ratio": geometric_mean(ratios), "wins": results.count("win"),
                           "ties": results.count("tie"), "losses": results.count("loss")}
    for m in METHODS:
        have = [r["methods"][m] for r in rows if m in r["methods"]]
        if have:
            out["methods"][m] = {"n": len(have),
                                 "median_test_mse": float(np.median([h["test_mse"] for h in have])),
                                 "median_nonzero": float(np.median([h["nonzero"] for h in have])),
                                 "median_active_neurons": float(np.median([h["active_neurons"] for h in have])),
                                 "median_predicted_us": float(np.median([h["predicted_us"] for h in have]))}
    out["task_wall_s_total"] = float(sum(r["task_wall_s"] for r in rows))
    stamps = [(r["started_at"], r["finished_at"]) for r in rows if "started_at" in r]
    if stamps:  # the span over which the rows were computed, however many invocations (resumes) it took
        import datetime

        first, last = min(a for a, _ in stamps), max(b for _, b in stamps)
        out.update(first_started_at=first, last_finished_at=last, compute_span_s=(
            datetime.datetime.fromisoformat(last) - datetime.datetime.fromisoformat(first)).total_seconds())
    out["search_wall_s_median"] = float(np.median([r["search_wall_s"] for r in rows])) if rows else float("nan")
    lat = [r["host"]["dense_over_swat"] for r in rows if r.get("host")]
    out["host_dense_over_swat_median"] = float(np.median(lat)) if lat else None
    c_lat = [r["host"]["c_dense_over_swat"] for r in rows if (r.get("host") or {}).get("c_dense_over_swat")]
    out["c_dense_over_swat_median"] = float(np.median(c_lat)) if c_lat else None
    out["c_swat_p50_ns_median"] = float(np.median([r["host"]["c_swat_p50_ns"] for r in rows
                                                   if (r.get("host") or {}).get("c_swat_p50_ns")])) if c_lat else None
    return out


def markdown(report: dict[str, Any]) -> str:
    agg, rows = report["aggregate"], report["rows"]
    lines = [f"# swat-edge on CORNN: {agg['tasks']} tasks, seed {report['seed']}", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}; {report['jobs']} process(es), "
             f"1 torch thread each; this invocation {report['wall_s'] / 60:.1f} min "
             f"({report['cached_rows']} of {agg['tasks']} task rows from the cache)" + (
                 f"; rows computed {agg['first_started_at']} to {agg['last_finished_at']} "
                 f"({agg['compute_span_s'] / 60:.1f} min)" if "compute_span_s" in agg else "") + ".  ",
             f"Embedding: {report['embedding']['source']} ({report['embedding']['steps']} training steps, "
             f"sha256 {report['embedding']['weights_sha256'][:12]}). Target profile: {report['protocol']['target']}. "
             "Test MSE on the [-1, 1]-scaled target; nz = non-zero parameters after dead neurons are folded away.",
             "", "## Against each baseline (ratio = swat test MSE / baseline test MSE; < 1: swat better)", "",
             f"| baseline | tasks | wins | ties (within {TIE:.0%}) | losses | median ratio | geo-mean ratio | mean ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for base, v in agg["vs"].items():
        lines.append(f"| {LABELS[base]} | {v['n']} | {v['wins']} | {v['ties']} | {v['losses']} | "
                     f"{v['median_ratio']:.2f} | {v['geomean_ratio']:.2f} | {v['mean_ratio']:.2f} |")
    lines += ["", "## Per method (medians over tasks)", "",
              "| method | median test MSE | median nz | median active neurons | median predicted raspi4 us |",
              "|---|---|---|---|---|"]
    for m, v in agg["methods"].items():
        lines.append(f"| {LABELS[m]} | {v['median_test_mse']:.2e} | {v['median_nonzero']:.0f} | "
                     f"{v['median_active_neurons']:.0f} | {v['median_predicted_us']:.1f} |")
    lines += ["", f"Search wall time per task: median {agg['search_wall_s_median']:.1f} s; all methods of all tasks "
              f"{agg['task_wall_s_total'] / 60:.1f} process-minutes."]
    if agg["host_dense_over_swat_median"] is not None:
        lines.append(f"Host latency, exported ONNX at batch 1 (interleaved pairs): the dense baseline takes "
                     f"{agg['host_dense_over_swat_median']:.2f}x the searched model's time (median over tasks).")
    if agg.get("c_dense_over_swat_median") is not None:
        lines.append(f"Host latency, generated C at batch 1 (alternating harness runs): the dense baseline takes "
                     f"{agg['c_dense_over_swat_median']:.2f}x the searched model's time (median over tasks; searched "
                     f"model median {agg['c_swat_p50_ns_median']:.0f} ns per call).")
    lines += ["", "## Per task", "",
              "| task | swat MSE | nz | neurons | MACs | raspi4 us | host us fp32 | int8 | C ns | search s | latent-only | "
              "dense | nz | pruned | same widths | random | nz |", "|" + "---|" * 17]
    for r in rows:
        ms = r["methods"]
        s = ms["swat"]
        cell = lambda m, k="test_mse": (f"{ms[m][k]:.2e}" if k == "test_mse" else str(ms[m][k])) if m in ms else "-"  # noqa: E731
        host = r.get("host") or {}
        int8 = f"{host['int8_p50_us']:.1f}" if host.get("int8_p50_us") is not None else "-"
        fp32 = f"{host['swat_p50_us']:.1f}" if host else "-"
        c_ns = f"{host['c_swat_p50_ns']:.0f}" if host.get("c_swat_p50_ns") is not None else "-"
        lines.append(f"| {r['task']} | {s['test_mse']:.2e} | {s['nonzero']} | {s['active_neurons']} | {s['sparse_macs']} | "
                     f"{s['predicted_us']:.1f} | {fp32} | {int8} | {c_ns} | {r['search_wall_s']:.1f} | {cell('latent_only')} | "
                     f"{cell('dense')} | {cell('dense', 'nonzero')} | {cell('pruned')} | {cell('same_widths')} | "
                     f"{cell('random')} | {cell('random', 'nonzero')} |")
    return "\n".join(lines) + "\n"


def pareto_plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Two panels, every task and method (small) and each method's median (large), against non-zero parameters:
    test MSE, and test MSE relative to the same task's dense baseline (which takes each task's difficulty out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100)
    colors = dict(zip(METHODS, ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f")))
    for ax, relative in zip(axes, (False, True)):
        for m in METHODS:
            pts = np.array([(r["methods"][m]["nonzero"], r["methods"][m]["test_mse"] /
                             (r["methods"]["dense"]["test_mse"] if relative else 1.0))
                            for r in rows if m in r["methods"] and "dense" in r["methods"]])
            if not len(pts):
                continue
            pts[:, 1] = np.maximum(pts[:, 1], 1e-8)
            ax.scatter(pts[:, 0], pts[:, 1], s=12, alpha=0.45, color=colors[m], linewidths=0)
            ax.scatter(np.median(pts[:, 0]), np.median(pts[:, 1]), s=150, color=colors[m], edgecolors="black",
                       label=f"{LABELS[m]} (median)", zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("non-zero parameters")
        ax.set_ylabel("test MSE / dense test MSE, same task" if relative else "test MSE (target scaled to [-1, 1])")
        if relative:
            ax.axhline(1.0, color="#1f77b4", lw=0.8, ls="--")
        ax.grid(True, which="both", alpha=0.25)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    from swat_edge.files import atomic_path

    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# One task (runs in a worker process)

def _compiled(model):
    from swat_edge.compile import PIPELINE

    compiled = model
    for p in PIPELINE[:4]:  # normalisation folding, dead neurons, identity fusion, dead neurons
        compiled, _ = p(compiled)
    return compiled


def _figures(model, x_test: np.ndarray, y_test: np.ndarray, target, wall_s: float) -> dict[str, Any]:
    from swat_edge.device.cost import estimate
    from swat_edge.model import forward, model_stats

    stats = model_stats(_compiled(model))
    return {"test_mse": float(np.mean((forward(model, x_test).ravel() - y_test.ravel()) ** 2)),
            "nonzero": stats.nonzero_params, "active_neurons": stats.active_neurons, "sparse_macs": stats.sparse_macs,
            "dense_macs": stats.dense_macs, "widths": list(stats.widths),
            "predicted_us": float(estimate(model, target).latency_us[0]), "wall_s": wall_s}


def _dense(widths: list[int], acts: Sequence[tuple[str, ...]] | str, seed: int):
    from swat_edge.model import Layer, random_model

    if isinstance(acts, str):
        return random_model(widths, activations=acts, seed=seed, normalization=False)
    base = random_model(widths, activations="tanh", seed=seed, normalization=False)
    return base.replace(hidden=tuple(Layer.make(l.weight, l.bias, a) for l, a in zip(base.hidden, acts)))


def _strongest_path(model) -> list[np.ndarray]:
    """Per layer, a boolean mask of one input-to-output path of large weights, traced back from the output:
    the pruned network always keeps it, so it never disconnects (per-layer top-k alone can keep weights that
    meet no kept weight in the next layer, folding the whole network into a constant)."""
    masks = [np.zeros(layer.weight.shape, bool) for layer in model.layers]
    to = 0  # the output neuron
    for i in range(len(model.layers) - 1, -1, -1):
        frm = int(np.argmax(np.abs(model.layers[i].weight[:, to])))
        masks[i][frm, to] = True
        to = frm
    return masks


def _prune_per_layer(model, keep_share: float, keep: list[np.ndarray]):
    from swat_edge.model import Layer

    layers = []
    for layer, forced in zip(model.layers, keep):
        w = layer.weight.copy()
        k = int(round(keep_share * w.size))
        cut = np.sort(np.abs(w).ravel())[::-1][k - 1] if k > 0 else np.inf
        w[(np.abs(w) < cut) & ~forced] = 0.0
        layers.append(Layer.make(w, layer.bias, layer.activations, layer.mask))
    return model.replace(hidden=tuple(layers[:-1]), output=layers[-1])


def pruned_to(model, target_nonzero: int):
    """`model` magnitude-pruned per layer (the same kept share in every layer, plus one path of large weights
    from an input to the output, so it stays connected) to the largest count of non-zero parameters at most
    target_nonzero, dead neurons folded away. The count after folding is not monotone in the share, so a fine
    grid of shares is scanned; a budget below the smallest connected network gives that network (one path)."""
    from swat_edge.model import model_stats

    keep = _strongest_path(model)
    best, best_nz = None, -1
    for share in np.linspace(0.0, 1.0, 401):
        trial = _compiled(_prune_per_layer(model, float(share), keep))
        nz = model_stats(trial).nonzero_params
        if best is None or best_nz < nz <= target_nonzero or (best_nz > target_nonzero and nz < best_nz):
            best, best_nz = trial, nz
    return best


def _random_search(train, split: dict, max_nonzero: int, budget_s: float, seed: int, activations: Sequence[str],
                   steps: int) -> tuple[Any, dict[str, Any]]:
    from swat_edge.model import forward

    rng = np.random.default_rng(seed)
    n_in = split["x_tr"].shape[1]
    start = time.perf_counter()
    best, tried = None, 0
    choices = [a for a in activations if a != "identity"]
    while time.perf_counter() - start < budget_s or best is None:
        depth = int(rng.integers(1, 5))
        widths = [n_in, *(int(w) for w in rng.integers(1, 9, size=depth)), 1]
        if sum(a * b + b for a, b in zip(widths[:-1], widths[1:])) > max(max_nonzero, 3 * n_in + 4 + 1):
            continue  # over the deployment budget (the floor keeps one tiny shape always possible)
        act = str(rng.choice(choices))
        model = train(_dense(widths, act, seed=int(rng.integers(1 << 30))), steps)
        val = float(np.mean((forward(model, split["x_va"]) - split["y_va"]) ** 2))
        tried += 1
        if best is None or val < best[0]:
            best = (val, model, widths, act)
    return best[1], {"tried": tried, "widths": best[2], "activation": best[3]}


_WORKER: dict[str, Any] = {}


def _utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _init_worker(embedding: str) -> None:
    import torch

    from swat_edge.search.embedding.storage import load_embedding

    torch.set_num_threads(1)
    _WORKER["embedding"] = load_embedding(embedding)


def run_task(slug: str, seed: int, cornn: str, protocol: Protocol) -> dict[str, Any]:
    """Every method on one task; a JSON-ready row."""
    from swat_edge.data import Dataset
    from swat_edge.device.targets import load_target
    from swat_edge.export.pipeline import export_onnx_file
    from swat_edge.measure.bench import measure, measure_pair
    from swat_edge.runs.folder import write_run
    from swat_edge.search.compare_decoders import load_cornn_task
    from swat_edge.search.latent import fine_tune
    from swat_edge.search.objective import Budgets
    from swat_edge.search.run import SearchSettings, run_search

    t_task, started_at = time.perf_counter(), _utc_now()
    embedding = _WORKER["embedding"]
    target = load_target(protocol.target)
    task = load_cornn_task(cornn, slug)
    data = Dataset(slug, task.x_train, task.y_train[:, None], ("x", "y"), ("f",), "cornn")
    test = Dataset(f"{slug}-test", task.x_test, task.y_test[:, None], ("x", "y"), ("f",), "cornn")
    settings = SearchSettings(seed=seed)
    if protocol.search_steps is not None:
        settings = replace(settings, latent=replace(settings.latent, steps=protocol.search_steps))
    if protocol.finetune_steps is not None:
        settings = replace(settings, finetune_steps=protocol.finetune_steps)
    t0 = time.perf_counter()
    result = run_search(data, embedding=embedding, target=target, settings=settings, test=test)
    search_wall = time.perf_counter() - t0
    if result.model is None:
        raise RuntimeError(f"{slug}: the search met no budget, which default settings cannot cause")
    val = np.zeros(len(task.x_train), bool)
    val[result.validation_rows] = True
    split = {"x_tr": task.x_train[~val], "y_tr": task.y_train[~val, None], "x_va": task.x_train[val],
             "y_va": task.y_train[val, None]}

    def train(model, steps: int):
        return fine_tune(model, split["x_tr"], split["y_tr"], x_val=split["x_va"], y_val=split["y_va"], steps=steps,
                         seed=seed, lr=protocol.lr, final_lr=protocol.final_lr, batch_points=protocol.batch_points,
                         check_every=protocol.check_every)

    fig = lambda model, wall: _figures(model, task.x_test, task.y_test, target, wall)  # noqa: E731
    methods = {"swat": fig(result.model, search_wall), "latent_only": fig(result.latent_model, search_wall)}
    found = result.model
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(result, Path(tmp) / "run", dataset=data, test=test, target=target,
                        embedding={"source": embedding.source}, settings=settings, budgets=Budgets(),
                        heldout=(data.x[result.validation_rows], data.y[result.validation_rows]), latest_root=None,
                        measure=False)
        family = embedding.config.family
        t0 = time.perf_counter()
        dense = train(_dense([2] + [family.max_width] * family.max_depth + [1], "tanh", seed), protocol.dense_steps)
        methods["dense"] = fig(dense, time.perf_counter() - t0)
        t0 = time.perf_counter()
        pruned = train(pruned_to(dense, methods["swat"]["nonzero"]), protocol.pruned_steps)
        methods["pruned"] = fig(pruned, time.perf_counter() - t0)
        active = [[i for i in range(l.n_out) if l.mask[i]] for l in found.hidden]
        if all(active):
            acts = [tuple(l.activations[i] for i in a) for l, a in zip(found.hidden, active)]
            t0 = time.perf_counter()
            same = train(_dense([2] + [len(a) for a in active] + [1], acts, seed), protocol.dense_steps)
            methods["same_widths"] = fig(same, time.perf_counter() - t0)
        t0 = time.perf_counter()
        best, info = _random_search(train, split, methods["swat"]["nonzero"], search_wall, seed,
                                    tuple(family.activations), protocol.random_steps_per_shape)
        methods["random"] = {**fig(best, time.perf_counter() - t0), **info}

        swat_onnx = run.run_dir / run.files["onnx"]
        dense_onnx = export_onnx_file(dense, Path(tmp) / "dense.onnx").path
        pair = measure_pair(swat_onnx, dense_onnx, min_time_s=protocol.bench_min_time_s).pair(1)
        host = {"swat_p50_us": pair.a.p50_us, "dense_p50_us": pair.b.p50_us, "dense_over_swat": pair.ratio,
                "ratio_ci95": [pair.ratio_ci_low, pair.ratio_ci_high], "int8_p50_us": None, "dtype": result.dtype}
        host.update(_c_latency(found, dense, Path(tmp), protocol))
        if "int8_onnx" in run.files:
            stats = measure(run.run_dir / run.files["int8_onnx"], min_time_s=protocol.bench_min_time_s,
                            measure_memory=False).latency(1)
            host["int8_p50_us"] = stats.p50_us
            host["int8_drift_relative_mse"] = run.card.get("int8", {}).get("drift", {}).get("relative_mse")
    return {"task": slug, "seed": seed, "search_wall_s": search_wall, "task_wall_s": time.perf_counter() - t_task,
            "started_at": started_at, "finished_at": _utc_now(),
            "chosen_depth": result.chosen.depth if result.chosen is not None else None, "methods": methods,
            "host": host}


def _c_latency(swat, dense, tmp: Path, protocol: Protocol) -> dict[str, Any]:
    """Both models as generated C (`swat-edge export model.c`), timed alternately (swat, dense, dense, swat, ...;
    `rounds` harness runs each, median of their p50s), so drift of the shared machine falls on both."""
    from swat_edge.errors import ToolchainError
    from swat_edge.export.cc import which_c_compiler
    from swat_edge.export.pipeline import export_c_file
    from swat_edge.measure.bench_c import measure_c

    none = {"c_swat_p50_ns": None, "c_dense_p50_ns": None, "c_dense_over_swat": None}
    try:
        if which_c_compiler() is None:
            return none
        codes = [export_c_file(m, tmp / f"{name}.c").code for name, m in (("swat_c", swat), ("dense_c", dense))]
    except ToolchainError:
        return none
    p50 = ([], [])
    for r in range(protocol.c_rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            p50[i].append(measure_c(codes[i], n_samples=protocol.c_samples).latency(1).p50_us * 1000.0)
    swat_ns, dense_ns = float(np.median(p50[0])), float(np.median(p50[1]))
    return {"c_swat_p50_ns": swat_ns, "c_dense_p50_ns": dense_ns, "c_dense_over_swat": dense_ns / swat_ns}


def _run_task_in_worker(args: tuple[str, int, str, Protocol]) -> dict[str, Any]:
    return run_task(*args)


# ---------------------------------------------------------------------------------------------------------
# The run: cache, processes, outputs

def code_sha256() -> str:
    """Of the code that computes a row (the package's Python sources and this script's task functions; not the
    tables and plot): a cached row is only reused by the code that made it."""
    import inspect

    digest = hashlib.sha256()
    for path in sorted((ROOT / "swat_edge").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for fn in (Protocol, _compiled, _figures, _dense, _strongest_path, _prune_per_layer, pruned_to, _random_search,
               _c_latency, run_task):
        digest.update(inspect.getsource(fn).encode())
    return digest.hexdigest()


def fingerprint(embedding_sha: str, protocol: Protocol, code_sha: str = "") -> str:
    text = json.dumps({"schema": SCHEMA, "embedding": embedding_sha, "protocol": asdict(protocol), "code": code_sha},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_row(cache: Path, slug: str, seed: int, key: str) -> dict[str, Any] | None:
    path = cache / f"{slug}.seed{seed}.json"
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged cache entry is recomputed, never trusted
    return stored["row"] if stored.get("fingerprint") == key else None


def store_row(cache: Path, row: dict[str, Any], key: str) -> None:
    from swat_edge.files import atomic_path

    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache / f"{row['task']}.seed{row['seed']}.json", force=True) as tmp:
        Path(tmp).write_text(json.dumps({"fingerprint": key, "row": row}, indent=1) + "\n", encoding="utf-8")


def all_tasks(cornn: Path) -> list[str]:
    import csv

    with (cornn / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return [row["slug"] for row in csv.DictReader(fh)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cornn", default=os.environ.get("SWAT_EDGE_CORNN") or str(ROOT.parent / "shared" / "cornn"),
                        help="CORNN data folder (default: $SWAT_EDGE_CORNN, else ../shared/cornn beside the checkout)")
    parser.add_argument("--tasks", default=None, help="comma-separated task slugs (default: all in the manifest)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {', '.join(QUICK_TASKS)}, short schedules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--embedding", default="default")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for json/md/png")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cornn-cache"), help="per-task result cache")
    args = parser.parse_args(argv)
    cornn = Path(args.cornn)
    if not (cornn / "manifest.csv").exists():
        print(f"CORNN data not found at {cornn} (no manifest.csv); skipping. Pass --cornn DIR.")
        return 0
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    protocol = Protocol.quick() if args.quick else Protocol()
    known = all_tasks(cornn)
    slugs = list(QUICK_TASKS) if args.quick and not args.tasks else (
        [s.strip() for s in args.tasks.split(",") if s.strip()] if args.tasks else known)
    unknown = [s for s in slugs if s not in known]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; the manifest has {len(known)}, e.g. {', '.join(known[:4])}")
    name = "cornn_quick" if args.quick else ("cornn" if slugs == known else "cornn_subset")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from swat_edge.measure.bench import machine_info
    from swat_edge.search.embedding.storage import load_embedding

    embedding = load_embedding(args.embedding)
    code = code_sha256()
    key = fingerprint(embedding.weights_sha256, protocol, code)
    cache = Path(args.cache) / ("quick" if args.quick else "full")
    rows: dict[str, dict[str, Any]] = {}
    for slug in slugs:
        row = cached_row(cache, slug, args.seed, key)
        if row is not None:
            rows[slug] = row
    cached = len(rows)
    todo = [s for s in slugs if s not in rows]
    t0 = time.perf_counter()
    print(f"{len(slugs)} task(s): {cached} cached, {len(todo)} to run on {args.jobs} process(es)", flush=True)
    work = [(slug, args.seed, str(cornn), protocol) for slug in todo]
    with Progress(TextColumn("cornn"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}")) as bar:
        job = bar.add_task("cornn", total=len(slugs), completed=cached, info="")

        def done(row: dict[str, Any]) -> None:
            store_row(cache, row, key)
            rows[row["task"]] = row
            s, d = row["methods"]["swat"], row["methods"]["dense"]
            line = (f"{row['task']}: swat MSE {s['test_mse']:.2e} ({s['nonzero']} nz), dense {d['test_mse']:.2e} "
                    f"({row['task_wall_s']:.0f} s)")
            bar.console.print(line, markup=False, highlight=False)  # a line per task stays (and reaches logs)
            bar.update(job, advance=1, info=line)

        if todo and args.jobs == 1:
            _init_worker(args.embedding)
            for item in work:
                done(run_task(*item))
        elif todo:
            with multiprocessing.get_context("spawn").Pool(args.jobs, _init_worker, (args.embedding,)) as pool:
                for row in pool.imap_unordered(_run_task_in_worker, work):
                    done(row)
    ordered = [rows[s] for s in slugs]
    machine = machine_info()
    report = {
        "format": SCHEMA, "seed": args.seed, "jobs": args.jobs, "wall_s": time.perf_counter() - t0, "cached_rows": cached,
        "command": "python benchmarks/cornn.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "machine": f"{machine.processor}, {machine.cpu_count} CPUs, onnxruntime {machine.onnxruntime}",
        "embedding": {"source": str(embedding.source), "steps": embedding.steps, "weights_sha256": embedding.weights_sha256},
        "protocol": asdict(protocol), "code_sha256": code, "fingerprint": key, "aggregate": aggregate(ordered), "rows": ordered,
    }
    from swat_edge.files import atomic_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{name}.json", force=True) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    text = markdown(report)
    with atomic_path(out / f"{name}.md", force=True) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    pareto_plot(ordered, out / f"{name}.png", f"CORNN, {len(ordered)} tasks: test MSE vs size")
    print(text.split("## Per task")[0], flush=True)
    print(f"wrote {out / name}.json, .md, .png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
