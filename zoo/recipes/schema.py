"""Typed recipe objects: a Recipe is named stages of typed modifiers.

Time inside a stage is in epochs relative to the stage's start. Train stages run one after
another; a stage lasts until the latest finite ``end_epoch`` of its modifiers (an
EpochRangeModifier states it explicitly). `Recipe.timeline()` lays all train stages on one
absolute epoch axis, which is what the manager schedules.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from zoo.modifiers.base import Modifier

SCHEMA_VERSION = 1
RunType = Literal["oneshot", "train"]
RUN_TYPES: tuple[str, ...] = ("oneshot", "train")


@dataclass
class Stage:
    name: str
    run_type: RunType
    modifiers: list[Modifier] = field(default_factory=list)

    def length(self) -> float:
        """Epochs this stage lasts: the latest finite end (or start) of its modifiers."""
        ends = [e for m in self.modifiers for e in m.epoch_range() if e != math.inf]
        return max(ends, default=0.0)


@dataclass
class Recipe:
    stages: list[Stage]
    variables: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    source: str = "<recipe>"
    legacy: bool = False

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        from zoo.errors import RecipeError, suggest

        names = [s.name for s in self.stages]
        raise RecipeError(f"no stage {name!r}.{suggest(name, names)}", file=self.source)

    def modifiers(self) -> list[tuple[Stage, int, Modifier]]:
        return [(s, i, m) for s in self.stages for i, m in enumerate(s.modifiers)]

    def timeline(self) -> list[tuple[Stage, int, Modifier]]:
        """Modifiers of the train stages with epochs on one absolute axis (copies)."""
        train = [s for s in self.stages if s.run_type == "train"]
        placed: list[tuple[Stage, int, Modifier]] = []
        offset = 0.0
        for k, stage in enumerate(train):
            last = k == len(train) - 1
            length = stage.length()
            for i, mod in enumerate(stage.modifiers):
                start, end = mod.epoch_range()
                changes: dict[str, Any] = {}
                if offset:
                    changes["start_epoch"] = start + offset
                if end != math.inf and offset:
                    changes["end_epoch"] = end + offset
                elif end == math.inf and not last:
                    # "never ends" means "until this stage ends" when another follows
                    changes["end_epoch"] = max(length, start) + offset
                if changes:
                    copy = dataclasses.replace(mod, **changes)
                    copy.__dict__.setdefault("_written_as", getattr(mod, "_written_as", {}))
                    mod = copy
                placed.append((stage, i, mod))
            offset += length
        return placed

    def to_dict(self) -> dict[str, Any]:
        """The native form with every value resolved (variables kept for reference)."""
        return {
            "schema_version": self.schema_version,
            "variables": dict(self.variables),
            "stages": {
                stage.name: {
                    "run_type": stage.run_type,
                    "modifiers": [{"type": m.type_name, **m.to_dict()} for m in stage.modifiers],
                }
                for stage in self.stages
            },
        }

    @property
    def max_epochs(self) -> float:
        """Epochs of training the recipe schedules (0 for a one-shot-only recipe)."""
        ends = [e for _, _, m in self.timeline() for e in m.epoch_range() if e != math.inf]
        return max(ends, default=0.0)
