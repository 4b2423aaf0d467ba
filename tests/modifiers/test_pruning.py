"""Pruning: measured sparsity, schedules, masks under training, N:M, structured shrinking."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune as torch_prune

from zoo.models import get_model
from zoo.modifiers.pruning import GMPruningModifier
from zoo.modifiers.pruning_masks import make_mask, parse_structure
from zoo.recipes import RecipeManager, oneshot, parse_recipe


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_model("mlp", hidden=(64, 32), num_classes=10, in_features=784)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def _train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(16, 1, 28, 28)
        y = torch.randint(0, 10, (16,))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


GMP = """
stages:
  prune:
    modifiers:
      - type: GMPruningModifier
        params: __ALL_PRUNABLE__
        init_sparsity: 0.05
        final_sparsity: 0.8
        start_epoch: 1.0
        end_epoch: 5.0
        update_frequency: 0.4
        inter_func: cubic
        global_sparsity: {global_}
"""


def test_gmp_hits_the_documented_sparsity_at_every_update_step() -> None:
    spe, t0, t1, dt = 5, 5, 25, 2  # steps per epoch; start, end, update every 0.4 epoch
    s_i, s_f = 0.05, 0.8
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    manager = RecipeManager.from_yaml(GMP.format(global_="false"))
    manager.modify(model, optimizer, steps_per_epoch=spe)
    checked = 0
    for step in range(manager.num_epochs * spe + 1):
        last_update = None
        if step >= t0:
            last_update = t1 if step >= t1 else t0 + (step - t0) // dt * dt
        for name, w in _weights(model).items():
            if last_update is None:
                assert _zeros(w) == 0, (step, name)
                continue
            # Zhu & Gupta: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
            s = s_f + (s_i - s_f) * (1 - (last_update - t0) / (t1 - t0)) ** 3
            assert abs(_zeros(w) - s * w.numel()) <= 1, (step, name, _zeros(w), s * w.numel())
            checked += 1
        _train_steps(model, optimizer, 1)
    manager.finalize()
    assert checked > 0
    assert all(_zeros(w) == round(s_f * w.numel()) for w in _weights(model).values())


def test_global_gmp_reaches_target_over_all_layers_within_one_element() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    manager = RecipeManager.from_yaml(GMP.format(global_="true"))
    manager.modify(model, optimizer, steps_per_epoch=3)
    _train_steps(model, optimizer, manager.num_epochs * 3)
    manager.finalize()
    weights = _weights(model)
    total = sum(w.numel() for w in weights.values())
    assert abs(sum(_zeros(w) for w in weights.values()) - 0.8 * total) <= 1
    per_layer = {n: _zeros(w) / w.numel() for n, w in weights.items()}
    assert max(per_layer.values()) - min(per_layer.values()) > 0.01  # really global


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1),
    ],
    ids=["sgd_momentum_wd", "adamw"],
)
def test_masks_survive_100_optimizer_steps(make_optimizer: object) -> None:
    model = _mlp()
    optimizer = make_optimizer(model.parameters())  # type: ignore[operator]
    # Momentum built up while dense, so masked entries have non-zero optimizer state.
    _train_steps(model, optimizer, 5)
    recipe = """
stages:
  sparse:
    modifiers:
      - {type: OneShotMagnitudePruningModifier, sparsity: 0.7, start_epoch: 0}
      - {type: EpochRangeModifier, end_epoch: 10}
"""
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=10)
    masks = {n: (w != 0).clone() for n, w in _weights(model).items()}
    before = {n: w.detach().clone() for n, w in _weights(model).items()}
    _train_steps(model, optimizer, 100)
    for name, w in _weights(model).items():
        assert torch.equal(w != 0, masks[name]), name  # pruned stayed 0, kept stayed non-zero
        assert _zeros(w) == round(0.7 * w.numel())
        assert not torch.equal(w, before[name])  # the kept weights did train
    manager.finalize()


def test_only_masking_gradients_would_not_be_enough() -> None:
    """Control for the test above: momentum and weight decay move grad-masked weights."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    _train_steps(model, optimizer, 5)
    w = model.classifier.weight
    keep = make_mask(w.abs(), 0.7, parse_structure("unstructured"))
    with torch.no_grad():
        w.mul_(keep)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert w.grad is not None
    w.grad.mul_(keep)
    optimizer.step()
    assert _zeros(w) < round(0.7 * w.numel())


@pytest.mark.parametrize("amount", [0.1, 0.5, 0.73, 0.95])
def test_magnitude_masks_agree_with_torch_prune_l1_unstructured(amount: float) -> None:
    model = _mlp(seed=3)
    reference = copy.deepcopy(model)
    recipe = f"""
stages:
  once:
    run_type: oneshot
    modifiers:
      - {{type: OneShotMagnitudePruningModifier, sparsity: {amount}}}
"""
    oneshot(model, recipe)
    for name, module in reference.named_modules():
        if isinstance(module, nn.Linear):
            torch_prune.l1_unstructured(module, "weight", amount=amount)
            ours = model.get_submodule(name).weight
            assert torch.equal(ours != 0, module.weight_mask.bool()), name
            assert torch.equal(ours, module.weight)


def _assert_nm(weight: torch.Tensor, n: int, m: int) -> None:
    groups = weight.detach().reshape(weight.shape[0], -1).reshape(-1, m)
    assert torch.all((groups != 0).sum(1) == n)


@pytest.mark.parametrize(
    "modifier", ["OneShotMagnitudePruningModifier", "WandaPruningModifier", "SparseGPTModifier"]
)
@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8"])
def test_nm_patterns_are_exact(modifier: str, pattern: str) -> None:
    model = _mlp(seed=1)
    n, m = (int(v) for v in pattern.split(":"))
    field = "mask_type" if modifier.startswith("OneShot") else "mask_structure"
    recipe = f"""
stages:
  once:
    run_type: oneshot
    modifiers:
      - type: {modifier}
        params: [features.1, features.3]
        sparsity: {(m - n) / m}
        {field}: "{pattern}"
"""
    calibration = [torch.randn(8, 1, 28, 28) for _ in range(4)]
    oneshot(model, recipe, calibration)
    _assert_nm(model.features[1].weight, n, m)
    _assert_nm(model.features[3].weight, n, m)
    assert _zeros(model.classifier.weight) == 0


def test_gmp_ramps_to_an_exact_2_of_4_pattern() -> None:
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    recipe = """
stages:
  prune:
    modifiers:
      - {type: GMPruningModifier, params: [features.1], init_sparsity: 0.1, final_sparsity: 0.5,
         start_epoch: 0, end_epoch: 2, update_frequency: 0.5, mask_type: "2:4"}
"""
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=4)
    halfway = None
    for step in range(9):
        if step == 4:
            halfway = _zeros(model.features[1].weight) / model.features[1].weight.numel()
        _train_steps(model, optimizer, 1)
    manager.finalize()
    assert halfway is not None and 0.1 < halfway < 0.5
    _assert_nm(model.features[1].weight, 2, 4)


@pytest.mark.parametrize("modifier", ["WandaPruningModifier", "SparseGPTModifier"])
def test_calibrated_pruning_hits_sparsity_per_layer(modifier: str) -> None:
    torch.manual_seed(0)
    model = get_model("cnn_small", channels=(8, 16))
    recipe = f"""
stages:
  once:
    run_type: oneshot
    modifiers:
      - {{type: {modifier}, params: __ALL_PRUNABLE__, sparsity: 0.6}}
"""
    oneshot(model, recipe, [torch.randn(4, 1, 28, 28) for _ in range(3)])
    for name, w in _weights(model).items():
        if modifier == "WandaPruningModifier":  # per-output-row groups
            per_row = round(0.6 * w[0].numel())
            assert torch.all((w.reshape(w.shape[0], -1) == 0).sum(1) == per_row), name
        else:
            assert abs(_zeros(w) - 0.6 * w.numel()) <= 1, name


def test_wanda_and_sparsegpt_need_calibration_data() -> None:
    from zoo.errors import RecipeError

    text = (
        "stages:\n  s:\n    run_type: oneshot\n    modifiers:\n"
        "      - {type: WandaPruningModifier}\n"
    )
    with pytest.raises(RecipeError, match="needs calibration data"):
        oneshot(_mlp(), text)


def test_gmp_final_sparsity_mapping_form() -> None:
    recipe = parse_recipe("""
pruning_modifiers:
  - !GMPruningModifier
    params: []
    init_sparsity: 0.2
    final_sparsity: {0.5: [features.1.weight], 0.9: [features.3.weight, classifier.weight]}
    start_epoch: 0
    end_epoch: 1
""")
    gmp = recipe.stages[0].modifiers[0]
    assert isinstance(gmp, GMPruningModifier)
    model = _mlp()
    oneshot(model, recipe)
    assert _zeros(model.features[1].weight) == round(0.5 * model.features[1].weight.numel())
    assert _zeros(model.classifier.weight) == round(0.9 * model.classifier.weight.numel())


# ---- structured ----------------------------------------------------------------------------
def _structured(sparsity: float, structure: str, params: str) -> str:
    return f"""
stages:
  shrink:
    run_type: oneshot
    modifiers:
      - {{type: StructuredPruningModifier, sparsity: {sparsity}, structure: {structure},
         params: {params}}}
"""


def test_structured_conv_channels_shrink_and_keep_outputs() -> None:
    torch.manual_seed(0)
    model = get_model("cnn_small", channels=(8, 16, 32)).eval()
    with torch.no_grad():
        for block, drop in (
            ("features.0", [1, 5]),
            ("features.2", [0, 3, 9, 12]),
            ("features.4", list(range(0, 32, 4))),
        ):
            conv, bn = model.get_submodule(f"{block}.0"), model.get_submodule(f"{block}.1")
            conv.weight[drop] = 0
            bn.weight[drop] = 0
            bn.bias[drop] = 0
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
    oneshot(model, _structured(0.25, "channel", "[features.0.0, features.2.0, features.4.0]"))
    assert model.features[0][0].weight.shape == (6, 1, 3, 3)
    assert model.features[0][1].weight.shape == (6,)
    assert model.features[2][0].weight.shape == (12, 6, 3, 3)
    assert model.features[4][0].weight.shape == (24, 12, 3, 3)
    assert model.classifier.weight.shape == (10, 24 * 3 * 3)  # flattened 3x3 maps
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_structured_mlp_neurons_shrink_and_keep_outputs() -> None:
    model = _mlp().eval()
    with torch.no_grad():
        model.features[1].weight[:32] = 0
        model.features[1].bias[:32] = 0
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
    oneshot(model, _structured(0.5, "neuron", "__ALL_PRUNABLE__"))
    assert model.features[1].weight.shape == (32, 784)
    assert model.features[3].weight.shape[1] == 32
    assert model.classifier.weight.shape == (10, 16)  # features.3 halved too
    assert model(x).shape == before.shape


def test_structured_mlp_zero_neurons_same_outputs() -> None:
    model = _mlp().eval()
    with torch.no_grad():
        model.features[1].weight[::2] = 0
        model.features[1].bias[::2] = 0
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        oneshot(model, _structured(0.5, "neuron", "[features.1]"))
        after = model(x)
    assert model.features[1].weight.shape == (32, 784)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_structured_attention_heads_shrink_and_keep_outputs() -> None:
    torch.manual_seed(0)
    model = get_model(
        "minilm_classifier",
        pretrained=False,
        encoder_config={
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "vocab_size": 100,
        },
    ).eval()
    size = 16
    with torch.no_grad():
        for layer in model.encoder.encoder.layer:
            head = slice(1 * size, 2 * size)
            for proj in (
                layer.attention.self.query,
                layer.attention.self.key,
                layer.attention.self.value,
            ):
                proj.weight[head] = 0
                proj.bias[head] = 0
            layer.attention.output.dense.weight[:, head] = 0
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = model(ids, mask)
        oneshot(model, _structured(0.25, "head", "null"))
        after = model(ids, mask)
    attn = model.encoder.encoder.layer[0].attention
    assert attn.self.query.weight.shape == (48, 64)
    assert attn.output.dense.weight.shape == (64, 48)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_structured_bert_ffn_neurons_shrink_and_keep_outputs() -> None:
    torch.manual_seed(0)
    config = {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "vocab_size": 100,
    }
    model = get_model("minilm_classifier", pretrained=False, encoder_config=config).eval()
    with torch.no_grad():
        for layer in model.encoder.encoder.layer:
            layer.intermediate.dense.weight[::4] = 0
            layer.intermediate.dense.bias[::4] = 0
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = model(ids, mask)
        oneshot(model, _structured(0.25, "neuron", "['re:.*intermediate.dense.weight']"))
        after = model(ids, mask)
    layer = model.encoder.encoder.layer[1]
    assert layer.intermediate.dense.weight.shape == (96, 64)
    assert layer.output.dense.weight.shape == (64, 96)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("mask_type", "unit"),
    [([1, 4], (1, 4)), ("block", (1, 4)), ([2, 2], (2, 2)), ("filter", (1, 64))],
)
def test_block_and_filter_masks_prune_whole_units(mask_type: object, unit: tuple[int, int]) -> None:
    torch.manual_seed(0)
    weight = torch.randn(16, 64)
    keep = make_mask(weight.abs(), 0.5, parse_structure(mask_type))  # type: ignore[arg-type]
    blocks = keep.reshape(16 // unit[0], unit[0], 64 // unit[1], unit[1]).float().mean((1, 3))
    assert set(blocks.unique().tolist()) == {0.0, 1.0}  # every block kept or dropped whole
    assert int((~keep).sum()) == weight.numel() // 2


def test_channel_mask_prunes_input_channels_of_a_conv() -> None:
    torch.manual_seed(0)
    weight = torch.randn(8, 6, 3, 3)
    keep = make_mask(weight.abs(), 0.5, parse_structure("channel"))
    per_channel = keep.float().mean((0, 2, 3))
    assert sorted(per_channel.tolist()) == [0.0] * 3 + [1.0] * 3
