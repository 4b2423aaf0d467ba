"""Write the deployable export folder of a compressed model (the contract of zoo/index/export.py).

The folder's layout and the transforms it may record are the format's
(zoo/compress/format.py): this module measures the facts, renders the card and writes the
files. The folder is written atomically (zoo.fsutil.atomic_dir) and, with sample inputs,
loaded back through zoo.compress.load and checked against the sample outputs before it
replaces anything.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.compress import facts
from zoo.compress.card import render_card
from zoo.compress.format import (
    BENCHMARKS,
    CHECKSUMS,
    COMPRESSED_FORMAT,
    METRICS,
    SAMPLES,
    compress_model,
)
from zoo.compress.load import load_exported
from zoo.errors import ExportError
from zoo.fsutil import atomic_dir, sha256_file
from zoo.index.export import DEFAULT_CARD, DEFAULT_RECIPE, META_FILE, ExportMeta
from zoo.index.schema import Lineage, QuantizationFacts, Scalar, SparsityFacts
from zoo.models.arch import arch_config_of
from zoo.models.checkpoint import CONFIG, WEIGHTS
from zoo.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from zoo.tensorfile import save_tensor_file

SampleInputs = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    meta: ExportMeta
    sizes: dict[str, int]  # file -> bytes
    transforms: list[str]

    @property
    def deployable_bytes(self) -> int:
        """What a runtime needs to rebuild the model: weights + config."""
        return self.sizes[WEIGHTS] + self.sizes[CONFIG]


def _outputs(model: nn.Module, inputs: SampleInputs) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model(inputs) if isinstance(inputs, torch.Tensor) else model(**inputs)
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"the model returned {type(out).__name__}; samples need one tensor")
    return out.detach().clone()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _sizes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def export_model(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    stub: str | None = None,
    recipe: str | os.PathLike[str] | None = None,
    metrics: dict[str, dict[str, Scalar]] | None = None,
    benchmarks: dict[str, dict[str, Scalar]] | None = None,
    sample_inputs: SampleInputs | None = None,
    lineage: Lineage | None = None,
    sparsity: SparsityFacts | None = None,
    quantization: QuantizationFacts | None = None,
    card_fields: dict[str, Any] | None = None,
    compress: bool = True,
    check: bool = True,
) -> ExportResult:
    """Write the deployable export folder of `model` (see the module docstring), atomically.

    `sparsity` / `quantization` default to facts measured on the model; `lineage` gets
    its recipe_hash from the recipe file when it has none. `compress=False` stores the
    tensors as they are (the dense baseline). `check` loads the written folder back and
    compares it with the sample outputs before the folder replaces anything.
    """
    arch = arch_config_of(model)
    compressed = compress_model(model, pack=compress)
    tensors, compression = compressed.tensors, compressed.compression
    transforms = [t["type"] for t in (compression or {}).get("transforms", [])]
    structure = None
    if compressed.widths:
        heads = any("heads" in w for w in compressed.widths.values())
        structure = "head" if heads else "channel"
    recipe_path = Path(recipe) if recipe is not None else None
    if recipe_path is not None and not recipe_path.is_file():
        raise ExportError(f"recipe {recipe_path} does not exist")
    lineage = lineage or Lineage()
    if recipe_path is not None and lineage.recipe_hash is None:
        lineage = replace(lineage, recipe_hash=sha256_file(recipe_path))
    meta = ExportMeta(
        stub=stub,
        metrics=dict(metrics or {}),
        benchmarks=dict(benchmarks or {}),
        sparsity=sparsity or facts.sparsity_facts(model, compressed.reference, structure),
        quantization=quantization or facts.quantization_facts(model),
        lineage=lineage,
        recipe=DEFAULT_RECIPE if recipe_path is not None else None,
        card=DEFAULT_CARD,
    )
    outputs = _outputs(model, sample_inputs) if sample_inputs is not None else None
    with atomic_dir(folder) as tmp:
        zoo_format = COMPRESSED_FORMAT if compression else CHECKPOINT_FORMAT
        # "pt": huggingface_hub and transformers refuse any other value for `format`.
        save_tensor_file(
            tensors, tmp / WEIGHTS, metadata={"format": "pt", "zoo_format": zoo_format}
        )
        config: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            **arch.to_dict(),
            "weights": {"path": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)},
        }
        if compression:
            config["compression"] = compression
        # Compact JSON: for a small model the config is a sizeable share of the download.
        (tmp / CONFIG).write_text(json.dumps(config, separators=(",", ":"), sort_keys=True))
        if recipe_path is not None:
            shutil.copyfile(recipe_path, tmp / DEFAULT_RECIPE)
        if metrics is not None:
            _write_json(tmp / METRICS, metrics)
        if benchmarks is not None:
            _write_json(tmp / BENCHMARKS, benchmarks)
        if sample_inputs is not None and outputs is not None:
            (tmp / SAMPLES).parent.mkdir()
            named = (
                {"input": sample_inputs}
                if isinstance(sample_inputs, torch.Tensor)
                else dict(sample_inputs)
            )
            samples = {k: v.detach().contiguous().clone() for k, v in named.items()}
            save_tensor_file(
                {**samples, "output": outputs}, tmp / SAMPLES, metadata={"format": "pt"}
            )
        card = render_card(meta, arch.arch, transforms, _sizes(tmp), card_fields)
        (tmp / DEFAULT_CARD).write_text(card)
        (tmp / META_FILE).write_text(meta.to_json())
        sums = "".join(f"{sha256_file(tmp / rel)}  {rel}\n" for rel in _sizes(tmp))
        (tmp / CHECKSUMS).write_text(sums)
        if check and outputs is not None:
            _check(tmp)
        sizes = _sizes(tmp)
    return ExportResult(Path(folder), meta, sizes, transforms)


def _check(folder: Path) -> None:
    """Load the folder as a user would and run its samples; raise before it is published."""
    from zoo.client.validate import validate_model  # the client package is slow to import

    validate_model(load_exported(folder), folder, str(folder)).raise_if_failed()


def deployable_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes a runtime needs to rebuild the model from `folder`: weights + config."""
    return sum((Path(folder) / name).stat().st_size for name in (WEIGHTS, CONFIG))
