"""Int8 vs fp32 inference speed on this CPU, measured side by side in one run.

- MiniLM classifier (6 pretrained blocks), dynamic int8 Linear layers, batch 64, seq len 48,
  on real Rotten Tomatoes reviews; also prints the sentence-embedding cosine to fp32.
- cnn_small, static int8 (fused conv-bn-relu, calibrated on 8 batches), batch 64.

Prints the median time of each and the fp32 / int8 ratio (higher is better for int8).
Runs alternate between the models so a noisy neighbour slows both alike.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def _median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        for fn in runs.values():
            fn()  # warm-up: packing, allocator
        for _ in range(repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _report(title: str, times: dict[str, float]) -> None:
    fp32, int8 = times["fp32"], times["int8"]
    print(
        f"{title}: fp32 {fp32 * 1e3:.1f} ms, int8 {int8 * 1e3:.1f} ms, speed-up {fp32 / int8:.2f}x"
    )


def _reviews(n: int) -> list[str]:
    from zoo.data.sources import get_dataset_spec

    spec = get_dataset_spec("rotten_tomatoes")
    texts = spec.read(spec.locate())[0]["text"]
    return [str(t) for t in texts[:n]]


def _pooled(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    states = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).float()
    return (states * weights).sum(1) / weights.sum(1)


def bench_minilm(repeats: int) -> dict[str, float]:
    from zoo.models import get_model
    from zoo.models.text import load_tokenizer
    from zoo.modifiers.quantization import quantize_dynamic

    torch.manual_seed(0)
    fp32 = get_model("minilm_classifier").eval()
    int8 = copy.deepcopy(fp32)
    plan = quantize_dynamic(int8)
    batch = load_tokenizer()(
        _reviews(64), padding="max_length", truncation=True, max_length=48, return_tensors="pt"
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    times = _median_times(
        {"fp32": lambda: fp32(ids, mask), "int8": lambda: int8(ids, mask)}, repeats
    )
    with torch.inference_mode():
        cosine = torch.nn.functional.cosine_similarity(
            _pooled(int8, ids, mask), _pooled(fp32, ids, mask), dim=1
        )
    _report(
        f"minilm dynamic int8 ({len(plan.dynamic)} Linear, reduce_range={plan.reduce_range}), "
        "64 Rotten Tomatoes reviews x seq 48",
        times,
    )
    low, mean = float(cosine.min()), float(cosine.mean())
    print(f"  sentence-embedding cosine int8 vs fp32: min {low:.4f}, mean {mean:.4f}")
    return times


def bench_cnn(repeats: int) -> dict[str, float]:
    from zoo.models import get_model
    from zoo.modifiers.quantization import quantize_static

    torch.manual_seed(0)
    fp32: nn.Module = get_model("cnn_small").eval()
    int8 = copy.deepcopy(fp32)
    x = torch.randn(64, 1, 28, 28)
    quantize_static(int8, [torch.randn(64, 1, 28, 28) for _ in range(8)])
    times = _median_times({"fp32": lambda: fp32(x), "int8": lambda: int8(x)}, repeats)
    _report("cnn_small static int8 (untrained weights, speed only), batch 64", times)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, engine x86")
    bench_minilm(args.repeats)
    bench_cnn(args.repeats * 4)


if __name__ == "__main__":
    main()
