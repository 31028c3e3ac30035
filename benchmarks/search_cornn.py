"""`swat-edge search` on CORNN tasks against the baselines issue 6 names, in the same run (CPU, 1 torch thread).

    .venv/bin/python benchmarks/search_cornn.py [--embedding default] [--tasks sphere,himmelblau,...] [--seeds 3]
        [--random-search-s 60] [--quick]

Per task and seed, on the SWAT-NN protocol (inputs from the manifest's domain and the target by the training
labels' min/max to [-1, 1]; test MSE on that scale), with the search's own 80/20 train/validation split:
  search   swat_edge.search.run_search with its defaults (target raspi4), then written as `swat-edge search`
           writes a run (ONNX export, report); wall time of that in-process pipeline, and, for the first task,
           of the real command line in a fresh process (imports included) with its peak RSS.
  dense    (a) the family's largest network (inputs-8-8-8-8-1, tanh), Adam with cosine decay, the best
           validation iterate (early stopping), 3,000 steps.
  pruned   (b) dense pruned to the searched model's non-zero count by per-layer magnitude pruning (every layer
           keeps the same share, so no layer is cut off; dead neurons removed by the compile passes before
           counting), then fine-tuned with the masks frozen (1,000 steps).
  same     (c) a dense network of exactly the searched active widths and per-neuron activations, trained from
           scratch like (a): does the search find more than a good size?
  random   (d) random search over MLP shapes (depth 1-4, widths 1-8, one family activation per layer) for
           --random-search-s seconds, 400 training steps per shape, keeping only shapes with at most the
           searched model's non-zero parameters; best on validation.
All training uses swat_edge.search.latent.fine_tune (Adam, mini-batches of 256, cosine learning rate, best
validation iterate), so the baselines and the search's fine-tuning share one optimiser.
Writes benchmarks/results/search_cornn.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from swat_edge.data import Dataset, holdout_split  # noqa: E402
from swat_edge.model import Layer, SparseMLP, forward, model_stats, random_model  # noqa: E402
from swat_edge.passes import PIPELINE  # noqa: E402
from swat_edge.rundir import write_run  # noqa: E402
from swat_edge.search.evaluate import load_cornn_task  # noqa: E402
from swat_edge.search.latent import fine_tune  # noqa: E402
from swat_edge.search.objective import Budgets  # noqa: E402
from swat_edge.search.run import SearchSettings, run_search  # noqa: E402
from swat_edge.search.storage import load_embedding  # noqa: E402
from swat_edge.targets import load_target  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_TASKS = "sphere,booth,himmelblau,griewank,ackley,rastrigin,drop-wave,levy"
TRAIN = dict(lr=0.03, final_lr=0.0005, batch_points=256, check_every=50)


def _mse(model: SparseMLP, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((forward(model, x).ravel() - y.ravel()) ** 2))


def _nonzero(model: SparseMLP) -> int:
    """Non-zero parameters after the compile passes (dead neurons folded away), the paper's count."""
    compiled = model
    for p in PIPELINE[:4]:  # normalisation folding, dead neurons, identity fusion, dead neurons
        compiled, _ = p(compiled)
    return model_stats(compiled).nonzero_params


def _train(model: SparseMLP, split: dict, steps: int, seed: int) -> SparseMLP:
    return fine_tune(model, split["x_tr"], split["y_tr"], x_val=split["x_va"], y_val=split["y_va"], steps=steps,
                     seed=seed, **TRAIN)


def _dense(widths: list[int], acts: list[tuple[str, ...]] | str, seed: int) -> SparseMLP:
    if isinstance(acts, str):
        return random_model(widths, activations=acts, seed=seed, normalization=False)
    base = random_model(widths, activations="tanh", seed=seed, normalization=False)
    hidden = [Layer.make(l.weight, l.bias, a) for l, a in zip(base.hidden, acts)]
    return base.replace(hidden=tuple(hidden))


def _prune_per_layer(model: SparseMLP, keep_share: float) -> SparseMLP:
    layers = []
    for layer in model.layers:
        w = layer.weight.copy()
        k = max(1, int(round(keep_share * w.size)))
        cut = np.sort(np.abs(w).ravel())[::-1][k - 1]
        w[np.abs(w) < cut] = 0.0
        layers.append(Layer.make(w, layer.bias, layer.activations, layer.mask))
    return model.replace(hidden=tuple(layers[:-1]), output=layers[-1])


def _pruned_to(model: SparseMLP, target_nonzero: int) -> SparseMLP:
    lo, hi = 0.0, 1.0
    best = _prune_per_layer(model, 0.0)
    for _ in range(20):  # bisection on the kept share; the count is monotone in it
        mid = 0.5 * (lo + hi)
        trial = _prune_per_layer(model, mid)
        if _nonzero(trial) <= target_nonzero:
            best, lo = trial, mid
        else:
            hi = mid
    compiled = best
    for p in PIPELINE[:4]:
        compiled, _ = p(compiled)
    return compiled


def _random_search(split: dict, max_nonzero: int, budget_s: float, seed: int, activations: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(seed)
    n_in = split["x_tr"].shape[1]
    start = time.perf_counter()
    best = None
    tried = 0
    while time.perf_counter() - start < budget_s:
        depth = int(rng.integers(1, 5))
        widths = [n_in, *(int(w) for w in rng.integers(1, 9, size=depth)), 1]
        dense_nonzero = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        if dense_nonzero > max_nonzero:
            continue
        act = str(rng.choice([a for a in activations if a != "identity"]))
        model = _train(_dense(widths, act, seed=int(rng.integers(1 << 30))), split, steps=400, seed=seed)
        val = _mse(model, split["x_va"], split["y_va"])
        tried += 1
        if best is None or val < best[0]:
            best = (val, model, widths, act)
    if best is None:
        return {"tried": 0}
    return {"tried": tried, "model": best[1], "widths": best[2], "activation": best[3]}


def _cli_run(task_csv_dir: Path, slug: str, embedding: str, out: Path) -> dict:
    """The real command line in a fresh process: wall time and peak RSS (imports, search, export, report)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / f"{slug}.csv"
        data.write_bytes((task_csv_dir / f"{slug}.train.csv").read_bytes())  # a private copy, deleted after
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "swat-edge"), "search", "--data", str(data), "--target",
                               "raspi4", "--embedding", embedding, "--out", str(out), "--force"],
                              capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"returncode": proc.returncode, "wall_s": wall, "peak_rss_mib": peak_kib / 1024 if peak_kib > before else None,
            "stderr_tail": proc.stderr.strip().splitlines()[-1:] if proc.returncode else []}


def run_task(slug: str, seed: int, args: argparse.Namespace, embedding, target) -> dict:
    task = load_cornn_task(args.cornn, slug)
    n = len(task.x_train)
    train, val = holdout_split(n, fraction=0.2, seed=seed)
    split = {"x_tr": task.x_train[train], "y_tr": task.y_train[train, None], "x_va": task.x_train[val],
             "y_va": task.y_train[val, None]}
    data = Dataset(slug, task.x_train, task.y_train[:, None], ("x", "y"), ("f",), "cornn")
    test = Dataset(f"{slug}-test", task.x_test, task.y_test[:, None], ("x", "y"), ("f",), "cornn")
    settings = SearchSettings(seed=seed)
    t0 = time.perf_counter()
    result = run_search(data, embedding=embedding, target=target, settings=settings, test=test)
    with tempfile.TemporaryDirectory() as tmp:
        write_run(result, Path(tmp) / "run", dataset=data, test=test, target=target,
                  embedding={"source": embedding.source}, settings=settings, budgets=Budgets(),
                  heldout=(data.x[result.validation_rows], data.y[result.validation_rows]), latest_root=None)
    search_wall = time.perf_counter() - t0
    found = result.model
    nz = _nonzero(found)
    row = {
        "task": slug, "seed": seed, "search_wall_s": search_wall,
        "search": {"test_mse": _mse(found, task.x_test, task.y_test), "nonzero": nz,
                   "latent_only_test_mse": _mse(result.latent_model, task.x_test, task.y_test),
                   "widths": [int(l.mask.sum()) for l in found.hidden],
                   "predicted_latency_us": result.estimate.latency_us[0]},
    }
    family = embedding.config.family
    dense = _train(_dense([2] + [family.max_width] * family.max_depth + [1], "tanh", seed), split, 3000, seed)
    row["dense"] = {"test_mse": _mse(dense, task.x_test, task.y_test), "nonzero": _nonzero(dense)}
    pruned = _train(_pruned_to(dense, nz), split, 1000, seed)
    row["pruned"] = {"test_mse": _mse(pruned, task.x_test, task.y_test), "nonzero": _nonzero(pruned)}
    active = [[i for i in range(l.n_out) if l.mask[i]] for l in found.hidden]
    widths = [2] + [len(a) for a in active] + [1]
    if all(w > 0 for w in widths):
        acts = [tuple(l.activations[i] for i in a) for l, a in zip(found.hidden, active)]
        same = _train(_dense(widths, acts, seed), split, 3000, seed)
        row["same"] = {"test_mse": _mse(same, task.x_test, task.y_test), "nonzero": _nonzero(same)}
    rs = _random_search(split, max(nz, 3), args.random_search_s, seed, tuple(family.activations))
    if "model" in rs:
        row["random"] = {"test_mse": _mse(rs["model"], task.x_test, task.y_test), "nonzero": _nonzero(rs["model"]),
                         "tried": rs["tried"], "widths": rs["widths"], "activation": rs["activation"]}
    return row


def _geo(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def summarize(rows: list[dict]) -> list[str]:
    lines = ["| task | seed | search MSE | nz | latent-only MSE | dense MSE | nz | pruned MSE | nz | same-widths MSE | "
             "random MSE | nz | search s |", "|" + "---|" * 13]
    for r in rows:
        g = lambda k, f="test_mse": (f"{r[k][f]:.2e}" if k in r and f == "test_mse" else  # noqa: E731
                                     str(r[k][f]) if k in r else "-")
        lines.append(f"| {r['task']} | {r['seed']} | {g('search')} | {g('search', 'nonzero')} | "
                     f"{r['search']['latent_only_test_mse']:.2e} | {g('dense')} | {g('dense', 'nonzero')} | "
                     f"{g('pruned')} | {g('pruned', 'nonzero')} | {g('same')} | {g('random')} | {g('random', 'nonzero')} | "
                     f"{r['search_wall_s']:.1f} |")
    lines.append("")
    for base in ("dense", "pruned", "same", "random"):
        pairs = [(r["search"]["test_mse"], r[base]["test_mse"]) for r in rows if base in r]
        if pairs:
            wins = sum(s < b for s, b in pairs)
            ratio = _geo([s / b for s, b in pairs])
            lines.append(f"- search vs {base}: lower test MSE in {wins} of {len(pairs)}; geometric-mean MSE ratio "
                         f"search/{base} {ratio:.2f}")
    nz = [(r["dense"]["nonzero"] / r["search"]["nonzero"]) for r in rows if "dense" in r]
    if nz:
        lines.append(f"- dense has {_geo(nz):.1f}x the searched model's non-zero parameters (geometric mean)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedding", default="default")
    parser.add_argument("--cornn", default=str(ROOT.parent / "shared" / "cornn"))
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--random-search-s", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="3 tasks, 1 seed, 20 s of random search")
    parser.add_argument("--no-cli", action="store_true", help="skip the fresh-process command-line timing")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.seeds, args.random_search_s = "sphere,himmelblau,rastrigin", 1, 20.0
    if not (Path(args.cornn) / "manifest.csv").exists():
        sys.exit(f"CORNN data not found at {args.cornn}; pass --cornn DIR")
    torch.set_num_threads(1)
    embedding = load_embedding(args.embedding)
    target = load_target("raspi4")
    slugs = [s.strip() for s in args.tasks.split(",") if s.strip()]
    report: dict = {"embedding": {"source": embedding.source, "steps": embedding.steps,
                                  "weights_sha256": embedding.weights_sha256},
                    "settings": vars(args), "cpu_count": os.cpu_count(), "rows": []}
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as tmp:
            report["cli"] = {"task": slugs[0], **_cli_run(Path(args.cornn), slugs[0], args.embedding, Path(tmp) / "r")}
        print(f"command line on {slugs[0]}: {report['cli']}", flush=True)
    for slug in slugs:
        for seed in range(args.seeds):
            row = run_task(slug, seed, args, embedding, target)
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    lines = [f"# swat-edge search on CORNN ({len(slugs)} tasks x {args.seeds} seeds)", "",
             f"Embedding {embedding.source} ({embedding.steps} training steps); random search "
             f"{args.random_search_s:g} s per task and seed; test MSE on the [-1, 1]-scaled target.", ""]
    if "cli" in report:
        c = report["cli"]
        lines.append(f"Command line on {c['task']} (fresh process, imports, search, fine-tune, export, report): "
                     f"{c['wall_s']:.1f} s wall, peak RSS {c['peak_rss_mib'] or float('nan'):.0f} MiB.")
        lines.append("")
    lines += summarize(report["rows"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (RESULTS / f"search_cornn{suffix}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (RESULTS / f"search_cornn{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
