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
(make bench-conditional). Takes ~10 minutes on 2 cores. `--dense models/dense/text` starts
from the pipeline's trained dense MiniLM instead of training one (then the figures are
against that model; with `--data data/rotten_tomatoes`, on the pipeline's own splits);
`--parts early_exit` measures only the early exit.
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

from zoo.evaluation.conditional import choose_exit_threshold, measure_conditional
from zoo.evaluation.conditional_names import exit_sweep
from zoo.models import get_model
from zoo.models.text import load_tokenizer
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


def prepared_splits(
    folder: Path, n_train: int, n_val: int, n_test: int
) -> dict[str, tuple[list[str], list[int]]]:
    """The pipeline's own splits (data/rotten_tomatoes): a dense model it trained never saw
    their val / test rows."""
    from zoo.data.loaders import read_split

    sizes = {"train": n_train, "val": n_val, "test": n_test}
    out = {}
    for split, n in sizes.items():
        arrays = read_split(folder, split)
        out[split] = ([str(t) for t in arrays["text"][:n]], [int(y) for y in arrays["y"][:n]])
    return out


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
    parser.add_argument("--dense", type=Path, help="a trained dense MiniLM folder to start from")
    parser.add_argument("--data", type=Path, help="a prepared data folder: use its splits")
    parser.add_argument(
        "--parts", default="early_exit,moe", help="comma-separated: early_exit, moe (+REAP)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"early_exit", "moe"}:
        parser.error(f"--parts takes early_exit and/or moe, got {args.parts!r}")
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = load_tokenizer()
    if args.data:
        texts = prepared_splits(args.data, args.train, args.val, args.test)
    else:
        texts = splits(args.train, args.val, args.test)
    data = {k: batches(tokenizer, *v, size=32) for k, v in texts.items()}
    report: dict[str, Any] = {"train_examples": args.train, "test_examples": args.test}
    began = time.perf_counter()

    if args.dense:
        from zoo.pipeline.model_io import load_model_folder

        dense = load_model_folder(args.dense).eval()
        report["dense_from"] = str(args.dense)
    else:
        dense = get_model("minilm_classifier").eval()
        train(dense, data["train"], None)
    report["dense_accuracy"] = accuracy(dense, data["test"])
    print(
        f"dense: {report['dense_accuracy']:.4f} ({time.perf_counter() - began:.0f} s)", flush=True
    )

    if "early_exit" in parts:
        singles = batches(tokenizer, *texts["test"], size=1)[: args.latency_examples]
        report["early_exit"] = measure_early_exit(
            dense, report["dense_accuracy"], data, singles, began
        )
    if "moe" in parts:
        report.update(measure_moe(dense, data, args.extra))
    report["seconds"] = time.perf_counter() - began
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text, flush=True)


def measure_early_exit(
    dense: nn.Module,
    dense_accuracy: float,
    data: dict[str, list[Batch]],
    singles: list[Batch],
    began: float,
) -> dict[str, Any]:
    """1. Exits trained, threshold chosen on validation as the evaluate stage chooses it."""
    ee = copy.deepcopy(dense)
    exits = "      - {type: EarlyExitModifier, exits: [0, 1, 2, 3, 4]}\n"
    train(ee, data["train"], stage(EPOCH + exits), lr=1e-3)
    sweep = choose_exit_threshold(ee, data["val"], max_drop=0.01)
    ee_acc, facts = measure_conditional(ee, lambda: accuracy(ee, data["test"]))
    latency = batch1_latency({"dense": dense, "early_exit": ee}, singles)
    result = {
        "sweep_val": [
            {"threshold": p.threshold, "accuracy": p.accuracy, "mean_layers": p.mean_layers}
            for p in exit_sweep(sweep)
        ],
        "threshold": sweep["exit_threshold"],
        "accuracy": ee_acc,
        "points_lost": 100 * (dense_accuracy - ee_acc),
        "mean_layers_executed": facts.get("mean_layers_executed"),
        "batch1_ms": latency,
        "latency_ratio": latency["dense"] / latency["early_exit"],
    }
    print(json.dumps(result, indent=1), f"({time.perf_counter() - began:.0f} s)", flush=True)
    return result


def measure_moe(dense: nn.Module, data: dict[str, list[Batch]], extra_epochs: int) -> dict:
    """2. Upcycling against dense trained for the same extra epochs; 3. REAP at 50%."""
    blocks = "[" + ", ".join(f"encoder.encoder.layer.{i}" for i in range(6)) + "]"
    upcycle = (
        f"      - {{type: MoEUpcyclingModifier, blocks: {blocks}, num_experts: 4, top_k: 1, "
        "jitter: 0.01, balance_loss: 0.01}\n"
    )
    moe = copy.deepcopy(dense)
    oneshot(moe, f"stages:\n  u:\n    run_type: oneshot\n    modifiers:\n{upcycle}")
    extra = copy.deepcopy(dense)
    for _ in range(extra_epochs):
        train(moe, data["train"], stage(EPOCH))
        train(extra, data["train"], None)
    moe_acc, moe_facts = measure_conditional(moe, lambda: accuracy(moe, data["test"]))
    result: dict[str, Any] = {"moe4_top1": {"accuracy": moe_acc, **moe_facts}}
    result["dense_extra"] = {
        "accuracy": accuracy(extra, data["test"]),
        "parameters": sum(p.numel() for p in extra.parameters()),
    }
    print(json.dumps(result), flush=True)

    reap = "      - {type: REAPPruningModifier, sparsity: 0.5}\n"
    calibration = [x for x, _ in data["train"][:16]]
    oneshot(moe, f"stages:\n  r:\n    run_type: oneshot\n    modifiers:\n{reap}", calibration)
    reap_acc, reap_facts = measure_conditional(moe, lambda: accuracy(moe, data["test"]))
    result["moe4_reap50"] = {"accuracy": reap_acc, "of_moe": reap_acc / moe_acc, **reap_facts}
    print(json.dumps(result["moe4_reap50"]), flush=True)
    return result


if __name__ == "__main__":
    main()
