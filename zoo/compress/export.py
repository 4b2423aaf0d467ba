"""Write the deployable export folder of a compressed model (the contract of zoo/index/export.py).

    model.safetensors        weights, packed (zoo/compress/sparse.py); metadata format "pt"
    config.json              architecture + `compression`: the transforms to replay on a
                             freshly built skeleton, in order, and the tensor encoding
    recipe.yaml              the recipe, copied (when given)
    metrics.json             metrics per dataset (when given)
    benchmarks.json          benchmarks per machine (when given)
    samples/batch.safetensors  sample inputs + the model's outputs on them (`zoo validate`)
    README.md                model card
    zoo.json                 ExportMeta: stub, metrics, benchmarks, facts, lineage
    SHA256SUMS               sha256 of every other file (`sha256sum -c SHA256SUMS` works)

Transforms, recorded only when the model needs them:
- ``lowrank``: {"ranks": {module: rank}} -> zoo.modifiers.lowrank.restructure
- ``resize``: {"modules": {module: widths}} -> zoo.compress.structure.resize (structured
  pruning: channels, neurons, heads; found by comparing with a fresh skeleton)
- ``weight_sharing``: {"bits", "layers"} -> indices packed to `bits` bits + codebooks,
  written back by zoo.modifiers.weight_sharing.load_shared
- ``int8``: quantization_io's config (plan, entries, versions) -> build_quantized
A model with no transform and nothing to gain from packing is written as a plain dense
checkpoint (zoo.models.checkpoint's layout), which transformers and huggingface_hub load.

The folder is written atomically (zoo.fsutil.atomic_dir) and, with sample inputs, loaded
back and checked against the sample outputs before it replaces anything.
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
from zoo.compress import int8 as int8_replay
from zoo.compress.card import render_card
from zoo.compress.sparse import pack_bits, pack_state
from zoo.compress.structure import widths_of
from zoo.errors import ExportError
from zoo.fsutil import atomic_dir, sha256_file
from zoo.index.export import DEFAULT_CARD, DEFAULT_RECIPE, META_FILE, ExportMeta
from zoo.index.schema import Lineage, QuantizationFacts, Scalar, SparsityFacts
from zoo.models.checkpoint import CONFIG, WEIGHTS
from zoo.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from zoo.models.registry import arch_config_of, build_from_config
from zoo.modifiers import lowrank
from zoo.modifiers import quantization as q
from zoo.modifiers import weight_sharing as ws
from zoo.tensorfile import save_tensor_file

COMPRESSED_FORMAT = "zoo-compressed/1"
SAMPLES = "samples/batch.safetensors"
CHECKSUMS = "SHA256SUMS"
METRICS = "metrics.json"
BENCHMARKS = "benchmarks.json"
TRANSFORMS = ("lowrank", "resize", "weight_sharing", "int8")
#: A model with no transform is packed only when that stores it in at most this fraction.
PLAIN_IF_ABOVE = 0.9

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


@dataclass(frozen=True)
class Compressed:
    tensors: dict[str, torch.Tensor]  # for model.safetensors
    compression: dict[str, Any] | None  # config.json's section; None: a plain checkpoint
    reference: nn.Module  # the architecture as built fresh (low-rank pairs applied)
    widths: dict[str, Any]  # the structure edits found against `reference`


def compress_model(model: nn.Module, pack: bool = True) -> Compressed:
    """The weights and the `compression` section that describe `model`."""
    arch = arch_config_of(model)
    plan = q.plan_of(model)
    ranks = lowrank.ranks_of(model)
    reference = build_from_config(arch)
    transforms: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    if ranks:
        lowrank.restructure(reference, ranks)
        transforms.append({"type": "lowrank", "ranks": ranks})
    changed = widths_of(model, reference, plan.fused if plan else None)
    if changed:
        transforms.append({"type": "resize", "modules": changed})
    if plan is not None:
        from zoo.modifiers.quantization_io import quantized_state

        state, int8 = quantized_state(model)
        # How to rebuild the int8 state dict (entry kinds per tensor, module versions) is
        # bulky and only for machines: packed, it travels in the weights' table of contents.
        transform, details = int8_replay.split(int8, list(state))
        transforms.append(transform)
    else:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        recorded = getattr(model, ws.LAYERS_ATTR, None)
        if recorded and recorded.get("layers"):
            transforms.append(_share(model, state))
    if not pack:
        encoding: dict[str, Any] = {"format": "plain"}
        tensors = {k: v.contiguous() for k, v in state.items()}
        if details:
            transforms[-1].update(details)
    else:
        packed = pack_state(state, {"int8": details} if details else None)
        if not transforms and _nbytes(packed.tensors) > PLAIN_IF_ABOVE * _nbytes(state):
            # Not worth it: every safetensors tool reads the plain layout.
            encoding, tensors = {"format": "plain"}, {k: v.contiguous() for k, v in state.items()}
        else:
            encoding, tensors = packed.config(), packed.tensors
    section = {"format": COMPRESSED_FORMAT, "transforms": transforms, "encoding": encoding}
    plain = not transforms and encoding["format"] == "plain"
    return Compressed(tensors, None if plain else section, reference, changed)


def _nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _share(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Swap each shared layer's weight in `state` for bit-packed indices + codebook."""
    tensors, config = ws.shared_state(model)
    bits = int(config["bits"])
    for layer in config["layers"]:
        for suffix in ("weight", "weight_codebook", "weight_indices"):
            state.pop(f"{layer}.{suffix}", None)
        state[f"{layer}.weight.indices"] = pack_bits(tensors[f"{layer}.weight.indices"], bits)
        state[f"{layer}.weight.codebook"] = tensors[f"{layer}.weight.codebook"]
    return {"type": "weight_sharing", "bits": bits, "layers": config["layers"]}


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
    from zoo.client.validate import validate_model
    from zoo.compress.load import load_exported

    validate_model(load_exported(folder), folder, str(folder)).raise_if_failed()


def deployable_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes a runtime needs to rebuild the model from `folder`: weights + config."""
    return sum((Path(folder) / name).stat().st_size for name in (WEIGHTS, CONFIG))
