"""Refusals and guarantees: tampered or missing files, unknown transforms, atomic
writes, and the folder publishing into a real local store and loading through the client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.compress.recipes import recipe
from zoo.compress.export import export_model
from zoo.compress.load import load_exported
from zoo.errors import ChecksumMismatchError, CompressedFormatError, ExportFileMissingError
from zoo.models import get_model
from zoo.recipes import oneshot

STUB = "zoo:cv/classification/mlp/fashion_mnist/pruned90"


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = get_model("mlp", hidden=(64, 32))
    oneshot(model, recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.9}"))
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.9}"))
    folder = tmp_path / "export"
    export_model(
        model,
        folder,
        stub=STUB,
        recipe=recipe_file,
        metrics={"fashion_mnist": {"accuracy": 0.81}},
        benchmarks={"cpu-2core": {"latency_ms": 0.2, "batch_size": 1}},
        sample_inputs=torch.randn(3, 1, 28, 28),
    )
    return folder


def test_a_tampered_weights_file_is_refused(exported: Path) -> None:
    weights = exported / "model.safetensors"
    tensors = load_file(str(weights))
    streams = json.loads((exported / "config.json").read_text())["compression"]["encoding"]
    key = next(k for k, codec in streams["streams"].items() if codec == "deflate")
    tensors[key] = tensors[key].clone()
    tensors[key].view(torch.uint8)[0] ^= 1  # one flipped bit
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ChecksumMismatchError) as info:
        load_exported(exported)
    message = str(info.value)
    assert "model.safetensors" in message
    assert info.value.expected in message and info.value.actual in message
    with pytest.raises(CompressedFormatError, match="corrupted"):  # unchecked: caught later
        load_exported(exported, verify=False)


def test_a_tampered_sample_or_card_is_refused_too(exported: Path) -> None:
    card = exported / "README.md"
    card.write_text(card.read_text() + "\nedited\n")
    with pytest.raises(ChecksumMismatchError, match=r"README\.md"):
        load_exported(exported)


def test_missing_files_are_named(exported: Path) -> None:
    (exported / "model.safetensors").unlink()
    with pytest.raises(ExportFileMissingError, match=r"model\.safetensors"):
        load_exported(exported)
    (exported / "config.json").unlink()
    with pytest.raises(ExportFileMissingError, match=r"config\.json"):
        load_exported(exported)


def test_an_unknown_transform_is_refused(exported: Path) -> None:
    config_path = exported / "config.json"
    config = json.loads(config_path.read_text())
    config["compression"]["transforms"].append({"type": "hashing_trick"})
    config_path.write_text(json.dumps(config))
    with pytest.raises(CompressedFormatError, match=r"hashing_trick.*Upgrade"):
        load_exported(exported, verify=False)


def test_a_failed_export_leaves_the_old_folder_untouched(exported: Path) -> None:
    before = {p.name: p.read_bytes() for p in exported.iterdir() if p.is_file()}
    model = get_model("mlp", hidden=(64, 32))
    with pytest.raises(TypeError):  # not JSON: fails halfway through writing
        export_model(model, exported, metrics={"fashion_mnist": {"accuracy": object()}})  # type: ignore[dict-item]
    after = {p.name: p.read_bytes() for p in exported.iterdir() if p.is_file()}
    assert after == before
    assert [p.name for p in exported.parent.iterdir() if p.name.startswith(".export")] == []


def test_the_export_publishes_and_loads_through_the_client(exported: Path, tmp_path: Path) -> None:
    from zoo.client import load as client_load
    from zoo.index.publish import publish

    result = publish(exported, str(tmp_path / "store"))
    assert result.created
    entry = result.entry
    assert str(entry.stub) == STUB and entry.recipe == "recipe.yaml"
    assert entry.sparsity.overall == pytest.approx(0.9, abs=0.01)
    assert entry.lineage.recipe_hash is not None
    assert {f.path for f in entry.files} >= {"model.safetensors", "config.json", "zoo.json"}
    model = client_load.load_folder(exported, keep_compressed=True)  # CSR linears
    reference = load_exported(exported)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
    assert isinstance(model, nn.Module)


def test_the_card_is_a_hugging_face_model_card(exported: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(exported / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "zoo" and data["license"] == "apache-2.0"
    assert {"sparse", "pruned", "mlp"} <= set(data["tags"])
    assert data["datasets"] == ["fashion_mnist"] and data["metrics"] == ["accuracy"]
    assert "| fashion_mnist | accuracy | 0.81 |" in card.text
    assert "load_exported" in card.text
