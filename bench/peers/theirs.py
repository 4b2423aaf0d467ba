"""llm-compressor's side of `make bench-peers`; runs in .venv-peers, never in .venv.

    .venv-peers/bin/python bench/peers/theirs.py --dense DIR --calibration FILE --out DIR

Rebuilds the dense MiniLM classifier from our checkpoint (safetensors + JSON config) as a
transformers BertModel under the same small head, applies each recipe of recipes.py with
llm-compressor's `oneshot` on the given calibration batches, and writes the compressed
encoder Linear weights (`<recipe>.safetensors`) and the wall time of each `oneshot` call
(`timings.json`) to --out. Errors and accuracy are measured by bench/peers_minilm.py, with
the same code and inputs for both sides.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

# zoo itself (for the classifier's forward) and recipes.py import here without .venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.peers.recipes import RECIPES, TARGETS

BATCH = 32


def classifier_class() -> type:
    """zoo.models.text.TextClassifier as a transformers PreTrainedModel (same names, forward).

    llm-compressor's oneshot requires a PreTrainedModel (it patches save_pretrained and
    reads config); built in a function so importing does no work.
    """
    from transformers import BertModel, BertPreTrainedModel

    from zoo.models.text import TextClassifier

    class Classifier(BertPreTrainedModel):  # type: ignore[misc]
        def __init__(self, config: object, num_classes: int, dropout: float) -> None:
            super().__init__(config)
            self.encoder = BertModel(config, add_pooling_layer=False)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(config.hidden_size, num_classes)

        forward = TextClassifier.forward

    return Classifier


def load_dense(folder: Path, config_dir: Path) -> nn.Module:
    from transformers import BertConfig

    config = json.loads((folder / "config.json").read_text())
    if config.get("arch") != "minilm_classifier":
        raise SystemExit(f"{folder}: expected a minilm_classifier checkpoint, not {config}")
    kwargs = config["kwargs"]
    encoder_config = BertConfig(**kwargs["encoder_config"])
    # oneshot re-reads the model's config from disk (model.config.name_or_path) to check
    # that it is not already quantized: give it the dense encoder's own config there.
    encoder_config.save_pretrained(config_dir)
    encoder_config.name_or_path = str(config_dir)
    model = classifier_class()(encoder_config, kwargs["num_classes"], kwargs["dropout"])
    state = load_file(folder / config["weights"]["path"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    # position_ids style buffers may differ between transformers versions; weights may not.
    if [k for k in missing if not k.endswith("_ids")] or unexpected:
        raise SystemExit(
            f"{folder}: weights do not fit: missing {missing}, unexpected {unexpected}"
        )
    return model.eval()


def encoder_linears(model: nn.Module) -> dict[str, torch.Tensor]:
    pattern = re.compile(TARGETS.removeprefix("re:"))
    return {
        f"{name}.weight": module.weight.detach().clone().contiguous()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and pattern.search(name)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True, help="the encoder's folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    from llmcompressor import oneshot
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    # oneshot wants a processor whenever it is given data, even pre-tokenized batches.
    tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer))

    calibration = load_file(args.calibration)
    rows = [{k: v[i] for k, v in calibration.items()} for i in range(len(calibration["input_ids"]))]
    loader = DataLoader(rows, batch_size=BATCH, shuffle=False)
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for name in args.recipes.split(","):
        model = load_dense(args.dense, args.out / "hf_config")
        started = time.perf_counter()
        oneshot(
            model=model,
            processor=tokenizer,
            dataset=loader,
            recipe=RECIPES[name],
            num_calibration_samples=len(rows),
            sequential_targets=["BertLayer"],
        )
        timings[name] = round(time.perf_counter() - started, 2)
        print(f"llm-compressor {name}: {timings[name]} s", flush=True)
        save_file(encoder_linears(model), args.out / f"{name}.safetensors")
    (args.out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
