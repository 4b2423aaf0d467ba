"""Lossless tensor encodings: bitmask + non-zero values, all-zero, narrower dtype, packed bits.

One tensor is stored in one of three ways, whichever is smallest (`choose`):

- ``dense``: every element, in the narrowest dtype that holds it exactly (float64 scales
  that are float32 values become float32, int64 zero points that fit become int8);
- ``bitmask``: one bit per element (1 = stored) + the stored elements only. Zero means
  all bits zero, so ``-0.0`` is kept and the decoded tensor is bit-identical;
- ``zeros``: nothing at all (only dtype and shape).

A state dict is packed into a handful of safetensors tensors (`pack_state`), "streams":
every tensor's mask bits go into one bit stream (``mask``), every stored value into one
stream per stored dtype (``values.int8``, ...), in the order of the table of contents
(``layout``: JSON rows name, dtype, shape, encoding, stored dtype; plus notes). Why not one
safetensors tensor per tensor: a header entry costs ~80 bytes, which for a 29k-weight CNN
at 90% sparsity and int8 is more than its scales and biases together. Each stream is
stored deflated (zlib) when that is smaller: a mask at 90% sparsity holds ~0.47 bits of
information per element, not 1, and int8 codes of a pruned layer shrink by a third. The
file stays a plain safetensors file (a deflated stream is a uint8 tensor); config.json's
``encoding`` says which streams are deflated.

Small unsigned codes (weight-sharing indices of b < 8 bits) pack b bits per element with
`pack_bits` / `unpack_bits`.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from zoo.errors import CompressedFormatError

Encoding = Literal["dense", "bitmask", "zeros"]
Codec = Literal["raw", "deflate"]
ENCODINGS: tuple[str, ...] = ("dense", "bitmask", "zeros")
FORMAT = "zoo-packed/1"
MASK = "mask"  # the safetensors tensor holding every mask bit
LAYOUT = "layout"  # JSON table of contents: a row per tensor (TensorLayout.to_row), notes
VALUES = "values."  # + stored dtype name: the values of that dtype, concatenated

SMALL_STREAM = 1 << 20  # bytes: above this, deflate only with the fast strategy
_INT_LADDER = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)
_SIGNED = (torch.int8, torch.int16, torch.int32, torch.int64)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_of(name: str) -> torch.dtype:
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise CompressedFormatError(f"unknown dtype {name!r} in the tensor layout")
    return value


@dataclass(frozen=True)
class TensorLayout:
    """How one tensor is stored: its original dtype and shape, encoding, stored dtype."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    encoding: Encoding
    stored: str  # dtype of the stored values (== dtype unless narrowed losslessly)

    def to_row(self) -> list[Any]:
        # A row, not an object: the table is the largest part of a tiny model's config.
        return [self.name, self.dtype, list(self.shape), self.encoding, self.stored]

    @classmethod
    def from_row(cls, row: Any) -> TensorLayout:
        if not (isinstance(row, list) and len(row) == 5):
            raise CompressedFormatError(f"malformed tensor layout row {row!r}")
        name, dtype, shape, encoding, stored = row
        if encoding not in ENCODINGS:
            raise CompressedFormatError(
                f"tensor {name!r} uses encoding {encoding!r}; this zoo knows "
                f"{', '.join(ENCODINGS)}. Upgrade the zoo package."
            )
        return cls(str(name), str(dtype), tuple(int(s) for s in shape), encoding, str(stored))

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _nonzero(tensor: torch.Tensor) -> torch.Tensor:
    """Elements whose bits are not all zero (so -0.0 counts as non-zero: kept exactly)."""
    flat = tensor.reshape(-1)
    if flat.dtype == torch.bool:
        return flat
    if flat.is_floating_point():
        ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        return flat.view(ints[flat.element_size()]) != 0
    return flat != 0


def narrowest(tensor: torch.Tensor) -> torch.dtype:
    """The narrowest dtype that holds every element of `tensor` exactly."""
    dtype = tensor.dtype
    if dtype == torch.float64:
        as32 = tensor.to(torch.float32)
        # Compare bits, not values: -0.0 and NaN payloads must survive too.
        if torch.equal(as32.to(torch.float64).view(torch.int64), tensor.view(torch.int64)):
            return torch.float32
        return dtype
    if dtype in _SIGNED and tensor.numel():
        low, high = int(tensor.min()), int(tensor.max())
        for candidate in _INT_LADDER:
            info = torch.iinfo(candidate)
            if info.min <= low and high <= info.max:
                return candidate
    return dtype


def choose(tensor: torch.Tensor) -> tuple[Encoding, torch.dtype, torch.Tensor]:
    """(encoding, stored dtype, mask of stored elements) with the fewest bytes."""
    keep = _nonzero(tensor)
    count = int(keep.sum())
    if count == 0:
        return "zeros", tensor.dtype, keep
    numel = tensor.numel()
    dense_dtype = narrowest(tensor)
    sparse_dtype = narrowest(tensor.reshape(-1)[keep])
    width = torch.empty((), dtype=dense_dtype).element_size()
    sparse_width = torch.empty((), dtype=sparse_dtype).element_size()
    dense_bytes = numel * width
    sparse_bytes = (numel + 7) // 8 + count * sparse_width
    if sparse_bytes < dense_bytes:
        return "bitmask", sparse_dtype, keep
    return "dense", dense_dtype, keep


@dataclass(frozen=True)
class Packed:
    """A state dict packed into a few tensors, and the table that unpacks it."""

    tensors: dict[str, torch.Tensor]
    layout: list[TensorLayout]
    codecs: dict[str, Codec]  # stream -> how its bytes are stored

    def config(self) -> dict[str, Any]:
        return {"format": FORMAT, "streams": dict(self.codecs)}


def pack_state(state: dict[str, torch.Tensor], notes: dict[str, Any] | None = None) -> Packed:
    """Encode every tensor of `state` (see the module docstring) into a few streams.

    `notes`: JSON-able data that describes the state itself (int8 entry kinds, module
    versions), kept beside the table of contents where it deflates with the names.
    """
    layout: list[TensorLayout] = []
    bits: list[np.ndarray] = []
    values: dict[str, list[torch.Tensor]] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        encoding, stored, keep = choose(tensor)
        flat = tensor.reshape(-1)
        if encoding == "bitmask":
            bits.append(keep.numpy())
            flat = flat[keep]
        if encoding != "zeros":
            values.setdefault(dtype_name(stored), []).append(flat.to(stored))
        layout.append(
            TensorLayout(
                name, dtype_name(tensor.dtype), tuple(tensor.shape), encoding, dtype_name(stored)
            )
        )
    streams = {VALUES + key: torch.cat(parts) for key, parts in values.items()}
    if bits:
        streams[MASK] = torch.from_numpy(np.packbits(np.concatenate(bits)))
    toc = {"tensors": [row.to_row() for row in layout], "notes": notes or {}}
    table = json.dumps(toc, separators=(",", ":")).encode()
    streams[LAYOUT] = torch.frombuffer(bytearray(table), dtype=torch.uint8)
    tensors: dict[str, torch.Tensor] = {}
    codecs: dict[str, Codec] = {}
    for key, stream in streams.items():
        tensors[key], codecs[key] = _store(stream)
    return Packed(tensors, layout, codecs)


def _store(stream: torch.Tensor) -> tuple[torch.Tensor, Codec]:
    """The stream as is, or its bytes deflated when that is smaller (int8 codes and masks
    of pruned layers shrink by a third or more; float values rarely do)."""
    raw = stream.contiguous().view(torch.uint8).numpy().tobytes()
    deflated = min((_deflate(raw, s) for s in _strategies(len(raw))), key=len)
    if len(deflated) < len(raw):
        return torch.frombuffer(bytearray(deflated), dtype=torch.uint8), "deflate"
    return stream, "raw"


def _strategies(size: int) -> tuple[int, ...]:
    # Huffman-only coding suits masks and int8 codes (few repeated strings, skewed
    # symbols) and is fast; LZ77 matching is worth trying where it is cheap.
    if size > SMALL_STREAM:
        return (zlib.Z_HUFFMAN_ONLY,)
    return (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE)


def _deflate(raw: bytes, strategy: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, strategy)
    return compressor.compress(raw) + compressor.flush()


def _stream(tensors: dict[str, torch.Tensor], key: str, codec: str) -> torch.Tensor:
    """Stream `key` in its own dtype (the mask as bytes), inflated if it was deflated."""
    if key not in tensors:
        raise CompressedFormatError(f"the weights file has no {key!r} stream")
    stored = tensors[key]
    if codec == "raw":
        return stored
    if codec != "deflate":
        raise CompressedFormatError(f"stream {key!r} uses codec {codec!r}; upgrade the zoo package")
    try:
        data = bytearray(zlib.decompress(stored.numpy().tobytes()))
    except zlib.error as exc:
        raise CompressedFormatError(f"stream {key!r} is corrupted ({exc})") from exc
    dtype = torch.uint8 if key in (MASK, LAYOUT) else dtype_of(key.removeprefix(VALUES))
    return (
        torch.frombuffer(data, dtype=torch.uint8).view(dtype)
        if data
        else torch.zeros(0, dtype=dtype)
    )


def unpack_state(
    tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The state dict that `pack_state` encoded, bit for bit."""
    if config.get("format") != FORMAT:
        raise CompressedFormatError(
            f"tensor encoding {config.get('format')!r} is not {FORMAT}; upgrade the zoo package"
        )
    codecs: dict[str, str] = dict(config.get("streams", {}))
    streams = {key: _stream(tensors, key, codec) for key, codec in codecs.items()}
    layout = [TensorLayout.from_row(row) for row in _toc(streams.pop(LAYOUT, None))["tensors"]]
    need_bits = sum(row.numel for row in layout if row.encoding == "bitmask")
    mask = np.zeros(0, dtype=bool)
    if need_bits:
        if MASK not in streams:
            raise CompressedFormatError("the weights file has no mask stream")
        packed_bits = streams[MASK].numpy()
        if packed_bits.size * 8 < need_bits:
            raise CompressedFormatError("the mask stream is shorter than the layout needs")
        mask = np.unpackbits(packed_bits, count=need_bits).astype(bool)
    cursor = {key: 0 for key in streams}
    bit = 0
    state: dict[str, torch.Tensor] = {}
    for row in layout:
        dtype = dtype_of(row.dtype)
        if row.encoding == "zeros":
            state[row.name] = torch.zeros(row.shape, dtype=dtype)
            continue
        key = VALUES + row.stored
        if row.encoding == "bitmask":
            keep = torch.from_numpy(mask[bit : bit + row.numel].copy())
            bit += row.numel
            count = int(keep.sum())
        else:
            count = row.numel
        stream_values = streams.get(key)
        start = cursor.get(key, 0)
        if stream_values is None or start + count > stream_values.numel():
            raise CompressedFormatError(f"tensor {row.name!r}: the {key} stream is too short")
        chunk = stream_values[start : start + count].to(dtype)
        cursor[key] = start + count
        if row.encoding == "bitmask":
            full = torch.zeros(row.numel, dtype=dtype)
            full[keep] = chunk
            chunk = full
        state[row.name] = chunk.reshape(row.shape).clone()
    return state


def _toc(stream: torch.Tensor | None) -> dict[str, Any]:
    if stream is None:
        raise CompressedFormatError("the weights file has no table of contents ('layout')")
    try:
        toc = json.loads(stream.numpy().tobytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressedFormatError(f"the table of contents is not valid JSON: {exc}") from exc
    if not isinstance(toc, dict) or not isinstance(toc.get("tensors"), list):
        raise CompressedFormatError("the table of contents has no 'tensors' list")
    return toc


def unpack_notes(tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, Any]:
    """The `notes` given to `pack_state`."""
    codec = str(config.get("streams", {}).get(LAYOUT, "raw"))
    notes = _toc(_stream(tensors, LAYOUT, codec)).get("notes", {})
    return dict(notes) if isinstance(notes, dict) else {}


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes < 2**bits (any shape) -> uint8 bytes holding `bits` bits each."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    flat = codes.reshape(-1).to(torch.uint8).numpy()
    if flat.size and int(flat.max()) >= 2**bits:
        raise ValueError(f"a code does not fit in {bits} bits")
    spread = np.unpackbits(flat[:, None], axis=1)[:, 8 - bits :]
    return torch.from_numpy(np.packbits(spread.reshape(-1)))


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of `pack_bits`: `count` uint8 codes."""
    spread = np.unpackbits(packed.numpy(), count=count * bits).reshape(count, bits)
    full = np.zeros((count, 8), dtype=np.uint8)
    full[:, 8 - bits :] = spread
    return torch.from_numpy(np.packbits(full, axis=1).reshape(-1))
