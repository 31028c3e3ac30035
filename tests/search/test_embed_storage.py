import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from swat_edge.errors import MissingFileError, ModelFileError, SchemaVersionError, UsageError  # noqa: E402
from swat_edge.search.embedding import storage  # noqa: E402
from swat_edge.search.embedding.autoencoder import build_autoencoder  # noqa: E402
from swat_edge.search.embedding.config import make_config  # noqa: E402
from swat_edge.search.embedding.storage import load_embedding, save_embedding, weights_to_bytes  # noqa: E402


@pytest.fixture
def saved(tmp_path, tiny_config):
    module = build_autoencoder(tiny_config, seed=4)
    save_embedding(module, tmp_path / "emb", steps=7, metrics={"r2_depth1": 0.5})
    return tmp_path / "emb", module


def _edit_meta(directory, edit):
    path = directory / "embedding.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_round_trip(saved, tiny_config):
    directory, module = saved
    emb = load_embedding(directory)
    assert emb.config == tiny_config and emb.steps == 7 and emb.metrics == {"r2_depth1": 0.5}
    assert weights_to_bytes(emb.module) == weights_to_bytes(module)
    assert not emb.module.training
    # the .json or the .safetensors path designates the same embedding
    assert load_embedding(directory / "embedding.safetensors").weights_sha256 == emb.weights_sha256
    assert load_embedding(directory / "embedding.json").weights_sha256 == emb.weights_sha256


def test_files_are_safetensors_and_json_only(saved):
    from safetensors.torch import load_file

    directory, _ = saved
    assert sorted(p.name for p in directory.iterdir()) == ["embedding.json", "embedding.safetensors"]
    assert "encoder.0.weight" in load_file(directory / "embedding.safetensors")
    meta = json.loads((directory / "embedding.json").read_text())
    assert set(meta["config"]) == {"family", "distribution", "architecture", "recipe"}
    assert len(meta["weights_sha256"]) == 64


def test_corrupted_weights_are_refused_by_hash(saved):
    directory, _ = saved
    path = directory / "embedding.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"sha256 .* does not match .* recorded in its JSON") as err:
        load_embedding(directory)
    assert "\n" not in str(err.value)


def test_unreadable_weights_with_matching_hash_are_refused(saved):
    directory, _ = saved
    path = directory / "embedding.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    _edit_meta(directory, lambda m: m.update(weights_sha256=storage._sha256(path.read_bytes())))
    with pytest.raises(ModelFileError, match=r"corrupt safetensors data"):
        load_embedding(directory)


def test_config_that_does_not_match_the_weights_is_refused(saved):
    directory, _ = saved
    _edit_meta(directory, lambda m: m["config"]["architecture"].update(latent_dim=9))
    with pytest.raises(ModelFileError, match=r"has shape .* the config needs .*do not belong together"):
        load_embedding(directory)


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda m: m.update(format="other"), ModelFileError, r"not a swat-edge\.embedding file"),
        (lambda m: m.update(schema_version=99), SchemaVersionError, r"schema version 99 is not supported"),
        (lambda m: m.pop("weights_sha256"), ModelFileError, r"field 'weights_sha256' is missing"),
        (lambda m: m["config"]["family"].update(max_width=0), ModelFileError, r"family: max_width is 0"),
    ],
)
def test_bad_metadata_is_refused(saved, edit, error, message):
    directory, _ = saved
    _edit_meta(directory, edit)
    with pytest.raises(error, match=message):
        load_embedding(directory)


def test_invalid_json_and_missing_files(saved, tmp_path):
    directory, _ = saved
    (directory / "embedding.json").write_text("{broken")
    with pytest.raises(ModelFileError, match=r"not valid JSON"):
        load_embedding(directory)
    with pytest.raises(MissingFileError, match=r"no such embedding file"):
        load_embedding(tmp_path / "nowhere" / "embedding.json")
    with pytest.raises(UsageError, match=r"unknown embedding 'fancy': give 'default' or a path"):
        load_embedding("fancy")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingFileError, match=r"is this an embedding or training folder"):
        load_embedding(empty)


def test_default_embedding_loads_or_says_how_to_get_one(monkeypatch, tmp_path):
    if (storage.DEFAULT_EMBEDDING_DIR / "embedding.json").exists():
        emb = load_embedding("default")
        assert emb.config.family.max_inputs >= 8
        assert (storage.DEFAULT_EMBEDDING_DIR / "embedding.safetensors").stat().st_size <= 25 * 2**20
        # `swat-edge embed train --preset default` is the recipe of the shipped weights, schedule included
        assert emb.config == make_config("default") and emb.steps == emb.config.recipe.steps
    monkeypatch.setattr(storage, "DEFAULT_EMBEDDING_DIR", tmp_path)
    with pytest.raises(UsageError, match=r"default embedding is not installed .* 'swat-edge embed train"):
        load_embedding("default")


def test_save_refuses_to_overwrite_without_force(saved):
    directory, module = saved
    from swat_edge.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        save_embedding(module, directory, steps=1)
    save_embedding(module, directory, steps=8, force=True)
    assert load_embedding(directory).steps == 8


def test_copied_training_folder_loads(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run / "checkpoint", copy)
    assert load_embedding(copy).steps == 20
