"""Every compressed format survives export -> load_exported with the same outputs.

Float formats come back bit for bit; int8 ones come back as the same int8 modules, so
their outputs equal the outputs recorded before export. Each folder also reproduces its
own samples (`zoo validate`'s check) and carries the facts a registry entry needs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.compress.export_identity import text_inputs as _text_inputs
from tests.compress.export_identity import tiny_bert
from tests.compress.recipes import PRUNE_THEN_PTQ, recipe
from zoo.client.validate import validate_model
from zoo.compress.export import CHECKSUMS, SAMPLES, export_model
from zoo.compress.load import CsrLinear, load_exported
from zoo.index.export import read_export
from zoo.models import get_model
from zoo.modifiers import quantization as q
from zoo.recipes import oneshot


def _run(model: nn.Module, x: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return model(x) if isinstance(x, torch.Tensor) else model(**x)


def _roundtrip(
    model: nn.Module, x: torch.Tensor | dict[str, torch.Tensor], folder: Path
) -> tuple[nn.Module, dict]:
    model.eval()
    before = _run(model, x)
    result = export_model(model, folder, sample_inputs=x, metrics={"fashion_mnist": {"acc": 0.8}})
    loaded = load_exported(folder)
    assert torch.equal(_run(loaded, x), before)  # int8 included: same int8 kernels
    assert validate_model(loaded, folder).raise_if_failed().ok
    config = json.loads((folder / "config.json").read_text())
    assert (folder / SAMPLES).is_file() and (folder / CHECKSUMS).is_file()
    read_export(folder, "zoo:cv/classification/cnn_small/fashion_mnist/test")  # publishable
    assert result.deployable_bytes == sum(
        (folder / n).stat().st_size for n in ("model.safetensors", "config.json")
    )
    return loaded, config


def test_dense_model_is_a_plain_checkpoint(trained_cnn: nn.Module, tmp_path: Path) -> None:
    from zoo.models.checkpoint import load_checkpoint

    model = copy.deepcopy(trained_cnn)
    _, config = _roundtrip(model, torch.randn(4, 1, 28, 28), tmp_path / "dense")
    assert "compression" not in config
    dense = load_checkpoint(tmp_path / "dense").eval()  # the plain dense loader reads it
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(_run(dense, x), _run(model, x))


def test_unstructured_90_percent(trained_cnn: nn.Module, fashion: dict, tmp_path: Path) -> None:
    model = copy.deepcopy(trained_cnn)
    oneshot(model, recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.9}"))
    loaded, config = _roundtrip(model, fashion["test"][:8], tmp_path / "s90")
    assert config["compression"]["transforms"] == []
    assert config["compression"]["encoding"]["streams"]["mask"] == "deflate"
    meta = json.loads((tmp_path / "s90/zoo.json").read_text())
    assert meta["sparsity"]["overall"] == pytest.approx(0.9, abs=0.01)
    assert meta["sparsity"]["structure"] == "unstructured"
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_two_of_four_on_the_mlp(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = get_model("mlp")
    oneshot(
        model,
        recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.5, mask_type: '2:4'}"),
    )
    _roundtrip(model, torch.randn(4, 1, 28, 28), tmp_path / "24")
    meta = json.loads((tmp_path / "24/zoo.json").read_text())
    assert meta["sparsity"]["structure"] == "2:4"
    assert "pruned" in (tmp_path / "24/README.md").read_text()


def test_static_int8_cnn(trained_cnn: nn.Module, fashion: dict, tmp_path: Path) -> None:
    model = copy.deepcopy(trained_cnn)
    reference = _run(model, fashion["test"])
    q.quantize_static(model, [fashion["x"][i : i + 64] for i in range(0, 256, 64)])
    loaded, config = _roundtrip(model, fashion["test"], tmp_path / "int8")
    assert [t["type"] for t in config["compression"]["transforms"]] == ["int8"]
    out = _run(loaded, fashion["test"])
    assert float(F.cosine_similarity(out, reference).min()) >= 0.99
    assert q.plan_of(loaded) is not None
    meta = json.loads((tmp_path / "int8/zoo.json").read_text())
    assert meta["quantization"]["scheme"] == "int8" and meta["quantization"]["method"] == "ptq"


def test_sparse_plus_int8(trained_cnn: nn.Module, fashion: dict, tmp_path: Path) -> None:
    model = copy.deepcopy(trained_cnn)
    oneshot(model, PRUNE_THEN_PTQ, [fashion["x"][i : i + 64] for i in range(0, 256, 64)])
    _roundtrip(model, fashion["test"][:8], tmp_path / "s90int8")
    meta = json.loads((tmp_path / "s90int8/zoo.json").read_text())
    assert meta["sparsity"]["overall"] >= 0.89  # zeros stay zeros through int8
    assert meta["quantization"]["scheme"] == "int8"


def test_structured_channels_then_int8(
    trained_cnn: nn.Module, fashion: dict, tmp_path: Path
) -> None:
    model = copy.deepcopy(trained_cnn)
    oneshot(model, recipe("{type: StructuredPruningModifier, sparsity: 0.5, structure: channel}"))
    assert model.features[0][0].out_channels == 8
    loaded, config = _roundtrip(model, fashion["test"][:8], tmp_path / "structured")
    assert loaded.features[0][0].out_channels == 8
    resize = config["compression"]["transforms"][0]
    assert resize["type"] == "resize" and resize["modules"]["features.0.1"] == {"features": 8}
    # The same structure survives static int8 (batch norms folded into their convs).
    q.quantize_static(model, [fashion["x"][i : i + 64] for i in range(0, 128, 64)])
    _roundtrip(model, fashion["test"][:8], tmp_path / "structured_int8")


def test_lowrank(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = get_model("mlp", hidden=(128, 64))
    oneshot(model, recipe("{type: LowRankModifier, rank_fraction: 0.25}"))
    loaded, config = _roundtrip(model, torch.randn(4, 1, 28, 28), tmp_path / "lowrank")
    ranks = config["compression"]["transforms"][0]
    assert ranks["type"] == "lowrank" and ranks["ranks"]["features.1"] == 32
    assert isinstance(loaded.features[1], nn.Sequential)


def test_weight_shared_4_bit(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = get_model("mlp")
    oneshot(model, recipe("{type: WeightSharingModifier, bits: 4}"))
    _, config = _roundtrip(model, torch.randn(4, 1, 28, 28), tmp_path / "shared")
    shared = config["compression"]["transforms"][0]
    assert shared["type"] == "weight_sharing" and shared["bits"] == 4
    dense = sum(p.numel() for p in model.parameters()) * 4
    weights = (tmp_path / "shared/model.safetensors").stat().st_size
    assert weights < dense / 6  # 4-bit indices: about 1/8 of fp32, plus biases and codebooks


def _tiny_bert() -> nn.Module:
    return tiny_bert(seed=4)


def test_dynamic_int8_tiny_bert(tmp_path: Path) -> None:
    model = _tiny_bert().eval()
    x = _text_inputs()
    reference = _run(model, x)
    q.quantize_dynamic(model)
    loaded, config = _roundtrip(model, x, tmp_path / "bert_int8")
    assert config["compression"]["transforms"][-1]["plan"]["scheme"] == "dynamic"
    assert float(F.cosine_similarity(_run(loaded, x), reference).min()) >= 0.99


def test_attention_heads_removed(tmp_path: Path) -> None:
    model = _tiny_bert().eval()
    oneshot(model, recipe("{type: StructuredPruningModifier, sparsity: 0.5, structure: head}"))
    loaded, config = _roundtrip(model, _text_inputs(), tmp_path / "heads")
    widths = config["compression"]["transforms"][0]["modules"]
    assert widths["encoder.encoder.layer.0.attention.self"] == {"heads": 2}
    assert loaded.encoder.encoder.layer[0].attention.self.num_attention_heads == 2


def test_keep_sparse_runs_csr_linears(trained_cnn: nn.Module, tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = get_model("mlp")
    oneshot(model, recipe("{type: OneShotMagnitudePruningModifier, sparsity: 0.9}"))
    x = torch.randn(5, 1, 28, 28)
    export_model(model, tmp_path / "csr", sample_inputs=x)
    sparse = load_exported(tmp_path / "csr", keep="sparse")
    assert isinstance(sparse.features[1], CsrLinear)
    torch.testing.assert_close(_run(sparse, x), _run(model.eval(), x), rtol=1e-5, atol=1e-5)


def test_qat_int8_cnn(trained_cnn: nn.Module, fashion: dict, tmp_path: Path) -> None:
    model = copy.deepcopy(trained_cnn)
    q.prepare_qat(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(4):
        optimizer.zero_grad()
        sl = slice(i * 32, i * 32 + 32)
        F.cross_entropy(model(fashion["x"][sl]), fashion["y"][sl]).backward()
        optimizer.step()
    q.convert(model)
    _, config = _roundtrip(model, fashion["test"][:8], tmp_path / "qat")
    assert config["compression"]["transforms"][0]["plan"]["scheme"] == "qat"
    assert json.loads((tmp_path / "qat/zoo.json").read_text())["quantization"]["method"] == "qat"


def test_live_weight_sharing_before_finalize(tmp_path: Path) -> None:
    from zoo.modifiers.weight_sharing import WeightSharingModifier

    torch.manual_seed(6)
    model = get_model("mlp", hidden=(32,))
    WeightSharingModifier(bits=3).apply(model)  # codebook + indices, not baked yet
    assert "features.1.weight_codebook" in model.state_dict()
    loaded, config = _roundtrip(model, torch.randn(2, 1, 28, 28), tmp_path / "live")
    assert config["compression"]["transforms"][0]["bits"] == 3
    assert int(torch.unique(loaded.features[1].weight).numel()) <= 8


def test_structured_facts_count_removed_weights(trained_cnn: nn.Module, tmp_path: Path) -> None:
    model = copy.deepcopy(trained_cnn)
    oneshot(model, recipe("{type: StructuredPruningModifier, sparsity: 0.5, structure: channel}"))
    result = export_model(model, tmp_path / "facts")
    assert result.meta.sparsity.structure == "channel"
    original = sum(
        m.weight.numel() for m in trained_cnn.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    )
    assert result.meta.sparsity.parameters == original
    assert 0.5 < result.meta.sparsity.overall < 0.8  # halving in and out widths: ~3/4 gone
