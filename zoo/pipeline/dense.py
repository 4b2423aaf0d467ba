"""Dense training stage: build the flow's model for its dataset, train, evaluate, save."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from torch import nn

from zoo.data.loaders import SplitTensors, dataset_spec_of, load_split
from zoo.data.sources import DatasetSpec
from zoo.errors import ConfigError
from zoo.fsutil import atomic_write_json, atomic_write_text
from zoo.models import get_model, get_model_spec
from zoo.models.checkpoint import save_checkpoint
from zoo.pipeline.params import DataConfig, FlowConfig, ModelConfig, train_key
from zoo.training import evaluate, seed_everything, train
from zoo.training.distributed import World, check_batch_size, start, stop


def is_text_model(model_name: str) -> bool:
    return "input_ids" in get_model_spec(model_name).inputs


def input_size_kwargs(model_name: str, spec: DatasetSpec) -> dict[str, Any]:
    """The architecture arguments that follow from the dataset's image size."""
    if spec.image_shape is None:
        return {}
    by_model = {
        "mlp": {"in_features": math.prod(spec.image_shape)},
        "cnn_small": {"image_size": spec.image_shape[0]},
    }
    return by_model.get(model_name, {})


def build_model_for(model_cfg: ModelConfig, spec: DatasetSpec, seed: int) -> nn.Module:
    """Build the architecture with the dataset's facts (classes, input size) filled in."""
    wants_text = is_text_model(model_cfg.name)
    if wants_text != (spec.kind == "text"):
        raise ConfigError(
            f"model {model_cfg.name!r} takes {'text' if wants_text else 'images'} but dataset "
            f"{spec.name!r} holds {spec.kind}s; pick a matching model or dataset"
        )
    kwargs: dict[str, Any] = {
        "num_classes": spec.num_classes,
        **input_size_kwargs(model_cfg.name, spec),
        **model_cfg.kwargs,
    }
    seed_everything(seed)  # the same seed gives the same initial weights
    try:
        return get_model(model_cfg.name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build model {model_cfg.name!r} with {kwargs}: {exc}") from exc


def text_tokenizer(model_name: str, folder: str | Path | None = None) -> Any:
    """The tokenizer a text model reads: the one saved in `folder` (a transformers model
    folder, for the `hf` architecture), else the shipped MiniLM's; None for image models."""
    if not is_text_model(model_name):
        return None
    if model_name == "hf" and folder is None:
        raise ConfigError(
            "the hf architecture needs its tokenizer's folder: set the model's kwargs.path "
            "(dense flow) or the zoo entry's `tokenizer`"
        )
    from zoo.models.text import load_tokenizer

    return load_tokenizer(folder)


def load_flow_splits(
    data_dir: Path, data_cfg: DataConfig, model_name: str, tokenizer_folder: str | None = None
) -> dict[str, SplitTensors]:
    tokenizer = text_tokenizer(model_name, tokenizer_folder)
    return {
        split: load_split(
            data_dir,
            split,
            limit=data_cfg.limit_train if split == "train" else data_cfg.limit_eval,
            tokenizer=tokenizer,
            max_length=data_cfg.max_length,
        )
        for split in ("train", "val", "test")
    }


# Training curves as DVC plots. Wall time per epoch stays in the logs: a tracked output
# that changes on every run would make re-running a stage look like a change downstream.
CURVE_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def history_csv(history: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def run_dense_stage(
    cfg: FlowConfig, data_dir: Path, out_dir: Path, metrics_path: Path, plots_path: Path
) -> dict[str, Any]:
    """Train the flow's dense model; write checkpoint, metrics and training curves."""
    spec = dataset_spec_of(data_dir)
    if spec.name != cfg.data.name:
        raise ConfigError(
            f"{data_dir} holds dataset {spec.name!r} but the config asks for {cfg.data.name!r}"
        )
    world = start(cfg.train.distributed)
    try:
        return _train_and_write(cfg, spec, data_dir, out_dir, metrics_path, plots_path, world)
    finally:
        stop(world)


def _train_and_write(
    cfg: FlowConfig,
    spec: DatasetSpec,
    data_dir: Path,
    out_dir: Path,
    metrics_path: Path,
    plots_path: Path,
    world: World,
) -> dict[str, Any]:
    check_batch_size(cfg.train.batch_size, world.size, train_key(cfg.flow))
    model = build_model_for(cfg.model, spec, cfg.train.seed)
    splits = load_flow_splits(data_dir, cfg.data, cfg.model.name, cfg.model.kwargs.get("path"))
    started = time.perf_counter()
    history = train(
        model, splits["train"], splits["val"], cfg.train, desc=f"dense {cfg.flow}", world=world
    )
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {
        split: evaluate(model, tensors, cfg.train.eval_batch_size).as_metrics()
        for split, tensors in splits.items()
    }
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    if world.size > 1:
        metrics["distributed"] = {"world_size": world.size, "train_seconds": round(seconds, 2)}
    if not world.is_main:
        return metrics  # only rank 0 writes; its replica is identical (checked by train)
    print(f"dense {cfg.flow}: trained in {seconds:.1f} s")
    extra = {
        "dataset": spec.name,
        "classes": list(spec.classes),
        "flow": cfg.flow,
        **({"max_length": cfg.data.max_length} if spec.kind == "text" else {}),
    }
    # Outputs land only when everything succeeded: each write is atomic.
    save_checkpoint(model, out_dir, extra=extra)
    atomic_write_json(metrics_path, metrics)
    atomic_write_text(plots_path, history_csv(history))
    return metrics
