"""The manager in a plain PyTorch loop, and the one-shot entry point (the README example)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.recipes import RecipeManager, oneshot

EXAMPLES = Path(__file__).resolve().parents[2] / "zoo" / "recipes" / "examples"


def _digits() -> DataLoader:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    return DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)


def _accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in loader)
    return hits / len(loader.dataset)  # type: ignore[arg-type]


def _sparsity(model: torch.nn.Module) -> float:
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_readme_training_example() -> None:
    torch.manual_seed(0)
    loader = _digits()
    model = get_model("mlp", in_features=64, hidden=(128, 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    manager = RecipeManager.from_file(EXAMPLES / "gmp_cosine.yaml")
    optimizer = manager.modify(model, optimizer, steps_per_epoch=len(loader))
    for _epoch in range(manager.num_epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            out = model(xb)
            loss = manager.loss_update(F.cross_entropy(out, yb), inputs=xb, outputs=out)
            loss.backward()
            optimizer.step()
    manager.finalize()
    assert manager.num_epochs == 6
    assert abs(_sparsity(model) - 0.9) < 1e-3
    assert _accuracy(model, loader) > 0.85


def test_readme_oneshot_example() -> None:
    torch.manual_seed(0)
    loader = _digits()
    model = get_model("mlp", in_features=64, hidden=(128, 64))
    calibration = [xb for xb, _ in list(loader)[:8]]
    oneshot(
        model,
        """
stages:
  prune:
    run_type: oneshot
    modifiers:
      - {type: SparseGPTModifier, params: __ALL_PRUNABLE__, sparsity: 0.5, mask_structure: "2:4"}
""",
        calibration,
    )
    assert abs(_sparsity(model) - 0.5) < 1e-6


def test_oneshot_stage_runs_inside_modify_then_constant_pruning_holds() -> None:
    torch.manual_seed(0)
    loader = _digits()
    model = get_model("mlp", in_features=64, hidden=(128, 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    manager = RecipeManager.from_file(EXAMPLES / "wanda_then_finetune.yaml")
    manager.modify(
        model, optimizer, steps_per_epoch=len(loader), calibration=[x for x, _ in loader][:4]
    )
    pruned = model.features[1].weight == 0
    assert abs(float(pruned.float().mean()) - 0.5) < 0.01
    for _epoch in range(manager.num_epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    assert torch.equal(model.features[1].weight == 0, pruned)
    assert optimizer.param_groups[0]["lr"] == 0.01  # SetLearningRateModifier
    manager.finalize()
    # After finalize the hooks are gone: plain training may regrow weights.
    xb, yb = next(iter(loader))
    optimizer.zero_grad()
    F.cross_entropy(model(xb), yb).backward()
    optimizer.step()
    assert int((model.features[1].weight == 0).sum()) < int(pruned.sum())


def test_manager_misuse_is_reported() -> None:
    manager = RecipeManager.from_file(EXAMPLES / "gmp_cosine.yaml")
    with pytest.raises(RecipeError, match="before loss_update"):
        manager.loss_update(torch.tensor(1.0))
    model = get_model("mlp", in_features=64, hidden=(16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    manager.modify(model, optimizer, steps_per_epoch=2)
    with pytest.raises(RecipeError, match="already attached"):
        manager.modify(model, optimizer, steps_per_epoch=2)


def test_compound_recipe_gmp_plus_qat_gives_a_sparse_int8_model() -> None:
    """Pruning and quantization-aware training composed in one recipe, one plain loop."""
    torch.manual_seed(0)
    recipe = """
stages:
  train:
    modifiers:
      - {type: EpochRangeModifier, end_epoch: 4}
      - {type: GMPruningModifier, params: __ALL_PRUNABLE__, init_sparsity: 0.05,
         final_sparsity: 0.8, start_epoch: 0, end_epoch: 3, update_frequency: 0.5}
      - {type: QuantizationModifier, start_epoch: 0}
"""
    model = get_model("cnn_small", channels=(8, 16))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=3)
    for _ in range(manager.num_epochs * 3):
        x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    manager.finalize()
    int8 = {
        name: module.weight()
        for name, module in model.named_modules()
        if callable(getattr(module, "weight", None))
    }
    assert len(int8) == 3  # two convs and the classifier became int8 modules
    for name, weight in int8.items():
        assert weight.is_quantized, name
        zeros = int((weight.dequantize() == 0).sum())
        assert abs(zeros - 0.8 * weight.numel()) <= 1, name
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_two_train_stages_run_one_after_the_other() -> None:
    recipe = """
stages:
  prune:
    modifiers:
      - {type: EpochRangeModifier, end_epoch: 2}
      - {type: GMPruningModifier, final_sparsity: 0.6, start_epoch: 0, end_epoch: 2,
         update_frequency: 1}
  finetune:
    modifiers:
      - {type: EpochRangeModifier, end_epoch: 1}
      - {type: SetLearningRateModifier, learning_rate: 0.001, start_epoch: 0}
      - {type: ConstantPruningModifier}
"""
    torch.manual_seed(0)
    model = get_model("mlp", in_features=64, hidden=(32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(model, optimizer, steps_per_epoch=4)
    lrs, sparsity = [], []
    for _ in range(manager.num_epochs * 4):
        x, y = torch.randn(8, 64), torch.randint(0, 10, (8,))
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        sparsity.append(float((model.features[1].weight == 0).float().mean()))
    manager.finalize()
    assert manager.num_epochs == 3
    assert lrs == [0.1] * 8 + [0.001] * 4  # the finetune stage starts at absolute epoch 2
    numel = model.features[1].weight.numel()
    assert sparsity[7:] == [round(0.6 * numel) / numel] * 5
