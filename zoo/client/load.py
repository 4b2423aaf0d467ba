"""Turn a downloaded model folder into a ready `nn.Module`.

The saved-model format has one loader, zoo.compress.load.load_exported, for dense
checkpoints and compressed exports alike; the client only maps its options onto it.
"""

from __future__ import annotations

import os

from torch import nn


def load_folder(
    folder: str | os.PathLike[str], *, keep_compressed: bool = False, verify: bool = False
) -> nn.Module:
    """Build the model stored in `folder`, in eval mode.

    `keep_compressed` runs sparse Linear layers as CSR matmuls instead of dense weights
    (int8 models always stay int8). `verify` re-hashes the files; the cache already
    verified them on download, so loading from it skips that by default.
    """
    from zoo.compress.load import load_exported

    return load_exported(folder, verify=verify, keep="sparse" if keep_compressed else "dense")
