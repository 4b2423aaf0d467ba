"""QLoRA: the base in NF4 with double quantisation (bitsandbytes on CPU), the adapter in
float; NF4's code book is the paper's, its bytes a small fraction of fp32's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.modifiers.test_lora import TARGETS, _data, _mlp, _recipe, _train
from zoo.errors import RecipeError
from zoo.modifiers.lora import lora_layers
from zoo.modifiers.nf4 import BLOCKSIZE, is_nf4, nf4_bytes, nf4_linear

# QLoRA (Dettmers et al., 2023), Appendix E: the 16 NormalFloat4 values.
PAPER_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]  # fmt: skip


def test_the_nf4_code_book_is_the_papers_and_weights_round_to_it() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(256, 128)
    quantized = nf4_linear(layer)
    state = quantized.weight.quant_state  # type: ignore[attr-defined]
    assert torch.allclose(state.code, torch.tensor(PAPER_NF4), atol=1e-7)
    assert state.blocksize == BLOCKSIZE and state.nested  # double quantisation
    from bitsandbytes.functional import dequantize_4bit

    restored = dequantize_4bit(quantized.weight.data, state)
    # Each dequantised weight is a code value times its block's absmax, the nearest one up
    # to the (8-bit) error of the double-quantised absmax.
    blocks = layer.weight.detach().reshape(-1, BLOCKSIZE)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    nearest = torch.tensor(PAPER_NF4)[
        (blocks / absmax).unsqueeze(-1).sub(torch.tensor(PAPER_NF4)).abs().argmin(-1)
    ]
    assert torch.allclose(restored.reshape(-1, BLOCKSIZE), nearest * absmax, rtol=0.02, atol=1e-4)
    x = torch.randn(4, 256)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, restored, layer.bias)
        assert torch.allclose(quantized(x), expected, atol=1e-5)


def test_nf4_weights_take_under_a_sixth_of_their_fp32_bytes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(384, 1536), nn.Linear(1536, 384))
    for i in (0, 1):
        model[i] = nf4_linear(model[i])
    counted = nf4_bytes(model)
    assert counted.layers == 2 and counted.weights == 2 * 384 * 1536
    # 4 bits + an 8-bit absmax per 64 + a float32 per 256 absmaxes: about 0.127 of fp32.
    assert counted.ratio <= 1 / 6
    assert counted.ratio == pytest.approx((0.5 + 1 / 64 + 4 / (64 * 256)) / 4, rel=0.01)


def test_qlora_trains_only_the_adapter_over_a_frozen_nf4_base() -> None:
    model = _mlp()
    recipe = _recipe("none", extra=", quantize_base: nf4")
    manager, first = _train(model, recipe, steps=24)
    for name in TARGETS:
        assert is_nf4(lora_layers(model)[name].get_base_layer())
    # Each NF4 weight counted once, though its LoRA wrapper shows it as its own.
    assert nf4_bytes(model).weights == 20 * 64 + 64 * 64
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("4.") for n in trainable)
    x, y = _data()
    with torch.no_grad():
        last = float(torch.nn.functional.cross_entropy(model(x), y))
    assert last < first
    manager.finalize()
    assert sorted(lora_layers(model)) == TARGETS


def test_qlora_refuses_a_merge_into_its_4bit_base() -> None:
    with pytest.raises(RecipeError, match=r"merge: masked with quantize_base: nf4.*merge: none"):
        _train(_mlp(), _recipe("masked", extra=", quantize_base: nf4"), steps=1)


def _minilm_recipe() -> str:
    """The demo's QLoRA recipe (conf/recipe/minilm_qlora.yaml): its target pattern and head."""
    return Path(__file__).resolve().parents[2].joinpath("conf/recipe/minilm_qlora.yaml").read_text()


def _zoo_minilm(_: Path) -> tuple[nn.Module, str]:
    """The zoo's MiniLM classifier (the demo's architecture), tiny."""
    from tests.compress.export_identity import tiny_bert

    return tiny_bert(0), "encoder.encoder"


def _hf_tiny_bert(tmp_path: Path) -> tuple[nn.Module, str]:
    """transformers' BertForSequenceClassification from zoo/models/tiny.py's folder."""
    from transformers import AutoModelForSequenceClassification

    from zoo.models.tiny import write_tiny_model

    folder = write_tiny_model("bert", tmp_path / "bert")
    return AutoModelForSequenceClassification.from_pretrained(folder), "bert.encoder"


@pytest.mark.parametrize("make", [_zoo_minilm, _hf_tiny_bert], ids=["zoo_minilm", "hf_bert"])
def test_qlora_on_a_tiny_bert_keeps_training_after_an_evaluation(
    make: Callable[[Path], tuple[nn.Module, str]], tmp_path: Path
) -> None:
    """MiniLM crashed in bitsandbytes' matmul_4bit on the first training step after an
    evaluation: its eval-mode fast path repacked the weights for a bfloat16 kernel with no
    backward. Train, evaluate, train again with the demo's recipe, all NF4, on two tiny
    BERTs: the zoo's MiniLM classifier and transformers' own."""
    from tests.compress.export_identity import text_inputs
    from zoo.recipes import RecipeManager

    model, encoder = make(tmp_path)
    recipe = _minilm_recipe().replace("encoder\\\\.encoder", encoder.replace(".", "\\\\."))
    inputs, labels = text_inputs(), torch.tensor([0, 1, 1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    manager = RecipeManager.from_yaml(recipe, num_epochs=3.0, lr=1e-2)
    manager.modify(model, optimizer, steps_per_epoch=4)
    layers = lora_layers(model)
    assert len(layers) == 12 and all(is_nf4(m.get_base_layer()) for m in layers.values())

    def logits() -> torch.Tensor:
        out = model(**inputs)
        return getattr(out, "logits", out)  # transformers wraps them, the zoo's does not

    def step() -> float:
        model.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits(), labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    first = step()
    model.eval()
    with torch.no_grad():
        evaluated = logits()
    lowest = layers[f"{encoder}.layer.0.attention.self.query"]
    before = lowest.lora_B["default"].weight.detach().clone()
    losses = [step() for _ in range(6)]  # crashed here before the fix
    # The gradient still flows through every NF4 layer above down to the lowest adapter.
    assert not torch.equal(lowest.lora_B["default"].weight, before)
    assert losses[-1] < first
    # Evaluation computes what training computes: the float32 dequantised weight, no repack.
    from bitsandbytes.functional import dequantize_4bit

    base = layers[f"{encoder}.layer.1.output.dense"].get_base_layer()
    state = base.weight.quant_state  # type: ignore[union-attr]
    assert not getattr(state, "packing_format_for_cpu", False)
    x = torch.randn(5, base.in_features)
    with torch.no_grad():
        weight = dequantize_4bit(base.weight.data, state)
        expected = torch.nn.functional.linear(x, weight, base.bias)
        assert torch.allclose(base.eval()(x), expected, atol=1e-5)
    assert evaluated.shape == (3, 2)
    manager.finalize()
