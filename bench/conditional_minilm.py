"""Conditional computation on MiniLM / Rotten Tomatoes, measured in one run against dense.

From a dense MiniLM fine-tuned on the reviews (`--dense models/dense/text`, the pipeline's,
on its own splits with `--data data/rotten_tomatoes`: what `make bench-conditional` runs;
without `--dense` one is trained here for an epoch), in one process, on the whole splits
unless `--train/--val/--test` cut them:

1. Early exit: exits after every encoder layer but the last, trained by self-distillation
   with the backbone frozen for `--exit-epochs` over the training split; the entropy
   threshold is swept on the validation split (the evaluate stage's 40-point sweep) and the
   fastest point within 1 accuracy point of the full model is kept. Reported: test
   accuracy lost and mean batch-1 latency over the test split against the dense model, the
   models timed interleaved example by example; beside it, the same model with exits that
   never fire (what the exits and the layer-by-layer forward cost on their own).
   target: >= 1.5x lower latency at <= 1 point lost
2. Upcycling: every layer's feed-forward block -> 4 experts, top-1, trained for `--extra`
   epochs with the Switch balance loss, against the dense model trained for the same
   extra epochs on the same batches in the same order at the same learning rate (same
   active parameters per example, measured), for each of `--seeds` seeds; reported with
   the binomial standard error and the paired one of the difference.
   target: MoE >= dense-extra
3. REAP: half of the upcycled model's experts removed one-shot.  target: >= 98% of MoE

Usage: .venv/bin/python bench/conditional_minilm.py --dense models/dense/text
--data data/rotten_tomatoes [--parts early_exit,moe] [--seeds 2] [--out FILE]
[--readme README.md]. `--readme` rewrites the block between the README's
`<!-- bench-conditional -->` markers with the printed tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zoo.evaluation.conditional import choose_exit_threshold, measure_conditional
from zoo.evaluation.conditional_names import exit_sweep
from zoo.models import get_model
from zoo.models.text import load_tokenizer
from zoo.modifiers import early_exit
from zoo.recipes import RecipeManager, oneshot

Batch = tuple[dict[str, torch.Tensor], torch.Tensor]
Splits = dict[str, tuple[list[str], list[int]]]
MAX_LENGTH = 48
README_START, README_END = "<!-- bench-conditional -->", "<!-- /bench-conditional -->"


def splits(sizes: dict[str, int | None]) -> Splits:
    """The shipped reviews shuffled and cut 80 / 10 / 10 (as the pipeline cuts them)."""
    from zoo.data.sources import get_dataset_spec

    spec = get_dataset_spec("rotten_tomatoes")
    train, _ = spec.read(spec.locate())
    rows = list(zip([str(t) for t in train["text"]], [int(y) for y in train["y"]], strict=True))
    random.Random(0).shuffle(rows)
    tenth = len(rows) // 10
    cut = {"val": rows[:tenth], "test": rows[tenth : 2 * tenth], "train": rows[2 * tenth :]}
    return {
        k: ([t for t, _ in v[: sizes[k]]], [y for _, y in v[: sizes[k]]]) for k, v in cut.items()
    }


def prepared_splits(folder: Path, sizes: dict[str, int | None]) -> Splits:
    """The pipeline's own splits (data/rotten_tomatoes): a dense model it trained never saw
    their val / test rows."""
    from zoo.data.loaders import read_split

    out = {}
    for split, n in sizes.items():
        arrays = read_split(folder, split)
        out[split] = ([str(t) for t in arrays["text"][:n]], [int(y) for y in arrays["y"][:n]])
    return out


def batches(tokenizer: Any, texts: list[str], labels: list[int], size: int) -> list[Batch]:
    """Batches of reviews of similar length (sorted by tokens): padding costs little, and
    masked attention and mean pooling make the answers independent of it."""
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    ]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    out = []
    for i in range(0, len(order), size):
        rows = order[i : i + size]
        enc = tokenizer(
            [texts[r] for r in rows],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        )
        inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        out.append((inputs, torch.tensor([labels[r] for r in rows])))
    return out


def train(
    model: nn.Module, data: list[Batch], recipe: str | None, lr: float, seed: int, epochs: int = 1
) -> None:
    """`epochs` over `data`, the batches in an order fixed by `seed` (the same for every
    model trained with that seed), dropout and router jitter seeded too."""
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    manager = RecipeManager.from_yaml(recipe) if recipe else None
    if manager is not None:
        manager.modify(model, optimizer, steps_per_epoch=len(data))
    for epoch in range(epochs):
        order = list(range(len(data)))
        random.Random(seed * 1000 + epoch).shuffle(order)
        for index in order:
            inputs, labels = data[index]
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
def predictions(model: nn.Module, data: list[Batch]) -> torch.Tensor:
    """Per test example: was the model right (in the batches' order)?"""
    model.eval()
    return torch.cat([model(**x).argmax(-1) == y for x, y in data])


def share(right: torch.Tensor) -> float:
    """The fraction of examples right, exactly (no float32 rounding in the report)."""
    return int(right.sum()) / max(1, right.numel())


def standard_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy `p` over `n` examples."""
    return math.sqrt(p * (1 - p) / n)


def paired_standard_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Standard error of accuracy(a) - accuracy(b) on the same examples (from the
    examples they disagree on, as McNemar's test): tighter than two binomial errors."""
    diff = a.float() - b.float()
    return float(diff.std(unbiased=True) / math.sqrt(diff.numel())) if diff.numel() > 1 else 0.0


@torch.no_grad()
def batch1_latency(
    models: dict[str, nn.Module], examples: list[Batch]
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean wall-clock and CPU ms per single example, the models timed interleaved example
    by example (a change in the machine's load hits all of them alike). On a quiet machine
    the two agree; on a shared one the CPU time is the steadier figure."""
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    for model in models.values():
        model.eval()
        for inputs, _ in examples[:10]:  # warm-up
            model(**inputs)
    for inputs, _ in examples:
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model(**inputs)
            cpu[name].append(1000 * (time.process_time() - start_cpu))
            wall[name].append(1000 * (time.perf_counter() - start))
    return (
        {k: statistics.fmean(v) for k, v in wall.items()},
        {k: statistics.fmean(v) for k, v in cpu.items()},
    )


def stage(text: str, epochs: int = 1) -> str:
    epoch = f"      - {{type: EpochRangeModifier, start_epoch: 0, end_epoch: {epochs}}}\n"
    return f"stages:\n  s:\n    run_type: train\n    modifiers:\n{epoch}{text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for split in ("train", "val", "test"):
        parser.add_argument(f"--{split}", type=int, help=f"first N {split} reviews (all)")
    parser.add_argument("--exit-epochs", type=int, default=1, help="epochs training the exits")
    parser.add_argument("--exit-lr", type=float, default=2e-3, help="the exits' learning rate")
    parser.add_argument(
        "--joint",
        action="store_true",
        help="train the backbone with the exits (at --extra-lr; exits at --exit-lr, weighted "
        "by depth) instead of freezing it",
    )
    parser.add_argument("--extra", type=int, default=1, help="extra epochs for MoE / dense")
    parser.add_argument("--extra-lr", type=float, default=5e-5, help="lr of those epochs")
    parser.add_argument("--seeds", type=int, default=2, help="MoE / dense-extra seeds")
    parser.add_argument("--latency-examples", type=int, help="first N test reviews (all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--readme", type=Path, help="rewrite its bench-conditional block")
    parser.add_argument("--dense", type=Path, help="a trained dense MiniLM folder to start from")
    parser.add_argument("--data", type=Path, help="a prepared data folder: use its splits")
    parser.add_argument(
        "--parts", default="early_exit,moe", help="comma-separated: early_exit, moe (+REAP)"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"early_exit", "moe"}:
        parser.error(f"--parts takes early_exit and/or moe, got {args.parts!r}")
    if args.seeds < 1 or args.exit_epochs < 1 or args.extra < 1:
        parser.error("--seeds, --exit-epochs and --extra take a count >= 1")
    for given, what in ((args.dense, "dense model"), (args.data, "data")):
        if given is not None and not given.is_dir():
            parser.error(f"no {what} folder {given}: make demo (dvc repro) makes it")
    if args.readme and README_START not in args.readme.read_text():
        parser.error(f"{args.readme} has no {README_START} ... {README_END} block to rewrite")
    torch.manual_seed(0)
    tokenizer = load_tokenizer()
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    texts = prepared_splits(args.data, sizes) if args.data else splits(sizes)
    data = {k: batches(tokenizer, *v, size=32) for k, v in texts.items()}
    report: dict[str, Any] = {
        "examples": {k: len(v[1]) for k, v in texts.items()},
        "torch_threads": torch.get_num_threads(),
    }
    began = time.perf_counter()
    log = _logger(began)

    if args.dense:
        from zoo.pipeline.model_io import load_model_folder

        dense = load_model_folder(args.dense).eval()
        report["dense_from"] = str(args.dense)
    else:
        dense = get_model("minilm_classifier").eval()
        train(dense, data["train"], None, lr=5e-5, seed=0)
    dense_right = predictions(dense, data["test"])
    report["dense_accuracy"] = share(dense_right)
    log(f"dense: {report['dense_accuracy']:.4f}")

    if "early_exit" in parts:
        singles = [
            (
                {
                    k: v
                    for k, v in tokenizer(
                        text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
                    ).items()
                    if k in ("input_ids", "attention_mask")
                },
                torch.tensor([label]),
            )
            for text, label in zip(*texts["test"], strict=True)
        ][: args.latency_examples]
        report["early_exit"] = measure_early_exit(dense, dense_right, data, singles, args, log)
    if "moe" in parts:
        report.update(measure_moe(dense, dense_right, data, args, log))
    report["seconds"] = time.perf_counter() - began
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    tables = markdown(report, args)
    print(tables, flush=True)
    if args.readme:
        write_readme_block(args.readme, tables)


def _logger(began: float) -> Callable[[str], None]:
    def log(text: str) -> None:
        print(f"[{time.perf_counter() - began:5.0f} s] {text}", flush=True)

    return log


def measure_early_exit(
    dense: nn.Module,
    dense_right: torch.Tensor,
    data: dict[str, list[Batch]],
    singles: list[Batch],
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """1. Exits trained, threshold chosen on validation as the evaluate stage chooses it."""
    ee = copy.deepcopy(dense)
    if args.joint:  # PABEE-style: backbone at the fine-tuning rate, exits weighted by depth
        fields, lr = (
            f"freeze_backbone: false, head_lr: {args.exit_lr}, exit_weights: [1, 2, 3, 4, 5]",
            args.extra_lr,
        )
    else:  # DeeBERT-style: only the exits learn
        fields, lr = "freeze_backbone: true", args.exit_lr
    exits = f"      - {{type: EarlyExitModifier, exits: [0, 1, 2, 3, 4], {fields}}}\n"
    train(
        ee,
        data["train"],
        stage(exits, args.exit_epochs),
        lr=lr,
        seed=0,
        epochs=args.exit_epochs,
    )
    log("exits trained")
    sweep = choose_exit_threshold(ee, data["val"], max_drop=0.01)
    ee_right, facts = measure_conditional(ee, lambda: predictions(ee, data["test"]))
    never = copy.deepcopy(ee)
    early_exit.set_threshold(never, 0.0)  # entropy is never < 0: every layer and exit runs
    latency, cpu = batch1_latency(
        {"dense": dense, "early_exit": ee, "exits_never_fire": never}, singles
    )
    log("early exit measured")
    ee_acc = share(ee_right)
    n = ee_right.numel()
    return {
        "sweep_val": [
            {"threshold": p.threshold, "accuracy": p.accuracy, "mean_layers": p.mean_layers}
            for p in exit_sweep(sweep)
        ],
        "threshold": sweep["exit_threshold"],
        "accuracy": ee_acc,
        "points_lost": 100 * (share(dense_right) - ee_acc),
        "points_lost_se": 100 * paired_standard_error(dense_right, ee_right),
        "test_examples": n,
        "mean_layers_executed": facts.get("mean_layers_executed"),
        "latency_examples": len(singles),
        "batch1_ms": latency,
        "latency_ratio": latency["dense"] / latency["early_exit"],
        "batch1_cpu_ms": cpu,
        "cpu_ratio": cpu["dense"] / cpu["early_exit"],
    }


def measure_moe(
    dense: nn.Module,
    dense_right: torch.Tensor,
    data: dict[str, list[Batch]],
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """2. Upcycling against dense trained for the same extra epochs; 3. REAP at 50%."""
    blocks = "[" + ", ".join(f"encoder.encoder.layer.{i}" for i in range(6)) + "]"
    upcycle = (
        f"      - {{type: MoEUpcyclingModifier, blocks: {blocks}, num_experts: 4, top_k: 1, "
        "jitter: 0.01, balance_loss: 0.01}\n"
    )
    reap = "      - {type: REAPPruningModifier, sparsity: 0.5}\n"
    calibration = [x for x, _ in data["train"][:: max(1, len(data["train"]) // 16)][:16]]
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        moe = copy.deepcopy(dense)
        oneshot(moe, f"stages:\n  u:\n    run_type: oneshot\n    modifiers:\n{upcycle}")
        train(moe, data["train"], stage("", args.extra), args.extra_lr, seed, args.extra)
        extra = copy.deepcopy(dense)
        train(extra, data["train"], None, args.extra_lr, seed, args.extra)
        moe_right, moe_facts = measure_conditional(moe, lambda m=moe: predictions(m, data["test"]))
        extra_right = predictions(extra, data["test"])
        oneshot(moe, f"stages:\n  r:\n    run_type: oneshot\n    modifiers:\n{reap}", calibration)
        reap_right, reap_facts = measure_conditional(
            moe, lambda m=moe: predictions(m, data["test"])
        )
        run = {
            "seed": seed,
            "moe4_top1": {"accuracy": share(moe_right), **moe_facts},
            "dense_extra": {
                "accuracy": share(extra_right),
                "parameters": sum(p.numel() for p in extra.parameters()),
            },
            "moe_minus_dense_extra_se": paired_standard_error(moe_right, extra_right),
            "moe4_reap50": {"accuracy": share(reap_right), **reap_facts},
        }
        run["moe4_reap50"]["of_moe"] = run["moe4_reap50"]["accuracy"] / run["moe4_top1"]["accuracy"]
        runs.append(run)
        log(
            f"seed {seed}: moe {run['moe4_top1']['accuracy']:.4f}, dense+extra "
            f"{run['dense_extra']['accuracy']:.4f}, reap50 {run['moe4_reap50']['accuracy']:.4f}"
        )
    return {"moe_runs": runs, "moe_summary": summarise(runs, dense_right.numel())}


def summarise(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Mean and spread across seeds of each model's accuracy, with the binomial error."""
    out: dict[str, Any] = {}
    for name in ("moe4_top1", "dense_extra", "moe4_reap50"):
        values = [r[name]["accuracy"] for r in runs]
        mean = statistics.fmean(values)
        out[name] = {
            "accuracy_mean": mean,
            "accuracy_min": min(values),
            "accuracy_max": max(values),
            "accuracy_sd": statistics.stdev(values) if len(values) > 1 else None,
            "binomial_se": standard_error(mean, n),
        }
    out["moe_minus_dense_extra"] = statistics.fmean(
        r["moe4_top1"]["accuracy"] - r["dense_extra"]["accuracy"] for r in runs
    )
    out["reap50_of_moe"] = statistics.fmean(r["moe4_reap50"]["of_moe"] for r in runs)
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    """The README's tables for this run."""
    n = report["examples"]
    lines = [
        f"Measured by `make bench-conditional` (`bench/conditional_minilm.py`; "
        f"{n['train']:,} training, {n['val']:,} validation and {n['test']:,} test reviews, "
        f"{report['torch_threads']} torch thread(s), {report['seconds'] / 60:.1f} min).",
        "",
    ]
    dense = report["dense_accuracy"]
    if "early_exit" in report:
        ee = report["early_exit"]
        ms = ee["batch1_ms"]
        layers = ee["mean_layers_executed"] or 0.0
        how = "trained jointly" if args.joint else "frozen"
        lines += [
            f"| early exit (exits after layers 0-4, backbone {how}, {args.exit_epochs} "
            "epoch(s)) | value |",
            "| --- | --- |",
            "| threshold chosen on validation (entropy, <= 1 point lost) | "
            f"{ee['threshold']:.4g} |",
            f"| test accuracy: early exit / dense | {_pct(ee['accuracy'])} / {_pct(dense)} "
            f"({-ee['points_lost']:+.1f} +- {ee['points_lost_se']:.1f} points) |",
            f"| test mean layers executed | {layers:.2f} of 6 (layer ratio "
            f"{6 / max(layers, 1e-9):.2f}x) |",
            f"| batch-1 ms, mean over {ee['latency_examples']:,} test reviews: dense / early exit "
            f"/ exits never firing | {ms['dense']:.2f} / {ms['early_exit']:.2f} / "
            f"{ms['exits_never_fire']:.2f} |",
            f"| batch-1 latency ratio dense / early exit | **{ee['latency_ratio']:.2f}x** |",
            f"| the same in CPU time per example (ms: {ee['batch1_cpu_ms']['dense']:.2f} / "
            f"{ee['batch1_cpu_ms']['early_exit']:.2f} / "
            f"{ee['batch1_cpu_ms']['exits_never_fire']:.2f}) | {ee['cpu_ratio']:.2f}x |",
            "",
        ]
    if "moe_summary" in report:
        s = report["moe_summary"]
        runs = report["moe_runs"]
        first = runs[0]

        def cell(name: str) -> str:
            m = s[name]
            spread = (
                f", {_pct(m['accuracy_min'])}-{_pct(m['accuracy_max'])} over {len(runs)} seeds"
                if len(runs) > 1
                else ""
            )
            return f"{_pct(m['accuracy_mean'])} (+- {100 * m['binomial_se']:.1f}{spread})"

        def params(facts: dict[str, Any], key: str) -> str:
            return f"{facts[key] / 1e6:.2f}M"

        dense_params = f"{first['dense_extra']['parameters'] / 1e6:.2f}M"
        paired = statistics.fmean(r["moe_minus_dense_extra_se"] for r in runs)
        lines += [
            f"| model ({n['test']:,} test reviews; +- binomial standard error) | accuracy "
            "| parameters | active per example |",
            "| --- | --- | --- | --- |",
            f"| dense (start) | {_pct(dense)} | {dense_params} | {dense_params} |",
            f"| dense + {args.extra} extra epoch(s) | {cell('dense_extra')} | {dense_params} "
            f"| {dense_params} |",
            f"| upcycled moe4 top-1 + the same epoch(s) | {cell('moe4_top1')} | "
            f"{params(first['moe4_top1'], 'total_parameters')} | "
            f"{params(first['moe4_top1'], 'active_parameters')} |",
            f"| REAP 50% of its experts, one-shot | {cell('moe4_reap50')} "
            f"({_pct(s['reap50_of_moe'])} of the MoE) | "
            f"{params(first['moe4_reap50'], 'total_parameters')} | "
            f"{params(first['moe4_reap50'], 'active_parameters')} |",
            "",
            f"MoE - dense+extra: {100 * s['moe_minus_dense_extra']:+.1f} points (paired "
            f"standard error {100 * paired:.1f}).",
            "",
        ]
    return "\n".join([*lines, f"Floors: {'; '.join(floors(report))}.", ""])


def floors(report: dict[str, Any]) -> list[str]:
    """Issue 14's floors, each met or missed by this run's figures."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    out = []
    if "early_exit" in report:
        ee = report["early_exit"]
        ok = ee["latency_ratio"] >= 1.5 and ee["points_lost"] <= 1.0
        out.append(f"early exit >= 1.5x at <= 1 point lost {verdict(ok)}")
    if "moe_summary" in report:
        s = report["moe_summary"]
        out.append(f"MoE >= dense + extra {verdict(s['moe_minus_dense_extra'] >= 0)}")
        out.append(f"REAP 50% >= 98% of the MoE {verdict(s['reap50_of_moe'] >= 0.98)}")
    return out


def write_readme_block(readme: Path, tables: str) -> None:
    """Replace what lies between the markers, atomically."""
    text = readme.read_text()
    head, _, rest = text.partition(README_START)
    _, _, tail = rest.partition(README_END)
    fresh = readme.with_name(readme.name + ".tmp")
    fresh.write_text(f"{head}{README_START}\n{tables}\n{README_END}{tail}")
    fresh.replace(readme)


if __name__ == "__main__":
    main()
