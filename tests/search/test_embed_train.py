import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.errors import MissingFileError, UsageError  # noqa: E402
from swat_edge.search.embedding.autoencoder import build_autoencoder  # noqa: E402
from swat_edge.search.embedding.config import make_config  # noqa: E402
from swat_edge.search.embedding.storage import load_checkpoint, load_embedding, weights_to_bytes  # noqa: E402
from swat_edge.search.embedding.train import is_hard_step, learning_rate, param_loss_weight, train_embedding  # noqa: E402


def _weights(directory):
    return weights_to_bytes(load_embedding(directory).module)


def test_same_seed_same_weights_other_seed_other_weights(tiny_run, tiny_config, tmp_path):
    again = train_embedding(tiny_config, tmp_path / "again", checkpoint_every=100, device="cpu")
    assert again.finished and again.step == 20
    assert _weights(tmp_path / "again") == _weights(tiny_run)
    other = make_config("tiny", seed=1)
    train_embedding(other, tmp_path / "other", checkpoint_every=100, device="cpu")
    assert _weights(tmp_path / "other") != _weights(tiny_run)
    assert _weights(tiny_run) != weights_to_bytes(build_autoencoder(tiny_config))  # training moved the weights


def test_prefetching_workers_give_the_same_weights(tiny_run, tiny_config, tmp_path):
    result = train_embedding(tiny_config, tmp_path / "prefetch", checkpoint_every=100, device="cpu", data_workers=2)
    assert result.finished
    assert _weights(tmp_path / "prefetch") == _weights(tiny_run)


def test_resume_replays_exactly_what_an_uninterrupted_run_does(tiny_run, tiny_config, tmp_path):
    first = train_embedding(tiny_config, tmp_path / "run", until=9, checkpoint_every=4, device="cpu")
    assert not first.finished and first.step == 9
    assert not (tmp_path / "run" / "embedding.json").exists()  # only a checkpoint until the schedule is done
    assert load_embedding(tmp_path / "run").steps == 9
    second = train_embedding(tiny_config, tmp_path / "run", resume=True, checkpoint_every=4, device="cpu")
    assert second.start_step == 9 and second.finished
    assert _weights(tmp_path / "run") == _weights(tiny_run)
    history = load_checkpoint(tmp_path / "run", tiny_config).history
    assert [h["step"] for h in history] == [4, 8, 9, 12, 16, 20]


def test_resume_refuses_another_config(tiny_run, tiny_config):
    other = make_config("tiny", overrides={"recipe": {"lr": 0.002}})
    with pytest.raises(UsageError, match=r"was trained with another config \(recipe\.lr: 0\.001 in the checkpoint, "
                                         r"0\.002 now\)"):
        train_embedding(other, tiny_run, resume=True, device="cpu")
    with pytest.raises(UsageError, match=r"already exists and is not an empty folder; pass --resume"):
        train_embedding(tiny_config, tiny_run, device="cpu")


def test_resume_without_a_run_is_refused(tmp_path, tiny_config):
    with pytest.raises(MissingFileError, match=r"config\.json: no such training config"):
        train_embedding(tiny_config, tmp_path / "none", resume=True, device="cpu")


def test_checkpoint_holds_optimizer_state_without_pickle(tiny_run, tiny_config):
    from safetensors.torch import load_file

    files = sorted(p.name for p in (tiny_run / "checkpoint").iterdir())
    assert files == ["embedding.json", "embedding.safetensors", "optimizer.safetensors", "train_state.json"]
    tensors = load_file(tiny_run / "checkpoint" / "optimizer.safetensors")
    assert any(k.endswith(".exp_avg_sq") for k in tensors)
    state = json.loads((tiny_run / "checkpoint" / "train_state.json").read_text())
    assert state["step"] == 20 and state["optimizer"]["param_groups"][0]["lr"] > 0
    ckpt = load_checkpoint(tiny_run, tiny_config)
    opt = torch.optim.Adam(build_autoencoder(tiny_config).parameters())
    opt.load_state_dict(ckpt.optimizer_state)
    assert float(opt.state_dict()["state"][0]["step"]) == 20.0


def test_training_learns(tmp_path):
    cfg = make_config("tiny", overrides={"recipe": {"lr": 0.003, "batch_size": 32}}, steps=100)
    result = train_embedding(cfg, tmp_path / "learn", checkpoint_every=50, device="cpu")
    first, last = result.history[0], result.history[-1]
    assert last["r2_depth1"] > 0.6 and last["r2_depth1"] > first["r2_depth1"]
    assert result.mlps_per_s > 0


def test_schedules():
    recipe = make_config("default").recipe
    assert learning_rate(recipe, 0) == pytest.approx(recipe.lr / recipe.warmup_steps)
    assert learning_rate(recipe, recipe.warmup_steps) == pytest.approx(recipe.lr)
    assert learning_rate(recipe, recipe.steps) == pytest.approx(recipe.lr * recipe.final_lr_fraction)
    assert param_loss_weight(recipe, 0) == recipe.param_loss_weight
    assert param_loss_weight(recipe, 10**9) == pytest.approx(0.01 * recipe.param_loss_weight)
    share = sum(is_hard_step(recipe, s) for s in range(1000)) / 1000
    assert abs(share - recipe.hard_fraction) < 0.06


def test_bad_training_arguments(tmp_path, tiny_config):
    with pytest.raises(UsageError, match=r"--checkpoint-every is 0"):
        train_embedding(tiny_config, tmp_path / "x", checkpoint_every=0, device="cpu")
    with pytest.raises(UsageError, match=r"--until is 0"):
        train_embedding(tiny_config, tmp_path / "x", until=0, device="cpu")


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path, tiny_config):
    from swat_edge.search.embedding.storage import write_run_config

    (tmp_path / "early").mkdir()
    write_run_config(tmp_path / "early", tiny_config)
    result = train_embedding(tiny_config, tmp_path / "early", resume=True, until=2, device="cpu")
    assert result.start_step == 0 and result.step == 2
