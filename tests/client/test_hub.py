"""The client against a Hugging Face Hub registry (`hf://org/repo`), served by an olah
mirror on loopback (no real Hub is reachable here; skipped when olah is not installed)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.conftest import SMALL
from zoo.client.session import Session
from zoo.fsutil import sha256_file
from zoo.storage.hf import HfStore


def test_search_download_validate_from_a_hub_mirror(
    small_store: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # The index engineer's olah helpers (tests/storage/_olah.py) start the mirror.
    olah = pytest.importorskip("tests.storage._olah")

    from zoo.client.load import load_folder
    from zoo.client.search import Query, SearchIndex
    from zoo.client.validate import validate_model

    store = small_store()
    mirrors = tmp_path / "mirrors"
    repo = mirrors / "models" / "zoo" / "registry"
    shutil.copytree(store, repo, ignore=shutil.ignore_patterns(".locks"))
    olah.git_repo(repo)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with olah.olah_server(tmp_path, mirrors) as endpoint:
        session = Session(store=HfStore("zoo/registry", endpoint=endpoint), progress=False)
        hits = SearchIndex(session.index.summaries()).search(Query())
        assert [h.ref for h in hits] == [SMALL.stub + "@v1"]
        snap = session.download(SMALL.stub)
        for record in snap.entry.files:
            assert sha256_file(snap.folder / record.path) == record.sha256
        assert validate_model(load_folder(snap.folder), snap.folder).ok
