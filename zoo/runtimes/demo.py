"""The demo's exports (models/export/<entry>) with their real data, for the runtime
benchmark and the ONNX agreement check (bench/runtimes.py, bench/onnx_agreement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.data.loaders import SplitTensors, load_split
from zoo.pipeline.entries import EntryConfig, entry_config
from zoo.pipeline.params import load_params

Inputs = dict[str, torch.Tensor]
# As the benchmark stage: real reviews padded to 48 tokens, so every batch is alike.
BENCH_SEQUENCE_LENGTH = 48


@dataclass
class DemoEntry:
    config: EntryConfig
    folder: Path
    model: nn.Module

    @property
    def key(self) -> str:
        return self.config.key


@dataclass
class DemoSetup:
    params: dict[str, Any]
    exports: Path
    data_root: Path

    @classmethod
    def at(cls, params: Path, exports: Path, data_root: Path) -> DemoSetup:
        return cls(load_params(params), exports, data_root)

    def keys(self) -> list[str]:
        return sorted(self.params.get("zoo", {}))

    def entry(self, key: str) -> DemoEntry:
        from zoo.compress.load import load_exported

        config = entry_config(self.params, key)
        folder = self.exports / key
        return DemoEntry(config, folder, load_exported(folder).eval())

    def split(
        self, entry: DemoEntry, split: str, limit: int | None = None, max_length: int | None = None
    ) -> SplitTensors:
        from zoo.models import arch_config_of
        from zoo.pipeline.dense import text_tokenizer

        tokenizer = text_tokenizer(arch_config_of(entry.model).arch, entry.config.tokenizer)
        return load_split(
            self.data_root / entry.config.data,
            split,
            limit=limit,
            tokenizer=tokenizer,
            max_length=max_length or entry.config.max_length,
        )


def batches(data: SplitTensors, size: int) -> list[Inputs]:
    """`data`'s inputs cut into batches of `size` (the last one may be shorter)."""
    n = len(data)
    return [{k: v[i : i + size] for k, v in data.inputs.items()} for i in range(0, n, size)]


def repeat_to(data: SplitTensors, size: int) -> Inputs:
    """The first `size` examples, cycling through `data` when it holds fewer."""
    index = torch.arange(size) % len(data)
    return {k: v[index] for k, v in data.inputs.items()}
