"""LoRA adapters in the saved-model format: a transform of full exports, and adapter entries.

Two ways an adapter is saved:

- Inside a full export (the `adapter` row of zoo/compress/format.py's TRANSFORMS): a model
  trained with ``merge: none`` still holds peft's LoRA layers; `record` writes the LoRA
  settings to config.json and `replay` injects the same layers into the fresh skeleton, so
  the saved state (base + adapter tensors) loads back as it was.
- As an entry of its own (`write_adapter_export`), in peft's format, so
  ``peft.PeftModel.from_pretrained(base, folder)`` loads it: ``adapter_config.json`` (peft's
  LoraConfig, `base_model_name_or_path` = the exact base stub@version) and
  ``adapter_model.safetensors`` (keys ``base_model.model.<module>.lora_A.weight``, as
  ``PeftModel.save_pretrained`` writes them), plus zoo.json with `lineage.parent` = the base.
  `compose` puts such a folder onto a loaded base, checking every name and shape first.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.compress.transform import Recording
from zoo.errors import AdapterError, CompressedFormatError
from zoo.index.adapters import CONFIG_FILE, WEIGHTS_FILE, exact_parent
from zoo.modifiers.lora import ADAPTER_NAME, lora_layers

#: The prefix PeftModel puts before module names in adapter_model.safetensors.
PEFT_PREFIX = "base_model.model."
#: LoraConfig fields the zoo writes and replays; anything else peft adds stays at its default.
_SETTINGS = ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")


def lora_settings(model: nn.Module) -> dict[str, Any] | None:
    """The LoRA settings of the adapter injected in `model` (JSON-able), or None."""
    if not lora_layers(model):
        return None
    config = getattr(model, "peft_config", {}).get(ADAPTER_NAME)
    if config is None:
        raise CompressedFormatError("the model holds LoRA layers but no peft config")
    settings = {k: getattr(config, k) for k in _SETTINGS}
    if isinstance(settings["target_modules"], set):
        settings["target_modules"] = sorted(settings["target_modules"])
    return settings


def _check_targets(model: nn.Module, targets: str | list[str]) -> None:
    """Each target names a module of `model` as peft matches it (a string is a regex over
    whole names; a list entry is a name or a dotted suffix), else an AdapterError naming it."""
    names = [n for n, _ in model.named_modules() if n]
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error as exc:
            raise AdapterError(f"the adapter's target_modules {targets!r}: {exc}") from exc
        missing = [] if any(pattern.fullmatch(n) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise AdapterError(
            f"the adapter's target_modules {missing[0]!r} matches no module of the base "
            f"({type(model).__name__}, e.g. {', '.join(names[:3]) or 'none'}): this adapter "
            "was trained on another base"
        )


def inject(model: nn.Module, settings: dict[str, Any]) -> nn.Module:
    """Put LoRA layers with `settings` into `model`, in place (peft's injection)."""
    import peft

    _check_targets(model, settings["target_modules"])
    try:
        config = peft.LoraConfig(**settings)
        return peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    except (TypeError, ValueError) as exc:
        raise AdapterError(f"the adapter does not fit the base model: {exc}") from exc


# ---- the `adapter` transform of full exports -------------------------------------------
def record(rec: Recording) -> dict[str, Any] | None:
    settings = lora_settings(rec.model)
    if settings is None:
        return None
    inject(rec.reference, settings)  # later transforms compare against the same structure
    return {"type": "adapter", "lora": settings}


def replay(model: nn.Module, entry: dict[str, Any]) -> None:
    settings = entry.get("lora")
    if not isinstance(settings, dict) or set(settings) != set(_SETTINGS):
        raise CompressedFormatError(
            f"config.json's adapter transform needs `lora` with {', '.join(_SETTINGS)}"
        )
    inject(model, settings)


# ---- adapter entries in peft's format --------------------------------------------------
def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors keyed as PeftModel.save_pretrained keys them."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME)
    return {PEFT_PREFIX + k: v.detach().contiguous() for k, v in state.items()}


def write_adapter_export(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    parent: str,
    stub: str | None = None,
    metrics: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the adapter of `model` (trained with ``merge: none``) as an export folder in
    peft's format, atomically; `parent` is the exact base stub@version it was trained on."""
    import peft
    from safetensors.torch import save_file

    from zoo.fsutil import atomic_dir
    from zoo.index.export import ExportMeta
    from zoo.index.schema import Lineage

    exact_parent(parent)
    settings = lora_settings(model)
    if settings is None:
        raise AdapterError("the model holds no LoRA adapter: train it with merge: none")
    with atomic_dir(folder) as tmp:
        config = peft.LoraConfig(**settings, base_model_name_or_path=parent, inference_mode=True)
        config.save_pretrained(str(tmp))
        save_file(adapter_tensors(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = ExportMeta(stub=stub, metrics=metrics or {}, lineage=Lineage(parent=parent))
        (tmp / "zoo.json").write_text(meta.to_json())
    return Path(folder)


def compose(base: nn.Module, folder: str | os.PathLike[str]) -> nn.Module:
    """`base` with the adapter in `folder` put on it (in place), in eval mode. Every name and
    shape is checked against the base first: a misfit is one AdapterError naming it."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(folder)
    settings = _read_settings(root)
    try:
        tensors = load_file(str(root / WEIGHTS_FILE))
    except (OSError, SafetensorError) as exc:
        raise AdapterError(f"{root / WEIGHTS_FILE}: cannot read the adapter: {exc}") from exc
    inject(base, settings)
    expected = adapter_tensors(base)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise AdapterError(
            f"{root / WEIGHTS_FILE} does not fit the base: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise AdapterError(
                f"{root / WEIGHTS_FILE}: {key} is {list(value.shape)} but the base's layer "
                f"needs {list(expected[key].shape)}: this adapter was trained on another base"
            )
    set_peft_model_state_dict(base, {k[len(PEFT_PREFIX) :]: v for k, v in tensors.items()})
    return base.eval()


def _read_settings(root: Path) -> dict[str, Any]:
    path = root / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: cannot read the adapter config: {exc}") from exc
    if not isinstance(data, dict) or data.get("peft_type") != "LORA":
        raise AdapterError(f"{path}: not a LoRA adapter config (peft_type must be 'LORA')")
    checks = {
        "r": lambda v: isinstance(v, int) and v >= 1,
        "lora_alpha": lambda v: isinstance(v, int | float) and v > 0,
        "lora_dropout": lambda v: isinstance(v, int | float) and 0 <= v < 1,
        "target_modules": lambda v: (
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v))
        ),
        "modules_to_save": lambda v: (
            v is None or (isinstance(v, list) and all(isinstance(t, str) for t in v))
        ),
    }
    for key, ok in checks.items():
        if not ok(data.get(key)):
            raise AdapterError(f"{path}: {key} = {data.get(key)!r} is not valid")
    return {k: data[k] for k in _SETTINGS}
