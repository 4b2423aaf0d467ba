"""The static catalog: pages, embedded data, plots with the front, lineage, offline-ready."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from zoo.catalog.build import page_slug
from zoo.catalog.site import upload_site
from zoo.client import api
from zoo.index.view import open_index
from zoo.storage.local import LocalStore

PRUNED95 = "zoo:cv/classification/mlp/fashion_mnist/pruned95@v1"


def embedded_models(site: Path) -> list[dict]:
    html = (site / "index.html").read_text()
    match = re.search(r'<script type="application/json" id="zoo-data">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


def test_one_page_per_version_and_the_data_the_index_page_filters(
    site: Path, catalog_store: str
) -> None:
    index = open_index(catalog_store)
    summaries = list(index.summaries())
    models = embedded_models(site)
    assert sorted(m["ref"] for m in models) == sorted(s.ref for s in summaries)
    for summary in summaries:
        assert (site / "models" / f"{page_slug(summary.ref)}.html").is_file()
    by_ref = {m["ref"]: m for m in models}
    assert by_ref["zoo:cv/classification/mlp/fashion_mnist/base@v2"]["is_latest"]
    assert not by_ref["zoo:cv/classification/mlp/fashion_mnist/base@v1"]["is_latest"]
    assert by_ref[PRUNED95]["metric"] == 0.861
    assert by_ref[PRUNED95]["latency_ms"] == 0.15


def test_model_page_has_numbers_files_commands_recipe_and_lineage(site: Path) -> None:
    html = (site / "models" / f"{page_slug(PRUNED95)}.html").read_text()
    assert "0.8610" in html and "95.0%" in html
    assert f"zoo download {PRUNED95}" in html and "zoo.load(&#34;" + PRUNED95 in html
    assert "MagnitudePruningModifier" in html
    # Lineage: base@v1 -> pruned80@v1 -> pruned95@v1, ancestors linked.
    graph = html[
        html.index('<svg class="lineage"') : html.index(
            "</svg>", html.index('<svg class="lineage"')
        )
    ]
    assert graph.index("base@v1") < graph.index("pruned80@v1") < graph.index("pruned95@v1")
    assert 'href="cv--classification--mlp--fashion_mnist--pruned80--v1.html"' in graph
    # The card is rendered, but raw HTML inside it is not.
    assert "<strong>mlp</strong>" in html and "&lt;b&gt;raw html&lt;/b&gt;" in html


def test_model_page_lists_every_file_with_its_checksum(site: Path, catalog_store: str) -> None:
    entry = api.info(PRUNED95, registry=catalog_store)
    html = (site / "models" / f"{page_slug(PRUNED95)}.html").read_text()
    for record in entry.files:
        assert record.path in html and record.sha256 in html


def test_plots_mark_the_pareto_front(site: Path) -> None:
    page = (site / "plots" / "classification--fashion_mnist.html").read_text()
    svgs = re.findall(r'<svg class="plot".*?</svg>', page, re.S)
    assert len(svgs) == 2
    size_plot, latency_plot = svgs
    # 6 latest fashion_mnist versions; on size: cnn (52 KB), small mlp, mlp base v2.
    assert size_plot.count('class="pt front"') - 1 == 3  # minus the legend's sample point
    assert size_plot.count('class="pt"') - 1 == 3
    assert "cnn_small/fashion_mnist/base@v1" in size_plot
    assert latency_plot.count('class="pt front"') - 1 == 4
    assert 'class="front-line"' in size_plot
    assert (site / "plots" / "classification--mnist.html").is_file()
    assert "classification--fashion_mnist.html" in (site / "plots" / "index.html").read_text()


def test_pages_need_no_network(site: Path) -> None:
    for page in site.rglob("*.html"):
        html = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', html), page
    for asset in ("static/style.css", "static/catalog.js", "static/copy.js"):
        assert (site / asset).is_file()
        assert "http" not in (site / asset).read_text()


def test_catalog_cli_builds_and_publishes_next_to_the_store(
    catalog_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zoo.cli

    families = tuple(dict.fromkeys((*zoo.cli.COMMAND_FAMILIES, "zoo.catalog.cli")))
    monkeypatch.setattr(zoo.cli, "COMMAND_FAMILIES", families)
    out = tmp_path / "site"
    assert zoo.cli.main(["catalog", "build", "--out", str(out), "--registry", catalog_store]) == 0
    assert (out / "index.html").is_file()
    # Publishing uploads the pages beside the blobs; a second run rewrites nothing.
    target = LocalStore(tmp_path / "other-store")
    assert upload_site(out, target) == len([p for p in out.rglob("*") if p.is_file()])
    assert upload_site(out, target) == 0
    doc = target.get("catalog/index.html")
    assert doc is not None and doc.data == (out / "index.html").read_bytes()
    status = zoo.cli.main(["catalog", "serve", "--dir", str(tmp_path / "nothing-here")])
    assert status == 2
