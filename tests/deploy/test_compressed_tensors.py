"""compressed-tensors export and import (issue 12, acceptance 1) on tiny models compressed
by the zoo's real transforms: transformers loads our folders to the zoo's outputs,
compressed-tensors' own ModelCompressor decompresses them to the zoo's weights, and a
folder compressed-tensors wrote imports with the right facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.deploy.conftest import SMALL_ENCODER
from zoo.client.load import load_folder
from zoo.compress.load import load_exported
from zoo.deploy.compressed_tensors import (
    QuantizedWeight,
    export_compressed_tensors,
    import_compressed_tensors,
    sample_inputs,
)
from zoo.models import get_model

LOSSLESS = 0.9999
INT8 = 0.99


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    return sample_inputs(model, batch=4, length=24)


def zoo_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch)


def hf_logits(folder: Path, batch: dict[str, torch.Tensor], remote: bool = False) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), trust_remote_code=remote
    ).eval()
    with torch.inference_mode():
        return model(**batch).logits


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("variant", ["dense", "sparse50", "sparse24", "int8"])
def test_transformers_loads_what_zoo_load_runs(
    variant: str, zoo_bert: dict[str, Path], tmp_path: Path
) -> None:
    zoo_model = load_folder(zoo_bert[variant], verify=True)
    written = export_compressed_tensors(zoo_model, tmp_path / "ct")
    batch = inputs(zoo_model)
    similarity = cosine(zoo_logits(zoo_model, batch), hf_logits(tmp_path / "ct", batch))
    assert similarity >= (INT8 if variant == "int8" else LOSSLESS), similarity
    section = config_of(tmp_path / "ct").get("quantization_config") or {}
    sparsity = section.get("sparsity_config") or {}
    expected = {"dense": None, "sparse50": "unstructured", "sparse24": "2:4", "int8": None}
    assert sparsity.get("sparsity_structure") == expected[variant]
    assert written.sparsity_structure == expected[variant]
    if variant.startswith("sparse"):
        assert 0.2 < sparsity["global_sparsity"] < 0.5  # the encoder's Linear layers only
    assert section.get("format", "dense") == ("int-quantized" if variant == "int8" else "dense")


@pytest.mark.parametrize("variant", ["sparse50", "sparse24", "int8"])
def test_model_compressor_decompresses_to_the_zoo_weights(
    variant: str, zoo_bert: dict[str, Path], tmp_path: Path
) -> None:
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoModelForSequenceClassification, CompressedTensorsConfig

    zoo_model = load_folder(zoo_bert[variant], verify=True)
    export_compressed_tensors(zoo_model, tmp_path / "ct")
    section = config_of(tmp_path / "ct")["quantization_config"]
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ct"))
    if variant == "int8":
        stored = {n: m.weight.dtype for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        assert set(stored.values()) == {torch.int8}  # compressed on load, as stored
        compressor = ModelCompressor.from_compression_config(
            CompressedTensorsConfig.from_dict(section)
        )
        compressor.decompress_model(model)
    zoo_weights = {}
    for name, module in zoo_model.named_modules():
        weight = getattr(module, "weight", None)
        weight = weight() if callable(weight) else weight
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and "embeddings" not in name:
            zoo_weights[name.removeprefix("model.")] = (
                weight.dequantize() if weight.is_quantized else weight
            )
    theirs = {n: m.weight for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert set(zoo_weights) == set(theirs)
    for name, weight in zoo_weights.items():
        # int8: codes x float32 scale, against torch's codes x float64 scale
        atol = 1e-6 if variant == "int8" else 0.0
        torch.testing.assert_close(theirs[name].float(), weight.float(), atol=atol, rtol=0)
        assert torch.equal(theirs[name] == 0, weight == 0), name


@pytest.mark.parametrize("variant", ["sparse24", "int8"])
def test_minilm_classifier_runs_as_remote_code_and_its_encoder_without(
    variant: str, zoo_minilm: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoModel

    zoo_model = load_folder(zoo_minilm[variant], verify=True)
    written = export_compressed_tensors(zoo_model, tmp_path / "ct")
    assert written.remote_code
    assert (tmp_path / "ct" / "modeling_zoo_text.py").is_file()
    assert (tmp_path / "ct" / "tokenizer.json").is_file()  # the shipped MiniLM tokenizer
    batch = inputs(zoo_model)
    batch["attention_mask"][0, 10:] = 0  # mean pooling must skip the padding
    floor = INT8 if variant == "int8" else LOSSLESS
    assert cosine(zoo_logits(zoo_model, batch), hf_logits(tmp_path / "ct", batch, True)) >= floor
    # No pooler (the classifier pools by mean): a quantized one could not be initialised.
    encoder = AutoModel.from_pretrained(str(tmp_path / "ct"), add_pooling_layer=False).eval()
    with torch.inference_mode():
        theirs = encoder(**batch).last_hidden_state
        ours = zoo_model.encoder(**batch).last_hidden_state
    assert cosine(ours, theirs) >= floor


def int4_round_to_nearest(weight: torch.Tensor, group_size: int) -> QuantizedWeight:
    """Generic int4 codes + group scales (what a GPTQ transform hands over), by rounding."""
    groups = weight.detach().reshape(weight.shape[0], -1, group_size)
    scales = groups.abs().amax(-1).clamp(min=1e-8) / 7
    codes = torch.round(groups / scales.unsqueeze(-1)).clamp(-8, 7).to(torch.int8)
    return QuantizedWeight(codes.reshape(weight.shape), scales, bits=4, group_size=group_size)


def test_int4_group_weights_export_as_w4a16_pack_quantized(
    zoo_bert: dict[str, Path], tmp_path: Path
) -> None:
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoModelForSequenceClassification, CompressedTensorsConfig

    zoo_model = load_folder(zoo_bert["sparse24"], verify=True)
    int4 = {
        name: int4_round_to_nearest(module.weight, 32)
        for name, module in zoo_model.named_modules()
        if isinstance(module, nn.Linear) and ".encoder.layer." in name
    }
    written = export_compressed_tensors(zoo_model, tmp_path / "ct", weight_only=int4)
    assert written.weight_format == "pack-quantized"
    assert written.sparsity_structure == "2:4"  # int4 rounding keeps the zeros
    for name, layer in int4.items():  # the zoo model as the codes describe it
        zoo_model.get_submodule(name).weight.data = layer.dequantize()
    batch = inputs(zoo_model)
    assert cosine(zoo_logits(zoo_model, batch), hf_logits(tmp_path / "ct", batch)) >= LOSSLESS
    section = config_of(tmp_path / "ct")["quantization_config"]
    weights = section["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["strategy"]) == (4, 32, "group")
    assert section["config_groups"]["group_0"]["input_activations"] is None
    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ct"))
    ModelCompressor.from_compression_config(
        CompressedTensorsConfig.from_dict(section)
    ).decompress_model(model)
    for name, layer in int4.items():
        stored = model.get_submodule(name.removeprefix("model.")).weight
        torch.testing.assert_close(stored.float(), layer.dequantize(), atol=1e-6, rtol=0)
    import_compressed_tensors(tmp_path / "ct", tmp_path / "back")
    quant = json.loads((tmp_path / "back" / "zoo.json").read_text())["quantization"]
    assert (quant["scheme"], quant["granularity"], len(quant["layers"])) == (
        "w4a16",
        "per_group32",
        len(int4),
    )


def test_import_a_folder_compressed_tensors_wrote(tiny_bert: Path, tmp_path: Path) -> None:
    from tests.deploy.ct_writer import W4A16, W8A8, write_with_compressed_tensors

    for name, scheme, bits, act_bits, granularity, fmt in (
        ("w8a8", W8A8, 8, 8, "per_channel", "int-quantized"),
        ("w4a16", W4A16, 4, None, "per_group32", "pack-quantized"),
    ):
        folder = write_with_compressed_tensors(tiny_bert, tmp_path / name, scheme, prune=0.5)
        result = import_compressed_tensors(folder, tmp_path / f"zoo_{name}", stub=None)
        meta = json.loads((tmp_path / f"zoo_{name}" / "zoo.json").read_text())
        quant = meta["quantization"]
        assert quant["scheme"] == name
        assert (quant["weight_bits"], quant["activation_bits"]) == (bits, act_bits)
        assert quant["granularity"] == granularity
        assert quant["symmetric"] is True
        assert len(quant["layers"]) == 13  # every Linear but the ignored classifier
        assert "classifier" not in " ".join(quant["layers"])
        assert meta["lineage"]["extra"]["compressed_tensors_format"] == fmt
        sparsity = meta["sparsity"]
        assert sparsity["structure"] == "unstructured"
        assert 0.45 < sparsity["overall"] < 0.5  # measured: 12 of 14 layers pruned 50%
        assert result.transforms == []  # stored as a float model, zeros packed by bitmask
        zoo_model = load_exported(tmp_path / f"zoo_{name}")
        batch = inputs(zoo_model)
        theirs = hf_logits(folder, batch)
        # Weight-only W4A16: the same weights. W8A8: transformers also quantizes the
        # activations per token; the zoo's float model does not.
        floor = LOSSLESS if act_bits is None else INT8
        assert cosine(zoo_logits(zoo_model, batch), theirs) >= floor


def round_trip(zoo_folder: Path, tmp_path: Path) -> tuple[nn.Module, Path, dict]:
    """(the zoo's model, the folder it imports back as, that folder's zoo.json)."""
    zoo_model = load_folder(zoo_folder, verify=True)
    export_compressed_tensors(zoo_model, tmp_path / "ct")
    import_compressed_tensors(tmp_path / "ct", tmp_path / "back")
    return zoo_model, tmp_path / "back", json.loads((tmp_path / "back" / "zoo.json").read_text())


def test_our_int8_export_imports_back_with_its_facts(
    zoo_bert: dict[str, Path], tmp_path: Path
) -> None:
    zoo_model, folder, meta = round_trip(zoo_bert["int8"], tmp_path)
    quant = meta["quantization"]
    assert quant["scheme"] == "w8a8"
    assert quant["method"] == "compressed-tensors (dynamic)"
    assert quant["layers"] == sorted(quant["layers"]) and len(quant["layers"]) == 14
    back = load_exported(folder)
    batch = inputs(back)
    assert cosine(zoo_logits(zoo_model, batch), zoo_logits(back, batch)) >= INT8


def test_our_minilm_folder_imports_as_minilm_without_running_its_code(
    zoo_minilm: dict[str, Path], tmp_path: Path
) -> None:
    zoo_model, folder, meta = round_trip(zoo_minilm["sparse24"], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == "minilm_classifier"
    assert config["kwargs"]["encoder_config"]["hidden_size"] == SMALL_ENCODER["hidden_size"]
    assert meta["sparsity"]["structure"] == "2:4"
    back = load_exported(folder)
    batch = inputs(back)
    assert cosine(zoo_logits(zoo_model, batch), zoo_logits(back, batch)) >= LOSSLESS


def test_a_model_that_is_not_a_transformers_model_is_refused(tmp_path: Path) -> None:
    from zoo.errors import UnsupportedArchitectureError

    model = get_model("cnn_small").eval()
    with pytest.raises(UnsupportedArchitectureError, match="'cnn_small' model, not a transformers"):
        export_compressed_tensors(model, tmp_path / "ct")
    assert not (tmp_path / "ct").exists()
