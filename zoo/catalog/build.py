"""Build the static catalog: an index page, a page per model version, Pareto plots.

Everything the pages need is inside the output folder (CSS, JS, inline SVG, the model
list as embedded JSON), so the site works from `file://`, behind any static server, or
uploaded next to the store, with no network.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from zoo.catalog import svg
from zoo.client.fmt import (
    MODEL_SPARSITY,
    PRUNABLE_SPARSITY,
    fmt_bytes,
    fmt_int,
    fmt_metric,
    fmt_ms,
    fmt_pct,
)
from zoo.client.pareto import pareto_front
from zoo.client.search import base_of, metric_value
from zoo.errors import DownloadIntegrityError
from zoo.evaluation import conditional_names
from zoo.evaluation.conditional_names import LOAD_PREFIX, SWEEP_PREFIX
from zoo.evaluation.schema import fastest_runtime, figures_of, runtimes_of
from zoo.index.schema import FACETS, Entry, EntrySummary, parse_ref
from zoo.storage.base import Store, sha256_bytes

FACET_LABELS = {
    "domain": "Domain",
    "task": "Task",
    "architecture": "Architecture",
    "dataset": "Dataset",
    "sparse_tag": "Sparse tag",
}


def page_slug(ref: str) -> str:
    """`zoo:cv/classification/mlp/mnist/pruned90@v2` ->
    `cv--classification--mlp--mnist--pruned90--v2` (a file name on every filesystem)."""
    stub, version = parse_ref(ref)
    return f"{stub.path.replace('/', '--')}--{version}"


@dataclass
class ModelPage:
    entry: Entry
    aliases: list[str]
    is_latest: bool
    row: dict[str, Any] = field(default_factory=dict)


class _Fmt:
    """Number formatting for templates (one place, shared with the CLI)."""

    bytes = staticmethod(fmt_bytes)
    metric = staticmethod(fmt_metric)
    pct = staticmethod(fmt_pct)
    ms = staticmethod(fmt_ms)
    int = staticmethod(fmt_int)


def _row(entry: Entry, aliases: list[str], is_latest: bool, metric: str) -> dict[str, Any]:
    summary = EntrySummary.of(entry, "")
    stub = entry.stub
    figures = figures_of(entry.benchmarks)
    name, _, dataset = metric.partition("@")
    metric_dataset = dataset or (stub.dataset if stub.dataset in entry.metrics else None)
    if metric_dataset is None:
        metric_dataset = next((d for d, v in sorted(entry.metrics.items()) if name in v), "")
    return {
        "ref": entry.ref,
        "stub": str(stub),
        "version": f"v{entry.version}",
        "aliases": aliases,
        "is_latest": is_latest,
        **stub.facets(),
        "metric": metric_value(summary, metric),
        "metric_name": name,
        "metric_dataset": metric_dataset,
        "size": entry.size,
        "parameters": entry.parameters,
        "nonzero": entry.nonzero,
        "sparsity": entry.sparsity.overall,
        "model_sparsity": _model_sparsity(entry),
        "quantized": entry.quantization.scheme,
        "latency_ms": figures.latency_ms if figures else None,
        "latency_noisy": bool(figures and figures.noisy),
        **_runtime_columns(entry),
        "created_at": entry.created_at,
        "adapter_of": _canonical_base(summary.adapter_of),
        "found_by": _search_origin(entry),
        "adapter_of_href": None,  # the base's page, once every page is known
        "href": f"models/{page_slug(entry.ref)}.html",
        "search": " ".join([str(stub), *aliases, entry.quantization.scheme or ""]).lower(),
    }


def _search_origin(entry: Entry) -> str | None:
    """`study trial N` for an entry an architecture search published (zoo/nas/front.py
    writes lineage.extra.nas), None for a hand-designed one or a malformed record."""
    nas = entry.lineage.extra.get("nas")
    if not isinstance(nas, dict):
        return None
    study, trial = nas.get("study"), nas.get("trial")
    if not isinstance(study, str) or not isinstance(trial, int) or isinstance(trial, bool):
        return None
    return f"{study} trial {trial}"


def _runtime_columns(entry: Entry) -> dict[str, Any]:
    """Each runtime's batch-1 latency and batch-64 throughput, and the fastest runtime."""
    on = runtimes_of(entry.benchmarks)
    rows = []
    for name, figures in on.items():
        one, many = figures.batch(1), figures.batch(64)
        rows.append(
            {
                "name": name,
                "b1_ms": one.p50_ms if one else None,
                "b64_throughput": many.throughput if many else None,
            }
        )
    return {"runtimes": rows, "fastest_runtime": fastest_runtime(on, 1)}


def _canonical_base(ref: str | None) -> str | None:
    """An adapter's base as `stub@vN`, spelled as its page's ref; None for a model."""
    if ref is None:
        return None
    stub, version = base_of(ref)
    return stub.at(version or 0)


def _model_sparsity(entry: Entry) -> float | None:
    nonzero = entry.nonzero
    return None if nonzero is None else 1.0 - nonzero / max(entry.parameters, 1)


def _environment() -> Any:
    import jinja2

    folder = resources.files("zoo.catalog") / "templates"
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _script_json(obj: Any) -> str:
    # Inside <script> HTML escaping does not apply: neutralise "</script>" and friends.
    from markupsafe import Markup

    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def _card_html(text: str) -> str:
    from markdown_it import MarkdownIt

    body = re.sub(r"\A---\n.*?\n---\n", "", text, count=1, flags=re.S)  # YAML front matter
    # html=False: a model card is data from a publisher; raw HTML in it is shown as text.
    # The commonmark preset leaves GFM tables off; model cards put their facts in tables.
    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(body))


class CatalogSource:
    """Reads what the catalog shows from a store: entries and the recipe/card texts."""

    def __init__(self, store: Store) -> None:
        from zoo.index.view import open_index

        self.store = store
        self.index = open_index(store)

    def pages(self) -> list[ModelPage]:
        pages: list[ModelPage] = []
        for stub in self.index.stubs():
            versions = self.index.versions(stub)
            by_version: dict[int, list[str]] = defaultdict(list)
            for alias, number in sorted(self.index.aliases(stub).items()):
                by_version[number].append(alias)
            newest = max(s.version for s in versions)
            for summary in versions:
                entry = self.index.entry(stub, summary.version)
                pages.append(
                    ModelPage(entry, by_version.get(summary.version, []), summary.version == newest)
                )
        return pages

    def text(self, entry: Entry, path: str | None) -> str | None:
        if not path:
            return None
        record = entry.file(path)
        data = self.store.read_blob(record.sha256)
        actual = sha256_bytes(data)
        if actual != record.sha256:
            raise DownloadIntegrityError(entry.ref, path, record.sha256, actual, self.store.url)
        return data.decode("utf-8", errors="replace")


def _lineage(page: ModelPage, by_ref: dict[str, ModelPage]) -> tuple[str, list[tuple[str, str]]]:
    chain: list[svg.Node] = []
    seen: set[str] = set()
    current: str | None = page.entry.ref
    while current and current not in seen and len(chain) < 20:
        seen.add(current)
        known = by_ref.get(current)
        if known is None:
            chain.append(svg.Node(current, "not in this registry", None))
            break
        entry = known.entry
        sub = f"{fmt_metric(known.row['metric'])} · {fmt_pct(entry.sparsity.overall)} sparse"
        href = None if known is page else f"{page_slug(entry.ref)}.html"
        chain.append(svg.Node(entry.ref, sub, href, current=known is page))
        current = entry.lineage.parent
    lineage = page.entry.lineage
    rows = [
        ("parent", lineage.parent or "(none: trained from scratch)"),
        ("data hash", lineage.data_hash or "-"),
        ("recipe hash", lineage.recipe_hash or "-"),
        ("git commit", (lineage.git_commit or "-") + (" (dirty)" if lineage.git_dirty else "")),
        *((f"dvc stage {k}", v) for k, v in sorted(lineage.dvc_stages.items())),
    ]
    return svg.chain(list(reversed(chain))), rows


def _plot_groups(pages: list[ModelPage], metric_label: str) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for page in pages:
        if page.is_latest and page.row["metric"] is not None:
            groups[(page.row["task"], page.row["metric_dataset"] or page.row["dataset"])].append(
                page.row
            )
    out = []
    for (task, dataset), rows in sorted(groups.items()):
        size_front = pareto_front(rows, quality=lambda r: r["metric"], cost=lambda r: r["size"])
        lat_front = pareto_front(
            rows, quality=lambda r: r["metric"], cost=lambda r: r["latency_ms"]
        )
        size_ids = {id(r) for r in size_front}
        lat_ids = {id(r) for r in lat_front}

        def points(
            cost: str, front_ids: set[int], rows: list[dict[str, Any]] = rows
        ) -> list[svg.Point]:
            return [
                svg.Point(
                    float(r[cost]),
                    float(r["metric"]),
                    r["ref"],
                    "../" + r["href"],
                    id(r) in front_ids,
                    searched=r["found_by"] is not None,
                )
                for r in rows
                if r[cost] is not None
            ]

        for r in rows:
            r["href_from_plots"] = "../" + r["href"]
        out.append(
            {
                "task": task,
                "dataset": dataset,
                "file": f"{task}--{dataset}.html",
                "metric_name": metric_label,
                "models": rows,
                "size_front": size_front,
                "searched": [r for r in rows if r["found_by"] is not None],
                "machine": "",
                "size_svg": svg.scatter(
                    points("size", size_ids),
                    x_label="size",
                    y_label=metric_label,
                    x_format=fmt_bytes,
                    y_format=lambda v: f"{v:.3g}",
                    title=f"{metric_label} vs size, {task} on {dataset}",
                ),
                "latency_svg": svg.scatter(
                    points("latency_ms", lat_ids),
                    x_label="latency (ms)",
                    y_label=metric_label,
                    x_format=fmt_ms,
                    y_format=lambda v: f"{v:.3g}",
                    title=f"{metric_label} vs latency, {task} on {dataset}",
                ),
            }
        )
    return out


def build_catalog(
    out: str | os.PathLike[str],
    store: Store | str | None = None,
    *,
    metric: str = "accuracy",
) -> Path:
    """Write the catalog of `store` (default: the client's registry) into `out`, atomically."""
    from zoo.client.settings import registry_url
    from zoo.fsutil import atomic_dir
    from zoo.storage.base import open_store

    resolved = store if isinstance(store, Store) else open_store(registry_url(store), create=False)
    source = CatalogSource(resolved)
    pages = source.pages()
    for page in pages:
        page.row = _row(page.entry, page.aliases, page.is_latest, metric)
    by_ref = {p.entry.ref: p for p in pages}
    by_stub: dict[str, list[ModelPage]] = defaultdict(list)
    for p in pages:
        by_stub[str(p.entry.stub)].append(p)
    adapters: dict[str, list[ModelPage]] = defaultdict(list)  # base ref -> its adapters
    for p in sorted(pages, key=lambda p: p.entry.ref):
        base = p.row["adapter_of"]
        if base is not None:
            adapters[base].append(p)
            p.row["adapter_of_href"] = by_ref[base].row["href"] if base in by_ref else None
    env = _environment()
    metric_label = metric.partition("@")[0]
    common = {
        "registry": resolved.url,
        "generation": source.index.generation,
        "n_models": len(pages),
        "built_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "fmt": _Fmt,
        "metric_label": metric_label,
        "sparsity_labels": {"prunable": PRUNABLE_SPARSITY, "model": MODEL_SPARSITY},
    }
    facets = [
        {
            "name": name,
            "label": FACET_LABELS[name],
            "options": sorted(_count(p.row[name] for p in pages if p.is_latest).items()),
        }
        for name in FACETS
    ]
    groups = _plot_groups(pages, metric_label)
    with atomic_dir(out) as tmp:
        (tmp / "models").mkdir()
        (tmp / "plots").mkdir()
        (tmp / "static").mkdir()
        for name in ("style.css", "catalog.js", "copy.js"):
            data = (resources.files("zoo.catalog") / "static" / name).read_bytes()
            (tmp / "static" / name).write_bytes(data)
        rows = [p.row for p in sorted(pages, key=lambda p: p.entry.ref)]
        (tmp / "index.html").write_text(
            env.get_template("index.html").render(
                root="", models=rows, data_json=_script_json(rows), facets=facets, **common
            )
        )
        for page in pages:
            (tmp / page.row["href"]).write_text(
                _model_page(env, page, by_ref, by_stub, adapters, source, common)
            )
        (tmp / "plots" / "index.html").write_text(
            env.get_template("plots.html").render(root="../", groups=groups, **common)
        )
        for group in groups:
            (tmp / "plots" / group["file"]).write_text(
                env.get_template("plot.html").render(root="../", group=group, **common)
            )
    return Path(out)


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(counts)


def _conditional(entry: Entry) -> list[dict[str, Any]]:
    """Per dataset: the MoE expert load histogram (a bar chart per layer) and the
    early-exit threshold sweep, from the entry's metrics."""
    out = []
    for dataset, values in sorted(entry.metrics.items()):
        load = conditional_names.expert_load(values)
        sweep = conditional_names.exit_sweep(values)
        if load or sweep:
            out.append(
                {
                    "dataset": dataset,
                    "load": [
                        (layer, svg.bars(shares, f"expert load of {layer}"))
                        for layer, shares in load.items()
                    ],
                    "sweep": sweep,
                }
            )
    return out


def _model_page(
    env: Any,
    page: ModelPage,
    by_ref: dict[str, ModelPage],
    by_stub: dict[str, list[ModelPage]],
    adapters: dict[str, list[ModelPage]],
    source: CatalogSource,
    common: dict[str, Any],
) -> str:
    entry = page.entry
    base_ref = page.row["adapter_of"]
    base = None
    if base_ref is not None:
        base = {
            "ref": base_ref,
            "href": f"{page_slug(base_ref)}.html" if base_ref in by_ref else None,
        }
    lineage_svg, lineage_rows = _lineage(page, by_ref)
    card = source.text(entry, entry.card)
    ref = entry.ref
    registry = common["registry"]
    commands = [
        {"label": "download (CLI)", "text": f"zoo download {ref}"},
        {"label": "load (Python)", "text": f'import zoo\nmodel = zoo.load("{ref}")'},
        {"label": "registry", "text": f"export ZOO_REGISTRY={registry}"},
    ]
    versions = [
        {
            "ref": p.entry.ref,
            "href": f"{page_slug(p.entry.ref)}.html",
            "aliases": p.aliases,
            "current": p is page,
            "metric": p.row["metric"],
            "size": p.entry.size,
        }
        for p in sorted(by_stub[str(entry.stub)], key=lambda p: -p.entry.version)
    ]
    return str(
        env.get_template("model.html").render(
            root="../",
            m=page.row,
            commands=commands,
            metrics=[
                (d, n, v)
                for d, vals in sorted(entry.metrics.items())
                for n, v in sorted(vals.items())
                if not n.startswith((LOAD_PREFIX, SWEEP_PREFIX))  # drawn below instead
            ],
            conditional=_conditional(entry),
            benchmarks=[
                (m, n, v)
                for m, vals in sorted(entry.benchmarks.items())
                for n, v in sorted(vals.items())
            ],
            sparsity=entry.sparsity,
            quant=entry.quantization,
            per_layer=sorted(entry.sparsity.per_layer.items()),
            lineage_svg=lineage_svg,
            lineage_rows=lineage_rows,
            recipe=source.text(entry, entry.recipe),
            files=entry.files,
            card_html=_card_html(card) if card else "",
            versions=versions if len(versions) > 1 else [],
            base=base,
            adapters=[
                {
                    "ref": p.entry.ref,
                    "href": f"{page_slug(p.entry.ref)}.html",
                    "metric": p.row["metric"],
                    "size": p.entry.size,
                }
                for p in adapters.get(entry.ref, [])
            ],
            **common,
        )
    )
