"""files.read_json: a JSON file's content, or one line naming the file and what is wrong with it."""
from __future__ import annotations

from pathlib import Path

import pytest

from swat_edge.errors import InputError, MissingFileError, ModelFileError, UsageError
from swat_edge.files import read_json


def test_reads_any_json_value(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": [1, 2.5, null]}', encoding="utf-8")
    (tmp_path / "b.json").write_text("[]", encoding="utf-8")
    assert read_json(tmp_path / "a.json") == {"x": [1, 2.5, None]}
    assert read_json(str(tmp_path / "b.json")) == []


def test_missing_file_names_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nowhere\.json: no such baseline file$"):
        read_json(tmp_path / "nowhere.json", "baseline file")


def test_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is a directory, expected a config file"):
        read_json(tmp_path, "config file")


def test_invalid_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"a": 1,\n  oops}', encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_json(path)
    expected = "not valid JSON (line 2, column 3: Expecting property name enclosed in double quotes)"
    assert str(err.value) == f"{path}: {expected}"
    assert "\n" not in str(err.value)


def test_non_utf8_is_not_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match=r"binary\.json: not a JSON file \(not UTF-8 text\)$"):
        read_json(path)


def test_error_class_and_hint_are_the_callers(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{", encoding="utf-8")
    message = r"state\.json: not valid JSON \(line 1, .*\); the checkpoint is corrupted$"
    with pytest.raises(ModelFileError, match=message):
        read_json(path, "checkpoint", error=ModelFileError, hint="the checkpoint is corrupted")
