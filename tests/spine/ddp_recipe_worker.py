"""One rank of a recipe trained under torchrun (tests/spine/test_distributed_recipes.py).

A small conv net (conv, batch norm, linear: what QAT fuses and wraps) trains on the shipped
digits through the project's own `fit` and `RecipeManager`, with the dense model as the
distillation teacher, exactly as zoo.pipeline.compress runs a training-aware entry; each
rank then writes its pruning masks and the digest of its trained state, so that the test
can compare the ranks byte for byte. Run by itself (no torchrun) it is the one-process
reference.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from zoo.data.loaders import load_split
from zoo.models import get_model
from zoo.recipes import RecipeManager
from zoo.recipes.parse import parse_recipe
from zoo.training import fit, seed_everything
from zoo.training.config import DistributedConfig
from zoo.training.distributed import start, state_digest, stop

# Two epochs of pruning to 80% (four mask updates an epoch), QAT (module swap) from
# epoch 2, batch-norm statistics frozen at epoch 3, distillation from the dense teacher.
RECIPE = """
stages:
  train:
    run_type: train
    modifiers:
      - type: EpochRangeModifier
        start_epoch: 0.0
        end_epoch: 4.0
      - type: GMPruningModifier
        params: __ALL_PRUNABLE__
        init_sparsity: 0.05
        final_sparsity: 0.8
        start_epoch: 0.0
        end_epoch: 2.0
        update_frequency: 0.25
        global_sparsity: true
      - type: QuantizationModifier
        start_epoch: 2.0
        freeze_bn_stats_epoch: 3.0
      - type: OutputDistillationModifier
        hardness: 0.5
        temperature: 2.0
"""
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    world = start(DistributedConfig(backend="gloo"))
    torch.set_num_threads(1)
    try:
        train = load_split(args.data, "train", limit=256)
        val = load_split(args.data, "val", limit=64)
        seed_everything(0)
        model = get_model("cnn_small", num_classes=10, image_size=8, channels=[8, 16])
        teacher = copy.deepcopy(model).eval()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.003)
        manager = RecipeManager(parse_recipe(RECIPE))
        manager.modify(model, optimizer, math.ceil(len(train) / BATCH), teacher=teacher)
        fit(
            model,
            optimizer,
            train,
            val,
            epochs=manager.num_epochs,
            batch_size=BATCH,
            loss_hook=lambda loss, inputs, outputs, _: manager.loss_update(
                loss, inputs=inputs, outputs=outputs
            ),
            progress=False,
            world=world,
        )
        assert manager.state is not None
        masks = manager.state.store["masks"].masks
        save_file(
            {name: mask.contiguous() for name, (_, mask) in masks.items()},
            str(args.out / f"masks{world.rank}.safetensors"),
        )
        fake_quant = sum("FakeQuantize" in type(m).__name__ for m in model.modules())
        facts = {"digest": state_digest(model), "fake_quant_modules": fake_quant}
        (args.out / f"rank{world.rank}.json").write_text(json.dumps(facts))
    finally:
        stop(world)


if __name__ == "__main__":
    main()
