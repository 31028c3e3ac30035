"""The search library: the stacked relaxation is exact on hard networks, the cost terms match the cost model,
the search is deterministic, budgets are enforced, bad data is refused; CORNN when the data is there."""
import dataclasses
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.data import Dataset  # noqa: E402
from swat_edge.device.cost import estimate  # noqa: E402
from swat_edge.device.targets import load_target  # noqa: E402
from swat_edge.errors import DataError, InputError  # noqa: E402
from swat_edge.model import forward, model_stats, model_to_bytes  # noqa: E402
from swat_edge.search.embedding.autoencoder import build_autoencoder  # noqa: E402
from swat_edge.search.embedding.decode import soft_forward, split_output, to_sparse_mlp  # noqa: E402
from swat_edge.search.embedding.storage import load_embedding  # noqa: E402
from swat_edge.search.latent import LatentSettings, fine_tune  # noqa: E402
from swat_edge.search.objective import (  # noqa: E402
    Budgets,
    LinearizedCost,
    ObjectiveWeights,
    expected_nonzero_params,
    harden_stack,
    penalties,
    relax,
    stack_networks,
    unstack,
)
from swat_edge.search.run import SearchSettings, run_search, single_activation  # noqa: E402

FAST = SearchSettings(latent=LatentSettings(steps=40, starts_per_depth=3, eval_every=8, cost_every=4),
                      finetune_steps=30)


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return load_embedding(tiny_run)


@pytest.fixture(scope="module")
def default_shape_module():
    from swat_edge.search.embedding.config import make_config

    return build_autoencoder(make_config("default"), seed=1).eval()  # untrained: any decoder output will do


def _dataset(n=160, seed=0, n_features=2, noise=0.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 5, size=(n, n_features))
    y = np.sin(x[:, 0]) + 0.3 * x[:, -1] ** 2 + noise * rng.normal(size=n)
    return Dataset("synthetic.csv", x, y[:, None], tuple(f"f{i}" for i in range(n_features)), ("y",), "0" * 64)


def _stack(module, n_per_depth=3, seed=0):
    fam = module.config.family
    gen = torch.Generator().manual_seed(seed)
    nets = [split_output(module.decode(torch.randn(n_per_depth, module.config.architecture.latent_dim,
                                                   generator=gen) * 2, k), fam, k) for k in fam.depths]
    return stack_networks(nets, fam.max_depth)


@pytest.mark.parametrize("n_inputs", [2, 5])
def test_stacked_hard_networks_equal_the_exported_models(default_shape_module, n_inputs):
    """Every depth in one padded batch: the forward, the parameter count and the per-candidate network all agree
    with what to_sparse_mlp exports, for each candidate and its own threshold."""
    with torch.no_grad():
        stack = _stack(default_shape_module)
        thresholds = torch.linspace(0.0, 0.6, stack.depth.shape[0])
        hard = harden_stack(stack, thresholds, n_inputs)
        x = np.random.default_rng(1).uniform(-1, 1, size=(40, n_inputs))
        y = soft_forward(hard.net, torch.as_tensor(x, dtype=torch.float32)).numpy()
        nonzero = expected_nonzero_params(hard)
    assert sorted(set(stack.depth.tolist())) == [1, 2, 3, 4]
    for b in range(stack.depth.shape[0]):
        model = to_sparse_mlp(unstack(stack, b), 0, n_inputs=n_inputs, weight_threshold=float(thresholds[b]))
        assert len(model.hidden) == int(stack.depth[b])
        np.testing.assert_allclose(forward(model, x), y[b], rtol=1e-5, atol=1e-5)
        assert int(nonzero[b]) == model_stats(model).nonzero_params


def test_relaxation_tends_to_the_hard_network_and_penalties_skip_padding(default_shape_module):
    with torch.no_grad():
        stack = _stack(default_shape_module, n_per_depth=2, seed=3)
        t = torch.full((stack.depth.shape[0],), 0.2)
        soft = relax(stack, t, temperature=1e-4, weight_softness=0.1, n_inputs=3)
        hard = harden_stack(stack, t, 3)
        x = torch.rand(30, 3) * 2 - 1
        torch.testing.assert_close(soft_forward(soft.net, x), soft_forward(hard.net, x), atol=1e-3, rtol=1e-3)
        # padding layers are identities: they neither change the output nor count as parameters
        p_soft = penalties(soft, ObjectiveWeights(compactness=0, l1=0, sparsity=1.0), 1.0)
        torch.testing.assert_close(p_soft, expected_nonzero_params(hard), atol=0.05, rtol=1e-3)


def test_linearised_cost_is_the_cost_model_at_each_refresh(default_shape_module):
    target = load_target("raspi4")
    with torch.no_grad():
        stack = _stack(default_shape_module, n_per_depth=2, seed=4)
        t = torch.full((stack.depth.shape[0],), 0.3)
        hard = harden_stack(stack, t, 2)
    cost = LinearizedCost(target, n_inputs=2, n_outputs=1, activations=stack.net.activations)
    latency, size = cost(hard)  # first call refreshes: exact
    for b in range(stack.depth.shape[0]):
        model = to_sparse_mlp(unstack(stack, b), 0, n_inputs=2, weight_threshold=0.3)
        exact = estimate(model, target, dtype="fp32", compile=False)
        assert float(latency[b]) == pytest.approx(exact.latency_us[0], rel=1e-5)
        assert float(size[b]) == pytest.approx(exact.model_bytes, rel=1e-5)
    # between refreshes the value moves with its gradient; at the anchor it is unchanged
    soft = relax(stack, t, temperature=0.5, weight_softness=0.1, n_inputs=2)
    cost.refresh(soft)
    again, _ = cost(soft)
    exact_soft, _ = cost.exact(cost._quantities(soft), [int(k) for k in soft.depth])
    torch.testing.assert_close(again, exact_soft.detach(), rtol=1e-5, atol=1e-5)


def test_budget_violation():
    b = Budgets(latency_us=20.0, size_bytes=1000.0)
    assert b.violation(19.0, 900.0) == 0.0
    assert b.violation(25.0, 900.0) == pytest.approx(0.25)
    assert b.violation(19.0, 1500.0) == pytest.approx(0.5)
    assert not Budgets().any and Budgets().violation(1e9, 1e9) == 0.0


def test_the_budget_hinges_grow_over_the_ramp_and_nothing_else_does():
    from swat_edge.search.latent import _budget_weights
    from swat_edge.search.objective import ObjectiveWeights

    weights = ObjectiveWeights(budget=5.0, latency=0.1)
    settings = LatentSettings(steps=600, budget_ramp_fraction=0.5)
    assert _budget_weights(weights, settings, 0).budget == 0.0
    assert _budget_weights(weights, settings, 150).budget == pytest.approx(2.5)  # half-way up the ramp
    assert _budget_weights(weights, settings, 300) == weights == _budget_weights(weights, settings, 600)
    ramped = _budget_weights(weights, settings, 100)
    assert (ramped.latency, ramped.size, ramped.sparsity) == (weights.latency, weights.size, weights.sparsity)
    assert _budget_weights(weights, LatentSettings(budget_ramp_fraction=0.0), 1) == weights
    with pytest.raises(InputError):
        LatentSettings(budget_ramp_fraction=1.5).check()


def test_search_finds_a_model_and_keeps_both_figures(tiny):
    data, test = _dataset(seed=0), _dataset(n=60, seed=1)
    r = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST, test=test)
    assert r.met_budgets and r.model is not None and r.latent_model is not None
    assert set(r.metrics) == {"latent_only", "fine_tuned"}
    assert set(r.metrics["fine_tuned"]) == {"train", "validation", "test"}
    ft, lo = r.metrics["fine_tuned"], r.metrics["latent_only"]
    # fine-tuning keeps its best validation iterate, and the choice is within `tolerance` of the best candidate
    assert ft["validation"].mse <= lo["validation"].mse * (1 + FAST.tolerance) + 1e-12
    # 160 rows (< 1,000): chosen by 5-fold cross-validation over all rows, refitted on all of them; the
    # validation figure is out-of-fold; the latent search itself used the 80/20 split
    assert ft["train"].rows == ft["validation"].rows == data.n_rows and ft["test"].rows == test.n_rows
    assert lo["train"].rows + lo["validation"].rows == data.n_rows and r.split_rows["folds"] == 5
    if r.chosen.origin == "search":  # pruning kept the masks: fine-tuning changed values, never the structure
        for a, b in zip(r.latent_model.layers, r.model.layers):
            np.testing.assert_array_equal(a.weight != 0, b.weight != 0)
            np.testing.assert_array_equal(a.mask, b.mask)
    else:
        assert r.chosen.origin in ("linear", "dense")
    # the [-1, 1] scaling of the training rows is folded into the model: raw data in, raw target out
    train = np.setdiff1d(np.arange(data.n_rows), r.validation_rows)
    x_n = data.x[train] * r.model.input_scale + r.model.input_offset
    np.testing.assert_allclose([x_n.min(axis=0), x_n.max(axis=0)], [[-1, -1], [1, 1]], atol=1e-12)
    assert r.model.feature_names == data.feature_names and r.model.calibration is not None
    pred = forward(r.model, data.x)
    assert abs(float(pred.mean()) - float(data.y.mean())) < 0.5 * float(data.y.std())
    assert r.estimate is not None and r.estimate.target == "raspi4" and r.dtype == "fp32"
    assert sum(c.chosen for c in r.candidates) == 1 and r.chosen is not None
    assert len(r.history) == 5 and r.history[-1]["step"] == 40


def test_mixed_layers_are_also_fine_tuned_projected_onto_one_activation(tiny):
    data = _dataset(seed=3)
    on = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST)
    off = run_search(data, embedding=tiny, target=load_target("raspi4"),
                     settings=dataclasses.replace(FAST, single_activation_candidates=False))
    assert not any(c.projected for c in off.candidates)  # no budget: only the pool's own networks
    plain = [c for c in on.candidates if not c.projected]
    projected = [c for c in on.candidates if c.projected]
    assert [(c.depth, c.start, c.step) for c in plain] == [(c.depth, c.start, c.step) for c in off.candidates]
    assert projected, "the tiny embedding decodes mixed layers; each should get a projected sibling"
    for c in projected:  # a sibling of a pool network: same snapshot, predicted no slower
        twin = next(p for p in plain if (p.depth, p.start, p.step) == (c.depth, c.start, c.step))
        assert c.latency_us <= twin.latency_us and c.nonzero_params == twin.nonzero_params


def test_same_data_settings_and_seed_give_the_same_model_bit_for_bit(tiny):
    data = _dataset(seed=2)
    first = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST)
    # references fitted by worker processes while the latent search runs: every candidate is the same
    reports = []
    second = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST, jobs=3,
                        progress=lambda done, total, info: reports.append((done, total, info)))
    # fine-tuning's progress follows the latent search's, counts every piece once, in order, whichever thread
    # fitted it, and ends at the best validation MSE of all candidates
    stages = [info.get("stage", "search") for _, _, info in reports]
    fitting = [(done, total, info) for done, total, info in reports if info.get("stage") == "fine-tune"]
    assert stages == sorted(stages, key=lambda name: name == "fine-tune") and fitting
    total = fitting[-1][1]
    assert [done for done, _, _ in fitting] == list(range(fitting[0][0], total + 1))
    assert fitting[-1][2]["best_val_mse"] == min(c.finetuned_val_mse for c in second.candidates)
    assert model_to_bytes(first.model) == model_to_bytes(second.model)
    assert [model_to_bytes(m) for m in first.candidate_models] == [model_to_bytes(m) for m in second.candidate_models]
    assert [c.origin for c in first.candidates] == [c.origin for c in second.candidates]
    other = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=dataclasses.replace(FAST, seed=1))
    assert model_to_bytes(other.model) != model_to_bytes(first.model)


def test_the_chosen_network_is_polished_in_place_on_the_front(tiny):
    data = _dataset(n=1200, seed=8)  # >= 1,000 rows: the holdout split, where the chosen network is polished
    stages = []
    plain = run_search(data, embedding=tiny, target=load_target("raspi4"),
                       settings=dataclasses.replace(FAST, polish_rounds=0))
    reports = []
    polished = run_search(data, embedding=tiny, target=load_target("raspi4"),
                          settings=dataclasses.replace(FAST, polish_rounds=6), stage=stages.append,
                          progress=lambda done, total, info: reports.append((done, total, info)))
    assert any("up to 6 rounds of neuron resampling" in message for message in stages)
    # polishing's progress: its rounds counted after fine-tuning's fits, ending where they stopped
    rounds = [(done, total, info["best_val_mse"]) for done, total, info in reports if info.get("stage") == "polish"]
    assert rounds and reports[-1][2]["stage"] == "polish" and rounds[0][:2] == (0, 6 * sum(
        c.polished for c in polished.candidates))
    assert [done for done, _, _ in rounds] == [*range(rounds[-1][0] + 1), rounds[-1][0]] and rounds[-1][1] == rounds[-1][0]
    assert any(note.startswith("polished by neuron resampling:") for note in polished.notes)
    assert not any("neuron resampling" in note for note in plain.notes)
    before, after = plain.chosen, polished.chosen
    assert (after.origin, after.depth, after.nonzero_params, after.latency_us) == \
        (before.origin, before.depth, before.nonzero_params, before.latency_us)  # the same network, priced the same
    # never worse; whether a round finds a lower minimum here depends on the CPU's floating point (BLAS kernels):
    # test_polish.py pins that it does on a fit known to stall
    assert after.finetuned_val_mse <= before.finetuned_val_mse
    # the rounds' second starts fitted by a worker process: the same network
    helped = run_search(data, embedding=tiny, target=load_target("raspi4"),
                        settings=dataclasses.replace(FAST, polish_rounds=6), jobs=2)
    assert model_to_bytes(helped.model) == model_to_bytes(polished.model)
    assert after.finetuned_val_mse == pytest.approx(polished.metrics["fine_tuned"]["validation"].mse, rel=1e-9)
    for a, b in zip(plain.model.layers, polished.model.layers):  # weights may move, the structure does not
        np.testing.assert_array_equal(a.weight != 0, b.weight != 0)
    # up to polish_cheaper (2) cheaper networks are polished too; every other candidate is as it was
    changed = [(b, a) for b, a in zip(plain.candidates, polished.candidates) if not b.chosen
               and b.finetuned_val_mse != a.finetuned_val_mse]
    assert after.polished and not any(c.polished for c in plain.candidates)
    assert 2 <= sum(c.polished for c in polished.candidates) <= 3 and all(a.polished for _, a in changed)
    for b, a in changed:
        assert (a.origin, a.depth, a.latency_us) == (b.origin, b.depth, b.latency_us)
        assert a.finetuned_val_mse < b.finetuned_val_mse and a.latency_us < after.latency_us
    alone = run_search(data, embedding=tiny, target=load_target("raspi4"),
                       settings=dataclasses.replace(FAST, polish_rounds=6, polish_cheaper=0))
    assert model_to_bytes(alone.model) == model_to_bytes(polished.model)
    others = [(c.origin, c.depth, c.finetuned_val_mse) for c in plain.candidates if not c.chosen]
    assert others == [(c.origin, c.depth, c.finetuned_val_mse) for c in alone.candidates if not c.chosen]


def test_on_a_target_that_charges_every_weight_the_polished_networks_are_pruned_into_cheaper_candidates(tiny):
    data = _dataset(n=1200, seed=8)  # the holdout split: polished, then pruned
    settings = dataclasses.replace(FAST, polish_rounds=2)
    stages, reports = [], []
    m4 = run_search(data, embedding=tiny, target=load_target("cortex-m4"), settings=settings, stage=stages.append,
                    progress=lambda done, total, info: reports.append(info.get("stage")))
    unpruned = run_search(data, embedding=tiny, target=load_target("cortex-m4"),
                          settings=dataclasses.replace(settings, prune_rounds=0))
    pruned = [(c, m) for c, m in zip(m4.candidates, m4.candidate_models) if c.origin == "pruned"]
    assert pruned and "prune" in reports and any(s.startswith("pruning the polished networks") for s in stages)
    assert any(note.startswith("pruned weight by weight") for note in m4.notes)
    assert not any(c.origin == "pruned" for c in unpruned.candidates)
    # every pruned candidate is a polished network of the front with fewer weights, so cheaper on this target
    polished = [c for c in m4.candidates if c.polished]
    for candidate, model in pruned:
        assert model_stats(model).nonzero_params == candidate.nonzero_params
        assert any(candidate.depth == parent.depth and candidate.nonzero_params < parent.nonzero_params
                   and candidate.latency_us < parent.latency_us for parent in polished)
    # the choice is budget-first among all candidates, the pruned ones included: never worse than the network
    # chosen without pruning by more than the tolerance, never more expensive
    assert m4.chosen.latency_us <= unpruned.chosen.latency_us
    assert m4.chosen.finetuned_val_mse <= (1 + settings.tolerance) * min(
        c.finetuned_val_mse for c in m4.candidates)
    again = run_search(data, embedding=tiny, target=load_target("cortex-m4"), settings=settings, jobs=2)
    assert model_to_bytes(again.model) == model_to_bytes(m4.model)  # deterministic, any number of jobs
    # onnxruntime runs dense kernels: a zero weight costs what any weight does there, so nothing is pruned
    raspi = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=settings)
    assert not any(c.origin == "pruned" for c in raspi.candidates)


def test_the_chosen_network_is_pruned_while_the_choice_would_take_it_the_others_within_their_own_tolerance():
    from types import SimpleNamespace

    from swat_edge.search.run import _prune_limits

    best, chosen, cheaper = (SimpleNamespace(val_mse=v) for v in (1.0, 1.04, 3.0))
    settings = SearchSettings(tolerance=0.05)
    # pruned beyond 1.05 (5% above the best) the chosen network could no longer be chosen; 5% above its own 1.04
    # would let its chain go on from networks the choice never takes
    assert _prune_limits([best, chosen, cheaper], [chosen, cheaper], settings) == pytest.approx([1.05, 3.15])
    weighted = dataclasses.replace(settings, choice="weighted")  # a trade-off, not "near the best": its own
    assert _prune_limits([best, chosen, cheaper], [chosen, cheaper], weighted) == pytest.approx([1.092, 3.15])


def test_the_work_queue_runs_each_item_once_and_keeps_item_order_whoever_drains_it():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from swat_edge.search.workers import WorkQueue

    ran: list[tuple[int, str]] = []

    def square(k: int) -> int:
        ran.append((k, threading.current_thread().name))
        return k * k

    queue = WorkQueue(40)
    with ThreadPoolExecutor(max_workers=2) as pool:
        helpers = [pool.submit(queue.drain, square) for _ in range(2)]
        queue.drain(square)  # the calling thread joins in, as run_search's does after its own fits
        for helper in helpers:
            helper.result()
    assert queue.results == [k * k for k in range(40)]
    assert sorted(k for k, _ in ran) == list(range(40))


def test_a_cancelled_work_queue_hands_out_nothing_more():
    from swat_edge.search.workers import WorkQueue

    queue = WorkQueue(10)

    def run(k: int) -> int:
        if k == 3:
            queue.cancel()  # as run_search does on an error or Ctrl-C
        return k

    queue.drain(run)
    assert queue.results == [0, 1, 2, 3] + [None] * 6


def test_worker_processes_from_the_fork_server_run_the_pieces_they_receive(monkeypatch):
    import os

    from swat_edge.search import workers
    from swat_edge.search.workers import piece_runner, worker_processes

    if not worker_processes():
        pytest.skip("no worker processes here")
    # the fork path is run in a fresh interpreter (below), as a command-line search runs it, never from this
    # process, which has run torch and onnxruntime
    monkeypatch.setattr(workers, "start_method", lambda: "forkserver")
    parent = os.getpid()
    pieces = [functools.partial(pow, k) for k in range(3)] + [os.getpid]
    with piece_runner(pieces, 2, processes=True) as remote:
        assert [remote(k, 2) for k in range(3)] == [0, 1, 4]
        assert remote(3) != parent
    with piece_runner(pieces, 1, processes=False) as local:
        assert local(2, 3) == 8 and local(3) == parent


def test_workers_are_forked_only_while_the_process_has_no_more_threads_than_at_import():
    import subprocess
    import sys

    # (the pool's own threads take a moment to end after it closes: a search's time apart, not this loop's)
    script = ("import functools, os, threading, time; import swat_edge.search.workers as w\n"
              "pieces = [functools.partial(pow, k) for k in range(3)] + [os.getpid]\n"
              "for _ in range(2):\n"
              "    for _ in range(100):\n"
              "        if w.start_method() == 'fork': break\n"
              "        time.sleep(0.05)\n"
              "    print(w.start_method())\n"
              "    with w.piece_runner(pieces, 2, processes=True) as remote:\n"
              "        print([remote(k, 2) for k in range(3)] == [0, 1, 4] and remote(3) != os.getpid())\n"
              "done = threading.Event(); t = threading.Thread(target=done.wait); t.start()\n"
              "print(w.start_method())\n"
              "done.set(); t.join()")
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             timeout=120).stdout.split()
    quiet = "fork" if sys.platform == "linux" and sys.version_info >= (3, 11) else "forkserver"
    assert printed == [quiet, "True", quiet, "True", "forkserver"]  # a second search forks again; a thread: not


def _worker_processes_here(_: int) -> bool:
    from swat_edge.search.workers import worker_processes

    return worker_processes()


def test_a_daemonic_process_fits_in_threads_not_children():
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:  # Pool workers are daemonic: no children allowed
        assert pool.map(_worker_processes_here, [0]) == [False]


def test_a_budget_nobody_meets_reports_the_closest_candidate(tiny):
    r = run_search(_dataset(), embedding=tiny, target=load_target("raspi4"), settings=FAST,
                   budgets=Budgets(latency_us=1.0))
    assert not r.met_budgets and r.model is None and r.closest is not None
    assert r.closest.latency_us > 1.0 and r.closest.violation == pytest.approx(r.closest.latency_us - 1.0)


def test_a_budget_that_is_met_is_enforced_on_the_result(tiny):
    target = load_target("raspi4")
    free = run_search(_dataset(), embedding=tiny, target=target, settings=FAST)
    budget = free.estimate.latency_us[0] * 1.5
    r = run_search(_dataset(), embedding=tiny, target=target, settings=FAST, budgets=Budgets(latency_us=budget,
                                                                                           size_bytes=10_000))
    assert r.met_budgets and r.estimate.latency_us[0] <= budget and r.estimate.model_bytes <= 10_000
    assert all(c.latency_us <= budget for c in r.candidates)


@pytest.mark.parametrize(
    "data, message",
    [
        (_dataset(n=19), r"has 19 rows; the search needs at least 20 \(16 to train and 4 held out"),
        (dataclasses.replace(_dataset(), y=np.full((160, 1), 2.5)),
         r"column 'y': the target is constant \(2.5\) on all 128 training rows; there is nothing to learn"),
    ],
)
def test_bad_data_is_refused_with_the_limit_and_the_fix(tiny, data, message):
    with pytest.raises((InputError, DataError), match=message):
        run_search(data, embedding=tiny, target=load_target("raspi4"), settings=FAST, embedding_name="tiny")


def test_fine_tune_records_its_validation_curve():
    from swat_edge.model import random_model

    model = random_model([2, 3, 1], seed=0, normalization=False)
    x = np.random.default_rng(0).uniform(-1, 1, size=(64, 2))
    y = forward(model, x) + 0.1
    history = []
    tuned = fine_tune(model, x, y, x_val=x, y_val=y, steps=50, check_every=10, history=history)
    assert [s for s, _ in history] == [0, 10, 20, 30, 40, 50]
    assert min(v for _, v in history) == pytest.approx(float(np.mean((forward(tuned, x) - y) ** 2)))
    assert history[-1][1] < history[0][1]


def test_cornn_task_end_to_end(tiny, cornn_dir):
    from swat_edge.search.compare_decoders import load_cornn_task

    task = load_cornn_task(cornn_dir, "sphere")
    data = Dataset("sphere", task.x_train, task.y_train[:, None], ("x", "y"), ("f",), "0" * 64)
    test = Dataset("sphere-test", task.x_test, task.y_test[:, None], ("x", "y"), ("f",), "0" * 64)
    # Accuracy only (the cost terms are tested above), and for Adam fine-tuning enough steps for the tiny family
    # (2-3-3-1) to fit the bowl: seeds 0-4 gave test MSE 0.003-0.004 where FAST's 30 steps left the mean's 0.18.
    settings = dataclasses.replace(FAST, finetune_steps=600, finetune_lr=0.1,
                                   weights=ObjectiveWeights(compactness=0.0, sparsity=0.0, l1=0.0, latency=0.0))
    r = run_search(data, embedding=tiny, target=load_target("raspi4"), settings=settings, test=test)
    assert r.split_rows == {"train": 3000, "validation": 750, "test": 1250}
    # Baselines on the same split, in the same units (target scaled to [-1, 1] by the training rows):
    # predicting the training mean, and a least-squares plane.
    train = np.setdiff1d(np.arange(len(task.x_train)), r.validation_rows)
    x_tr, y_tr = task.x_train[train], task.y_train[train]
    y_scale = 2.0 / (y_tr.max() - y_tr.min())
    mean_mse = np.mean(((y_tr.mean() - task.y_test) * y_scale) ** 2)
    plane, *_ = np.linalg.lstsq(np.c_[x_tr, np.ones(len(x_tr))], y_tr, rcond=None)
    linear_mse = np.mean(((np.c_[task.x_test, np.ones(len(task.x_test))] @ plane - task.y_test) * y_scale) ** 2)
    mse = r.metrics["fine_tuned"]["test"].mse
    assert mse == pytest.approx(np.mean(((forward(r.model, task.x_test)[:, 0] - task.y_test) * y_scale) ** 2), rel=1e-9)
    assert mse < min(mean_mse, linear_mse) / 10, (mse, mean_mse, linear_mse)


def test_single_activation_projection_keeps_weights_and_picks_the_majority():
    from swat_edge.model import Layer, SparseMLP

    hidden = (Layer.make(np.ones((2, 4)), np.zeros(4), ("relu", "tanh", "tanh", "relu"), [True, True, True, False]),
              Layer.make(np.ones((4, 2)), np.zeros(2), ("sigmoid", "relu"), [True, True]))
    model = SparseMLP.make(hidden, Layer.make(np.ones((2, 1)), np.zeros(1)))
    target = load_target("raspi4")
    projected = single_activation(model, target)
    assert projected.hidden[0].activations == ("tanh",) * 4  # 2 tanh vs 1 active relu
    assert projected.hidden[1].activations == ("relu",) * 2  # a tie: relu is cheaper than sigmoid on raspi4
    for a, b in zip(model.layers, projected.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert estimate(projected, target).latency_us[0] < estimate(model, target).latency_us[0]


def test_projected_scores_equal_a_least_squares_output_layer_on_the_exported_models(default_shape_module):
    """The search's variable-projection score, against an oracle: each exported hard network's hidden layers run by
    the reference forward, its output layer refitted by numpy least squares (zero output weights kept zero)."""
    from swat_edge.model import _layer_forward
    from swat_edge.search.latent import _projected_val_mse, _SearchData

    n_inputs = 2
    rng = np.random.default_rng(3)
    x_train, x_val = rng.uniform(-1, 1, size=(300, n_inputs)), rng.uniform(-1, 1, size=(50, n_inputs))
    f = lambda x: np.sin(2 * x[:, :1]) + x[:, 1:] ** 2  # noqa: E731
    data = _SearchData(*(torch.as_tensor(a, dtype=torch.float32) for a in (x_train, f(x_train), x_val, f(x_val))))
    with torch.no_grad():
        stack = _stack(default_shape_module)
        thresholds = torch.full((stack.depth.shape[0],), 0.2)
        hard = harden_stack(stack, thresholds, n_inputs)
        scores = _projected_val_mse(hard.net, data, rows=300).numpy()
    for b in range(stack.depth.shape[0]):
        model = to_sparse_mlp(unstack(stack, b), 0, n_inputs=n_inputs, weight_threshold=0.2)
        hidden = lambda x: functools.reduce(lambda h, layer: _layer_forward(layer, h), model.hidden,  # noqa: E731
                                            x.astype(np.float32).astype(np.float64))
        keep = model.output.weight[:, 0] != 0
        design = lambda x: np.hstack([hidden(x)[:, keep], np.ones((len(x), 1))])  # noqa: E731
        coef = np.linalg.lstsq(design(x_train), f(x_train), rcond=None)[0]
        oracle = float(np.mean((design(x_val) @ coef - f(x_val)) ** 2))
        assert scores[b] == pytest.approx(oracle, rel=2e-3, abs=1e-6), b
