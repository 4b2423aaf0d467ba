"""What changed between two versions: metrics, benchmarks, facts, files and recipe."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from zoo.index.schema import Entry


@dataclass(frozen=True)
class Change:
    section: str  # "metrics", "benchmarks", "facts", "files"
    key: str  # e.g. "fashion_mnist/accuracy"
    old: Any
    new: Any

    @property
    def delta(self) -> float | None:
        numbers = (int, float)
        if isinstance(self.old, numbers) and isinstance(self.new, numbers):
            if isinstance(self.old, bool) or isinstance(self.new, bool):
                return None
            return float(self.new) - float(self.old)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "delta": self.delta,
        }


@dataclass(frozen=True)
class EntryDiff:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)
    recipe_diff: str = ""

    @property
    def same(self) -> bool:
        return not self.changes and not self.recipe_diff

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "changes": [c.to_dict() for c in self.changes],
            "recipe_diff": self.recipe_diff,
        }


def _nested(
    section: str, old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> list[Change]:
    out = []
    for group in sorted(set(old) | set(new)):
        a, b = old.get(group, {}), new.get(group, {})
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append(Change(section, f"{group}/{name}", a.get(name), b.get(name)))
    return out


def diff_entries(
    old: Entry, new: Entry, old_recipe: str | None = None, new_recipe: str | None = None
) -> EntryDiff:
    changes = _nested("metrics", old.metrics, new.metrics)
    changes += _nested("benchmarks", old.benchmarks, new.benchmarks)
    facts = {
        "size": (old.size, new.size),
        "parameters": (old.parameters, new.parameters),
        "sparsity": (old.sparsity.overall, new.sparsity.overall),
        "sparsity.structure": (old.sparsity.structure, new.sparsity.structure),
        "quantization": (old.quantization.scheme, new.quantization.scheme),
        "lineage.parent": (old.lineage.parent, new.lineage.parent),
        "lineage.recipe_hash": (old.lineage.recipe_hash, new.lineage.recipe_hash),
        "lineage.data_hash": (old.lineage.data_hash, new.lineage.data_hash),
        "lineage.git_commit": (old.lineage.git_commit, new.lineage.git_commit),
    }
    changes += [Change("facts", k, a, b) for k, (a, b) in facts.items() if a != b]
    old_files = {f.path: f.sha256 for f in old.files}
    new_files = {f.path: f.sha256 for f in new.files}
    for path in sorted(set(old_files) | set(new_files)):
        a, b = old_files.get(path), new_files.get(path)
        if a != b:
            changes.append(Change("files", path, a and a[:12], b and b[:12]))
    recipe_diff = ""
    if (old_recipe or "") != (new_recipe or ""):
        recipe_diff = "".join(
            difflib.unified_diff(
                (old_recipe or "").splitlines(keepends=True),
                (new_recipe or "").splitlines(keepends=True),
                fromfile=f"{old.ref}/{old.recipe or 'recipe'}",
                tofile=f"{new.ref}/{new.recipe or 'recipe'}",
            )
        )
    return EntryDiff(old.ref, new.ref, changes, recipe_diff)
