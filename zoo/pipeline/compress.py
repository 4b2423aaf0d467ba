"""The compress stage: one zoo entry, from its parent model through its recipe.

dense     the parent as it is (the reference every other entry is measured against);
oneshot   the recipe applied at once with calibration data, no training;
train     training-aware: the recipe runs inside training from the parent (pruning, QAT,
          distillation with the parent as teacher when the entry names a student);
transfer  the parent fine-tuned on another dataset under the recipe (masks held).

The training flows (train, transfer) run data-parallel under torchrun when the training
settings of the entry's kind of data ask for it (`train.distributed.nproc_per_node` for
images, `text.train.distributed.nproc_per_node` for text; zoo.training.distributed): the
recipe runs unchanged on every rank, each with its own teacher, and only rank 0 saves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.data.loaders import SplitTensors, dataset_spec_of
from zoo.models import ArchConfig, arch_config_of
from zoo.pipeline.dense import build_model_for, load_flow_splits
from zoo.pipeline.entries import CompressSettings, EntryConfig
from zoo.pipeline.model_io import load_model_folder, save_model_folder
from zoo.pipeline.params import DataConfig, ModelConfig, flow_config, train_key
from zoo.training import fit, seed_everything
from zoo.training.config import DistributedConfig
from zoo.training.distributed import World, check_batch_size, start, stop

TRAINING_FLOWS = ("train", "transfer")


@dataclass(frozen=True)
class Distribution:
    """How an entry's compress stage trains: `config` read from `switch` in params.yaml."""

    config: DistributedConfig
    switch: str  # e.g. "train.distributed.nproc_per_node"

    def check(self, entry: EntryConfig, world_size: int) -> None:
        check_batch_size(entry.batch_size, world_size, f"zoo.{entry.key}", self.switch)


def distribution_of(params: Mapping[str, Any], entry: EntryConfig, data_root: Path) -> Distribution:
    """The distributed settings of the flow (vision, text) whose kind of data the entry
    trains on; one process for entries that do not train (dense, oneshot)."""
    if entry.flow not in TRAINING_FLOWS:
        return Distribution(DistributedConfig(), "(no training)")
    flow = "text" if dataset_spec_of(data_root / entry.data).kind == "text" else "vision"
    switch = f"{train_key(flow)}.distributed.nproc_per_node"
    return Distribution(flow_config(params, flow).train.distributed, switch)


def calibration_batches(data: SplitTensors, settings: CompressSettings) -> list[dict[str, Any]]:
    """The first N training examples as model-input batches (the split is already shuffled)."""
    batches = []
    for inputs, _ in data.loader(settings.calibration_batch_size):
        batches.append(inputs)
        if len(batches) * settings.calibration_batch_size >= settings.calibration_examples:
            break
    return batches


def _data_config(entry: EntryConfig, settings: CompressSettings) -> DataConfig:
    limits = [n for n in (settings.limit_train, entry.limit_train) if n is not None]
    return DataConfig(
        name=entry.data,
        limit_train=min(limits) if limits else None,
        limit_eval=settings.limit_eval,
        max_length=entry.max_length,
    )


def _starting_model(entry: EntryConfig, parent: nn.Module, data: SplitTensors) -> nn.Module:
    if entry.student is None:
        return parent
    student_cfg = ModelConfig(entry.student.name, dict(entry.student.kwargs))
    return build_model_for(student_cfg, data.spec, seed=0)


def run_compress(
    entry: EntryConfig,
    settings: CompressSettings,
    data_root: Path,
    out_dir: Path,
    distribution: Distribution | None = None,
) -> list[dict[str, Any]]:
    """Make the entry's model and save it to `out_dir` (rank 0 only, under torchrun);
    return the training history."""
    distribution = distribution or Distribution(DistributedConfig(), "(one process)")
    world = start(distribution.config)
    try:
        distribution.check(entry, world.size)
        return _compress(entry, settings, data_root, out_dir, world)
    finally:
        stop(world)


def _compress(
    entry: EntryConfig, settings: CompressSettings, data_root: Path, out_dir: Path, world: World
) -> list[dict[str, Any]]:
    from zoo.recipes import RecipeManager, oneshot
    from zoo.recipes.parse import load_recipe

    parent = load_model_folder(entry.parent)
    arch: ArchConfig = arch_config_of(parent)
    history: list[dict[str, Any]] = []
    if entry.flow == "dense":
        model = parent
    else:
        splits = load_flow_splits(
            data_root / entry.data, _data_config(entry, settings), arch.arch, entry.tokenizer
        )
        calibration = calibration_batches(splits["train"], settings)
        recipe = load_recipe(entry.recipe, entry.recipe_variables)
        seed_everything(settings.seed)
        model = _starting_model(entry, parent, splits["train"])
        teacher = parent if entry.student is not None else None
        if teacher is not None:
            teacher.eval()
        if entry.flow == "oneshot":
            with torch.no_grad():
                oneshot(model, recipe, calibration, teacher=teacher)
        else:
            optimizer = torch.optim.AdamW(
                [p for p in model.parameters() if p.requires_grad],
                lr=entry.lr,
                weight_decay=entry.weight_decay,
            )
            manager = RecipeManager(recipe)
            steps = math.ceil(len(splits["train"]) / entry.batch_size)
            manager.modify(model, optimizer, steps, teacher=teacher, calibration=calibration)
            history = fit(
                model,
                optimizer,
                splits["train"],
                splits["val"],
                epochs=manager.num_epochs,
                batch_size=entry.batch_size,
                seed=settings.seed,
                loss_hook=lambda loss, inputs, outputs, _labels: manager.loss_update(
                    loss, inputs=inputs, outputs=outputs
                ),
                desc=entry.key,
                world=world,
            )
            model = manager.finalize(model)
    if world.is_main:
        save_model_folder(model, out_dir, recipe=entry.recipe)
    return history
