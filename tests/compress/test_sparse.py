"""The tensor encodings: lossless to the bit, and the smallest form chosen per tensor."""

from __future__ import annotations

import pytest
import torch

from zoo.compress.sparse import (
    LAYOUT,
    MASK,
    choose,
    narrowest,
    pack_bits,
    pack_state,
    unpack_bits,
    unpack_state,
)
from zoo.errors import CompressedFormatError


def _pruned(shape: tuple[int, ...], sparsity: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    w[torch.rand(shape, generator=g) < sparsity] = 0.0
    return w


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.view(ints), b.view(ints))
    return torch.equal(a, b)


def test_pack_unpack_is_bit_exact_for_every_kind_of_tensor() -> None:
    special = _pruned((8, 16), 0.9)
    special[0, :3] = torch.tensor([-0.0, float("nan"), float("inf")])
    state = {
        "sparse": _pruned((64, 64), 0.9),
        "dense": _pruned((32, 8), 0.0, seed=1),
        "special": special,
        "scales": torch.rand(16, dtype=torch.float64).float().double(),
        "exact64": torch.rand(5, dtype=torch.float64),
        "zero_points": torch.zeros(16, dtype=torch.int64),
        "counter": torch.tensor(300, dtype=torch.int64),
        "codes": torch.randint(-128, 128, (40, 40), dtype=torch.int8) * (torch.rand(40, 40) < 0.1),
        "flags": torch.rand(9) < 0.5,
        "empty": torch.zeros(0, 4),
        "half": _pruned((4, 4), 0.5).half(),
    }
    packed = pack_state(state)
    back = unpack_state(dict(packed.tensors), packed.config())
    assert list(back) == list(state)
    for name, tensor in state.items():
        assert _bits_equal(back[name], tensor), name
    rows = {row.name: row for row in packed.layout}
    assert rows["sparse"].encoding == "bitmask"
    assert rows["dense"].encoding == "dense"
    assert rows["zero_points"].encoding == "zeros"
    assert rows["scales"].stored == "float32"  # float64 holding float32 values: narrowed
    assert rows["exact64"].stored == "float64"
    assert rows["counter"].stored == "int16"
    # Every tensor lives in a few streams, not one safetensors entry each.
    assert set(packed.tensors) <= {MASK, LAYOUT} | {
        f"values.{d}" for d in ("float32", "float64", "float16", "int8", "int16", "uint8", "bool")
    }


def test_choice_follows_the_bytes() -> None:
    assert choose(_pruned((100, 100), 0.9))[0] == "bitmask"
    assert choose(_pruned((100, 100), 0.02))[0] == "dense"
    assert choose(torch.zeros(10))[0] == "zeros"
    # int8 codes at 50%: 1 bit + 0.5 byte per element beats 1 byte per element.
    codes = (torch.arange(1000) % 2 * 5).to(torch.int8)
    assert choose(codes)[0] == "bitmask"
    assert narrowest(torch.tensor([0, 255])) == torch.uint8
    assert narrowest(torch.tensor([-1, 200])) == torch.int16


def test_the_mask_of_a_90_percent_sparse_layer_is_deflated_below_one_bit() -> None:
    weight = _pruned((256, 256), 0.9)
    packed = pack_state({"w": weight})
    assert packed.codecs[MASK] == "deflate"
    assert packed.tensors[MASK].numel() < weight.numel() / 8 * 0.7


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_pack_bits_round_trip(bits: int) -> None:
    codes = torch.randint(0, 2**bits, (7, 13), dtype=torch.uint8)
    packed = pack_bits(codes, bits)
    assert packed.numel() == (codes.numel() * bits + 7) // 8
    assert torch.equal(unpack_bits(packed, bits, codes.numel()), codes.reshape(-1))


def test_unknown_encoding_and_codec_are_refused() -> None:
    packed = pack_state({"w": _pruned((16, 16), 0.9)})
    with pytest.raises(CompressedFormatError, match="zoo-packed/1"):
        unpack_state(dict(packed.tensors), {"format": "zoo-packed/9"})
    config = packed.config()
    config["streams"] = {**config["streams"], MASK: "brotli"}
    with pytest.raises(CompressedFormatError, match="brotli"):
        unpack_state(dict(packed.tensors), config)
