"""The catalog in headless Chromium (Debian's package) driven by Playwright.

Run `make browser` (python -m zoo.catalog.browser install) once to get the browser.
Screenshots go to $ZOO_TEST_ARTIFACTS (default: tests/artifacts/) for people to look at.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoo.catalog.browser import LAUNCH_ARGS, find_chromium, missing
from zoo.catalog.site import make_server

REASON = missing()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
ARTIFACTS = Path(
    os.environ.get("ZOO_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")
)


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    """`zoo catalog serve`'s server, on a free loopback port."""
    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page(base_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=list(LAUNCH_ARGS))
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def rows(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator("#rows tr").evaluate_all("rs => rs.map(r => r.dataset.ref)")


def shoot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_filters_sorting_and_click_through(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base_url}/index.html")
    assert len(rows(page)) == 7  # latest version of each stub
    assert page.locator("#count").inner_text() == "7 of 8 model versions"

    page.select_option("#f-architecture", "cnn_small")
    assert sorted(rows(page)) == [
        "zoo:cv/classification/cnn_small/fashion_mnist/base@v1",
        "zoo:cv/classification/cnn_small/mnist/pruned50@v1",
    ]
    page.select_option("#f-architecture", "")
    page.select_option("#f-quantized", "yes")
    assert rows(page) == ["zoo:cv/classification/mlp/fashion_mnist/pruned80_quant@v1"]
    page.select_option("#f-quantized", "")
    page.fill("#min-sparsity", "90")
    assert rows(page) == ["zoo:cv/classification/mlp/fashion_mnist/pruned95@v1"]
    page.fill("#min-sparsity", "")
    page.fill("#q", "base")
    assert len(rows(page)) == 2
    page.uncheck("#latest-only")
    assert len(rows(page)) == 3  # base@v1 appears too
    page.check("#latest-only")
    page.fill("#q", "")
    page.select_option("#sort", "size:asc")
    listed = rows(page)
    assert listed[0].startswith("zoo:cv/classification/cnn_small/")
    page.select_option("#sort", "latency_ms:asc")
    assert rows(page)[0] == "zoo:cv/classification/mlp/fashion_mnist/small@v1"
    page.select_option("#sort", "metric:desc")
    assert rows(page)[0] == "zoo:cv/classification/cnn_small/mnist/pruned50@v1"
    shoot(page, "catalog-index.png")

    page.fill("#q", "pruned95")
    page.click("text=zoo:cv/classification/mlp/fashion_mnist/pruned95")
    page.wait_for_url("**/models/cv--classification--mlp--fashion_mnist--pruned95--v1.html")
    assert (
        page.locator("#stub").inner_text() == "zoo:cv/classification/mlp/fashion_mnist/pruned95@v1"
    )
    assert page.locator("#metric-value").inner_text() == "0.8610"
    assert page.locator("#sparsity-value").inner_text() == "95.0%"
    assert page.locator("svg.lineage a").count() == 2  # two ancestors to click
    shoot(page, "catalog-model.png")

    page.goto(f"{base_url}/plots/classification--fashion_mnist.html")
    assert page.locator("svg.plot circle.pt.front").count() == 3 + 4 + 2  # + legends
    shoot(page, "catalog-plot.png")
    assert errors == []


def test_card_tables_transfer_lineage_and_noisy_latency(page, base_url: str) -> None:  # type: ignore[no-untyped-def]
    transfer = "zoo:cv/classification/cnn_small/mnist/pruned50@v1"
    parent = "zoo:cv/classification/cnn_small/fashion_mnist/base@v1"
    page.goto(f"{base_url}/index.html")
    page.fill("#q", "mnist/pruned50")
    assert rows(page) == [transfer]
    assert page.locator("#rows tr td").last.inner_text().endswith("(noisy)")

    page.click(f"text={transfer[:-3]}")
    page.wait_for_url("**/models/cv--classification--cnn_small--mnist--pruned50--v1.html")
    # The model card's tables (written by the real card renderer) are HTML tables.
    card = page.locator("section.card")
    headers = card.locator("table").first.locator("th").all_inner_texts()
    assert [h.lower() for h in headers] == ["dataset", "metric", "value"]  # CSS upper-cases
    assert "| --- |" not in card.inner_text()
    assert page.locator("#latency-value .badge.noisy").inner_text() == "noisy"
    assert page.locator("#parameters-value").inner_text() != "-"
    shoot(page, "catalog-transfer.png")

    # The transfer's parent, named by stub when it was made, was pinned to v1 on publish
    # and the lineage graph links its page.
    page.locator("svg.lineage a").first.click()
    page.wait_for_url("**/models/cv--classification--cnn_small--fashion_mnist--base--v1.html")
    assert page.locator("#stub").inner_text() == parent
