"""Two training processes under torchrun (gloo on CPU) end with identical weights."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_two_process_ddp_run_ends_with_identical_weights_on_both_ranks(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "swat_edge", "embed", "train", "--preset", "tiny", "--out", str(out), "--steps", "4",
           "--checkpoint-every", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads((out / "checkpoint" / "train_state.json").read_text())
    meta = json.loads((out / "embedding.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 4
    hashes = state["rank_weight_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1] == meta["weights_sha256"]
    assert "2 process(es)" in proc.stdout
