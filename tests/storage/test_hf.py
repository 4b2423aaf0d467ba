"""Hugging Face Hub: a published entry as a Hub model repo, read back with huggingface_hub.

Uploads to a real Hub cannot be tested here (none is reachable). What is tested: the
model-repo folder and its loading with huggingface_hub's own local loaders, and, when
the olah mirror is available, downloads through huggingface_hub from olah serving the
folder, and the HfStore read path (index, entries, byte ranges) on a mirrored store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from zoo.errors import ChecksumMismatchError, StoreError
from zoo.index.export import write_synthetic_export
from zoo.index.hub import read_hub_folder, write_hub_folder
from zoo.index.publish import publish
from zoo.index.schema import Entry
from zoo.index.verify import verify_index
from zoo.index.view import open_index
from zoo.storage.base import BLOB_PREFIX, open_store
from zoo.storage.hf import HfStore
from zoo.storage.local import LocalStore

from ._olah import git_repo, olah_server

STUB = "zoo:cv/classification/mlp/fashion_mnist/pruned50"


@pytest.fixture
def published(tmp_path: Path) -> tuple[LocalStore, Entry]:
    store = LocalStore(tmp_path / "store")
    export = write_synthetic_export(tmp_path / "export", stub=STUB, seed=3)
    return store, publish(export, store).entry


def test_hub_folder_loads_with_huggingface_hub(tmp_path: Path, published) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import ModelCard, load_torch_model

    store, entry = published
    folder = write_hub_folder(entry, store, tmp_path / "hub")
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {
        "README.md",
        "model.safetensors",
        "config.json",
        "recipe.yaml",
        "zoo_entry.json",
        "samples/batch.safetensors",
    } <= names

    card, again = read_hub_folder(folder)
    assert again == entry
    meta = ModelCard.load(folder / "README.md").data.to_dict()
    assert meta["library_name"] == "zoo" and meta["zoo_stub"] == STUB
    assert meta["zoo_version"] == "v1" and "sparse" in meta["tags"]
    assert meta["datasets"] == ["fashion_mnist"]
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.metric_type, result.metric_value) == (
        "fashion_mnist",
        "accuracy",
        entry.metrics["fashion_mnist"]["accuracy"],
    )
    assert "Synthetic export" in card.text  # the export's own card body is kept

    from zoo.models import get_model
    from zoo.models.checkpoint import load_checkpoint

    model = get_model("mlp")
    load_torch_model(model, folder, strict=True)  # huggingface_hub's own safetensors loader
    reference = load_checkpoint(folder)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if p.dim() > 1)
    assert zeros == entry.sparsity.parameters - entry.sparsity.nonzero


def test_a_tampered_hub_folder_is_refused(tmp_path: Path, published) -> None:  # type: ignore[no-untyped-def]
    store, entry = published
    folder = write_hub_folder(entry, store, tmp_path / "hub")
    with open(folder / "config.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(ChecksumMismatchError, match=r"config\.json"):
        read_hub_folder(folder)


def test_hub_urls() -> None:
    store = open_store("hf://zoo-org/models@dev")
    assert isinstance(store, HfStore)
    assert (store.repo_id, store.revision, store.url) == (
        "zoo-org/models",
        "dev",
        "hf://zoo-org/models@dev",
    )
    with pytest.raises(StoreError, match="hf://org/repo"):
        open_store("hf://just-a-name")


def test_downloads_through_an_olah_mirror(tmp_path: Path, published, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import huggingface_hub.constants
    from huggingface_hub import snapshot_download

    store, entry = published
    mirrors = tmp_path / "mirrors"
    model_repo = write_hub_folder(entry, store, mirrors / "models" / "zoo" / "mlp-pruned50")
    git_repo(model_repo)
    # the store itself as a Hub repo: blobs, entries, shards and index.json
    store_repo = mirrors / "models" / "zoo" / "store"
    shutil.copytree(store.root, store_repo, ignore=shutil.ignore_patterns(".locks"))
    git_repo(store_repo)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with olah_server(tmp_path, mirrors) as endpoint:
        snapshot = snapshot_download(
            "zoo/mlp-pruned50", endpoint=endpoint, cache_dir=tmp_path / "hf-cache"
        )
        _, downloaded = read_hub_folder(snapshot)  # every file checked against the entry
        assert downloaded == entry

        hub_store = HfStore("zoo/store", endpoint=endpoint)
        view = open_index(hub_store)
        assert view.generation == 1 and view.resolve(entry.stub).version == 1
        assert view.entry(entry.stub, 1) == entry
        weights = entry.file("model.safetensors")
        full = (model_repo / "model.safetensors").read_bytes()
        assert hub_store.blob_size(weights.sha256) == weights.size
        assert not hub_store.has_blob("0" * 64)
        assert hub_store.read_blob(weights.sha256, 100, 200) == full[100:200]
        assert hub_store.read_blob(weights.sha256, weights.size - 5) == full[-5:]
        files = [path.relative_to(store.root).as_posix() for path in store.root.rglob("*")]
        stored = {key for key in files if (store.root / key).is_file() and key[0] != "."}
        assert set(hub_store.list()) == stored
        blobs = set(hub_store.list(BLOB_PREFIX))
        assert blobs and blobs == {key for key in stored if key.startswith(BLOB_PREFIX)}
        assert verify_index(view).ok


@pytest.mark.parametrize("call", ["read_index", "list", "commit", "blob_size"])
def test_a_silent_hub_endpoint_is_unreachable_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """Every call ends within the bound, also `create_commit` and `get_paths_info`, which
    take no timeout argument: huggingface_hub's shared client carries it for them."""
    import time

    import huggingface_hub.constants

    from tests.hostile import silent_port
    from zoo.errors import StoreUnreachableError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("ZOO_TIMEOUT", "1")
    with silent_port() as port:
        store = HfStore("org/repo", endpoint=f"http://127.0.0.1:{port}")
        started = time.monotonic()
        with pytest.raises(StoreUnreachableError, match="cannot reach"):
            if call == "read_index":
                store.read_index()
            elif call == "list":
                list(store.list())
            elif call == "commit":
                store._commit([], "0" * 40, "publishing")
            else:
                store.blob_size("0" * 64)
        assert time.monotonic() - started < 1 + 4
