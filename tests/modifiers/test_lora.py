"""LoRA on peft: masked merges keep the base's zeros exactly, quantised merges keep its int8
scales, dense merges equal peft's own, and bad recipes stop with one clear error."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torch.nn import functional as F

from zoo.errors import RecipeError
from zoo.modifiers import quantization as q
from zoo.modifiers.lora import lora_layers, requantize_like
from zoo.recipes import RecipeManager

TARGETS = ["0", "2"]  # the two hidden Linear layers of `_mlp`; "4" is the classifier


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)
    )


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 20, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def _prune_half(model: nn.Module) -> None:
    with torch.no_grad():
        for name in TARGETS:
            weight = model.get_submodule(name).weight
            weight.mul_(weight.abs() > weight.abs().median())


def _recipe(merge: str, targets: str = "re:[02]", extra: str = "") -> str:
    return (
        "schema_version: 1\nstages:\n  adapt:\n    run_type: train\n    modifiers:\n"
        "      - {type: EpochRangeModifier, start_epoch: 0.0, end_epoch: 3.0}\n"
        f"      - {{type: LoRAModifier, rank: 4, alpha: 8, target_modules: '{targets}', "
        f"merge: {merge}{extra}}}\n"
    )


def _train(
    model: nn.Module, recipe: str, steps: int = 24, lr: float = 1e-2
) -> tuple[RecipeManager, float]:
    """Train with the recipe through a plain loop; returns the manager (not finalized) and
    the first loss."""
    x, y = _data()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=8)
    first = None
    for step in range(steps):
        batch = slice(32 * (step % 8), 32 * (step % 8 + 1))
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[batch]), y[batch])
        first = float(loss.detach()) if first is None else first
        loss.backward()
        optimizer.step()
    return manager, float(first or 0.0)


def test_masked_merge_keeps_every_layers_non_zeros_exactly_and_learns() -> None:
    model = _mlp()
    _prune_half(model)
    base = {n: model.get_submodule(n).weight.detach().clone() for n in TARGETS}
    manager, _ = _train(model, _recipe("masked"))
    x, _ = _data()
    with torch.no_grad():
        adapted = model(x)
    manager.finalize()
    assert not lora_layers(model)
    for name in TARGETS:
        merged = model.get_submodule(name).weight.detach()
        assert type(model.get_submodule(name)) is nn.Linear
        assert int((merged != 0).sum()) == int((base[name] != 0).sum())
        assert torch.equal(merged == 0, base[name] == 0)
        assert not torch.equal(merged, base[name])  # the adapter was merged in
    with torch.no_grad():
        # The adapter trained masked (SparsePEFT), so the merge loses nothing it learnt.
        assert torch.allclose(model(x), adapted, atol=1e-5)


def test_a_masked_adapter_trains_only_what_the_merge_keeps() -> None:
    """During training the update on pruned weights is zero: the gradient of B·A there
    does not move the output, and a plain (unmasked) LoRA forward differs."""
    model = _mlp()
    _prune_half(model)
    manager, _ = _train(model, _recipe("masked"), steps=8)
    layer = lora_layers(model)["2"]
    x = torch.randn(16, 64)
    base = layer.get_base_layer()
    delta = layer.get_delta_weight("default").detach()
    mask = base.weight.detach() != 0
    with torch.no_grad():
        expected = F.linear(x, base.weight + delta * mask, base.bias)
        assert torch.allclose(layer(x), expected, atol=1e-5)
        unmasked = F.linear(x, base.weight + delta, base.bias)
        assert not torch.allclose(layer(x), unmasked, atol=1e-3)
    manager.finalize()


def test_only_the_adapter_trains_and_the_base_stays_put() -> None:
    model = _mlp()
    _prune_half(model)
    base = copy.deepcopy(model.state_dict())
    manager, _ = _train(model, _recipe("none"), steps=8)
    layers = lora_layers(model)
    assert sorted(layers) == TARGETS
    for name in TARGETS:
        assert torch.equal(layers[name].get_base_layer().weight, base[f"{name}.weight"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 4 * (20 + 64) + 4 * (64 + 64)
    manager.finalize()
    assert sorted(lora_layers(model)) == TARGETS  # merge: none keeps it separate


def test_dense_merge_equals_pefts_own_merge() -> None:
    model = _mlp()
    manager, _ = _train(model, _recipe("dense"), steps=8)
    reference = copy.deepcopy(model)
    for layer in lora_layers(reference).values():
        layer.merge()
    x, _ = _data()
    manager.finalize()
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)


@pytest.mark.parametrize("pruned", [True, False], ids=["sparse_int8_base", "dense_int8_base"])
def test_quantized_merge_keeps_int8_scales_and_non_zeros_within_int8_of_float(
    pruned: bool,
) -> None:
    """QA-SparsePEFT: mask the update by the base's non-zeros, requantise to its scales."""
    model = _mlp()
    if pruned:
        _prune_half(model)
    q.quantize_dynamic(model, targets=TARGETS, reduce_range=False)
    scales = {n: model.get_submodule(n).weight().q_per_channel_scales().clone() for n in TARGETS}
    values = {n: model.get_submodule(n).weight().int_repr().clone() for n in TARGETS}
    if pruned:  # the int8 base keeps the pruned zeros
        assert all(float((values[n] == 0).float().mean()) >= 0.5 for n in TARGETS)
    # An adapter's usual step size: updates that stay mostly inside the base's int8 range.
    manager, _ = _train(model, _recipe("quantized"), lr=3e-4)
    # Base + adapter in float, before the merge, the update masked by the base's non-zeros.
    float_weights = {
        n: (layer.get_base_layer().weight + layer.get_delta_weight("default") * (values[n] != 0))
        .detach()
        .clone()
        for n, layer in lora_layers(model).items()
    }
    x, _ = _data()
    with torch.no_grad():
        trained_out = model(x)  # trained masked: base + masked adapter, in float
    manager.finalize()
    for name in TARGETS:
        layer = model.get_submodule(name)
        assert isinstance(layer, nnqd.Linear)
        qweight = layer.weight()
        assert qweight.dtype == torch.qint8
        assert torch.equal(qweight.q_per_channel_scales(), scales[name])
        assert not torch.equal(qweight.int_repr(), values[name])  # the adapter is in
        # Exactly the base's non-zeros, at the same places.
        assert torch.equal(qweight.int_repr() != 0, values[name] != 0)
        # Requantised to those scales: each weight within half a step of base + masked
        # adapter, once clipped to the int8 range those scales span; a kept weight whose
        # value would round to zero sits on the first level of its sign, within one step.
        step = scales[name][:, None].float()
        expected = torch.maximum(torch.minimum(float_weights[name], 127 * step), -128 * step)
        error = (qweight.dequantize() - expected).abs()
        lifted = (values[name] != 0) & (expected.abs() < step / 2)
        assert bool((error[~lifted] <= (step / 2 + 1e-6).expand_as(error)[~lifted]).all())
        assert bool((error[lifted] <= step.expand_as(error)[lifted] + 1e-6).all())
    # Outputs within int8 tolerance of base + (masked) adapter computed in float.
    reference = _mlp()
    with torch.no_grad():
        for name, weight in float_weights.items():
            reference.get_submodule(name).weight.copy_(weight)
            reference.get_submodule(name).bias.copy_(model.get_submodule(name).bias())
        for name in ("4",):
            reference.get_submodule(name).load_state_dict(model.get_submodule(name).state_dict())
        float_out, int8_out = reference(x), model(x)
    assert torch.allclose(trained_out, float_out, atol=1e-5)
    relative = float((int8_out - float_out).norm() / float_out.norm())
    assert relative < 0.03, relative


def test_requantizing_keeps_a_weight_that_would_round_to_zero_on_its_first_level() -> None:
    layer = nnqd.Linear(4, 2)
    base = torch.tensor([[0.5, -0.5, 0.0, 1.0], [0.25, 0.0, -0.25, 0.5]])
    qbase = torch.quantize_per_channel(
        base, torch.tensor([0.25, 0.125], dtype=torch.float64), torch.zeros(2, dtype=torch.long),
        0, torch.qint8,
    )  # fmt: skip
    layer.set_weight_bias(qbase, None)
    keep = base != 0
    # Merged values: a kept weight pulled to ~0 (either sign, or exactly 0), a pruned one.
    merged = torch.tensor([[0.01, -0.5, 0.0, 0.0], [-0.01, 0.0, -0.25, 0.5]])
    requantized, clipped = requantize_like(layer, merged, keep=keep)
    values = requantized.weight().int_repr()
    assert clipped == 0
    assert torch.equal(values != 0, keep)
    assert values.tolist() == [[1, -2, 0, 1], [-1, 0, -2, 4]]


def test_an_update_past_the_bases_int8_range_warns_how_many_weights_clipped() -> None:
    model = _mlp()
    q.quantize_dynamic(model, targets=TARGETS, reduce_range=False)
    manager, _ = _train(model, _recipe("quantized"), lr=1e-2)
    with pytest.warns(UserWarning, match=r"more weights sit at the ends of the base's int8"):
        manager.finalize()


def test_a_target_that_matches_nothing_is_an_error_naming_it() -> None:
    with pytest.raises(RecipeError, match=r"'re:encoder.*' matches no Linear layer"):
        _train(_mlp(), _recipe("dense", targets="re:encoder.*"), steps=1)


def test_masked_merge_on_a_dense_base_says_the_base_has_no_sparsity() -> None:
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(RecipeError, match=r"merge: masked needs a sparse base.*sparsity 0%"):
        _train(model, _recipe("masked"), steps=1)
    assert not lora_layers(model)  # nothing half-done
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_quantized_merge_on_a_float_base_and_masked_on_int8_are_errors() -> None:
    with pytest.raises(RecipeError, match=r"merge: quantized needs an int8 base"):
        _train(_mlp(), _recipe("quantized"), steps=1)
    model = _mlp()
    q.quantize_dynamic(model, targets=TARGETS, reduce_range=False)
    with pytest.raises(RecipeError, match=r"'0' is an int8 layer: use merge: quantized"):
        _train(model, _recipe("masked"), steps=1)


def test_modules_to_save_train_in_full_and_survive_the_merge() -> None:
    model = _mlp()
    _prune_half(model)
    head = model[4].weight.detach().clone()
    manager, _ = _train(model, _recipe("masked", "all-linear", ", modules_to_save: ['4']"))
    assert sorted(lora_layers(model)) == TARGETS  # all-linear leaves the saved head out
    manager.finalize()
    assert type(model[4]) is nn.Linear
    assert not torch.equal(model[4].weight, head)


def test_unknown_modules_to_save_and_bad_rank_are_errors() -> None:
    with pytest.raises(RecipeError, match=r"'head' is not a module of the model"):
        _train(_mlp(), _recipe("dense", extra=", modules_to_save: ['head']"), steps=1)
    with pytest.raises(RecipeError, match=r"rank.*must be >= 1"):
        RecipeManager.from_yaml(_recipe("dense").replace("rank: 4", "rank: 0"))
