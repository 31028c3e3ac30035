import os

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


def test_unwritable_folder_is_a_usage_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(UsageError, match="cannot write"):
        atomic_write_text(folder / "x.txt", "a", force=False)


def test_output_under_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        atomic_write_text(tmp_path / "file" / "x.txt", "a", force=False)


def test_missing_input(tmp_path):
    with pytest.raises(MissingFileError, match="no such model file"):
        check_input_file(tmp_path / "nope.safetensors", "model file")
