"""The zoo's entries as configured in params.yaml (`zoo:`), and the settings they share.

One entry is one model of the demo zoo: where it starts from (`parent`), which `flow`
makes it (dense, oneshot, train, transfer), under which `recipe`, on which dataset, under
which stub it is published, and which dense entry it is measured against (`baseline`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError
from zoo.training.config import from_mapping

FLOWS = ("dense", "oneshot", "train", "transfer")
MODEL_ROOT = "models/zoo"


@dataclass(frozen=True)
class StudentConfig:
    """A fresh architecture trained under the recipe, with the parent as its teacher."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryConfig:
    key: str
    flow: str
    parent: str  # folder of the model it starts from (a dense checkpoint or a zoo model)
    data: str  # dataset it is trained, calibrated and evaluated on
    stub: str  # zoo:<domain>/<task>/<arch>/<dataset>/<sparse_tag>
    baseline: str  # key of the dense entry it is compared with
    recipe: str
    student: StudentConfig | None = None
    batch_size: int = 128
    lr: float = 0.001  # initial learning rate; LR modifiers in the recipe take over from it
    weight_decay: float = 0.0
    max_length: int = 64  # text: tokens per example
    limit_train: int | None = None  # train on the first N examples only (with compress's)
    tokenizer: str | None = None  # text: folder of the tokenizer (hf models: their folder)
    # Values for the recipe's own `variables` (e.g. sparsity, num_epochs): how a search
    # varies one recipe without a file per point (zoo/nas checks the names beforehand).
    recipe_variables: dict[str, Any] | None = None
    # Early exit: the evaluate stage sweeps the threshold on the validation split and keeps
    # the fastest point losing at most `exit_max_drop` accuracy (0.01: one point) against
    # the full model, or `exit_threshold` when given.
    exit_max_drop: float = 0.01
    exit_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.flow not in FLOWS:
            raise ConfigError(f"zoo.{self.key}.flow: {self.flow!r} is not one of {FLOWS}")
        if not 0.0 <= self.exit_max_drop < 1.0:
            raise ConfigError(
                f"zoo.{self.key}.exit_max_drop: an accuracy fraction in [0, 1) (0.01 is one "
                f"point), got {self.exit_max_drop}"
            )
        if self.exit_threshold is not None and not self.exit_threshold >= 0.0:
            raise ConfigError(
                f"zoo.{self.key}.exit_threshold: must be >= 0 (an entropy, or a top "
                f"probability), got {self.exit_threshold}"
            )

    @property
    def is_distillation(self) -> bool:
        return self.student is not None


@dataclass(frozen=True)
class CompressSettings:
    """Shared by every entry; the smoke experiment shrinks the data, not the schedules."""

    limit_train: int | None = None
    limit_eval: int | None = None
    calibration_examples: int = 256
    calibration_batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    rounds: int = 30
    budget_s: float = 4.0
    warmup: int = 3
    sample_examples: int = 8  # sample inputs/outputs shipped with an export
    # Also time each entry on these runtimes (zoo.runtimes.table), in the same rounds.
    runtimes: list[str] = field(default_factory=list)


def entry_config(params: Mapping[str, Any], key: str) -> EntryConfig:
    entries = params.get("zoo")
    if not isinstance(entries, Mapping) or key not in entries:
        known = sorted(entries) if isinstance(entries, Mapping) else []
        from zoo.errors import UnknownNameError

        raise UnknownNameError("zoo entry", key, known)
    raw = dict(entries[key])
    student = raw.pop("student", None)
    entry = from_mapping(EntryConfig, {"key": key, **raw}, f"zoo.{key}")
    if student is not None:
        parsed = from_mapping(StudentConfig, student, f"zoo.{key}.student")
        entry = EntryConfig(**{**entry.__dict__, "student": parsed})
    if entry.tokenizer is None:
        entry = EntryConfig(**{**entry.__dict__, "tokenizer": _text_model_folder(params)})
    if entry.baseline not in entries:
        raise ConfigError(f"zoo.{key}.baseline: no entry named {entry.baseline!r}")
    return entry


def _text_model_folder(params: Mapping[str, Any]) -> str | None:
    """The folder of the text flow's model when it is a transformers model (`hf`): entries
    read its tokenizer unless they name their own."""
    model = params.get("text", {}).get("model", {})
    if model.get("name") != "hf":
        return None
    path = model.get("kwargs", {}).get("path")
    return str(path) if path else None


def compress_settings(params: Mapping[str, Any]) -> CompressSettings:
    return from_mapping(CompressSettings, params.get("compress", {}), "compress")


def bench_settings(params: Mapping[str, Any]) -> BenchSettings:
    return from_mapping(BenchSettings, params.get("bench", {}), "bench")


def model_dir(key: str) -> str:
    return f"{MODEL_ROOT}/{key}"
