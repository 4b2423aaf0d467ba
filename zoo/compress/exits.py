"""The `early_exit` transform: {"exits": [layer, ...], "criterion", "threshold"}.

Exit heads and the early-exit forward (zoo.modifiers.early_exit) are attached to the
skeleton before the weights load; the recorded threshold is the chosen operating point."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.compress.transform import Recording
from zoo.errors import CompressedFormatError
from zoo.modifiers import early_exit


def record(rec: Recording) -> dict[str, Any] | None:
    spec = early_exit.exit_spec(rec.model)
    if spec is None:
        return None
    early_exit.attach(rec.reference, spec["exits"], spec["criterion"], spec["threshold"])
    return {"type": "early_exit", **spec}


def replay(model: nn.Module, transform: dict[str, Any]) -> None:
    exits, criterion = transform.get("exits"), transform.get("criterion")
    threshold = transform.get("threshold")
    if (
        not isinstance(exits, list)
        or not all(isinstance(i, int) for i in exits)
        or criterion not in ("entropy", "max_prob")
        or not isinstance(threshold, int | float)
    ):
        raise CompressedFormatError(f"malformed early_exit entry in config.json: {transform!r}")
    try:
        early_exit.attach(model, exits, criterion, float(threshold))
    except (IndexError, TypeError) as exc:
        raise CompressedFormatError(
            f"cannot replay early_exit on this architecture: {exc}"
        ) from None
