"""Seeded training and evaluation loops shared by every pipeline stage."""

from zoo.training.config import TrainConfig
from zoo.training.trainer import (
    Evaluation,
    LossHook,
    build_optimizer,
    evaluate,
    fit,
    seed_everything,
    train,
)

__all__ = [
    "Evaluation",
    "LossHook",
    "TrainConfig",
    "build_optimizer",
    "evaluate",
    "fit",
    "seed_everything",
    "train",
]
