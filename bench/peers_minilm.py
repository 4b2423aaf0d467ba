"""Our one-shot compressors side by side with llm-compressor itself on the dense MiniLM.

    python bench/peers_minilm.py [--dense models/dense/text] [--data data/rotten_tomatoes]
        [--peers-python .venv-peers/bin/python] [--workdir build/peers]
        [--out metrics/peers_minilm.json]          (or: make bench-peers)

The same recipes (bench/peers/recipes.py, llm-compressor's layout: SparseGPT 50%, SparseGPT
2:4, Wanda 50%, GPTQ W4A16 group 128, GPTQ W8A16) on the same 36 encoder Linear layers
with the same 128 calibration reviews (4 batches of 32, 64 tokens). llm-compressor runs in
its own environment (bench/peers/theirs.py, it pins transformers <= 5.17) and hands back
its compressed weights and wall times; everything else is measured here with one code path:
the relative layer error ||WX - W^X|| / ||WX|| of every layer on the dense model's own
inputs X, its mean, and Rotten Tomatoes test accuracy. Exits 1 when a recipe's mean error
or accuracy is worse than llm-compressor's by more than 2% (the guard of issue 13).
Slow (tens of minutes on a busy machine): a benchmark, not a test. Torch runs on two threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.gptq_minilm import (
    CALIBRATION_REVIEWS,
    dense_input_stats,
    load_reviews,
    relative_error,
)
from bench.peers.recipes import RECIPES, TARGETS

REPO = Path(__file__).resolve().parents[1]

FLOOR = 1.02  # ours / theirs: mean layer error, and their accuracy / ours


def _run_theirs(args: argparse.Namespace, calibration: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    from zoo.models.text import encoder_dir

    args.workdir.mkdir(parents=True, exist_ok=True)
    calibration_file = args.workdir / "calibration.safetensors"
    save_file({k: v.contiguous() for k, v in calibration.items()}, calibration_file)
    out = args.workdir / "theirs"
    command = [
        str(args.peers_python),
        str(REPO / "bench/peers/theirs.py"),
        "--dense", str(args.dense),
        "--calibration", str(calibration_file),
        "--tokenizer", str(encoder_dir()),
        "--out", str(out),
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return out


def _weights(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    return {n: model.get_submodule(n).weight.detach().clone() for n in names}


def _side(
    dense: nn.Module, weights: dict[str, torch.Tensor], stats: dict[str, Any], test: Any
) -> dict[str, Any]:
    """Mean and per-layer relative error of `weights` against dense, and their accuracy."""
    from zoo.training.trainer import evaluate

    errors = {
        n: relative_error(dense.get_submodule(n).weight.detach(), w, stats[n].xtx)
        for n, w in weights.items()
    }
    model = copy.deepcopy(dense)
    with torch.no_grad():
        for n, w in weights.items():
            model.get_submodule(n).weight.copy_(w)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return {
        "mean_layer_error": round(sum(errors.values()) / len(errors), 4),
        "accuracy": round(evaluate(model, test).accuracy, 4),
        "weight_zeros": round(zeros / sum(w.numel() for w in weights.values()), 4),
        "layer_errors": {n: round(e, 5) for n, e in errors.items()},
    }


def _table(recipes: dict[str, Any], dense_accuracy: float) -> str:
    lines = [
        f"dense accuracy {dense_accuracy:.4f}",
        "| recipe | layer error ours / theirs (ratio) | accuracy ours / theirs | "
        "wall s ours / theirs (ratio) |",
        "|---|---|---|---|",
    ]
    for name, r in recipes.items():
        ours, theirs = r["ours"], r["theirs"]
        lines.append(
            f"| {name} | {ours['mean_layer_error']:.4f} / {theirs['mean_layer_error']:.4f} "
            f"({r['error_ratio']:.3f}) | {ours['accuracy']:.4f} / {theirs['accuracy']:.4f} | "
            f"{ours['seconds']:.0f} / {theirs['seconds']:.0f} ({r['time_ratio']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", type=Path, default=REPO / "models/dense/text")
    parser.add_argument("--data", type=Path, default=REPO / "data/rotten_tomatoes")
    parser.add_argument("--peers-python", type=Path, default=REPO / ".venv-peers/bin/python")
    parser.add_argument("--workdir", type=Path, default=REPO / "build/peers")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--theirs",
        type=Path,
        default=None,
        help="reuse llm-compressor's results from this folder (theirs.py --out) "
        "instead of running it",
    )
    args = parser.parse_args()
    if args.theirs is None and not args.peers_python.is_file():
        parser.error(f"{args.peers_python} does not exist: run `make bench-peers`, which makes it")
    torch.set_num_threads(2)
    torch.manual_seed(0)

    from safetensors.torch import load_file

    from zoo.models.checkpoint import load_checkpoint
    from zoo.modifiers.selection import select_params
    from zoo.recipes import oneshot
    from zoo.training.trainer import evaluate

    train, calibration, test = load_reviews(args.data)
    theirs_dir = args.theirs or _run_theirs(args, train.inputs)
    theirs_seconds = json.loads((theirs_dir / "timings.json").read_text())

    dense = load_checkpoint(args.dense).eval()
    names = [n.removesuffix(".weight") for n in select_params(dense, TARGETS)]
    stats = dense_input_stats(dense, calibration, names)
    result: dict[str, Any] = {
        "calibration_reviews": CALIBRATION_REVIEWS,
        "test_reviews": len(test),
        "layers": len(names),
        "dense_accuracy": round(evaluate(dense, test).accuracy, 4),
        "recipes": {},
    }
    failures = []
    for name, recipe in RECIPES.items():
        model = copy.deepcopy(dense)
        started = time.perf_counter()
        oneshot(model, recipe, calibration)
        seconds = time.perf_counter() - started
        ours = _side(dense, _weights(model, names), stats, test) | {"seconds": round(seconds, 1)}
        theirs_weights = load_file(theirs_dir / f"{name}.safetensors")
        theirs = _side(dense, {n: theirs_weights[f"{n}.weight"] for n in names}, stats, test) | {
            "seconds": theirs_seconds[name]
        }
        entry = {
            "error_ratio": round(ours["mean_layer_error"] / theirs["mean_layer_error"], 4),
            "accuracy_ratio": round(theirs["accuracy"] / ours["accuracy"], 4),
            "time_ratio": round(ours["seconds"] / theirs["seconds"], 3),
            "ours": ours,
            "theirs": theirs,
        }
        result["recipes"][name] = entry
        print(
            f"{name}: error {ours['mean_layer_error']} / {theirs['mean_layer_error']}, "
            f"accuracy {ours['accuracy']} / {theirs['accuracy']}, "
            f"seconds {ours['seconds']} / {theirs['seconds']}",
            flush=True,
        )
        for key in ("error_ratio", "accuracy_ratio"):
            if entry[key] > FLOOR:
                failures.append(f"{name}: {key} {entry[key]} > {FLOOR}")

    print(_table(result["recipes"], result["dense_accuracy"]))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    for failure in failures:
        print(f"worse than llm-compressor: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
