"""One benchmark task, every method, one JSON-ready row (the computation behind benchmarks/cornn.py and real.py).

Protocol (issue 13). Every method sees the same split: run_search's own validation split of the training rows
(split_and_scale with the search's fraction and seed; the harness checks each search returned the same rows) and
is scored once on the test rows, which nothing here uses for choosing or stopping: the search is not even given
them, and every choice below (restarts, depths, budgets) reads validation MSE only.

Methods, each a set of points (a trained network with its validation MSE, test MSE, non-zero parameters and
predicted latency on each target):
  swat@<target>  run_search with default settings for that target (raspi4: onnxruntime on a Pi 4; cortex-m4:
                 generated C), once per target. Every fine-tuned candidate is a point (the searched networks, their
                 one-activation projections, the linear model and the dense references): the user can export any
                 (`swat-edge export --candidate K`).
  dense_sweep    (a) depth 1-4 x width {2, 3, 4, 6, 8} x activation {relu, tanh}, 40 networks, each trained the way
                 the search fine-tunes a candidate (the same fitter, chosen by SearchSettings.fitter_for, with the
                 same settings and early stopping on the same validation rows), restarted as many times as the
                 search fine-tuned candidates on this task (the larger count of the two targets), the best restart
                 on validation kept. Restart 0 starts from the search's own seed, so the 1x8 and 2x8 tanh networks
                 reproduce the search's dense references. Below SearchSettings.cross_validation_below_rows
                 training rows (diabetes in real.py) the restarts are scored and refitted as the search's
                 candidates are: k-fold cross-validation (out-of-fold MSE chooses the restart), then all rows;
                 their points, like the search's, carry the out-of-fold MSE as their validation figure (the
                 holdout rows were refitted on). Pruning and random search keep the holdout split.
  dense_adam     the family's largest network 2-8-8-8-8-1 (tanh) trained as users usually do: one start, Adam, 3,000
                 steps, cosine learning rate 0.03 -> 0.0005, mini-batches of 256, best validation iterate kept.
  pruned         (b) the dense sweep's best network of each depth, magnitude-pruned per layer (pruned_to: the same
                 share in each layer plus one path of large weights, so it stays connected) iteratively to 70, 50,
                 35, 25 and 15% of its non-zero parameters, fine-tuned with the search's fitter after each cut (each
                 size starts from the previous one). Restarts do not apply: each start is a trained network that
                 already had the sweep's restarts.
  random         (d) random search over the family (depth 1-4, widths 1-8, one activation per layer from relu,
                 leaky_relu, tanh, sigmoid), each network trained like a sweep network (one start: the draws are
                 the restarts), for the search's wall time on each target: the networks finished within that
                 target's search time are its points (one sequence, so raspi4 and cortex-m4 see prefixes of it).
Ablation (not baselines; the searched model's own starting points): latent-only (the network the latent search
decoded, before fine-tuning) and the whole search through an untrained decoder of the same shape (seed 12345, as
`swat-edge embed eval --cornn`), on the ablation target.
Reference rows (not deployable in this toolchain; what the data allow): scikit-learn's LinearRegression and
HistGradientBoostingRegressor (defaults, random_state = seed), fitted on the same training rows.
Wall time is recorded for every method; nothing is measured on the host here (predicted latency only: the back-end
benchmarks measure).
"""
from __future__ import annotations

import datetime
import hashlib
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks.compare_data import Task

SCHEMA = "swat-edge.benchmark.compare/2"
RESTART_SEED_STRIDE = 7919  # restart r of a network starts from seed + r * stride (restart 0: the search's seed)


@dataclass(frozen=True)
class Protocol:
    """What decides a row besides the task, the seed and the embedding. The default is the full benchmark;
    the fitter's settings are never set here for the baselines alone: they come from the search's settings."""

    targets: tuple[str, ...] = ("raspi4", "cortex-m4")
    search_steps: int | None = None  # latent search steps; None: SearchSettings' default, as `swat-edge search`
    fit_iterations: int | None = None  # FitSettings.max_iterations for the search and every baseline alike
    sweep_depths: tuple[int, ...] = (1, 2, 3, 4)
    sweep_widths: tuple[int, ...] = (2, 3, 4, 6, 8)
    sweep_activations: tuple[str, ...] = ("relu", "tanh")
    adam_widths: tuple[int, ...] = (8, 8, 8, 8)
    adam_steps: int = 3000
    adam_lr: float = 0.03
    adam_final_lr: float = 0.0005
    adam_batch_points: int = 256
    adam_check_every: int = 50
    prune_keep: tuple[float, ...] = (0.7, 0.5, 0.35, 0.25, 0.15)
    random_networks: int | None = None  # None: as many as the search's wall time allows; a count: reproducible
    ablation_target: str = "raspi4"
    untrained_decoder_seed: int = 12345

    @classmethod
    def quick(cls) -> "Protocol":
        """A smoke run (CI): short latent search and fits (for the search and the baselines alike), 8 sweep
        networks, two pruning sizes."""
        return cls(search_steps=150, fit_iterations=40, sweep_depths=(1, 2), sweep_widths=(4, 8), adam_steps=300,
                   prune_keep=(0.5, 0.25))

    def search_settings(self, seed: int):
        """The search's settings for this protocol; the baselines train with these very settings."""
        from swat_edge.search.run import SearchSettings

        settings = SearchSettings(seed=seed)
        if self.search_steps is not None:
            settings = replace(settings, latent=replace(settings.latent, steps=self.search_steps))
        if self.fit_iterations is not None:
            settings = replace(settings, fit=replace(settings.fit, max_iterations=self.fit_iterations))
        return settings


# ---------------------------------------------------------------------------------------------------------
# The split and the training care every baseline gets

@dataclass(frozen=True)
class Split:
    """The search's train/validation split of a task's training rows and the search's scaling of its networks."""

    validation_rows: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray  # (rows, 1)
    x_val: np.ndarray
    y_val: np.ndarray
    scaling: dict[str, np.ndarray]  # input_scale, input_offset, output_scale, output_offset
    x_all: np.ndarray  # the whole training file in its order: what cross-validation splits into folds
    y_all: np.ndarray  # (rows, 1)
    target_scale: float  # the search's min-max scale of the target: its (scaled) MSE = raw MSE x target_scale^2

    @property
    def validation_sha256(self) -> str:
        return rows_sha256(self.validation_rows)


def rows_sha256(rows: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


def as_dataset(task: Task):
    from swat_edge.data import Dataset

    return Dataset(task.name, task.x_train, task.y_train[:, None], task.feature_names, ("y",), task.kind)


def search_split(task: Task, settings) -> Split:
    """The split and scaling run_search uses (split_and_scale, then _prepare_problem's model fields)."""
    from swat_edge.search.run import split_and_scale

    prep = split_and_scale(as_dataset(task), fraction=settings.validation_fraction, seed=settings.seed)
    y = task.y_train[:, None]
    return Split(prep.val, task.x_train[prep.train], y[prep.train], task.x_train[prep.val], y[prep.val],
                 {"input_scale": prep.x_scale, "input_offset": prep.x_offset, "output_scale": prep.output_scale,
                  "output_offset": prep.output_offset}, task.x_train, y, float(prep.y_scale[0]))


def fit_like_the_search(model, split: Split, settings):
    """One start fitted exactly as run_search fine-tunes a candidate (swat_edge.search.run.fit_candidate)."""
    from swat_edge.search.run import fit_candidate

    return fit_candidate(model, split.x_train, split.y_train, split.x_val, split.y_val, settings)[0]


def validation_mse(model, split: Split) -> float:
    from swat_edge.model import forward

    return float(np.mean((forward(model, split.x_val) - split.y_val) ** 2))


def start_network(widths: Sequence[int], activation: str, seed: int, split: Split):
    """A random network scaled as the search scales its dense references (search.references._dense_entries)."""
    from swat_edge.model import random_model

    start = random_model(tuple(widths), activations=activation, per_layer=True, seed=seed, normalization=False)
    return start.replace(**split.scaling)


def restart_seed(seed: int, restart: int) -> int:
    return seed + RESTART_SEED_STRIDE * restart


@dataclass(frozen=True)
class Trained:
    model: Any
    val_mse: float
    restart_val_mse: tuple[float, ...]
    wall_s: float


def best_of_restarts(widths: Sequence[int], activation: str, restarts: int, split: Split, settings) -> Trained:
    """`restarts` starts of one architecture, each fitted and scored like the search's candidates, the best kept:
    on the validation split, or below SearchSettings.cross_validation_below_rows rows by the search's k-fold
    cross-validation (out-of-fold MSE) and a refit on all rows."""
    from swat_edge.search.run import cross_validate, uses_cross_validation

    t0 = time.perf_counter()
    starts = [start_network(widths, activation, restart_seed(settings.seed, r), split) for r in range(restarts)]
    if uses_cross_validation(settings, len(split.x_all)):
        runs = [cross_validate(start, split.x_all, split.y_all, settings) for start in starts]  # one target: no weights
        fitted = [run.model for run in runs]
        vals = [float(np.mean((run.out_of_fold - split.y_all) ** 2)) for run in runs]
    else:
        fitted = [fit_like_the_search(start, split, settings) for start in starts]
        vals = [validation_mse(m, split) for m in fitted]
    best = int(np.argmin(vals))
    return Trained(fitted[best], vals[best], tuple(vals), time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------
# Points: a trained network's figures

def compiled(model):
    """The network as export compiles it (normalisation folding, dead neurons, identity fusion, dead neurons)."""
    from swat_edge.compile import PIPELINE

    for p in PIPELINE[:4]:
        model, _ = p(model)
    return model


def nonzero_params(model) -> int:
    from swat_edge.model import model_stats

    return model_stats(compiled(model)).nonzero_params


def point(model, label: str, task: Task, split: Split, targets: dict[str, Any], wall_s: float,
          val_mse: float | None = None, **extra: Any) -> dict[str, Any]:
    """A network's figures: validation MSE (what chooses; on the validation split unless given: a network
    refitted on all rows after cross-validation brings its out-of-fold MSE), test MSE (what is reported), size,
    predicted latency."""
    from swat_edge.device.cost import estimate
    from swat_edge.model import model_stats

    stats = model_stats(compiled(model))
    val = validation_mse(model, split) if val_mse is None else val_mse
    return {"label": label, "val_mse": val, "test_mse": mse_on_test(model, task),
            "nonzero": stats.nonzero_params, "widths": list(stats.widths),
            "latency_us": {name: float(estimate(model, t).latency_us[0]) for name, t in targets.items()},
            "wall_s": wall_s, **extra}


def shape_label(widths: Sequence[int], activation: str) -> str:
    return f"{'-'.join(str(w) for w in widths[1:-1]) or 'linear'} {activation}"


# ---------------------------------------------------------------------------------------------------------
# The methods

def swat_points(result, task: Task, split: Split, targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Every fine-tuned candidate of one search as a point (the user can export any)."""
    points = []
    cross_validated = "folds" in result.split_rows  # refitted on every row: the out-of-fold MSE is the honest one
    for index, (cand, model) in enumerate(zip(result.candidates, result.candidate_models)):
        label = f"{cand.origin} depth {cand.depth}{' one activation per layer' if cand.projected else ''}"
        val = cand.finetuned_val_mse / split.target_scale ** 2 if cross_validated else None
        points.append(point(model, label, task, split, targets, 0.0, val, candidate=index, origin=cand.origin,
                            depth=cand.depth, chosen=cand.chosen, on_front=cand.on_front))
    return points


def dense_sweep(task: Task, split: Split, settings, protocol: Protocol, restarts: int,
                targets: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Trained]]:
    points, trained = [], []
    n_in = task.x_train.shape[1]
    for depth in protocol.sweep_depths:
        for width in protocol.sweep_widths:
            for activation in protocol.sweep_activations:
                widths = (n_in, *([width] * depth), 1)
                best = best_of_restarts(widths, activation, restarts, split, settings)
                trained.append(best)
                # best.val_mse is what chose the restart: holdout MSE, or out-of-fold below the CV limit
                points.append(point(best.model, shape_label(widths, activation), task, split, targets, best.wall_s,
                                    best.val_mse, depth=depth, restarts=restarts, restart_val_mse=list(best.restart_val_mse)))
    return points, trained


def dense_adam(task: Task, split: Split, settings, protocol: Protocol, targets: dict[str, Any]) -> dict[str, Any]:
    from swat_edge.search.latent import fine_tune

    widths = (task.x_train.shape[1], *protocol.adam_widths, 1)
    t0 = time.perf_counter()
    model = fine_tune(start_network(widths, "tanh", settings.seed, split), split.x_train, split.y_train,
                      x_val=split.x_val, y_val=split.y_val, steps=protocol.adam_steps, lr=protocol.adam_lr,
                      final_lr=protocol.adam_final_lr, seed=settings.seed, batch_points=protocol.adam_batch_points,
                      check_every=protocol.adam_check_every)
    return point(model, shape_label(widths, "tanh") + " Adam", task, split, targets, time.perf_counter() - t0)


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
    from an input to the output, so it stays connected) to the largest count of non-zero parameters (after dead
    neurons are folded away) at most target_nonzero. The count after folding is not monotone in the share, so a
    grid of shares is scanned; a budget below the smallest connected network gives that network (one path).
    The network keeps its scaling (not compiled), so the fitter sees it as it saw the dense one."""
    keep = _strongest_path(model)
    best, best_nz, seen = None, -1, set()
    for share in np.linspace(0.0, 1.0, 401):
        ks = tuple(int(round(share * layer.weight.size)) for layer in model.layers)
        if ks in seen:
            continue  # the same cut as a share already tried
        seen.add(ks)
        trial = _prune_per_layer(model, float(share), keep)
        nz = nonzero_params(trial)
        if best is None or best_nz < nz <= target_nonzero or (best_nz > target_nonzero and nz < best_nz):
            best, best_nz = trial, nz
    return best


def pruned(task: Task, split: Split, settings, protocol: Protocol, sweep: list[dict[str, Any]],
           trained: list[Trained], targets: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's best network of each depth (validation), pruned iteratively and fine-tuned after each cut."""
    points = []
    for depth in protocol.sweep_depths:
        of_depth = [i for i, p in enumerate(sweep) if p["depth"] == depth]
        start = min(of_depth, key=lambda i: trained[i].val_mse)
        current, full = trained[start].model, sweep[start]["nonzero"]
        for share in protocol.prune_keep:
            cut = pruned_to(current, max(1, int(round(share * full))))
            if nonzero_params(cut) >= nonzero_params(current):
                continue  # nothing left to cut at this size
            t0 = time.perf_counter()
            current = fit_like_the_search(cut, split, settings)
            points.append(point(current, f"{sweep[start]['label']} pruned to {share:.0%}", task, split, targets,
                                time.perf_counter() - t0, depth=depth, keep_share=share))
    return points


def random_search(task: Task, split: Split, settings, protocol: Protocol, family: Any, budget_s: float,
                  targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Random shapes of the family, each trained like a sweep network, until budget_s (or protocol.random_networks
    networks); every network is a point with the time it finished (seconds since the search began)."""
    rng = np.random.default_rng([settings.seed, 4242])
    activations = [a for a in family.activations if a != "identity"]
    n_in = task.x_train.shape[1]
    start, points = time.perf_counter(), []

    def more() -> bool:
        if protocol.random_networks is not None:
            return len(points) < protocol.random_networks
        return not points or time.perf_counter() - start < budget_s

    while more():
        depth = int(rng.integers(family.min_depth, family.max_depth + 1))
        widths = (n_in, *(int(w) for w in rng.integers(1, family.max_width + 1, size=depth)), 1)
        activation = str(rng.choice(activations))
        t0 = time.perf_counter()
        model = fit_like_the_search(start_network(widths, activation, int(rng.integers(1 << 30)), split), split,
                                    settings)
        finished = time.perf_counter()
        points.append(point(model, shape_label(widths, activation), task, split, targets, finished - t0,
                            finished_s=finished - start))
    return points


def references(task: Task, split: Split, seed: int) -> dict[str, dict[str, float]]:
    """scikit-learn's linear regression and gradient-boosted trees on the same training rows (one thread)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from threadpoolctl import threadpool_limits

    out = {}
    for name, estimator in (("linear_regression", LinearRegression()),
                            ("hist_gradient_boosting", HistGradientBoostingRegressor(random_state=seed))):
        t0 = time.perf_counter()
        with threadpool_limits(limits=1):
            estimator.fit(split.x_train, split.y_train.ravel())
            predicted = estimator.predict(task.x_test)
        out[name] = {"test_mse": float(np.mean((predicted - task.y_test) ** 2)), "wall_s": time.perf_counter() - t0}
    return out


# ---------------------------------------------------------------------------------------------------------
# The search and its ablation

def untrained_embedding(embedding: Any, seed: int):
    """An untrained autoencoder of the embedding's shape, as an embedding the search takes."""
    from swat_edge.search.embedding.autoencoder import Embedding, build_autoencoder

    return Embedding(config=embedding.config, module=build_autoencoder(embedding.config, seed=seed).eval(),
                     source=f"untrained (seed {seed})", weights_sha256=f"untrained-{seed}")


def search(task: Task, split: Split, settings, embedding: Any, target: Any, jobs: int = 1,
           latency_budget_us: float | None = None) -> tuple[Any, float]:
    """run_search as `swat-edge search --jobs [--latency-budget]` runs it, without the test rows; checked to use
    the benchmark's split. (The same model for any jobs; the CORNN suite runs tasks side by side with one each.)"""
    from swat_edge.search.objective import Budgets
    from swat_edge.search.run import run_search

    t0 = time.perf_counter()
    result = run_search(as_dataset(task), embedding=embedding, target=target, settings=settings, jobs=jobs,
                        budgets=Budgets(latency_us=latency_budget_us))
    wall = time.perf_counter() - t0
    if result.model is None or not np.array_equal(result.validation_rows, split.validation_rows):
        raise RuntimeError(f"{task.name}: the search met no budget or used another split than the benchmark's")
    return result, wall


def mse_on_test(model, task: Task) -> float:
    from swat_edge.model import forward

    return float(np.mean((forward(model, task.x_test).ravel() - task.y_test) ** 2))


def search_summary(result, task: Task, split: Split) -> dict[str, float]:
    """The chosen model, the best searched (not reference) candidate on validation and the latent-only network."""
    searched = [m for c, m in zip(result.candidates, result.candidate_models) if c.origin == "search"]
    best_searched = min(searched, key=lambda m: validation_mse(m, split)) if searched else None
    return {"chosen_test_mse": mse_on_test(result.model, task),
            "best_searched_test_mse": mse_on_test(best_searched, task) if best_searched is not None else None,
            "latent_only_test_mse": mse_on_test(result.latent_model, task),
            "chosen_origin": result.chosen.origin}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_searches(task: Task, split: Split, settings, embedding: Any, targets: dict[str, Any],
                 methods: dict[str, list[dict[str, Any]]], wall: dict[str, float],
                 jobs: int = 1) -> dict[str, dict[str, Any]]:
    """swat-edge once per target: its candidates become the method swat@<target>; returns each run's summary."""
    searches = {}
    for name, target in targets.items():
        result, search_wall = search(task, split, settings, embedding, target, jobs)
        methods[f"swat@{name}"] = swat_points(result, task, split, targets)
        searches[name] = {"wall_s": search_wall, "candidates": len(result.candidates),
                          "chosen": next(i for i, c in enumerate(result.candidates) if c.chosen),
                          "validation_sha256": rows_sha256(result.validation_rows), **search_summary(result, task, split)}
        wall[f"swat@{name}"] = search_wall
    return searches


def run_baselines(task: Task, split: Split, settings, protocol: Protocol, family: Any, targets: dict[str, Any],
                  restarts: int, random_budget_s: float, methods: dict[str, list[dict[str, Any]]],
                  wall: dict[str, float]) -> None:
    """The dense sweep, the Adam-trained dense network, pruning and random search, each timed."""
    timed = _timed(wall)
    methods["dense_sweep"], trained = timed("dense_sweep", lambda: dense_sweep(task, split, settings, protocol,
                                                                               restarts, targets))
    methods["dense_adam"] = [timed("dense_adam", lambda: dense_adam(task, split, settings, protocol, targets))]
    methods["pruned"] = timed("pruned", lambda: pruned(task, split, settings, protocol, methods["dense_sweep"],
                                                       trained, targets))
    methods["random"] = timed("random", lambda: random_search(task, split, settings, protocol, family,
                                                              random_budget_s, targets))


def run_task(task: Task, seed: int, protocol: Protocol, embedding: Any, untrained: Any) -> dict[str, Any]:
    """Every method on one task; a JSON-ready row."""
    from swat_edge.device.targets import load_target

    t_task, started_at = time.perf_counter(), _utc_now()
    settings = protocol.search_settings(seed)
    targets = {name: load_target(name) for name in protocol.targets}
    split = search_split(task, settings)
    methods: dict[str, list[dict[str, Any]]] = {}
    wall: dict[str, float] = {}
    searches = run_searches(task, split, settings, embedding, targets, methods, wall)
    restarts = max(s["candidates"] for s in searches.values())
    random_budget = {name: s["wall_s"] for name, s in searches.items()}
    run_baselines(task, split, settings, protocol, embedding.config.family, targets, restarts,
                  max(random_budget.values()), methods, wall)
    ablation_result, wall["untrained_decoder_search"] = search(task, split, settings, untrained,
                                                               targets[protocol.ablation_target])
    refs = _timed(wall)("references", lambda: references(task, split, seed))
    trained_decoder = {k: searches[protocol.ablation_target][k] for k in
                       ("chosen_test_mse", "best_searched_test_mse", "latent_only_test_mse", "chosen_origin")}
    return {
        "task": task.name, "kind": task.kind, "seed": seed, "notes": list(task.notes),
        "features": list(task.feature_names),
        "rows": {"train": len(split.x_train), "validation": len(split.x_val), "test": len(task.x_test)},
        "validation_sha256": split.validation_sha256,
        "test_variance": float(np.var(task.y_test)),
        "constant_test_mse": float(np.mean((np.mean(split.y_train) - task.y_test) ** 2)),
        "care": {"fitter": settings.fitter_for(), "fit": asdict(settings.fit),
                 "restarts": restarts, "split": "the search's (validation_sha256)"},
        "search": searches, "random_budget_s": random_budget, "methods": methods,
        "ablation": {"target": protocol.ablation_target, "trained_decoder": trained_decoder,
                     "untrained_decoder": search_summary(ablation_result, task, split)},
        "references": refs, "wall_s": wall, "task_wall_s": time.perf_counter() - t_task,
        "started_at": started_at, "finished_at": _utc_now(),
    }


def _timed(wall: dict[str, float]) -> Callable[[str, Callable[[], Any]], Any]:
    """A helper that runs a method and records its wall time under its name."""
    def run(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        wall[name] = time.perf_counter() - t0
        return out

    return run
