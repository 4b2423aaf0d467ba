"""Dense checkpoints: `model.safetensors` + `config.json`. Loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from zoo.errors import CheckpointError
from zoo.fsutil import atomic_dir, sha256_file
from zoo.models.registry import ArchConfig, arch_config_of, build_from_config
from zoo.tensorfile import save_tensor_file

FORMAT = "zoo-checkpoint/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_checkpoint(
    model: nn.Module, folder: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write the model's weights and architecture config into `folder`, atomically."""
    arch = arch_config_of(model)
    # clone() breaks storage sharing (tied weights) that safetensors refuses to save.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_dir(folder) as tmp:
        # "pt" is what huggingface_hub and transformers require to load the file themselves.
        save_tensor_file(state, tmp / WEIGHTS, metadata={"format": "pt", "zoo_format": FORMAT})
        config = {
            "format": FORMAT,
            **arch.to_dict(),
            "weights": {"path": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)},
            **({"extra": extra} if extra else {}),
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(folder)


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not a zoo checkpoint folder")
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if config.get("format") != FORMAT or "arch" not in config:
        raise CheckpointError(f"{path} is not a {FORMAT} config (format={config.get('format')!r})")
    return config


def load_checkpoint(folder: str | Path, verify: bool = True) -> nn.Module:
    """Rebuild the architecture from `config.json` and load the safetensors weights."""
    config = read_config(folder)
    weights = Path(folder) / config["weights"]["path"]
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing from checkpoint {folder}")
    if verify:
        actual = sha256_file(weights)
        if actual != config["weights"]["sha256"]:
            from zoo.errors import ChecksumMismatchError

            raise ChecksumMismatchError(
                str(weights), config["weights"]["sha256"], actual, "weights"
            )
    model = build_from_config(ArchConfig.from_dict(config))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model
