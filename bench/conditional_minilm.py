"""Conditional computation on MiniLM / Rotten Tomatoes, measured in one run against dense.

From the shipped all-MiniLM-L6-v2 fine-tuned for one epoch on a fixed subset of the reviews
(the dense model), in one process:

1. Early exit: exits after every encoder layer but the last, trained by self-distillation
   with the backbone frozen; the entropy threshold is swept on the validation split and the
   cheapest point within 1 accuracy point of the full model is kept. Reported: test
   accuracy lost and mean batch-1 latency against the dense model, timed interleaved.
   target: >= 1.5x lower latency at <= 1 point lost
2. Upcycling: every layer's feed-forward block -> 4 experts, top-1, trained for `--extra`
   epochs with the Switch balance loss, against the dense model trained for the same extra
   epochs (same active parameters per example, measured).    target: MoE >= dense-extra
3. REAP: half of the upcycled model's experts removed one-shot.  target: >= 98% of MoE

Usage: .venv/bin/python bench/conditional_minilm.py [--train 4000] [--extra 1] [--out FILE]
(make bench-conditional). Takes ~10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zoo.evaluation.conditional import measure_conditional
from zoo.models import get_model
from zoo.models.text import load_tokenizer
from zoo.modifiers import early_exit
from zoo.recipes import RecipeManager, oneshot

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]
MAX_LENGTH = 48


def splits(n_train: int, n_val: int, n_test: int) -> dict[str, tuple[list[str], list[int]]]:
    from zoo.data.sources import get_dataset_spec

    spec = get_dataset_spec("rotten_tomatoes")
    train, _ = spec.read(spec.locate())
    rows = list(zip([str(t) for t in train["text"]], [int(y) for y in train["y"]], strict=True))
    random.Random(0).shuffle(rows)
    cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    cuts["test"] = (n_train + n_val, n_train + n_val + n_test)
    return {k: ([t for t, _ in rows[a:b]], [y for _, y in rows[a:b]]) for k, (a, b) in cuts.items()}


def batches(tokenizer: Any, texts: list[str], labels: list[int], size: int) -> list[Batch]:
    out = []
    for i in range(0, len(texts), size):
        enc = tokenizer(
            texts[i : i + size],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        out.append((inputs, torch.tensor(labels[i : i + size])))
    return out


def train(model: nn.Module, data: list[Batch], recipe: str | None, lr: float = 5e-5) -> None:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    manager = RecipeManager.from_yaml(recipe) if recipe else None
    if manager is not None:
        manager.modify(model, optimizer, steps_per_epoch=len(data))
    for inputs, labels in data:
        optimizer.zero_grad()
        out = model(**inputs)
        loss = F.cross_entropy(out, labels)
        if manager is not None:
            loss = manager.loss_update(loss, inputs=inputs, outputs=out)
        loss.backward()
        optimizer.step()
    if manager is not None:
        manager.finalize(model)
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: list[Batch]) -> float:
    model.eval()
    correct = sum(int((model(**x).argmax(-1) == y).sum()) for x, y in data)
    return correct / sum(int(y.numel()) for _, y in data)


@torch.no_grad()
def batch1_latency(models: dict[str, nn.Module], examples: list[Batch]) -> dict[str, float]:
    """Mean ms per single example, the models timed interleaved example by example."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for inputs, _ in examples:
        for name, model in models.items():
            start = time.perf_counter()
            model(**inputs)
            times[name].append(1000 * (time.perf_counter() - start))
    return {k: statistics.fmean(v) for k, v in times.items()}


def stage(text: str) -> str:
    return f"stages:\n  s:\n    run_type: train\n    modifiers:\n{text}"


EPOCH = "      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 1}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--extra", type=int, default=1, help="extra epochs for MoE / dense")
    parser.add_argument("--latency-examples", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = load_tokenizer()
    texts = splits(args.train, args.val, args.test)
    data = {k: batches(tokenizer, *v, size=32) for k, v in texts.items()}
    report: dict[str, Any] = {"train_examples": args.train, "test_examples": args.test}
    began = time.perf_counter()

    dense = get_model("minilm_classifier").eval()
    train(dense, data["train"], None)
    report["dense_accuracy"] = accuracy(dense, data["test"])
    print(
        f"dense: {report['dense_accuracy']:.4f} ({time.perf_counter() - began:.0f} s)", flush=True
    )

    # 1. Early exit.
    ee = copy.deepcopy(dense)
    exits = "      - {type: EarlyExitModifier, exits: [0, 1, 2, 3, 4]}\n"
    train(ee, data["train"], stage(EPOCH + exits), lr=1e-3)
    points = early_exit.sweep(ee, data["val"], [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4])
    chosen = early_exit.choose_operating_point(points, max_drop=0.01)
    early_exit.set_threshold(ee, chosen["threshold"])
    ee_acc, facts = measure_conditional(ee, lambda: accuracy(ee, data["test"]))
    singles = batches(tokenizer, *texts["test"], size=1)[: args.latency_examples]
    latency = batch1_latency({"dense": dense, "early_exit": ee}, singles)
    report["early_exit"] = {
        "sweep_val": points,
        "threshold": chosen["threshold"],
        "accuracy": ee_acc,
        "points_lost": 100 * (report["dense_accuracy"] - ee_acc),
        "mean_layers_executed": facts.get("mean_layers_executed"),
        "batch1_ms": latency,
        "latency_ratio": latency["dense"] / latency["early_exit"],
    }
    print(
        json.dumps(report["early_exit"], indent=1),
        f"({time.perf_counter() - began:.0f} s)",
        flush=True,
    )

    # 2. Upcycling against dense trained for the same extra epochs.
    blocks = "[" + ", ".join(f"encoder.encoder.layer.{i}" for i in range(6)) + "]"
    upcycle = (
        f"      - {{type: MoEUpcyclingModifier, blocks: {blocks}, num_experts: 4, top_k: 1, "
        "jitter: 0.01, balance_loss: 0.01}\n"
    )
    moe = copy.deepcopy(dense)
    oneshot(moe, f"stages:\n  u:\n    run_type: oneshot\n    modifiers:\n{upcycle}")
    extra = copy.deepcopy(dense)
    for _ in range(args.extra):
        train(moe, data["train"], stage(EPOCH))
        train(extra, data["train"], None)
    moe_acc, moe_facts = measure_conditional(moe, lambda: accuracy(moe, data["test"]))
    report["moe4_top1"] = {"accuracy": moe_acc, **moe_facts}
    report["dense_extra"] = {
        "accuracy": accuracy(extra, data["test"]),
        "parameters": sum(p.numel() for p in extra.parameters()),
    }
    print(json.dumps(report["moe4_top1"]), json.dumps(report["dense_extra"]), flush=True)

    # 3. REAP 50% of the experts, one-shot.
    reap = "      - {type: REAPPruningModifier, sparsity: 0.5}\n"
    calibration = [x for x, _ in data["train"][:16]]
    oneshot(moe, f"stages:\n  r:\n    run_type: oneshot\n    modifiers:\n{reap}", calibration)
    reap_acc, reap_facts = measure_conditional(moe, lambda: accuracy(moe, data["test"]))
    report["moe4_reap50"] = {
        "accuracy": reap_acc,
        "of_moe": reap_acc / moe_acc,
        **reap_facts,
    }
    report["seconds"] = time.perf_counter() - began
    print(json.dumps(report["moe4_reap50"]), flush=True)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
