"""Catalog fixtures: the demo registry and a catalog built from it, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.demo_models import populate


@pytest.fixture(autouse=True)
def _private_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_STORE", str(tmp_path / "default-store"))
    for name in ("ZOO_REGISTRY", "ZOO_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def catalog_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("catalog-demo")
    populate(str(root / "store"), root / "exports")
    return str(root / "store")


@pytest.fixture(scope="session")
def site(catalog_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zoo.catalog.build import build_catalog

    return build_catalog(tmp_path_factory.mktemp("site") / "catalog", catalog_store)
