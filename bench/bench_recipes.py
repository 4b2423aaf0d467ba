"""Recipe overheads, measured in one run (run: .venv/bin/python bench/bench_recipes.py).

1. Time of one training step of cnn_small (batch 64, 28x28) under a GMP + QAT recipe,
   divided by a plain training step (target <= 1.5). Steps alternate between the two
   models so machine noise hits both; the median of each is compared.
2. Wall time of SparseGPT (50% unstructured and 2:4) over the whole MiniLM encoder (36
   Linear layers) with 128 real movie-review sequences as calibration data.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from zoo.models import get_model
from zoo.recipes import RecipeManager, oneshot

GMP_QAT = """
schema_version: 1
stages:
  train:
    run_type: train
    modifiers:
      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 4}
      - type: GMPruningModifier
        params: __ALL_PRUNABLE__
        init_sparsity: 0.05
        final_sparsity: 0.8
        start_epoch: 0
        end_epoch: 3
        update_frequency: 0.5
      - {type: QuantizationModifier, start_epoch: 0}
"""

GMP_ONLY = GMP_QAT.replace("      - {type: QuantizationModifier, start_epoch: 0}\n", "")

SPARSEGPT = """
sparsity_stage:
  run_type: oneshot
  sparsity_modifiers:
    SparseGPTModifier:
      sparsity: 0.5
      block_size: 128
      dampening_frac: 0.01
      mask_structure: "{pattern}"
      targets: [Linear]
      ignore: [classifier]
"""


def _step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    start = time.perf_counter()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def bench_training(recipe: str, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    torch.manual_seed(0)
    plain = get_model("cnn_small")
    modified = copy.deepcopy(plain)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    opt_mod = torch.optim.SGD(modified.parameters(), lr=0.01, momentum=0.9)
    manager = RecipeManager.from_yaml(recipe)
    # 2 steps per epoch: every GMP update (each 0.5 epoch) happens inside the timed window
    manager.modify(modified, opt_mod, steps_per_epoch=max(2, steps // 8))
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    times_plain, times_mod = [], []
    for i in range(warmup + steps):
        tp = _step(plain, opt_plain, x, y)
        tm = _step(modified, opt_mod, x, y)
        if i >= warmup:
            times_plain.append(tp)
            times_mod.append(tm)
    manager.finalize()
    return times_plain, times_mod


def review_texts(count: int) -> list[str]:
    """Real Rotten Tomatoes reviews: the prepared split if present, else the shipped source."""
    prepared = Path("data/rotten_tomatoes")
    try:
        from zoo.data.loaders import read_split

        texts = [str(t) for t in read_split(prepared, "train")["text"]]
    except Exception:  # not prepared yet: read the package the data stage reads
        from zoo.data.sources import _read_rotten_tomatoes, get_dataset_spec, verified_source_dir

        arrays, _ = _read_rotten_tomatoes(verified_source_dir(get_dataset_spec("rotten_tomatoes")))
        texts = [str(t) for t in arrays["text"]]
    return texts[:count]


def bench_sparsegpt(pattern: str, sequences: int, batch: int, max_length: int) -> float:
    from zoo.models.text import load_tokenizer

    tokenizer = load_tokenizer()
    texts = review_texts(sequences)
    calibration = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(
            texts[i : i + batch],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        calibration.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    model = get_model("minilm_classifier").eval()
    start = time.perf_counter()
    oneshot(model, SPARSEGPT.format(pattern=pattern), calibration)
    elapsed = time.perf_counter() - start
    linears = [
        m.weight
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.startswith("encoder.")
    ]
    zeros = sum(int((w == 0).sum()) for w in linears) / sum(w.numel() for w in linears)
    print(
        f"  SparseGPT {pattern:>12}: {elapsed:6.1f} s wall for {len(linears)} Linear layers, "
        f"{len(texts)} sequences (max {max_length} tokens); encoder sparsity {zeros:.3f}"
    )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sequences", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    print("training step, cnn_small, batch 64 (median; min in brackets):")
    for name, recipe in (("GMP + QAT", GMP_QAT), ("GMP only", GMP_ONLY)):
        plain, modified = bench_training(recipe, args.steps, args.warmup)
        p_med, m_med = statistics.median(plain), statistics.median(modified)
        print(
            f"  {name:>9}: plain {p_med * 1e3:6.1f} ms [{min(plain) * 1e3:.1f}], "
            f"under recipe {m_med * 1e3:6.1f} ms [{min(modified) * 1e3:.1f}], "
            f"ratio {m_med / p_med:.2f} [{min(modified) / min(plain):.2f}] (target <= 1.5)"
        )

    print("SparseGPT one-shot, whole MiniLM encoder:")
    for pattern in ("unstructured", "2:4"):
        bench_sparsegpt(pattern, args.sequences, 16, args.max_length)


if __name__ == "__main__":
    main()
