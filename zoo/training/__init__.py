"""Seeded training and evaluation loops shared by every pipeline stage."""

from zoo.training.config import TrainConfig
from zoo.training.trainer import Evaluation, TrainingHooks, evaluate, seed_everything, train

__all__ = ["Evaluation", "TrainConfig", "TrainingHooks", "evaluate", "seed_everything", "train"]
