"""The recipe compatibility corpus: real recipes published in SparseML and llm-compressor
(tests/recipes/corpus/, each with its source repository, path and commit in a header).

Each is either accepted and applied to a small model whose layer names fit (tiny random
Llama and BERT models built from transformers configs, the zoo's MLP), or refused with the
"known, not supported here" message. Any other error, or any other exception, fails.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.models.tiny import TINY
from zoo.modifiers.quantization.weight_only import record_of
from zoo.recipes import RecipeManager, check_model, load_recipe, oneshot
from zoo.recipes.schema import Recipe

CORPUS = Path(__file__).parent / "corpus"
_OUTCOME = re.compile(r"zoo-corpus: (refused|applied on (\w+))")
_SOURCE = re.compile(r"source: (neuralmagic/sparseml|vllm-project/llm-compressor) \S+")


def _llama() -> nn.Module:
    from transformers import LlamaForCausalLM

    config = TINY["llama"](64)
    config.num_hidden_layers = 6  # llm-compressor's test_tiny2 names model.layers.0 to 5
    return LlamaForCausalLM(config)


def _llama128() -> nn.Module:
    """Wide enough (128 input columns) for llm-compressor's W4A16 groups of 128."""
    from transformers import LlamaForCausalLM

    config = TINY["llama"](64)
    config.hidden_size, config.intermediate_size, config.head_dim = 128, 256, 32
    return LlamaForCausalLM(config)


def _bert(head: str) -> nn.Module:
    from transformers import BertForQuestionAnswering, BertForSequenceClassification

    cls = BertForQuestionAnswering if head == "qa" else BertForSequenceClassification
    return cls(TINY["bert"](64))


def _tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 64, (2, 12))}


def _images() -> torch.Tensor:
    return torch.randn(4, 1, 28, 28)


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], Any]]] = {
    "llama": (_llama, _tokens),
    "llama128": (_llama128, _tokens),
    "bert_qa": (lambda: _bert("qa"), _tokens),
    "bert_cls": (lambda: _bert("cls"), _tokens),
    "mlp": (lambda: get_model("mlp", hidden=(64, 32), num_classes=10, in_features=784), _images),
}


def _outcome(path: Path) -> tuple[str, str | None]:
    head = path.read_text(encoding="utf-8")[:600]
    assert _SOURCE.search(head), f"{path.name} names no source repository and path"
    match = _OUTCOME.search(head)
    assert match, f"{path.name} states no expected outcome"
    return match.group(1).split()[0], match.group(2)


def _forward(model: nn.Module, batch: Any) -> Any:
    return model(**batch) if isinstance(batch, dict) else model(batch)


def _task_loss(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output.float().pow(2).mean()
    return sum(v.float().pow(2).mean() for k, v in output.items() if k.endswith("logits"))


def _apply(recipe: Recipe, model: nn.Module, batches: Callable[[], Any]) -> None:
    """Run the whole recipe: one optimizer step per epoch, one-shot stages with calibration."""
    calibration = [batches() for _ in range(4)]
    if recipe.max_epochs == 0:
        oneshot(model, recipe, calibration)
        return
    teacher = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    manager = RecipeManager(recipe)
    manager.modify(model, optimizer, steps_per_epoch=1, teacher=teacher, calibration=calibration)
    for _ in range(manager.num_epochs):
        batch = batches()
        optimizer.zero_grad()
        output = _forward(model, batch)
        loss = manager.loss_update(_task_loss(output), inputs=batch, outputs=output)
        loss.backward()
        optimizer.step()
    manager.finalize()


def _sparsity_targets(recipe: Recipe, model: nn.Module) -> list[tuple[str, float]]:
    """(parameter, sparsity the recipe promises) for every pruning modifier."""
    targets = check_model(recipe, model)
    promised = []
    for stage, index, mod in recipe.modifiers():
        final = getattr(mod, "sparsity", None)
        final = getattr(mod, "final_sparsity", final)
        if isinstance(final, float):
            promised += [(name, final) for name in targets[(stage.name, index)]]
    return promised


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.stem)
def test_published_recipe_is_applied_or_refused_clearly(path: Path) -> None:
    expected, model_name = _outcome(path)
    if expected == "refused":
        with pytest.raises(RecipeError) as info:
            load_recipe(path)
        assert "known, not supported here" in str(info.value), str(info.value)
        return
    recipe = load_recipe(path)
    assert model_name is not None
    build, batches = MODELS[model_name]
    torch.manual_seed(0)
    model = build()
    promised = _sparsity_targets(recipe, model)
    _apply(recipe, model, batches)
    # Weight-only int4 after pruning keeps the pruned zeros and may round more weights to 0.
    quantized_after = record_of(model) is not None
    for name, sparsity in promised:
        zeros = float((model.get_parameter(name) == 0).float().mean())
        if quantized_after:
            assert zeros >= sparsity - 0.02, (name, zeros, sparsity)
        else:
            assert zeros == pytest.approx(sparsity, abs=0.02), (name, zeros, sparsity)


def test_corpus_holds_at_least_25_recipes_from_both_projects() -> None:
    files = sorted(CORPUS.iterdir())
    assert len(files) >= 25
    sources = {_SOURCE.search(p.read_text(encoding="utf-8")[:600]).group(1) for p in files}  # type: ignore[union-attr]
    assert sources == {"neuralmagic/sparseml", "vllm-project/llm-compressor"}
