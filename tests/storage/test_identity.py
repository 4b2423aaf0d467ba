"""What names a store (its cache identity) and how long it may stay silent."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.client.session import Session
from zoo.errors import ConfigError
from zoo.storage.base import store_identity, store_timeout
from zoo.storage.hf import HfStore
from zoo.storage.s3 import S3Store


def test_the_endpoint_is_part_of_a_remote_store_identity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = set()
    for endpoint in ("http://127.0.0.1:8333", "http://127.0.0.1:9000"):
        monkeypatch.setenv("ZOO_S3_ENDPOINT_URL", endpoint)
        ids.add(store_identity("s3://zoo/models"))
        ids.add(Session("s3://zoo/models", cache_dir=tmp_path).cache_id)
    assert len(ids) == 2
    assert S3Store("zoo", "models").identity.endswith("@aws")
    a = HfStore("org/repo", endpoint="http://127.0.0.1:1")
    b = HfStore("org/repo", endpoint="http://127.0.0.1:2")
    assert a.url == b.url and a.identity != b.identity


def test_a_local_store_is_named_by_its_absolute_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_identity("store") == store_identity(f"file://{tmp_path}/store")


@pytest.mark.parametrize(("text", "seconds"), [("", 30.0), ("2", 2.0), ("0.5", 0.5)])
def test_zoo_timeout(monkeypatch: pytest.MonkeyPatch, text: str, seconds: float) -> None:
    monkeypatch.setenv("ZOO_TIMEOUT", text)
    assert store_timeout() == seconds


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan", "1e9"])
def test_zoo_timeout_refuses_nonsense(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("ZOO_TIMEOUT", text)
    with pytest.raises(ConfigError, match="ZOO_TIMEOUT"):
        store_timeout()
