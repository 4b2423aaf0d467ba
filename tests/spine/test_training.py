"""Dense training is seeded and deterministic, and actually learns."""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.data import load_split
from zoo.pipeline.dense import build_model_for
from zoo.pipeline.params import ModelConfig
from zoo.training import TrainConfig, evaluate, train


def small_run(prepared_data: Path) -> tuple[torch.nn.Module, float]:
    train_data = load_split(prepared_data / "digits", "train")
    val_data = load_split(prepared_data / "digits", "val")
    model = build_model_for(ModelConfig("mlp", {"hidden": [64]}), train_data.spec, seed=3)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=3)
    train(model, train_data, val_data, cfg, progress=False)
    return model, evaluate(model, val_data).accuracy


def test_same_seed_gives_identical_weights(prepared_data: Path) -> None:
    first, acc1 = small_run(prepared_data)
    second, acc2 = small_run(prepared_data)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert acc1 == acc2


def test_training_learns_far_above_chance(prepared_data: Path) -> None:
    _, accuracy = small_run(prepared_data)
    assert accuracy > 0.85  # ten classes: chance is 0.1


def test_history_has_one_row_per_epoch(prepared_data: Path) -> None:
    data = load_split(prepared_data / "digits", "val")
    model = build_model_for(ModelConfig("cnn_small", {"channels": [4, 8]}), data.spec, seed=0)
    history = train(model, data, data, TrainConfig(epochs=2, batch_size=64), progress=False)
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(history[0])
