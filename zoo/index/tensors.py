"""Count elements and zeros in a safetensors file from its bytes, without torch.

Reading the format directly (an 8-byte header length, a JSON header, raw little-endian
data) keeps `zoo index verify` and publishing fast and independent of torch, and covers
bfloat16, which numpy cannot name: a float is zero when all bits but the sign are zero.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from zoo.errors import SchemaError

# dtype -> (bytes per element, unsigned view, is float)
_DTYPES: dict[str, tuple[int, type[np.unsignedinteger], bool]] = {
    "F64": (8, np.uint64, True),
    "F32": (4, np.uint32, True),
    "F16": (2, np.uint16, True),
    "BF16": (2, np.uint16, True),
    "I64": (8, np.uint64, False),
    "I32": (4, np.uint32, False),
    "I16": (2, np.uint16, False),
    "I8": (1, np.uint8, False),
    "U64": (8, np.uint64, False),
    "U32": (4, np.uint32, False),
    "U16": (2, np.uint16, False),
    "U8": (1, np.uint8, False),
    "BOOL": (1, np.uint8, False),
    "F8_E4M3": (1, np.uint8, True),
    "F8_E5M2": (1, np.uint8, True),
}
MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class TensorStats:
    tensors: int
    parameters: int  # elements, summed over tensors
    zeros: int


@dataclass(frozen=True)
class TensorSpan:
    name: str
    dtype: str
    count: int  # elements
    begin: int  # byte offsets into the data section
    end: int


def read_header(handle: BinaryIO, file_size: int, where: str) -> tuple[int, list[TensorSpan]]:
    """The data section's start and every tensor's span, after the structural checks any
    safetensors reader makes: a JSON object header; each tensor a known dtype, a shape of
    non-negative integers, and `shape x itemsize` bytes at offsets that lie inside the file;
    spans that tile the data section with no gap and no overlap. Raises SchemaError."""
    raw = handle.read(8)
    if len(raw) != 8:
        raise SchemaError(where, "not a safetensors file (shorter than 8 bytes)")
    (length,) = struct.unpack("<Q", raw)
    if length > min(MAX_HEADER, file_size - 8):
        raise SchemaError(where, f"not a safetensors file (header of {length} bytes)")
    try:
        header = json.loads(handle.read(length))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SchemaError(where, f"not a safetensors file: bad header ({exc})") from exc
    if not isinstance(header, dict):
        raise SchemaError(where, f"safetensors header is a JSON {type(header).__name__}")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SchemaError(where, "__metadata__ must map names to strings")
    spans = [_span(name, info, where) for name, info in header.items() if name != "__metadata__"]
    spans.sort(key=lambda t: (t.begin, t.end))
    data_size = file_size - 8 - length
    at = 0
    for span in spans:
        if span.begin != at:
            what = "overlaps the one before" if span.begin < at else "leaves a gap before it"
            raise SchemaError(where, f"tensor {span.name!r}: its byte span {what}")
        at = span.end
    if at != data_size:
        state = "is truncated" if at > data_size else "has bytes no tensor owns"
        raise SchemaError(
            where, f"file {state}: tensors cover {at} bytes, the data section holds {data_size}"
        )
    return 8 + length, spans


def _span(name: str, info: Any, where: str) -> TensorSpan:
    bad = f"tensor {name!r}"
    if not isinstance(info, dict):
        raise SchemaError(where, f"{bad}: header entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise SchemaError(where, f"{bad}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SchemaError(where, f"{bad}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise SchemaError(where, f"{bad}: data_offsets must be two non-negative integers")
    count = math.prod(shape)  # Python integers: a huge shape cannot overflow to a small one
    begin, end = offsets
    if end < begin or end - begin != count * _DTYPES[dtype][0]:
        raise SchemaError(where, f"{bad}: data size does not match shape {shape} x {dtype}")
    return TensorSpan(name, dtype, count, begin, end)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def safetensors_stats(path: str | os.PathLike[str]) -> TensorStats:
    """Tensors, elements and zero elements stored in the safetensors file at `path`,
    after `read_header`'s structural checks."""
    with open(path, "rb") as handle:
        base, spans = read_header(handle, os.fstat(handle.fileno()).st_size, str(path))
        parameters = zeros = 0
        for span in spans:
            width, view, is_float = _DTYPES[span.dtype]
            handle.seek(base + span.begin)
            data = handle.read(span.end - span.begin)
            values = np.frombuffer(data, dtype=np.dtype(view).newbyteorder("<"))
            if is_float:
                sign = np.array(1 << (8 * width - 1), dtype=view)
                values = values & ~sign
            parameters += span.count
            zeros += int(span.count - np.count_nonzero(values))
        return TensorStats(len(spans), parameters, zeros)
