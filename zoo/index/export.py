"""The export folder contract: what the pipeline's export stage hands to publishing.

An export folder holds the files to publish and ONE metadata file, `zoo.json`:

    model.safetensors      weights (dense, or compressed: bitmask + values, int8 + scales)
    config.json            architecture (zoo.models ArchConfig) + compression config
    recipe.yaml            the recipe that produced the model
    metrics.json           metrics per dataset (informational; zoo.json is authoritative)
    benchmarks.json        benchmarks per machine (informational)
    README.md              model card, YAML front matter first
    samples/*.safetensors  sample inputs / outputs
    zoo.json               ExportMeta below: stub, metrics, benchmarks, sparsity and
                           quantization facts, lineage

Safetensors files should carry the metadata `format: pt` (the zoo's own marker may go
in another key): huggingface_hub's `load_torch_model` and transformers refuse any other
value, and the Hub model repo made from an entry (zoo/index/hub.py) ships them as is.

Every regular file under the folder is published (hidden files excepted) unless
`zoo.json` lists `files` explicitly. Paths must stay inside the folder: `..`, absolute
paths and symlinks that lead out are refused, so publishing can never upload a file
the export did not mean to ship.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from zoo.errors import ExportError, SchemaError
from zoo.fsutil import atomic_write_text, sha256_file
from zoo.index.schema import (
    FileRecord,
    Lineage,
    QuantizationFacts,
    Scalar,
    SparsityFacts,
    Stub,
    parse_ref,
)
from zoo.index.tensors import safetensors_stats
from zoo.storage.names import check_file_name

META_FILE = "zoo.json"
EXPORT_FORMAT = "zoo-export/1"
DEFAULT_RECIPE = "recipe.yaml"
DEFAULT_CARD = "README.md"


@dataclass(frozen=True)
class ExportMeta:
    """The contents of `zoo.json`. `stub` may be left out and given on the command line."""

    stub: str | None = None
    metrics: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    benchmarks: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    sparsity: SparsityFacts = field(default_factory=SparsityFacts)
    quantization: QuantizationFacts = field(default_factory=QuantizationFacts)
    lineage: Lineage = field(default_factory=Lineage)
    recipe: str | None = None  # default: recipe.yaml when present
    card: str | None = None  # default: README.md when present
    files: list[str] | None = None  # default: every regular file in the folder

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = EXPORT_FORMAT
        return {k: v for k, v in data.items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = META_FILE) -> ExportMeta:
        if not isinstance(data, dict):
            raise SchemaError(where, "expected a JSON object")
        fmt = data.get("format", EXPORT_FORMAT)
        if fmt != EXPORT_FORMAT:
            raise SchemaError(where, f"unsupported format {fmt!r} (expected {EXPORT_FORMAT})")
        unknown = set(data) - {"format", *cls.__dataclass_fields__}
        if unknown:
            raise SchemaError(where, f"unknown field(s) {sorted(unknown)}")
        files = data.get("files")
        if files is not None and not (
            isinstance(files, list) and all(isinstance(f, str) for f in files)
        ):
            raise SchemaError(where, "files must be a list of relative paths")
        try:
            return cls(
                stub=data.get("stub"),
                metrics={str(k): dict(v) for k, v in data.get("metrics", {}).items()},
                benchmarks={str(k): dict(v) for k, v in data.get("benchmarks", {}).items()},
                sparsity=SparsityFacts.from_dict(data.get("sparsity", {})),
                quantization=QuantizationFacts.from_dict(data.get("quantization", {})),
                lineage=Lineage.from_dict(data.get("lineage", {})),
                recipe=data.get("recipe"),
                card=data.get("card"),
                files=files,
            )
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(where, f"malformed metadata: {exc}") from exc


@dataclass(frozen=True)
class ExportFolder:
    """A validated export folder: its metadata, stub and file records (hashed)."""

    root: Path
    meta: ExportMeta
    stub: Stub
    files: list[FileRecord]
    recipe: str | None
    card: str | None

    def path_of(self, record: FileRecord) -> Path:
        return self.root.joinpath(*PurePosixPath(record.path).parts)


def _inside(root: Path, rel: str) -> Path:
    """The real path of `rel` under `root`, refusing anything that leads out of it."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or os.path.isabs(rel) or ".." in pure.parts:
        raise ExportError(f"{root}: file path {rel!r} escapes the export folder")
    # The rules every client applies to a downloaded entry: publish nothing they refuse.
    check_file_name(rel, f"{root}: {META_FILE} or the folder")
    candidate = root.joinpath(*pure.parts)
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(root):
        raise ExportError(
            f"{root}: {rel!r} is a symlink to {real}, outside the export folder; copy the "
            "file into the folder instead"
        )
    if not real.is_file():
        raise ExportError(f"{root}: file {rel!r} is missing (or not a regular file)")
    return candidate


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in list(dirs):
            if name.startswith("."):
                dirs.remove(name)
            elif (here / name).is_symlink():
                # Symlinked folders are not followed; one pointing out is an error.
                _inside_dir(root, here / name)
                dirs.remove(name)
        for name in files:
            if not name.startswith("."):
                found.append((here / name).relative_to(root).as_posix())
    return sorted(found)


def _inside_dir(root: Path, path: Path) -> None:
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise ExportError(f"{root}: {path.relative_to(root)} is a symlink to {real}, outside")


def read_meta(folder: str | os.PathLike[str]) -> ExportMeta:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ExportError(f"{folder}: {META_FILE} is missing; is this an export folder?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: not valid JSON: {exc}") from exc
    return ExportMeta.from_dict(data, str(path))


def read_export(folder: str | os.PathLike[str], stub: Stub | str | None = None) -> ExportFolder:
    """Validate an export folder and hash its files. `stub` overrides zoo.json's."""
    if not Path(folder).is_dir():
        raise ExportError(f"export folder {folder} does not exist")
    root = Path(os.path.realpath(folder))
    meta = read_meta(root)
    chosen = stub if stub is not None else meta.stub
    if chosen is None:
        raise ExportError(f"{folder}: no stub in {META_FILE}; pass one with --stub")
    if isinstance(chosen, Stub):
        parsed = chosen
    else:
        parsed, ref = parse_ref(chosen)
        if ref is not None:
            raise ExportError(f"stub {chosen!r}: give no @version; publishing assigns it")
    rels = meta.files if meta.files is not None else _walk(root)
    if meta.files is not None and META_FILE not in rels:
        rels = [*rels, META_FILE]
    paths = [(rel, _inside(root, rel)) for rel in dict.fromkeys(rels)]
    records = []
    for rel, path in paths:
        record = FileRecord(rel, path.stat().st_size, sha256_file(path))
        if rel.endswith(".safetensors"):
            stats = safetensors_stats(path)
            record = replace(record, parameters=stats.parameters, zeros=stats.zeros)
        records.append(record)
    names = {r.path for r in records}
    recipe = _named(root, meta.recipe, DEFAULT_RECIPE, names, "recipe")
    card = _named(root, meta.card, DEFAULT_CARD, names, "card")
    return ExportFolder(root, meta, parsed, records, recipe, card)


def _named(root: Path, given: str | None, default: str, names: set[str], what: str) -> str | None:
    if given is None:
        return default if default in names else None
    if given not in names:
        raise ExportError(f"{root}: {META_FILE} names {what} {given!r}, which is not published")
    return given


# -- synthetic exports, for tests and benchmarks ------------------------------------------


def _card(stub: str, metrics: dict[str, Any], sparsity: float) -> str:
    datasets = sorted(metrics)
    return (
        "---\n"
        "library_name: zoo\n"
        f"tags: [zoo, sparse, pruned]\n"
        f"datasets: [{', '.join(datasets)}]\n"
        "license: apache-2.0\n"
        "---\n"
        f"# {stub}\n\nSynthetic export for tests: {sparsity:.0%} of the weights are zero.\n"
    )


def _finish(
    folder: Path, stub: str, metrics: dict[str, Any], sparsity: SparsityFacts, lineage: Lineage
) -> Path:
    (folder / "recipe.yaml").write_text(
        "version: 1\nstages:\n  prune:\n    run_type: oneshot\n    modifiers:\n"
        f"      - type: MagnitudePruningModifier\n        sparsity: {sparsity.overall:.4f}\n"
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    from zoo.evaluation.schema import BatchFigures, ModelFigures

    timing = BatchFigures(p50_ms=1.0, p90_ms=1.0, throughput=1000.0, control=1.0)
    benchmarks = {"cpu-2core": ModelFigures(batches={1: timing}).index_figures()}
    (folder / "benchmarks.json").write_text(json.dumps(benchmarks, indent=2) + "\n")
    (folder / "README.md").write_text(_card(stub, metrics, sparsity.overall))
    meta = ExportMeta(
        stub=stub,
        metrics=metrics,
        benchmarks=benchmarks,
        sparsity=sparsity,
        lineage=lineage,
    )
    atomic_write_text(folder / META_FILE, meta.to_json())
    return folder


def write_synthetic_export(
    folder: str | os.PathLike[str],
    stub: str = "zoo:cv/classification/mlp/fashion_mnist/pruned50",
    seed: int = 0,
    sparsity: float = 0.5,
    arch: str = "mlp",
    parent: str | None = None,
) -> Path:
    """Write a valid export folder from a real, small torch model with zeroed weights.

    The weights are the model's own (seeded) initialisation with the smallest `sparsity`
    fraction of each weight matrix set to zero; `zoo.models.checkpoint.load_checkpoint`
    and huggingface_hub's `load_torch_model` both load the folder.
    """
    import torch
    from safetensors.torch import save_file

    from zoo.models import get_model

    torch.manual_seed(seed)
    model = get_model(arch)
    total = nonzero = 0
    per_layer: dict[str, float] = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() < 2:
                continue
            k = int(param.numel() * sparsity)
            if k:
                threshold = param.abs().flatten().kthvalue(k).values
                param[param.abs() <= threshold] = 0.0
            zeros = int((param == 0).sum())
            per_layer[name] = zeros / param.numel()
            total += param.numel()
            nonzero += param.numel() - zeros
    out = _save_hub_compatible(model, Path(folder))
    sample = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    (out / "samples").mkdir(exist_ok=True)
    outputs = model(sample).detach()
    save_file({"input": sample, "output": outputs}, str(out / "samples/batch.safetensors"))
    facts = SparsityFacts(
        overall=(total - nonzero) / total if total else 0.0,
        parameters=total,
        nonzero=nonzero,
        per_layer=per_layer,
    )
    metrics = {"fashion_mnist": {"accuracy": round(0.80 + 0.001 * seed, 4)}}
    lineage = Lineage(parent=parent, data_hash="synthetic", recipe_hash=f"seed-{seed}")
    return _finish(out, stub, metrics, facts, lineage)


def _save_hub_compatible(model: Any, folder: Path) -> Path:
    """model.safetensors + config.json as zoo.models.checkpoint lays them out, but with
    safetensors metadata `format: pt`, which huggingface_hub's and transformers' loaders
    require (they refuse any other value); the zoo's own marker goes in `zoo_format`."""
    from zoo.models.checkpoint import CONFIG, FORMAT, WEIGHTS
    from zoo.models.registry import arch_config_of
    from zoo.tensorfile import save_tensor_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_tensor_file(state, folder / WEIGHTS, metadata={"format": "pt", "zoo_format": FORMAT})
    config = {
        "format": FORMAT,
        **arch_config_of(model).to_dict(),
        "weights": {"path": WEIGHTS, "sha256": sha256_file(folder / WEIGHTS)},
    }
    (folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def write_tiny_export(
    folder: str | os.PathLike[str],
    stub: str = "zoo:cv/classification/tiny/synthetic/pruned50",
    seed: int = 0,
    size: int = 64,
) -> Path:
    """A few-kilobyte export written with numpy only (no torch import), for tests that
    start many processes (concurrency, SIGKILL) where a torch import per process costs."""
    import numpy as np
    from safetensors.numpy import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((size, size)).astype(np.float32)
    weight[np.abs(weight) < np.quantile(np.abs(weight), 0.5)] = 0.0
    save_file({"weight": weight}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"arch": "tiny", "kwargs": {"size": size}}) + "\n")
    zeros = int((weight == 0).sum())
    facts = SparsityFacts(
        overall=zeros / weight.size, parameters=weight.size, nonzero=weight.size - zeros
    )
    metrics = {"synthetic": {"accuracy": round(float(rng.uniform(0.5, 1.0)), 4)}}
    return _finish(out, stub, metrics, facts, Lineage(recipe_hash=f"seed-{seed}"))
