"""Fixtures for the index tests: a private store per test, exports from real models."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.index.export import write_synthetic_export, write_tiny_export
from zoo.storage.local import LocalStore

STUB = "zoo:cv/classification/mlp/fashion_mnist/pruned50"


@pytest.fixture(autouse=True)
def _private_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Nothing a test does may reach the repository's .zoo/store or a real S3.
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "default-store"))
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    for name in ("AWS_ENDPOINT_URL", "ZOO_S3_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A real mlp export (torch model, half the weights zeroed, safetensors)."""
    return write_synthetic_export(tmp_path / "export", stub=STUB, seed=0, sparsity=0.5)


@pytest.fixture
def tiny(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(name: str, seed: int = 0, stub: str = STUB) -> Path:
        return write_tiny_export(tmp_path / "exports" / name, stub=stub, seed=seed)

    return make
