"""Load an export folder (zoo/compress/export.py) back into a runnable nn.Module, no pickle.

Rebuild the architecture from config.json, replay the recorded transforms on it in order
(low-rank pairs, resized layers), decode the packed weights, then load them: int8 through
zoo.modifiers.quantization_io.build_quantized, weight-shared layers through
zoo.modifiers.weight_sharing.load_shared, everything else with a strict load_state_dict.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from zoo.compress import int8 as int8_replay
from zoo.compress.export import CHECKSUMS, COMPRESSED_FORMAT, TRANSFORMS
from zoo.compress.sparse import unpack_bits, unpack_notes, unpack_state
from zoo.compress.structure import resize
from zoo.errors import ChecksumMismatchError, CompressedFormatError, ExportFileMissingError
from zoo.fsutil import sha256_file
from zoo.models.checkpoint import CONFIG, WEIGHTS
from zoo.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from zoo.models.registry import ArchConfig, build_from_config
from zoo.modifiers import lowrank
from zoo.modifiers import weight_sharing as ws

Keep = Literal["dense", "sparse"]
#: Linear layers at least this sparse run as CSR matmuls with keep="sparse".
CSR_MIN_SPARSITY = 0.7


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ExportFileMissingError(str(folder), CONFIG, "it says how to rebuild the model")
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressedFormatError(f"{path} is not valid JSON: {exc}") from exc
    if config.get("format") != CHECKPOINT_FORMAT or "arch" not in config:
        raise CompressedFormatError(
            f"{path} is not a {CHECKPOINT_FORMAT} config (format={config.get('format')!r})"
        )
    return config


def verify_folder(folder: str | os.PathLike[str], config: dict[str, Any]) -> None:
    """Check the weights' sha256 from config.json and every file listed in SHA256SUMS."""
    from zoo.errors import SchemaError
    from zoo.storage.names import check_file_name, check_sha256

    root = Path(folder)
    expected: dict[str, str] = {}
    sums = root / CHECKSUMS
    if sums.is_file():
        for line in sums.read_text().splitlines():
            digest, _, rel = line.partition("  ")
            if rel:
                expected[rel] = digest
    weights = config.get("weights", {})
    if weights.get("sha256"):
        expected[weights.get("path", WEIGHTS)] = weights["sha256"]
    for rel, digest in sorted(expected.items()):
        # Names from a file in the folder: never follow one outside it (`../../etc/x`, an
        # absolute path), which would reveal whether a local file exists and its hash.
        try:
            check_file_name(rel, f"{root}/{CHECKSUMS}")
            check_sha256(digest, f"{root}/{CHECKSUMS}, {rel}")
        except SchemaError as exc:
            raise CompressedFormatError(f"{exc}; the folder is damaged or hostile") from None
        path = root / rel
        if not path.is_file():
            raise ExportFileMissingError(str(root), rel, f"{CHECKSUMS} or {CONFIG} lists it")
        actual = sha256_file(path)
        if actual != digest:
            raise ChecksumMismatchError(str(path), digest, actual, "export file")


def _weights(folder: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    rel = config.get("weights", {}).get("path", WEIGHTS)
    path = folder / rel
    if not path.is_file():
        raise ExportFileMissingError(str(folder), rel, "it holds the weights")
    return load_file(str(path))


def build_model(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The model that config.json + the weights file's tensors describe, in eval mode."""
    model = build_from_config(ArchConfig.from_dict(config))
    compression = config.get("compression")
    if not compression:
        model.load_state_dict(tensors, strict=True)
        return model.eval()
    if compression.get("format") != COMPRESSED_FORMAT:
        raise CompressedFormatError(
            f"compression format {compression.get('format')!r} is not {COMPRESSED_FORMAT}; "
            "upgrade the zoo package"
        )
    encoding = compression.get("encoding", {})
    state = tensors if encoding.get("format") == "plain" else unpack_state(tensors, encoding)
    int8: dict[str, Any] | None = None
    shared: dict[str, Any] | None = None
    for transform in compression.get("transforms", []):
        kind = transform.get("type")
        if kind == "lowrank":
            lowrank.restructure(model, {k: int(v) for k, v in transform["ranks"].items()})
        elif kind == "resize":
            resize(model, transform["modules"])
        elif kind == "weight_sharing":
            shared = transform
        elif kind == "int8":
            int8 = transform
        else:
            raise CompressedFormatError(
                f"unknown compression transform {kind!r} in config.json; this zoo replays "
                f"{', '.join(TRANSFORMS)}. Upgrade the zoo package."
            )
    if int8 is not None:
        from zoo.modifiers.quantization_io import build_quantized

        # Packed, the bulky details live in the weights' table of contents.
        details = {} if "entries" in int8 else unpack_notes(tensors, encoding).get("int8", {})
        config8 = int8_replay.join(int8, details, list(state))
        return build_quantized(model, state, config8).eval()
    shared_tensors = _take_shared(state, shared) if shared else {}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = {f"{layer}.weight" for layer in (shared or {}).get("layers", {})}
    if unexpected or set(missing) - allowed:
        raise CompressedFormatError(
            f"the weights do not fit the rebuilt model: missing {sorted(set(missing) - allowed)}, "
            f"unexpected {sorted(unexpected)}"
        )
    if shared:
        ws.load_shared(
            model,
            shared_tensors,
            {"format": ws.FORMAT, "bits": shared["bits"], "layers": shared["layers"]},
        )
        setattr(model, ws.LAYERS_ATTR, {"bits": shared["bits"], "layers": sorted(shared["layers"])})
    return model.eval()


def _take_shared(state: dict[str, torch.Tensor], shared: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Pop each shared layer's packed indices + codebook out of `state`, indices unpacked."""
    bits = int(shared["bits"])
    out: dict[str, torch.Tensor] = {}
    for layer, shape in shared["layers"].items():
        count = int(np.prod(shape, dtype=np.int64))
        out[f"{layer}.weight.indices"] = unpack_bits(
            state.pop(f"{layer}.weight.indices"), bits, count
        )
        out[f"{layer}.weight.codebook"] = state.pop(f"{layer}.weight.codebook")
    return out


class CsrLinear(nn.Module):
    """A Linear whose weight is a CSR sparse matrix: y = x W^T + b as a sparse matmul."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        with warnings.catch_warnings():  # "CSR support is in beta": noise for users
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support")
            self.register_buffer("weight", layer.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._buffers["weight"], self._buffers["bias"]
        assert weight is not None
        flat = x.reshape(-1, self.in_features)
        out = (weight @ flat.T).T
        if bias is not None:
            out = out + bias
        return out.reshape(*x.shape[:-1], self.out_features)


def to_sparse_linears(model: nn.Module, min_sparsity: float = CSR_MIN_SPARSITY) -> list[str]:
    """Swap float Linear layers at least `min_sparsity` sparse for `CsrLinear`, in place."""
    swapped = []
    for name, module in list(model.named_modules()):
        if type(module) is not nn.Linear or not name:
            continue
        if float((module.weight == 0).float().mean()) < min_sparsity:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, CsrLinear(module))
        swapped.append(name)
    return swapped


def load_exported(
    folder: str | os.PathLike[str], *, verify: bool = True, keep: Keep = "dense"
) -> nn.Module:
    """Rebuild the model of an export folder, in eval mode.

    `verify` checks the sha256 of every file recorded in SHA256SUMS and config.json
    (ChecksumMismatchError names the file and both hashes). int8 models come back as int8
    modules (their outputs are what the samples recorded). `keep="sparse"` runs float
    Linear layers that are at least 70% zeros as CSR sparse matmuls.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ExportFileMissingError(str(root), ".", "the export folder does not exist")
    config = read_config(root)
    if verify:
        verify_folder(root, config)
    model = build_model(config, _weights(root, config))
    if keep == "sparse":
        to_sparse_linears(model)
    elif keep != "dense":
        raise ValueError(f"keep must be 'dense' or 'sparse', not {keep!r}")
    return model


def load_for_client(folder: Path, config: dict[str, Any], keep_compressed: bool) -> nn.Module:
    """The entry for zoo.client.load.COMPRESSED_LOADERS (the cache verified the files)."""
    model = build_model(config, _weights(folder, config))
    if keep_compressed:
        to_sparse_linears(model)
    return model
