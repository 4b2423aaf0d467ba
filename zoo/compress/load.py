"""Load any model folder back into a runnable nn.Module, no pickle: the one entry point.

Dense checkpoints (zoo.models.checkpoint) and compressed exports (zoo/compress/export.py)
share config.json's layout; `load_exported` reads the config, checks the files, then
zoo.compress.format.build_model rebuilds the architecture, replays the recorded
transforms and loads the weights. The zoo client, the pipeline stages and export's own
check all load through here.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch import nn

from zoo.compress.format import CHECKSUMS, CSR_MIN_SPARSITY, build_model
from zoo.errors import ChecksumMismatchError, CompressedFormatError, ExportFileMissingError
from zoo.fsutil import sha256_file
from zoo.models.checkpoint import CONFIG, WEIGHTS
from zoo.models.checkpoint import FORMAT as CHECKPOINT_FORMAT

Keep = Literal["dense", "sparse"]


def is_transformers_folder(config: dict[str, Any]) -> bool:
    """A folder a transformers model saved (save_pretrained): no zoo format, a model_type."""
    return "format" not in config and "model_type" in config


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ExportFileMissingError(str(folder), CONFIG, "it says how to rebuild the model")
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressedFormatError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CompressedFormatError(f"{path} holds {type(config).__name__}, not a JSON object")
    if is_transformers_folder(config):
        return config
    if config.get("format") != CHECKPOINT_FORMAT or "arch" not in config:
        raise CompressedFormatError(
            f"{path} is not a {CHECKPOINT_FORMAT} config (format={config.get('format')!r}) "
            "nor a transformers model's config (model_type)"
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
    from zoo.storage.names import check_file_name

    rel = config.get("weights", {}).get("path", WEIGHTS)
    check_file_name(rel, f"{folder}/{CONFIG}: weights.path")  # never a path outside the folder
    path = folder / rel
    if not path.is_file():
        raise ExportFileMissingError(str(folder), rel, "it holds the weights")
    return load_file(str(path))


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
    """Rebuild the model of any model folder, in eval mode: a dense checkpoint, an export,
    or a transformers model's own folder (through the `hf` architecture).

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
    if is_transformers_folder(config):
        from zoo.models import get_model

        model = get_model("hf", path=str(root)).eval()  # the `hf` architecture wraps it
    else:
        model = build_model(config, _weights(root, config))
    if keep == "sparse":
        to_sparse_linears(model)
    elif keep != "dense":
        raise ValueError(f"keep must be 'dense' or 'sparse', not {keep!r}")
    return model
