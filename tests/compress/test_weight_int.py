"""The `weight_int` transform: GPTQ / round-to-nearest int4 and int8 weights packed in the
export (two int4 per byte + group scales) and loaded back by zoo.load with the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.compress.export_identity import text_inputs, tiny_bert
from zoo.compress.export import export_model
from zoo.compress.load import load_exported
from zoo.compress.sparse import pack_bits, unpack_bits
from zoo.errors import CompressedFormatError, RecipeError
from zoo.modifiers.quantization.weight_only import record_of
from zoo.recipes import oneshot


@pytest.mark.parametrize("bits", [4, 8])
def test_codes_pack_and_unpack_exactly(bits: int) -> None:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    codes = torch.randint(low, high + 1, (37, 11), dtype=torch.int16)
    codes[0, :2] = torch.tensor([low, high])
    packed = pack_bits(codes - low, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == (codes.numel() * bits + 7) // 8
    back = unpack_bits(packed, bits, codes.numel()).to(torch.int16) + low
    assert torch.equal(back.reshape(codes.shape), codes)


def _quantized(recipe_fields: str, modifier: str = "GPTQModifier") -> nn.Module:
    model = tiny_bert(0)
    recipe = (
        f"quant_stage:\n  quant_modifiers:\n    {modifier}:\n      targets: Linear\n"
        f"      ignore: [classifier]\n{recipe_fields}"
    )
    oneshot(model, recipe, [text_inputs() for _ in range(2)])
    return model.eval()


def _linear_weight_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of the quantized layers' stored tensors, their fp32 bytes)."""
    from zoo.compress.sparse import unpack_state
    from zoo.compress.weight_int import quantized_weight_bytes

    config = json.loads((folder / "config.json").read_text())
    encoding = config["compression"]["encoding"]
    return quantized_weight_bytes(
        config, unpack_state(load_file(folder / "model.safetensors"), encoding)
    )


def _export_and_load(model: nn.Module, folder: Path) -> nn.Module:
    """Export, load back, and check the loaded model computes exactly the same."""
    x = text_inputs()
    with torch.inference_mode():
        before = model(**x)
    export_model(model, folder, sample_inputs=x)
    loaded = load_exported(folder)
    with torch.inference_mode():
        assert torch.equal(loaded(**x), before)
    return loaded


@pytest.mark.parametrize(
    ("fields", "ratio"),
    [
        ("      scheme: W4A16\n      group_size: 32\n", 1 / 6),
        ("      scheme: W4A16\n      group_size: 64\n      actorder: group\n", 1 / 6),
        ("      scheme: W8A16\n      group_size: 64\n", 0.27),
    ],
    ids=["w4a16", "w4a16-group-actorder", "w8a16"],
)
def test_export_and_load_give_the_same_outputs_and_bytes(
    fields: str, ratio: float, tmp_path: Path
) -> None:
    loaded = _export_and_load(_quantized(fields), tmp_path / "a")
    record = record_of(loaded)
    assert record is not None and record.method == "gptq"
    facts = json.loads((tmp_path / "a/zoo.json").read_text())["quantization"]
    assert facts["scheme"] == record.scheme.lower() and facts["method"] == "gptq"
    stored, fp32 = _linear_weight_bytes(tmp_path / "a")
    assert stored <= ratio * fp32
    export_model(loaded, tmp_path / "b", sample_inputs=text_inputs())  # the same bytes again
    assert (tmp_path / "a/model.safetensors").read_bytes() == (
        tmp_path / "b/model.safetensors"
    ).read_bytes()


def test_round_to_nearest_scheme_exports_too(tmp_path: Path) -> None:
    groups = (
        "      config_groups:\n        group_0:\n          targets: [Linear]\n"
        "          weights: {num_bits: 4, type: int, symmetric: true, strategy: group,"
        " group_size: 16}\n"
    )
    loaded = _export_and_load(_quantized(groups, "QuantizationModifier"), tmp_path / "rtn")
    record = record_of(loaded)
    assert record is not None and record.method == "rtn" and record.grid.group_size == 16


def test_weights_changed_after_quantization_are_not_silently_rounded(tmp_path: Path) -> None:
    model = _quantized("      scheme: W4A16\n      group_size: 32\n")
    with torch.no_grad():
        model.get_parameter("encoder.encoder.layer.0.attention.self.query.weight").add_(1e-3)
    with pytest.raises(RecipeError, match="no longer on its W4 grid"):
        export_model(model, tmp_path / "moved", sample_inputs=text_inputs())


def test_a_tampered_scale_table_is_refused(tmp_path: Path) -> None:
    model = _quantized("      scheme: W4A16\n      group_size: 32\n")
    export_model(model, tmp_path / "m", sample_inputs=text_inputs(), compress=False)
    weights = tmp_path / "m/model.safetensors"
    tensors = load_file(weights)
    key = "encoder.encoder.layer.0.attention.self.query.weight_scale"
    tensors[key] = tensors[key][:, :1].contiguous()
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(CompressedFormatError, match="weight_scale"):
        load_exported(tmp_path / "m", verify=False)
