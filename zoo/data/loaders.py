"""Load prepared splits as tensors and batches the models take.

A batch is `(inputs, labels)` where `inputs` is a dict keyed by the model's forward()
argument names, so one training loop serves image and text models alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data.prepare import META, SPLITS
from zoo.data.sources import DatasetSpec, get_dataset_spec
from zoo.errors import ConfigError, UnknownNameError

Inputs = dict[str, torch.Tensor]
Batch = tuple[Inputs, torch.Tensor]


def read_split(data_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS)
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: prepare the dataset first "
            f"(dvc repro prepare, or python pipelines/prepare_data.py)"
        )
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def dataset_spec_of(data_dir: str | Path) -> DatasetSpec:
    meta = json.loads((Path(data_dir) / META).read_text())
    return get_dataset_spec(meta["dataset"])


def image_tensor(pixels: np.ndarray, spec: DatasetSpec) -> torch.Tensor:
    """uint8 [N, H, W] -> float32 [N, 1, H, W] scaled to [-1, 1]."""
    x = torch.from_numpy(pixels.astype(np.float32) / spec.pixel_max)
    return ((x - 0.5) / 0.5).unsqueeze(1)


class TensorBatches(Dataset[Batch]):
    """Pre-built input tensors indexed per example; collate trims text padding per batch."""

    def __init__(self, inputs: Inputs, labels: torch.Tensor) -> None:
        self.inputs = inputs
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Batch:
        return {k: v[index] for k, v in self.inputs.items()}, self.labels[index]


def collate(items: list[Batch]) -> Batch:
    inputs = {k: torch.stack([it[0][k] for it in items]) for k in items[0][0]}
    labels = torch.stack([it[1] for it in items])
    if "attention_mask" in inputs:
        # Sequences were padded to max_length once; keep only the columns this batch uses.
        width = int(inputs["attention_mask"].sum(1).max())
        inputs = {k: v[:, :width] for k, v in inputs.items()}
    return inputs, labels


@dataclass(frozen=True)
class SplitTensors:
    """One split ready for a model: its inputs, labels, and the dataset they came from."""

    spec: DatasetSpec
    inputs: Inputs
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorBatches(self.inputs, self.labels),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=collate,
            num_workers=0,  # deterministic and cheap: the data already sits in memory
        )

    def batches(self, batch_size: int) -> Iterator[Batch]:
        yield from self.loader(batch_size)


def load_split(
    data_dir: str | Path,
    split: str,
    limit: int | None = None,
    tokenizer: Any = None,
    max_length: int = 64,
) -> SplitTensors:
    """Load one split; text needs the model's `tokenizer`; `limit` keeps the first N."""
    spec = dataset_spec_of(data_dir)
    arrays = read_split(data_dir, split)
    if limit is not None:
        arrays = {k: v[:limit] for k, v in arrays.items()}
    labels = torch.from_numpy(arrays["y"].astype(np.int64))
    if spec.kind == "image":
        return SplitTensors(spec, {"x": image_tensor(arrays["x"], spec)}, labels)
    if tokenizer is None:
        raise ConfigError(f"dataset {spec.name!r} is text: a tokenizer is needed to load it")
    encoded = tokenizer(
        [str(t) for t in arrays["text"]],
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    inputs = {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
    }
    return SplitTensors(spec, inputs, labels)
