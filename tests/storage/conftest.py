"""A real SeaweedFS S3 server on loopback for the session, and stores on it and on disk."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.storage._seaweed import seaweedfs
from zoo.storage.base import Store
from zoo.storage.local import LocalStore
from zoo.storage.s3 import S3Store
from zoo.storage.seaweed import SeaweedServer

BUCKET = "zoo-tests"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture(autouse=True)
def _private_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "default-store"))
    for name in (
        "ZOO_REGISTRY",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "ZOO_S3_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    # boto3 must not find a developer's ~/.aws profile
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


def s3_store(server: SeaweedServer, prefix: str | None = None) -> S3Store:
    return S3Store(BUCKET, prefix or f"t-{uuid.uuid4().hex[:12]}", **server.client_kwargs())


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same contract, on a local folder and on SeaweedFS."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: SeaweedServer = request.getfixturevalue("seaweed")
    return s3_store(server)


@pytest.fixture
def make_s3(seaweed: SeaweedServer) -> Callable[..., S3Store]:
    return lambda prefix=None: s3_store(seaweed, prefix)
