"""Weight sharing: at most 2^b values per layer, one gradient per cluster, uint8 export."""

from __future__ import annotations

import copy

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from zoo.models import get_model
from zoo.modifiers.weight_sharing import (
    SharedWeight,
    distinct_values,
    kmeans_1d,
    load_shared,
    shared_state,
)
from zoo.recipes import RecipeManager, parse_recipe


def test_kmeans_is_deterministic_and_beats_uniform_levels() -> None:
    torch.manual_seed(0)
    values = torch.randn(4000) ** 3  # heavy tails, like trained weights
    codebook, indices = kmeans_1d(values, 16)
    again, again_idx = kmeans_1d(values.clone(), 16)
    assert torch.equal(codebook, again) and torch.equal(indices, again_idx)
    assert codebook.numel() == 16 and int(indices.max()) < 16
    error = (codebook[indices] - values).pow(2).mean()
    uniform = torch.linspace(float(values.min()), float(values.max()), 16)
    nearest = (values[:, None] - uniform[None]).abs().argmin(1)
    assert error < (uniform[nearest] - values).pow(2).mean()  # Lloyd improves on its init


def test_each_cluster_gets_one_gradient_the_sum_of_its_members() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    shared = SharedWeight(layer, bits=2, gradient="sum")
    x = torch.randn(5, 20)
    layer(x).pow(2).sum().backward()
    # The gradient a free weight matrix would get, summed over each cluster's members.
    weight = shared.codebook.detach()[layer.weight_indices.long()].requires_grad_(True)
    F.linear(x, weight, layer.bias).pow(2).sum().backward()
    assert weight.grad is not None and shared.codebook.grad is not None
    per_cluster = torch.zeros(4).index_add_(
        0, layer.weight_indices.long().reshape(-1), weight.grad.reshape(-1)
    )
    assert torch.allclose(shared.codebook.grad, per_cluster, atol=1e-5)


SHARING = """
stages:
  share:
    run_type: train
    modifiers:
      - type: WeightSharingModifier
        params: [re:features\\..*weight, classifier.weight]
        bits: 3
        start_epoch: 0.0
"""


def test_fine_tuned_layers_hold_at_most_2b_values_and_the_codebook_learns(
    tmp_path: object,
) -> None:
    bits = 3  # as in the recipe
    torch.manual_seed(0)
    model = get_model("mlp", hidden=(32,), num_classes=4, in_features=16)
    x = torch.randn(256, 16)
    y = x[:, :4].argmax(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    manager = RecipeManager(parse_recipe(SHARING))
    manager.modify(model, optimizer, steps_per_epoch=10)
    layers = ["features.1", "classifier"]
    codebooks = {n: model.get_submodule(n).weight_codebook.detach().clone() for n in layers}
    indices = {n: model.get_submodule(n).weight_indices.clone() for n in layers}
    for i in range(30):
        sl = slice((i * 32) % 256, (i * 32) % 256 + 32)
        optimizer.zero_grad()
        F.cross_entropy(model(x[sl]), y[sl]).backward()
        optimizer.step()
    for name in layers:
        module = model.get_submodule(name)
        assert not torch.equal(codebooks[name], module.weight_codebook.detach())
        assert torch.equal(indices[name], module.weight_indices)  # assignments stay fixed
    with torch.no_grad():
        expected = model(x)
    manager.finalize()  # bakes codebook[indices] back into plain weights
    for name in layers:
        weight = model.get_submodule(name).weight
        assert isinstance(weight, nn.Parameter)
        assert distinct_values(weight) <= 2**bits
    with torch.no_grad():
        assert torch.allclose(model(x), expected)

    tensors, config = shared_state(model)
    assert tensors["features.1.weight.indices"].dtype == torch.uint8
    assert tensors["classifier.weight.codebook"].numel() <= 2**bits
    path = tmp_path / "shared.safetensors"  # type: ignore[operator]
    save_file(tensors, str(path))
    fresh = get_model("mlp", hidden=(32,), num_classes=4, in_features=16)
    fresh.load_state_dict(copy.deepcopy(model.state_dict()))
    with torch.no_grad():
        for name in layers:
            fresh.get_submodule(name).weight.zero_()
    load_shared(fresh, load_file(str(path)), config)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


PRUNE_THEN_SHARE = """
stages:
  compress:
    run_type: train
    modifiers:
      - type: GMPruningModifier
        params: __ALL_PRUNABLE__
        init_sparsity: 0.2
        final_sparsity: 0.5
        start_epoch: 0.0
        end_epoch: 1.0
        update_frequency: 0.5
      - type: WeightSharingModifier
        params: __ALL_PRUNABLE__
        bits: 2
        start_epoch: 1.0
"""


def test_sharing_after_pruning_keeps_the_zeros() -> None:
    torch.manual_seed(0)
    model = get_model("mlp", hidden=(32,), num_classes=4, in_features=16)
    x = torch.randn(256, 16)
    y = x[:, :4].argmax(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    manager = RecipeManager(parse_recipe(PRUNE_THEN_SHARE))
    manager.modify(model, optimizer, steps_per_epoch=10)
    for i in range(30):
        sl = slice((i * 32) % 256, (i * 32) % 256 + 32)
        optimizer.zero_grad()
        F.cross_entropy(model(x[sl]), y[sl]).backward()
        optimizer.step()
    manager.finalize()
    for name in ("features.1", "classifier"):
        weight = model.get_submodule(name).weight.detach()
        assert float((weight == 0).float().mean()) >= 0.5 - 1 / weight.numel()
        assert distinct_values(weight) <= 4  # 0 plus three shared non-zero values
