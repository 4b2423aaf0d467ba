"""Model folders between stages: dense checkpoints and compressed zoo models, one loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from zoo.compress.format import CHECKSUMS

# An export folder (zoo/compress) carries this checksum list; a dense checkpoint does not.
EXPORT_MARKER = CHECKSUMS


def read_receipt(path: str | Path) -> dict[str, Any]:
    """A register stage's receipt: the published `ref` (stub@version) and its `store`."""
    receipt: dict[str, Any] = json.loads(Path(path).read_text())
    return receipt


def load_model_folder(folder: str | Path, keep: str = "dense") -> nn.Module:
    """Load a dense checkpoint (models/dense/*), a compressed export (models/zoo/*), or,
    given a register receipt (metrics/register/*.json), the published model it names,
    fetched through the zoo client like any user would."""
    if Path(folder).suffix == ".json":
        from zoo.client.api import load

        receipt = read_receipt(folder)
        return load(receipt["ref"], registry=receipt["store"])
    from zoo.compress.load import load_exported

    return load_exported(folder, keep=keep)  # type: ignore[arg-type]


def save_model_folder(model: nn.Module, folder: str | Path, **export_args: Any) -> None:
    """Save a stage's model compressed, in the export format (zoo/compress/export.py)."""
    from zoo.compress.export import export_model

    export_model(model, folder, **export_args)
