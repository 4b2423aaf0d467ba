"""The compressed-tensors check on the demo's real MiniLM exports (`make ct-check`).

For each of minilm_dense, minilm_sparsegpt50, minilm_sparsegpt24 and minilm_int8 (from
`make demo`'s models/export/): write the compressed-tensors folder, load it with
`transformers.AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)` (the zoo's own MiniLM class, see zoo/deploy/modeling_zoo_text.py),
and compare its logits with the zoo's on Rotten Tomatoes test reviews (cosine, and how often
both predict the same class); then decompress the folder with compressed-tensors'
ModelCompressor and compare every Linear weight with the zoo's. Prints a table and writes
OUT/ct_check.json.

    python bench/ct_demo_check.py [--exports models/export] [--out build/ct_check] [--reviews 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ENTRIES = ("minilm_dense", "minilm_sparsegpt50", "minilm_sparsegpt24", "minilm_int8")
FLOORS = {"minilm_int8": 0.99}  # lossless formats: 0.9999
BATCH = 64


def _reviews(count: int) -> dict[str, torch.Tensor]:
    """The first `count` reviews of the seeded test split (seed 0, as `make demo` splits)."""
    from zoo.data.prepare import make_splits
    from zoo.data.sources import get_dataset_spec
    from zoo.models.text import load_tokenizer

    spec = get_dataset_spec("rotten_tomatoes")
    test = make_splits(spec, spec.locate(), seed=0)["test"]
    texts = [str(t) for t in test["text"][:count]]
    encoded = load_tokenizer()(
        texts, padding=True, truncation=True, max_length=128, return_tensors="pt"
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def _logits(model: Any, batch: dict[str, torch.Tensor], hf: bool) -> torch.Tensor:
    outs = []
    with torch.inference_mode():
        for start in range(0, len(batch["input_ids"]), BATCH):
            part = {k: v[start : start + BATCH] for k, v in batch.items()}
            out = model(**part)
            outs.append(out.logits if hf else out)
    return torch.cat(outs)


def _zoo_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    found = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        weight = weight() if callable(weight) else weight
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and "embeddings" not in name:
            found[name.replace("encoder.", "bert.", 1) if name.startswith("encoder.") else name] = (
                weight.dequantize() if weight.is_quantized else weight
            )
    return found


def check(entry: str, exports: Path, out: Path, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    from compressed_tensors.compressors import ModelCompressor
    from transformers import AutoModelForSequenceClassification, CompressedTensorsConfig

    from zoo.client.load import load_folder
    from zoo.deploy.compressed_tensors import export_compressed_tensors
    from zoo.models.hf import quiet_transformers

    zoo_model = load_folder(exports / entry, verify=True)
    started = time.perf_counter()
    written = export_compressed_tensors(zoo_model, out / entry, what=entry)
    seconds = time.perf_counter() - started
    with quiet_transformers():
        hf = AutoModelForSequenceClassification.from_pretrained(
            str(out / entry), trust_remote_code=True
        ).eval()
    ours, theirs = _logits(zoo_model, batch, False), _logits(hf, batch, True)
    cosine = float(F.cosine_similarity(ours.flatten().double(), theirs.flatten().double(), dim=0))
    agree = float((ours.argmax(1) == theirs.argmax(1)).float().mean())
    # compressed-tensors' own decompression of the stored weights
    with quiet_transformers():
        stored = AutoModelForSequenceClassification.from_pretrained(
            str(out / entry), trust_remote_code=True
        )
    section = json.loads((out / entry / "config.json").read_text()).get("quantization_config")
    if section and section.get("config_groups"):
        ModelCompressor.from_compression_config(
            CompressedTensorsConfig.from_dict(section)
        ).decompress_model(stored)
    decompressed = {
        n: m.weight.detach() for n, m in stored.named_modules() if isinstance(m, nn.Linear)
    }
    zoo_weights = _zoo_weights(zoo_model)
    worst = max(
        float((decompressed[n].float() - w.float()).abs().max()) for n, w in zoo_weights.items()
    )
    size = sum(p.stat().st_size for p in (out / entry).glob("*.safetensors"))
    return {
        "entry": entry,
        "format": written.weight_format,
        "sparsity_structure": written.sparsity_structure,
        "global_sparsity": written.sparsity,
        "cosine": round(cosine, 6),
        "floor": FLOORS.get(entry, 0.9999),
        "same_prediction": round(agree, 4),
        "max_weight_difference": worst,
        "weights_bytes": size,
        "export_seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=Path, default=Path("models/export"))
    parser.add_argument("--out", type=Path, default=Path("build/ct_check"))
    parser.add_argument("--reviews", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    missing = [e for e in ENTRIES if not (args.exports / e).is_dir()]
    if missing:
        print(
            f"ct-check: {', '.join(missing)} not in {args.exports}: run `make demo` first",
            file=sys.stderr,
        )
        return 2
    batch = _reviews(args.reviews)
    rows = [check(entry, args.exports, args.out, batch) for entry in ENTRIES]
    print(
        f"{'entry':20} {'format':14} {'sparsity':>18} {'cosine':>9} {'floor':>7} "
        f"{'same class':>10} {'max |dw|':>9}"
    )
    for r in rows:
        sparse = f"{r['global_sparsity']:.1%} {r['sparsity_structure'] or ''}".strip()
        print(
            f"{r['entry']:20} {r['format']:14} {sparse:>18} {r['cosine']:>9.6f} "
            f"{r['floor']:>7} {r['same_prediction']:>10.2%} {r['max_weight_difference']:>9.2e}"
        )
    (args.out / "ct_check.json").write_text(json.dumps(rows, indent=2) + "\n")
    failed = [r["entry"] for r in rows if r["cosine"] < r["floor"]]
    if failed:
        print(f"ct-check: below the floor: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
