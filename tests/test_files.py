import os
from pathlib import Path

import pytest

from swat_edge.errors import MissingFileError, OutputExistsError, UsageError
from swat_edge.files import atomic_path, atomic_write_text, check_input_file


def test_interrupted_write_leaves_nothing(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest, force=False) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert not dest.exists()
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_old_file(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest, force=True) as tmp:
            tmp.write_text("new")
            raise RuntimeError("boom")
    assert dest.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_existing_output_needs_force(tmp_path):
    dest = tmp_path / "out.txt"
    atomic_write_text(dest, "a", force=False)
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        atomic_write_text(dest, "b", force=False)
    atomic_write_text(dest, "b", force=True)
    assert dest.read_text() == "b"


def test_unwritable_folder_is_a_usage_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:
        # Root may write into a 0500 folder; answer os.access as the kernel answers any other user, so the
        # check runs here too (CI runs as root).
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: (not mode & os.W_OK or Path(p) != folder)
                            and real_access(p, mode, **kw))
    with pytest.raises(UsageError, match=r"x\.txt: cannot write to folder .*ro \(permission denied\)"):
        atomic_write_text(folder / "x.txt", "a", force=False)
    assert list(folder.iterdir()) == []


def test_an_export_under_a_regular_file_fails_before_any_work_for_everyone(tmp_path):
    # Unwritable for root too: the "folder" is a file. The export refuses before compiling and leaves it as is.
    from swat_edge.export.pipeline import export_onnx_file
    from swat_edge.model import random_model

    (tmp_path / "some_file").write_text("keep me")
    with pytest.raises(UsageError, match=r"out\.onnx: .*some_file is not a folder"):
        export_onnx_file(random_model([2, 3, 1], seed=0), tmp_path / "some_file" / "out.onnx")
    assert (tmp_path / "some_file").read_text() == "keep me" and os.listdir(tmp_path) == ["some_file"]


def test_output_under_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        atomic_write_text(tmp_path / "file" / "x.txt", "a", force=False)


def test_missing_input(tmp_path):
    with pytest.raises(MissingFileError, match="no such model file"):
        check_input_file(tmp_path / "nope.safetensors", "model file")
