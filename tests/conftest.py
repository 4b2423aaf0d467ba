"""Shared test set-up: offline, caches and homes in tmp, network limited to loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:  # AF_UNIX paths and the like never leave the machine
        return True
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: resolving it would already be a network request


@pytest.fixture(autouse=True)
def _offline_and_isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    for name, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1",
        "HF_HOME": str(home / "hf"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "ZOO_CACHE_DIR": str(home / "zoo-cache"),
    }.items():
        monkeypatch.setenv(name, value)
    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every shipped dataset, prepared once per session into a temporary folder."""
    from zoo.data import list_datasets, prepare_dataset

    root = tmp_path_factory.mktemp("data")
    for name in list_datasets():
        prepare_dataset(name, root / name, seed=0)
    return root


@pytest.fixture
def repo_root() -> Path:
    return REPO


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
