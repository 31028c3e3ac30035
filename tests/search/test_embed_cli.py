import json

import pytest
from clirun import python_without_torch

from swat_edge.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_cli_import_does_not_import_torch():
    proc = python_without_torch("import swat_edge.cli", block=False)
    assert proc.returncode == 0, proc.stderr


def test_without_torch_the_search_package_and_embed_commands_say_what_to_install(tmp_path):
    proc = python_without_torch("import swat_edge.search")
    assert "MissingExtraError" in proc.stderr and "pip install 'swat-edge[search]'" in proc.stderr
    proc = python_without_torch(f"from swat_edge.cli import main; main(['embed', 'train', '--out', {str(tmp_path / 'x')!r}])")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: swat_edge.search (the embedding and the search) needs torch: pip install 'swat-edge[search]'"
    ]


@pytest.mark.torch
def test_train_then_eval(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    code, stdout, _ = _run(["embed", "train", "--preset", "tiny", "--out", str(out), "--steps", "4",
                            "--checkpoint-every", "2", "--device", "cpu"], capsys)
    assert code == 0
    assert "step 2: checkpoint; median R^2 by depth" in stdout and "trained steps 0-4 of 4" in stdout
    report = tmp_path / "eval.json"
    code, stdout, _ = _run(["embed", "eval", str(out), "--mlps-per-depth", "8", "--pairs", "50",
                            "--json", str(report)], capsys)
    assert code == 0
    assert "quadratic R^2" in stdout and "Spearman" in stdout
    payload = json.loads(report.read_text())
    assert [r["depth"] for r in payload["rows"]] == [1, 2] and payload["steps"] == 4
    code, stdout, _ = _run(["embed", "train", "--preset", "tiny", "--out", str(out), "--steps", "4", "--resume"],
                           capsys)
    assert code == 0 and "nothing to train" in stdout


@pytest.mark.torch
@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["embed", "train", "--preset", "huge", "--out", "{tmp}/a"], 2, "error: unknown preset 'huge'"),
        (["embed", "train", "--preset", "tiny", "--out", "{tmp}/a", "--device", "tpu"], 2, "error: --device 'tpu'"),
        (["embed", "train", "--preset", "tiny", "--out", "{tmp}/a", "--config", "{tmp}/c.json"], 1,
         "error: config: family: max_width is 0"),
        (["embed", "train", "--preset", "tiny", "--out", "{tmp}/a", "--resume"], 2, "no such training config"),
        (["embed", "eval", "{tmp}/nothing"], 2, "no such embedding file"),
    ],
)
def test_bad_input_gives_one_line_and_an_exit_code(argv, code, message, tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "c.json").write_text(json.dumps({"family": {"max_width": 0}}))
    got, _, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert got == code
    assert len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.torch
def test_eval_refuses_a_corrupted_embedding(tiny_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run / "checkpoint", copy)
    data = bytearray((copy / "embedding.safetensors").read_bytes())
    data[100] ^= 1
    (copy / "embedding.safetensors").write_bytes(bytes(data))
    code, _, err = _run(["embed", "eval", str(copy)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "does not match" in err
