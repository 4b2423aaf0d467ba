"""The model card (README.md): Hugging Face style YAML front matter, then a readable body."""

from __future__ import annotations

import json
from typing import Any

from zoo.index.export import ExportMeta

_TRANSFORM_TEXT = {
    "lowrank": "low-rank factorisation (layers replaced by two thinner layers)",
    "resize": "structured pruning (channels / neurons / heads removed)",
    "weight_sharing": "weight sharing (k-means codebook + indices)",
    "int8": "int8 quantization",
}


def _yaml_scalar(value: Any) -> str:
    # JSON is valid YAML (flow style): strings come quoted as needed, true/false/null,
    # numbers, and lists or mappings stay on one line.
    return json.dumps(value, sort_keys=True, default=str)


def _front_matter(fields: dict[str, Any]) -> str:
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, list) and not value:
            continue  # an empty YAML key reads as null, not as an empty list
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {_yaml_scalar(v)}" for v in value]
        elif value is not None:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def tags_of(meta: ExportMeta, transforms: list[str], arch: str) -> list[str]:
    tags = ["zoo", arch]
    if meta.sparsity.overall > 0:
        tags += ["sparse", "pruned"]
    if meta.sparsity.structure not in ("unstructured", ""):
        tags.append(f"structured-{meta.sparsity.structure}")
    if meta.quantization.scheme:
        tags += [meta.quantization.scheme, "quantized"]
    tags += [t.replace("_", "-") for t in transforms if t not in ("int8",)]
    return list(dict.fromkeys(tags))


def render_card(
    meta: ExportMeta,
    arch: str,
    transforms: list[str],
    sizes: dict[str, int],
    fields: dict[str, Any] | None = None,
) -> str:
    """README.md text. `fields` adds or overrides front matter keys (license, language...)."""
    title = meta.stub or f"{arch} (compressed)"
    metric_names = sorted({m for values in meta.metrics.values() for m in values})
    front: dict[str, Any] = {
        "library_name": "zoo",
        "license": "apache-2.0",
        "tags": tags_of(meta, transforms, arch),
        "datasets": sorted(meta.metrics),
        "metrics": metric_names,
        "pipeline_tag": None,
    }
    front.update(fields or {})
    body = [f"# {title}", ""]
    how = [_TRANSFORM_TEXT.get(t, t) for t in transforms]
    if meta.sparsity.overall > 0:
        how.insert(
            0,
            f"{meta.sparsity.overall:.1%} of the {meta.sparsity.parameters:,} conv/linear "
            f"weights are zero ({meta.sparsity.structure})",
        )
    body.append(f"Architecture `{arch}`, compressed by: {'; '.join(how) or 'nothing (dense)'}.")
    if meta.recipe:
        body += ["", f"Made by the recipe in [`{meta.recipe}`]({meta.recipe})."]
    if meta.lineage.parent:
        body += ["", f"Parent model: `{meta.lineage.parent}`."]
    if meta.metrics:
        body += ["", "## Metrics", "", "| dataset | metric | value |", "| --- | --- | --- |"]
        for dataset, values in sorted(meta.metrics.items()):
            body += [f"| {dataset} | {name} | {value} |" for name, value in sorted(values.items())]
    if meta.benchmarks:
        body += ["", "## Benchmarks", "", "| machine | measure | value |", "| --- | --- | --- |"]
        for machine, values in sorted(meta.benchmarks.items()):
            body += [f"| {machine} | {name} | {value} |" for name, value in sorted(values.items())]
    body += ["", "## Files", "", "| file | bytes |", "| --- | --- |"]
    body += [f"| {name} | {size:,} |" for name, size in sorted(sizes.items())]
    body += [
        "",
        "## How to load",
        "",
        "```python",
        "from zoo.compress.load import load_exported",
        "",
        'model = load_exported("path/to/this/folder")  # verifies SHA256SUMS, no pickle',
        "```",
        "",
        "Or by stub with `zoo download` / `zoo.client` once it is published; "
        "`samples/` holds inputs and the outputs this model gave (`zoo validate`).",
        "",
    ]
    return _front_matter(front) + "\n" + "\n".join(body)
