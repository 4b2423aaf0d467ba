"""GPTQ, round-to-nearest and SmoothQuant on the trained dense MiniLM (Rotten Tomatoes).

    python bench/gptq_minilm.py [--dense models/dense/text] [--data data/rotten_tomatoes]
                                [--out metrics/gptq_minilm.json]

Measures, with the same 128 calibration reviews (4 batches of 32, max 64 tokens):
1. relative layer output error ||WX - W^X|| / ||WX|| of GPTQ and round-to-nearest on all 36
   encoder Linear layers, each from the dense model's own inputs X (as measured from outside
   against llm-compressor: W4A16 group 128 and W8A16 per channel);
2. test accuracy of dense, GPTQ W4A16 (recipe conf/recipe/minilm_gptq_w4a16.yaml), RTN
   W4A16, and the W4A16 export's linear-weight bytes against fp32 (packed int4 + scales),
   checked to load back with the same predictions;
3. test accuracy of static W8A8 (calibrated int8) with and without SmoothQuant.
Slow (minutes): a benchmark, not a test. Torch runs on two threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
ENCODER_LINEARS = r"re:encoder\.encoder\.layer\.\d+\..*(query|key|value|dense)$"
CALIBRATION_REVIEWS = 128
BATCH = 32

STATIC = """
quant_stage:
  run_type: oneshot
  modifiers:
{smooth}    - type: PostTrainingQuantizationModifier
      ignore: [classifier]
"""
SMOOTH = """    - type: SmoothQuantModifier
      smoothing_strength: {strength}
      mappings: [[["re:.*attention.output.dense"], "re:.*attention.self.value"]]
"""
RTN_W4A16 = f"""
quant_stage:
  quant_modifiers:
    QuantizationModifier:
      targets: ['{ENCODER_LINEARS}']
      scheme: W4A16
"""


def load_reviews(data: Path) -> tuple[Any, list[Any], Any]:
    """The calibration reviews (split and its batches) and the test split, tokenized."""
    from zoo.data import load_split
    from zoo.models.text import load_tokenizer

    tokenizer = load_tokenizer()
    train = load_split(data, "train", limit=CALIBRATION_REVIEWS, tokenizer=tokenizer)
    test = load_split(data, "test", tokenizer=tokenizer)
    return train, [inputs for inputs, _ in train.batches(BATCH)], test


def dense_input_stats(model: nn.Module, calibration: list[Any], names: list[str]) -> dict[str, Any]:
    """Sums over the inputs X of each named Linear (X^T X in .xtx), from one calibration pass."""
    from zoo.modifiers.base import forward_batch
    from zoo.modifiers.pruning_calibrated import _Stats, layer_inputs_2d

    stats = {n: _Stats(want_hessian=True) for n in names}
    handles = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda mod, args, _s=stats[n]: _s.add(layer_inputs_2d(mod, args[0]))
        )
        for n in names
    ]
    with torch.no_grad():
        for batch in calibration:
            forward_batch(model, batch)
    for handle in handles:
        handle.remove()
    return stats


def relative_error(weight: torch.Tensor, new: torch.Tensor, xtx: torch.Tensor) -> float:
    """||WX - W^X|| / ||WX||, from X^T X (the bias cancels in the difference)."""

    def norm(delta: torch.Tensor) -> float:
        return float(((delta @ xtx) * delta).sum().clamp_min(0).sqrt())

    return norm((weight - new).float()) / norm(weight.float())


def _relative_errors(model: nn.Module, calibration: list[Any], grid: Any) -> dict[str, Any]:
    """GPTQ and RTN relative output error per encoder Linear, from the dense inputs."""
    from zoo.modifiers.gptq import gptq_quantize
    from zoo.modifiers.quantization.weight_only import rtn_quantize
    from zoo.modifiers.selection import select_params

    names = [n.removesuffix(".weight") for n in select_params(model, ENCODER_LINEARS)]
    stats = dense_input_stats(model, calibration, names)
    gptq_errors, rtn_errors, seconds = [], [], 0.0
    for name in names:
        weight = model.get_submodule(name).weight.detach()
        xtx = stats[name].xtx
        assert xtx is not None
        started = time.perf_counter()
        gptq, _ = gptq_quantize(weight, stats[name].hessian(), grid)
        seconds += time.perf_counter() - started
        rtn, _ = rtn_quantize(weight, grid)
        gptq_errors.append(relative_error(weight, gptq, xtx))
        rtn_errors.append(relative_error(weight, rtn, xtx))
    return {
        "layers": len(names),
        "gptq_mean": round(sum(gptq_errors) / len(names), 4),
        "rtn_mean": round(sum(rtn_errors) / len(names), 4),
        "gptq_below_rtn_on_every_layer": all(
            g < r for g, r in zip(gptq_errors, rtn_errors, strict=True)
        ),
        "gptq_seconds": round(seconds, 1),
    }


def _linear_bytes(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from zoo.compress.sparse import unpack_state
    from zoo.compress.weight_int import quantized_weight_bytes

    config = json.loads((folder / "config.json").read_text())
    state = unpack_state(load_file(folder / "model.safetensors"), config["compression"]["encoding"])
    stored, fp32 = quantized_weight_bytes(config, state)
    return {"stored": stored, "fp32": fp32, "ratio": round(stored / fp32, 4)}


def _w4a16(dense: nn.Module, calibration: list[Any], test: Any, result: dict[str, Any]) -> None:
    from zoo.compress.export import export_model
    from zoo.compress.load import load_exported
    from zoo.recipes import oneshot
    from zoo.training.trainer import evaluate

    gptq = copy.deepcopy(dense)
    started = time.perf_counter()
    oneshot(gptq, str(REPO / "conf/recipe/minilm_gptq_w4a16.yaml"), calibration)
    result["gptq_w4a16_seconds"] = round(time.perf_counter() - started, 1)
    gptq_eval = evaluate(gptq, test)
    result["gptq_w4a16_accuracy"] = round(gptq_eval.accuracy, 4)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gptq"
        export_model(gptq, folder, sample_inputs=calibration[0])
        result["gptq_w4a16_linear_bytes"] = _linear_bytes(folder)
        loaded = evaluate(load_exported(folder), test)
        result["gptq_w4a16_loaded_same_predictions"] = loaded.accuracy == gptq_eval.accuracy

    rtn = copy.deepcopy(dense)
    oneshot(rtn, RTN_W4A16, calibration)
    result["rtn_w4a16_accuracy"] = round(evaluate(rtn, test).accuracy, 4)


def _static(dense: nn.Module, calibration: list[Any], test: Any, result: dict[str, Any]) -> None:
    from zoo.recipes import oneshot
    from zoo.training.trainer import evaluate

    variants = {
        "static_w8a8": "",
        "static_w8a8_smoothquant_0.5": SMOOTH.format(strength=0.5),
        "static_w8a8_smoothquant_0.8": SMOOTH.format(strength=0.8),
    }
    for label, smooth in variants.items():
        model = copy.deepcopy(dense)
        oneshot(model, STATIC.format(smooth=smooth), calibration)
        result[f"{label}_accuracy"] = round(evaluate(model, test).accuracy, 4)


class _Results(dict[str, Any]):
    """Prints each figure as it is measured: a long run that fails late keeps the rest."""

    def __setitem__(self, key: str, value: Any) -> None:
        print(f"{key}: {json.dumps(value)}", flush=True)
        super().__setitem__(key, value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", type=Path, default=REPO / "models/dense/text")
    parser.add_argument("--data", type=Path, default=REPO / "data/rotten_tomatoes")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--parts", default="layers,w4a16,static", help="comma-separated: layers, w4a16, static"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    from zoo.models.checkpoint import load_checkpoint
    from zoo.modifiers.quantization.weight_only import WeightGrid
    from zoo.training.trainer import evaluate

    _, calibration, test = load_reviews(args.data)
    dense = load_checkpoint(args.dense).eval()
    result = _Results({"calibration_reviews": CALIBRATION_REVIEWS, "test_reviews": len(test)})
    result["dense_accuracy"] = round(evaluate(dense, test).accuracy, 4)

    parts = set(args.parts.split(","))
    if "layers" in parts:
        result["layer_error_w4a16_g128"] = _relative_errors(dense, calibration, WeightGrid(4, 128))
        result["layer_error_w8a16"] = _relative_errors(dense, calibration, WeightGrid(8))
    if "w4a16" in parts:
        _w4a16(dense, calibration, test, result)
    if "static" in parts:
        _static(dense, calibration, test, result)

    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
