"""Any transformers model as a zoo architecture (`hf`): sequence classifiers and causal LMs.

`hf_model(path=...)` loads a model folder (or a Hub repo id already in the local Hugging
Face cache; nothing is downloaded) through AutoModelForSequenceClassification or
AutoModelForCausalLM and wraps it so that `forward(input_ids, attention_mask)` returns the
logits tensor, as every zoo flow, export sample and benchmark expects. The wrapper records
the resolved config (not the path) as its ArchConfig, so an exported or downloaded model
rebuilds on any machine without the original folder; its weights come from the export.

transformers is imported inside the functions: it is slow to import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ModelSourceError, UnsupportedArchitectureError
from zoo.models.arch import ArchConfig, set_arch_config

CAUSAL_LM = "causal_lm"
SEQUENCE_CLASSIFICATION = "sequence_classification"
TASKS = (CAUSAL_LM, SEQUENCE_CLASSIFICATION)
#: Model types named first when a config cannot be wrapped (the rest are counted).
_FAMILIAR = ("llama", "mistral", "mixtral", "qwen2", "gemma", "phi3", "gpt2", "bert", "roberta")
_SUFFIXES = {CAUSAL_LM: "ForCausalLM", SEQUENCE_CLASSIFICATION: "ForSequenceClassification"}


class HFModel(nn.Module):
    """A transformers model whose forward returns its logits (a tensor, not a ModelOutput)."""

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits


def resolve_source(path: str | Path) -> Path:
    """The local folder of `path`: a folder with config.json, or a Hub repo id's snapshot in
    the local Hugging Face cache (offline: never downloaded)."""
    folder = Path(path).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise ModelSourceError(f"model path {folder} is a file; give the model's folder")
        if not (folder / "config.json").is_file():
            raise ModelSourceError(
                f"model path {folder} holds no config.json: it is not a transformers model "
                "folder (save one with model.save_pretrained(folder))"
            )
        return folder
    return _cached_snapshot(str(path))


def _cached_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
        found = Path(snapshot_download(repo_id, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError, OSError) as exc:
        raise ModelSourceError(
            f"model path {repo_id!r} does not exist, and no Hub repo of that name is in the "
            f"local Hugging Face cache ({type(exc).__name__}). Give a model folder, or "
            "download the repo on a connected machine first (huggingface-cli download)"
        ) from None
    if not (found / "config.json").is_file():
        raise ModelSourceError(f"the cached snapshot of {repo_id!r} holds no config.json")
    return found


def _mappings() -> dict[str, dict[str, str]]:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    return {
        CAUSAL_LM: dict(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
        SEQUENCE_CLASSIFICATION: dict(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES),
    }


def resolve_task(config: Any, task: str = "auto") -> str:
    """The task to wrap `config` for: `task` itself, or ("auto") what its `architectures`
    name, else the one task transformers supports for its model type."""
    kind = type(config).__name__
    model_type = getattr(config, "model_type", None)
    mappings = _mappings()
    if task == "auto":
        named = [
            t
            for t in TASKS
            for arch in getattr(config, "architectures", None) or []
            if arch.endswith(_SUFFIXES[t])
        ]
        possible = [t for t in TASKS if model_type in mappings[t]]
        candidates = named or possible
        if len(set(candidates)) != 1:
            raise UnsupportedArchitectureError(
                f"cannot tell which task to wrap {kind} (model_type {model_type!r}, "
                f"architectures {getattr(config, 'architectures', None)}) for: "
                + (f"it supports {', '.join(possible)}; " if possible else "")
                + f"pass task= one of {', '.join(TASKS)}"
            )
        task = candidates[0]
    if task not in TASKS:
        raise UnsupportedArchitectureError(
            f"task {task!r} is not supported; the hf architecture wraps {', '.join(TASKS)}"
        )
    if model_type not in mappings[task]:
        known = mappings[task]
        shown = [t for t in _FAMILIAR if t in known]
        raise UnsupportedArchitectureError(
            f"{kind} (model_type {model_type!r}) cannot be wrapped for {task}: transformers' "
            f"AutoModel{_SUFFIXES[task]} has no class for it. It supports {len(known)} model "
            f"types, e.g. {', '.join(shown)}"
        )
    return task


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Without transformers' load reports ("newly initialised head": expected here) and
    progress bars, which would only be noise in a zoo run's output."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _config_from_dict(data: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    rest = dict(data)
    model_type = rest.pop("model_type", None)
    if not model_type:
        raise UnsupportedArchitectureError("the hf config names no model_type")
    return AutoConfig.for_model(model_type, **rest)


def hf_model(
    path: str | None = None,
    task: str = "auto",
    num_classes: int | None = None,
    config: dict[str, Any] | None = None,
    pretrained: bool = True,
) -> nn.Module:
    """A transformers model from `path` (folder or cached Hub repo id) or from `config`.

    `task`: "causal_lm", "sequence_classification" or "auto" (from the config).
    `num_classes` sets a classifier's number of labels (its head is then new). With
    `pretrained` false, or with only a `config`, the weights are random: the zoo loads
    exports that way and then fills in their weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    if config is None and path is None:
        raise ModelSourceError("the hf architecture needs a model path (or a config)")
    folder = resolve_source(path) if config is None and path is not None else None
    hf_config = AutoConfig.from_pretrained(str(folder)) if folder else _config_from_dict(config or {})
    task = resolve_task(hf_config, task)
    if task == SEQUENCE_CLASSIFICATION and num_classes is not None:
        hf_config.num_labels = int(num_classes)
    hf_config.use_cache = False  # logits only: no key/value cache to carry or export
    auto = AutoModelForCausalLM if task == CAUSAL_LM else AutoModelForSequenceClassification
    with quiet_transformers():
        if folder is not None and pretrained:
            # A new number of labels means a new head: its old weights are dropped.
            mismatched = num_classes is not None and task == SEQUENCE_CLASSIFICATION
            model = auto.from_pretrained(
                str(folder), config=hf_config, ignore_mismatched_sizes=mismatched
            )
        else:
            model = auto.from_config(hf_config)
    wrapper = HFModel(model.float().eval(), task)
    set_arch_config(
        wrapper, ArchConfig("hf", {"config": hf_config.to_dict(), "task": task, "pretrained": False})
    )
    return wrapper


def tokenizer_folder(model: nn.Module, fallback: str | Path | None = None) -> Path | None:
    """Where a wrapped model's tokenizer lives: its source folder, if it came from one."""
    source = getattr(getattr(model, "model", None), "name_or_path", None) or fallback
    return Path(source) if source and Path(source).is_dir() else None
