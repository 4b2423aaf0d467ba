"""Count elements and zeros in a safetensors file from its bytes, without torch.

Reading the format directly (an 8-byte header length, a JSON header, raw little-endian
data) keeps `zoo index verify` and publishing fast and independent of torch, and covers
bfloat16, which numpy cannot name: a float is zero when all bits but the sign are zero.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

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


def safetensors_stats(path: str | os.PathLike[str]) -> TensorStats:
    """Tensors, elements and zero elements stored in the safetensors file at `path`."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise SchemaError(str(path), "not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise SchemaError(str(path), f"not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(str(path), f"not a safetensors file: bad header ({exc})") from exc
        base = 8 + length
        tensors = parameters = zeros = 0
        for name, info in sorted(header.items(), key=lambda kv: str(kv[0])):
            if name == "__metadata__":
                continue
            try:
                width, view, is_float = _DTYPES[info["dtype"]]
                begin, end = (int(x) for x in info["data_offsets"])
                count = int(np.prod(info["shape"], dtype=np.int64))
            except (KeyError, TypeError, ValueError) as exc:
                raise SchemaError(str(path), f"tensor {name!r}: bad header entry ({exc})") from exc
            if end - begin != count * width:
                raise SchemaError(str(path), f"tensor {name!r}: data size does not match shape")
            handle.seek(base + begin)
            data = handle.read(end - begin)
            if len(data) != end - begin:
                raise SchemaError(str(path), f"tensor {name!r}: file is truncated")
            values = np.frombuffer(data, dtype=np.dtype(view).newbyteorder("<"))
            if is_float:
                sign = np.array(1 << (8 * width - 1), dtype=view)
                values = values & ~sign
            tensors += 1
            parameters += count
            zeros += int(count - np.count_nonzero(values))
        return TensorStats(tensors, parameters, zeros)
