"""SmoothQuant: the float model's function is kept, activation peaks move into the weights,
mappings that are not an identity (a post-LayerNorm norm feeding a residual) are refused."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.compress.export_identity import text_inputs, tiny_bert
from zoo.errors import RecipeError
from zoo.modifiers import quantization as q
from zoo.modifiers.smoothquant import activation_ranges
from zoo.recipes import check_model, oneshot, parse_recipe

BERT = '[[["re:.*attention.output.dense"], "re:.*attention.self.value"]]'
VALUE = "encoder.encoder.layer.0.attention.self.value"


def _recipe(mappings: str | None, then: str = "") -> str:
    lines = "      smoothing_strength: 0.8\n"
    if mappings is not None:
        lines += f"      mappings: {mappings}\n"
    return "sq_stage:\n  sq_modifiers:\n    SmoothQuantModifier:\n" + lines + then


def _outlier_bert() -> nn.Module:
    """Tiny BERT whose value projections have a few loud channels, as trained ones do."""
    model = tiny_bert(0)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("attention.self.value"):
                module.weight[:4] *= 20.0
    return model.eval()


def _spread(peaks: torch.Tensor) -> float:
    return float(peaks.max() / peaks.mean())


def test_bert_value_mapping_keeps_outputs_and_flattens_activations() -> None:
    model = _outlier_bert()
    batches = [text_inputs() for _ in range(2)]
    with torch.no_grad():
        before = model(**batches[0])
    spread = _spread(activation_ranges(model, [VALUE], batches)[VALUE])
    oneshot(model, _recipe(BERT), batches)
    with torch.no_grad():
        after = model(**batches[0])
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5)
    assert _spread(activation_ranges(model, [VALUE], batches)[VALUE]) < 0.5 * spread


def test_post_layernorm_mapping_is_refused_and_the_model_left_as_it_was() -> None:
    model = _outlier_bert()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    norm = '[[["re:.*intermediate.dense"], "re:.*attention.output.LayerNorm"]]'
    with pytest.raises(RecipeError, match="not an identity here and was not applied") as info:
        oneshot(model, _recipe(norm), [text_inputs()])
    assert "attention.self.value" in str(info.value)  # points to the mapping that fits
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_default_llama_mappings_keep_a_llama_model_s_function() -> None:
    from transformers import LlamaForCausalLM

    from zoo.models.tiny import TINY

    torch.manual_seed(0)
    model = LlamaForCausalLM(TINY["llama"](64)).eval()
    batches = [{"input_ids": torch.randint(0, 64, (2, 12))} for _ in range(2)]
    with torch.no_grad():
        before = model(**batches[0]).logits
    oneshot(model, _recipe(None), batches)
    with torch.no_grad():
        after = model(**batches[0]).logits
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4)
    norm = model.model.layers[0].input_layernorm.weight
    assert not torch.allclose(norm, torch.ones_like(norm))  # the norm took the scales


def test_default_mappings_on_bert_match_nothing_and_say_what_fits() -> None:
    with pytest.raises(RecipeError, match="matches no smooth layer") as info:
        check_model(parse_recipe(_recipe(None)), tiny_bert(0))
    assert "re:.*attention.self.value" in str(info.value)


def test_smoothing_then_static_int8_in_one_stage() -> None:
    then = "    PostTrainingQuantizationModifier:\n      ignore: [classifier]\n"
    model = _outlier_bert()
    oneshot(model, _recipe(BERT, then), [text_inputs() for _ in range(2)])
    plan = q.plan_of(model)
    assert plan is not None and plan.scheme == "static"


@pytest.mark.parametrize(
    ("recipe", "says"),
    [
        (_recipe('[["re:.*value"]]'), "is not [[balance layer regexes], smooth layer regex]"),
        (_recipe(BERT).replace("0.8", "1.5"), "smoothing_strength"),
    ],
)
def test_bad_mappings_and_strength_are_refused(recipe: str, says: str) -> None:
    with pytest.raises(RecipeError, match=re.escape(says)):
        parse_recipe(recipe)
