"""Byte-reproducible safetensors files.

safetensors keeps the header's ``__metadata__`` in a hash map, so two processes saving the
same tensors with two or more metadata keys write them in different orders: same weights,
different bytes, different checksums, and DVC re-runs everything downstream. Writing the
header back with sorted metadata keys makes a file a pure function of its tensors.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping

import torch

from zoo.fsutil import atomic_write_bytes

HEADER_SIZE = struct.Struct("<Q")


def tensor_file_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The safetensors encoding of `tensors`, identical for identical input in any process."""
    from safetensors.torch import save

    raw = save(dict(tensors), metadata=dict(metadata) if metadata else None)
    (length,) = HEADER_SIZE.unpack_from(raw)
    header = json.loads(raw[HEADER_SIZE.size : HEADER_SIZE.size + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    # Same keys and values, so never longer; pad back to the length the data offsets assume.
    text += b" " * (length - len(text))
    return raw[: HEADER_SIZE.size] + text + raw[HEADER_SIZE.size + length :]


def save_tensor_file(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write `tensors` to `path` as safetensors, atomically and byte-reproducibly."""
    atomic_write_bytes(path, tensor_file_bytes(tensors, metadata))
