"""Mixture-of-experts models on ONNX Runtime: the export computes every expert and combines
them with the dense top-k gates, so ONNX Runtime routes as torch does on inputs other than
the traced ones, before and after REAP removed experts; the torch model is left as it was."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from tests.compress.export_identity import tiny_bert
from tests.compress.recipes import recipe
from tests.modifiers.conditional_models import (
    BERT_LAYERS,
    UPCYCLE_CNN,
    cnn,
    distinct_experts,
    images,
    scramble_routers,
)
from zoo.modifiers.moe import MoELayer, moe_layers
from zoo.recipes import oneshot
from zoo.runtimes.onnx_export import export_onnx
from zoo.runtimes.prepare import on_variant

REAP50 = "{type: ExpertPruningModifier, sparsity: 0.5}"
#: Traced with one token, each layer sees top_k of its experts while tracing.
ONE_TOKEN = {"input_ids": torch.tensor([[7]]), "attention_mask": torch.tensor([[1]])}


def upcycled_cnn(top_k: int) -> nn.Module:
    model = oneshot(cnn(), recipe(UPCYCLE_CNN.replace("top_k: 2", f"top_k: {top_k}")))
    scramble_routers(model)
    distinct_experts(model, dead=None)  # a zero expert would add nothing, traced or not
    return model


def upcycled_bert(top_k: int) -> nn.Module:
    mod = f"{{type: MoEUpcyclingModifier, blocks: {BERT_LAYERS}, num_experts: 4, top_k: {top_k}}}"
    model = oneshot(tiny_bert(0), recipe(mod))
    scramble_routers(model)
    distinct_experts(model, dead=None)  # a zero expert would add nothing, traced or not
    return model


def tokens(batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 500, (batch, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[0, length // 2 :] = 0  # a padded example
    return {"input_ids": ids, "attention_mask": mask}


def experts_used(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, int]:
    """Layer name -> how many of its experts `inputs` route some token to."""
    for _, layer in moe_layers(model):
        layer.tracking, layer.routed, layer.tokens = True, torch.zeros_like(layer.routed), 0
    with torch.no_grad():
        model(**inputs)
    used = {name: int((layer.routed > 0).sum()) for name, layer in moe_layers(model)}
    for _, layer in moe_layers(model):
        layer.tracking = False
    return used


def assert_routes_beyond(
    model: nn.Module, traced: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> None:
    """`inputs` reach experts the traced example does not: a route recorded while tracing
    could not agree with torch on them."""
    seen, reached = experts_used(model, traced), experts_used(model, inputs)
    assert any(reached[name] > seen[name] for name in reached), (seen, reached)


def assert_agrees(model: nn.Module, served: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    """Top-1 predictions identical, logits within float rounding of torch's."""
    with torch.no_grad():
        want, got = model(**inputs), served(**inputs)
    assert got.shape == want.shape
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    assert float((got - want).abs().max()) <= 1e-4 * max(1.0, float(want.abs().max()))


@pytest.mark.parametrize("top_k", [1, 2])
def test_an_upcycled_cnn_routes_on_onnxruntime_as_in_torch(top_k: int) -> None:
    model = upcycled_cnn(top_k)
    x = images(256)
    with torch.no_grad():
        before = model(x)
    served = on_variant(model, "onnxruntime", {"x": x[:1]}, check={"x": x[:16]})
    assert_routes_beyond(model, {"x": x[:1]}, {"x": x})
    assert_agrees(model, served, {"x": x})
    # The torch model is the routed one still, computing what it did.
    assert isinstance(model.get_submodule("hidden.0"), MoELayer)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_a_reap_pruned_cnn_exports_its_remaining_experts_only(tmp_path: Path) -> None:
    model = upcycled_cnn(top_k=1)
    oneshot(model, recipe(REAP50), [images(64)])
    layer = model.get_submodule("hidden.0")
    assert isinstance(layer, MoELayer) and layer.num_experts == 2
    x = images(256)
    assert_routes_beyond(model, {"x": x[:1]}, {"x": x})
    served = on_variant(model, "onnxruntime", {"x": x[:1]}, check={"x": x[:16]})
    assert_agrees(model, served, {"x": x})
    path = export_onnx(model, {"x": x[:1]}, tmp_path / "moe.onnx")
    graph = onnx.load(str(path)).graph
    router_shapes = ([2, layer.in_features], [layer.in_features, 2])  # as Gemm or MatMul
    routers = [i for i in graph.initializer if list(i.dims) in router_shapes]
    assert len(routers) == 1  # the router kept the rows of the two experts left
    assert sum(n.op_type == "TopK" for n in graph.node) == 1


@pytest.mark.parametrize("pruned", [False, True], ids=["upcycled", "reap50"])
def test_an_upcycled_bert_routes_on_onnxruntime_as_in_torch(pruned: bool) -> None:
    model = upcycled_bert(top_k=1)
    if pruned:
        oneshot(model, recipe(REAP50), [tokens(8, 16, seed=5)])
        assert [layer.num_experts for _, layer in moe_layers(model)] == [2, 2]
    inputs = tokens(6, 19, seed=2)  # other batch and sequence sizes than the traced ones
    assert_routes_beyond(model, ONE_TOKEN, inputs)
    served = on_variant(model, "onnxruntime", ONE_TOKEN, check=tokens(3, 11, seed=3))
    assert_agrees(model, served, inputs)


def test_an_upcycled_bert_with_two_experts_per_token_routes_as_in_torch() -> None:
    model = upcycled_bert(top_k=2)
    inputs = tokens(6, 19, seed=2)
    assert_routes_beyond(model, ONE_TOKEN, inputs)
    served = on_variant(model, "onnxruntime", ONE_TOKEN, check=tokens(3, 11, seed=3))
    assert_agrees(model, served, inputs)


def test_tied_router_probabilities_go_to_the_lowest_expert_index_on_onnxruntime() -> None:
    """ONNX's TopK keeps the lower index of equal values; torch.topk's tie order on the
    CPU is unspecified. With a zero router every expert ties: the export uses expert 0."""
    model = upcycled_cnn(top_k=1)
    layer = model.get_submodule("hidden.0")
    assert isinstance(layer, MoELayer)
    nn.init.zeros_(layer.router.weight)
    first_expert = copy.deepcopy(model)
    first_expert.set_submodule("hidden.0", copy.deepcopy(layer.experts[0]))
    x = images(32)
    served = on_variant(model, "onnxruntime", {"x": x[:1]})
    with torch.no_grad():
        torch.testing.assert_close(served(x=x), first_expert(x), atol=1e-4, rtol=1e-4)
