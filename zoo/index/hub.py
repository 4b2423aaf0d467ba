"""A published entry as a Hugging Face Hub model repo, through huggingface_hub.

`write_hub_folder` writes the repo folder: the model card README.md with YAML metadata
(tags, datasets, model-index results, the zoo stub, version, content hash and lineage),
the safetensors weights, config.json, recipe.yaml, samples and the rest of the export,
plus `zoo_entry.json`. `read_hub_folder` loads it back with huggingface_hub's own
`ModelCard.load` and checks every file against the entry. `push_hub_folder` uploads a
folder to a Hub repo and tags the version (not exercised here: no Hub is reachable).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from zoo.errors import ChecksumMismatchError, SchemaError
from zoo.fsutil import atomic_dir, sha256_file
from zoo.index.schema import Entry
from zoo.storage.base import Store

ENTRY_FILE = "zoo_entry.json"
CARD_FILE = "README.md"


def _card_body(text: str) -> str:
    """The export's card without its own front matter (ours replaces it)."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text


def model_card(entry: Entry, body: str = "") -> Any:
    """A huggingface_hub ModelCard whose YAML metadata describes the entry."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = [
        EvalResult(
            task_type=entry.stub.task,
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=name,
            metric_value=value,
        )
        for dataset, metrics in sorted(entry.metrics.items())
        for name, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    tags = ["zoo", "safetensors", entry.stub.architecture, entry.stub.sparse_tag]
    if entry.sparsity.overall > 0:
        tags.append("sparse")
    if entry.quantization.scheme:
        tags.append(entry.quantization.scheme)
    data = ModelCardData(
        library_name="zoo",
        model_name=entry.stub.path.replace("/", "-"),
        datasets=sorted(entry.metrics) or None,
        tags=tags,
        eval_results=results or None,
        base_model=None,
        zoo_stub=str(entry.stub),
        zoo_version=f"v{entry.version}",
        zoo_content_hash=entry.content_hash,
        zoo_sparsity=round(entry.sparsity.overall, 6),
        zoo_quantization=entry.quantization.scheme,
        zoo_parent=entry.lineage.parent,
        zoo_git_commit=entry.lineage.git_commit,
        zoo_dvc_stages=entry.lineage.dvc_stages or None,
    )
    heading = f"# {entry.ref}\n"
    text = f"---\n{data.to_yaml()}\n---\n\n{body or heading}"
    return ModelCard(text)


def write_hub_folder(entry: Entry, store: Store, dest: str | os.PathLike[str]) -> Path:
    """Write the entry as a Hub model-repo folder at `dest` (replaced atomically)."""
    with atomic_dir(dest) as tmp:
        for record in entry.files:
            target = tmp.joinpath(*PurePosixPath(record.path).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            store.get_blob(record.sha256, target)
        body = ""
        if entry.card and (tmp / entry.card).is_file():
            body = _card_body((tmp / entry.card).read_text())
        model_card(entry, body).save(tmp / CARD_FILE)
        (tmp / ENTRY_FILE).write_text(entry.to_json())
    return Path(dest)


def read_hub_folder(folder: str | os.PathLike[str]) -> tuple[Any, Entry]:
    """Load a Hub model-repo folder with huggingface_hub and check it against its entry.

    Returns (ModelCard, Entry). The card is replaced by ours, so README.md is checked
    for the entry's stub instead of its original hash.
    """
    from huggingface_hub import ModelCard

    root = Path(folder)
    if not (root / ENTRY_FILE).is_file():
        raise SchemaError(str(root), f"not a zoo Hub folder: {ENTRY_FILE} is missing")
    entry = Entry.from_json((root / ENTRY_FILE).read_text())
    card = ModelCard.load(root / CARD_FILE)
    if card.data.to_dict().get("zoo_stub") != str(entry.stub):
        raise SchemaError(str(root / CARD_FILE), f"card metadata does not name {entry.stub}")
    for record in entry.files:
        if record.path == CARD_FILE:
            continue
        path = root.joinpath(*PurePosixPath(record.path).parts)
        if not path.is_file():
            raise SchemaError(str(root), f"{entry.ref}: file {record.path} is missing")
        actual = sha256_file(path)
        if actual != record.sha256:
            raise ChecksumMismatchError(str(path), record.sha256, actual, f"{entry.ref} file")
    return card, entry


def push_hub_folder(folder: str | os.PathLike[str], repo_id: str, token: str | None = None) -> str:
    """Upload a folder from `write_hub_folder` to a Hub model repo and tag its version.

    Not exercised here (no Hub is reachable); returns the commit id.
    """
    from huggingface_hub import HfApi

    _, entry = read_hub_folder(folder)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), commit_message=f"zoo: {entry.ref}"
    )
    tag = f"v{entry.version}"
    api.create_tag(repo_id, tag=tag, revision=info.oid, exist_ok=True)
    return str(info.oid)
