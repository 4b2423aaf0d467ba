from __future__ import annotations

from pathlib import Path

import pytest

from zoo.errors import ConfigError, StoreError
from zoo.storage.base import DEFAULT_STORE_DIR, default_store_url, open_store
from zoo.storage.local import LocalStore
from zoo.storage.s3 import S3Store


def test_store_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    monkeypatch.delenv("ZOO_STORE")
    assert default_store_url() == str(repo / DEFAULT_STORE_DIR)
    monkeypatch.setenv("ZOO_REGISTRY", "/from/registry")
    assert default_store_url() == "/from/registry"
    monkeypatch.setenv("ZOO_STORE", "/from/env")  # read at call time, not import time
    assert default_store_url() == "/from/env"
    assert default_store_url("s3://given/p") == "s3://given/p"


def test_url_schemes_pick_backends(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = open_store(f"file://{tmp_path}/a")
    assert isinstance(local, LocalStore) and local.root == tmp_path / "a"
    assert isinstance(open_store(tmp_path / "b"), LocalStore)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    s3 = open_store("s3://bucket/some/prefix")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (
        "bucket",
        "some/prefix",
        "http://127.0.0.1:1",
    )
    monkeypatch.setenv("ZOO_S3_ENDPOINT_URL", "http://127.0.0.1:2")
    assert open_store("s3://bucket").endpoint_url == "http://127.0.0.1:2"  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="s3://bucket"):
        open_store("s3://b")
    with pytest.raises(ConfigError, match="unsupported store URL"):
        open_store("ftp://host/x")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing", create=False)


def test_an_unknown_scheme_is_an_error_everywhere_never_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.client.settings import canonical_url

    monkeypatch.chdir(tmp_path)
    for url in ("gs://b", "https://example.invalid/store"):
        with pytest.raises(ConfigError, match="unsupported store URL"):
            open_store(url)
        with pytest.raises(ConfigError, match="unsupported store URL"):
            canonical_url(url)
    assert not list(tmp_path.iterdir())  # no folder named after the URL
    assert canonical_url(f"file://{tmp_path}/x") == canonical_url(str(tmp_path / "x"))
