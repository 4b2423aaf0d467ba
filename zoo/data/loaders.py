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
from torch.utils.data import DataLoader, Dataset, Sampler

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


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of similar-length texts (what transformers' group_by_length does).

    Each epoch shuffles the examples, sorts them by length within windows of
    `window` batches, cuts the windows into batches and shuffles the batches. A batch then
    trims most of its padding, which halves a text epoch here, while the examples a batch
    holds stay random beyond their length.
    """

    def __init__(
        self, lengths: torch.Tensor, batch_size: int, generator: torch.Generator, window: int = 50
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.generator = generator
        self.window = window

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        span = self.batch_size * self.window
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            part = order[start : start + span]
            part = part[torch.argsort(self.lengths[part], descending=True, stable=True)]
            batches += [
                part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)
            ]
        for index in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[index]


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
        mask = self.inputs.get("attention_mask")
        if shuffle and mask is not None:
            return DataLoader(
                TensorBatches(self.inputs, self.labels),
                batch_sampler=LengthGroupedBatches(mask.sum(1), batch_size, generator),
                collate_fn=collate,
                num_workers=0,
            )
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

    def length_order(self) -> torch.Tensor | None:
        """Indices that sort text examples by length (None for images).

        Batches of similar length trim most of their padding, which is most of the work
        of evaluating a text model; the order itself is stable, so results are repeatable.
        """
        mask = self.inputs.get("attention_mask")
        if mask is None:
            return None
        return torch.argsort(mask.sum(1), stable=True)

    def subset(self, indices: torch.Tensor) -> SplitTensors:
        return SplitTensors(
            self.spec, {k: v[indices] for k, v in self.inputs.items()}, self.labels[indices]
        )


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
