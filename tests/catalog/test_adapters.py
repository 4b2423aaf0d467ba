"""Adapters in the catalog, in headless Chromium: the base's page lists its adapters and
each adapter's page links back to its base. The store holds a base and an adapter written
and published by the real writer (write_adapter_export + publish) over it."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo
from tests.catalog.test_browser import REASON, base_url, page, shoot
from tests.client.test_adapter import ADAPTER, BASE, _trained_adapter
from tests.demo_models import DemoModel, populate

pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
__all__ = ["base_url", "page"]  # fixtures, used by name


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zoo.catalog.build import build_catalog
    from zoo.compress.adapter import write_adapter_export
    from zoo.index.publish import publish

    root = tmp_path_factory.mktemp("adapters")
    store = str(root / "store")
    populate(store, root / "exports", [DemoModel(BASE, arch_kwargs={"hidden": [64]}, sparsity=0.5)])
    base = zoo.load(f"{BASE}@v1", registry=store, cache_dir=root / "cache")
    folder = write_adapter_export(
        _trained_adapter(base), root / "adapter", parent=f"{BASE}@v1", stub=ADAPTER
    )
    publish(folder, store)
    return build_catalog(root / "catalog", store)


def test_a_bases_page_lists_its_adapters_and_an_adapter_links_its_base(  # type: ignore[no-untyped-def]
    page, base_url: str
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The index: the adapter's row names its base, linked.
    page.goto(f"{base_url}/index.html")
    row = page.locator(f'#rows tr[data-ref="{ADAPTER}@v1"]')
    assert row.locator(".adapter-of").inner_text() == f"adapter of {BASE}@v1"
    assert page.locator(f'#rows tr[data-ref="{BASE}@v1"] .adapter-of').count() == 0
    shoot(page, "catalog-index-adapters.png")
    row.locator(".adapter-of a").click()
    page.wait_for_url("**/models/cv--classification--mlp--fashion_mnist--pruned50--v1.html")
    assert page.locator("#stub").inner_text() == f"{BASE}@v1"
    assert page.locator("#adapter-of").count() == 0  # a model, not an adapter
    adapters = page.locator("#adapters li a")
    assert adapters.all_inner_texts() == [f"{ADAPTER}@v1"]
    shoot(page, "catalog-base-with-adapters.png")

    adapters.first.click()
    page.wait_for_url("**/models/cv--classification--mlp--fashion_mnist--pruned50_lora4--v1.html")
    assert page.locator("#stub").inner_text() == f"{ADAPTER}@v1"
    assert "A LoRA adapter over" in page.locator("#adapter-of").inner_text()
    assert page.locator("#adapters").count() == 0
    shoot(page, "catalog-adapter.png")

    page.locator("#base-link").click()
    page.wait_for_url("**/models/cv--classification--mlp--fashion_mnist--pruned50--v1.html")
    assert page.locator("#stub").inner_text() == f"{BASE}@v1"
    assert errors == []
