"""Turn a downloaded model folder into a ready `nn.Module`.

The saved-model format has one loader, zoo.compress.load.load_exported, for dense
checkpoints and compressed exports alike; the client only maps its options onto it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from torch import nn

from zoo.errors import CheckpointError, ZooError


def load_folder(
    folder: str | os.PathLike[str], *, keep_compressed: bool = False, verify: bool = False
) -> nn.Module:
    """Build the model stored in `folder`, in eval mode.

    `keep_compressed` runs sparse Linear layers as CSR matmuls instead of dense weights
    (int8 models always stay int8). `verify` re-hashes the files; the cache already
    verified them on download, so loading from it skips that by default.
    """
    from zoo.compress.load import load_exported

    path = Path(folder)
    with readable_files(path, "load the model"):
        model = load_exported(path, verify=verify, keep="sparse" if keep_compressed else "dense")
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
