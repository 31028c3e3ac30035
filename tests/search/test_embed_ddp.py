"""Two training processes under torchrun (gloo on CPU) end with identical weights."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _launch(out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "swat_edge", "embed", "train", "--preset", "tiny", "--out", str(out), "--steps", "4",
           "--checkpoint-every", "2", "--device", "cpu"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


def test_two_process_ddp_run_ends_with_identical_weights_on_both_ranks(tmp_path):
    out = tmp_path / "ddp"
    proc = _launch(out)
    if proc.returncode != 0 and "Signal 6 (SIGABRT)" in proc.stderr:
        # A rank aborted once in ~35 launches on a shared CI machine (gloo over loopback; not reproduced in 28
        # more): launched once more from scratch, and the first launch's output kept in the warnings summary.
        warnings.warn(f"the first two-process launch aborted; launched again. Its stderr: {proc.stderr[-4000:]}")
        shutil.rmtree(out, ignore_errors=True)
        proc = _launch(out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((out / "checkpoint" / "train_state.json").read_text())
    meta = json.loads((out / "embedding.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 4
    hashes = state["rank_weight_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1] == meta["weights_sha256"]
    assert "2 process(es)" in proc.stdout
