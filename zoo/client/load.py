"""Turn a downloaded model folder into a ready `nn.Module`.

`load_folder` is the one place that knows weight formats. Dense checkpoints
(`model.safetensors` + `config.json`, see zoo.models.checkpoint) load here today;
compressed exports (sparse bitmask + values, int8 + scales) declare a `compression`
section in config.json and plug in through `COMPRESSED_LOADERS`: a table from format
name to "module:function", imported only when such a model is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from zoo.errors import CheckpointError, ZooError
from zoo.storage.names import check_file_name

#: compression format -> "module:function(folder, config, keep_compressed) -> nn.Module".
#: The modifiers/export engineers add rows here as their formats land.
COMPRESSED_LOADERS: dict[str, str] = {
    "zoo-compressed/1": "zoo.compress.load:load_for_client",
}

Loader = Callable[[Path, dict[str, Any], bool], nn.Module]


def compression_format(config: dict[str, Any]) -> str:
    """`dense` unless config.json says otherwise (`compression: {format: ...}`)."""
    section = config.get("compression")
    if not section:
        return "dense"
    if isinstance(section, str):
        return section
    if isinstance(section, dict):
        return str(section.get("format", "dense"))
    raise CheckpointError(f"config.json: 'compression' must be an object, got {section!r}")


def load_folder(
    folder: str | os.PathLike[str], *, keep_compressed: bool = False, verify: bool = False
) -> nn.Module:
    """Build the model stored in `folder`, in eval mode.

    `keep_compressed` asks a compressed format to keep its sparse / int8 form where that
    runs faster instead of decompressing to dense weights. `verify` re-hashes the weights;
    the cache already verified them on download, so loading from it skips that by default.
    """
    from zoo.models.checkpoint import load_checkpoint, read_config

    path = Path(folder)
    with readable_files(path, "load the model"):
        config = read_config(path)
        weights = config.get("weights", {})
        if isinstance(weights, dict) and "path" in weights:
            check_file_name(weights["path"], f"{path}/config.json: weights.path")
        fmt = compression_format(config)
        if fmt == "dense":
            model = load_checkpoint(path, verify=verify)
        else:
            model = _compressed_loader(fmt, path)(path, config, keep_compressed)
    return model.eval()


@contextlib.contextmanager
def readable_files(folder: Path, doing: str) -> Iterator[None]:
    """Turn what malformed files make the readers raise (a pickle named `.safetensors`,
    a config of the wrong shape, tensors that do not fit the architecture) into one
    CheckpointError naming the folder: files from a registry are not trusted input."""
    from safetensors import SafetensorError

    try:
        yield
    except ZooError:
        raise
    except (SafetensorError, RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"{folder}: cannot {doing}: {type(exc).__name__}: {exc}. The files are damaged "
            "or not a zoo model; re-download it (`zoo cache verify` checks the cache)."
        ) from exc


def _compressed_loader(fmt: str, folder: Path) -> Loader:
    target = COMPRESSED_LOADERS.get(fmt)
    if target is None:
        known = ", ".join(["dense", *sorted(COMPRESSED_LOADERS)])
        raise CheckpointError(
            f"{folder}/config.json declares compression format {fmt!r}, which this zoo "
            f"version cannot load (it knows: {known}). Upgrade the zoo package."
        )
    module, _, name = target.partition(":")
    loader: Loader = getattr(importlib.import_module(module), name)
    return loader
