"""`zoo index verify`: recompute what the index claims about every entry and compare.

For each version of each stub: the entry object's own sha256, its stub and version, and
for each file the blob's size and sha256, and for safetensors files the parameter count
and zero count (hence sparsity) recomputed from the bytes; and the model's parameters and
non-zeros (what search and the catalog show) recounted on the loaded model. Aliases must
point at existing versions. Every problem names the entry and the file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import BlobNotFoundError, ZooError
from zoo.index.schema import Entry, FileRecord, format_version
from zoo.index.tensors import TensorStats, safetensors_stats
from zoo.index.view import IndexView, read_entry
from zoo.storage.base import Store


@dataclass(frozen=True)
class BlobFacts:
    size: int
    sha256: str
    stats: TensorStats | None
    error: str | None = None


@dataclass
class VerifyReport:
    generation: int
    entries: int
    blobs: int
    problems: list[str]
    repaired: list[str] = field(default_factory=list)  # sha256 of blobs replaced

    @property
    def ok(self) -> bool:
        return not self.problems


def _blob_facts(store: Store, record: FileRecord, workdir: Path) -> BlobFacts:
    digest = hashlib.sha256()
    size = 0
    path = workdir / record.sha256
    try:
        with open(path, "wb") as out:
            for block in store.iter_blob(record.sha256, 0, record.size + 1):
                digest.update(block)
                size += len(block)
                out.write(block)
        stats = None
        if record.path.endswith(".safetensors"):
            try:
                stats = safetensors_stats(path)
            except ZooError as exc:
                return BlobFacts(size, digest.hexdigest(), None, f"unreadable safetensors: {exc}")
        return BlobFacts(size, digest.hexdigest(), stats)
    except BlobNotFoundError:
        return BlobFacts(-1, "", None, "blob is missing from the store")
    finally:
        path.unlink(missing_ok=True)


def _check_file(entry: Entry, record: FileRecord, facts: BlobFacts) -> list[str]:
    where = f"{entry.ref}: file {record.path}"
    if facts.error:
        return [f"{where}: {facts.error} (sha256 {record.sha256})"]
    problems = []
    if facts.size != record.size:
        problems.append(f"{where}: size is {facts.size}, index says {record.size}")
    if facts.sha256 != record.sha256:
        problems.append(f"{where}: sha256 is {facts.sha256}, index says {record.sha256}")
    if facts.stats is not None:
        if facts.stats.parameters != record.parameters:
            problems.append(
                f"{where}: {facts.stats.parameters} parameters, index says {record.parameters}"
            )
        if facts.stats.zeros != record.zeros:
            actual = facts.stats.zeros / max(facts.stats.parameters, 1)
            problems.append(
                f"{where}: sparsity {actual:.6f} ({facts.stats.zeros} zeros), index says "
                f"{record.sparsity} ({record.zeros} zeros)"
            )
    return problems


def _check_model_counts(entry: Entry, workdir: Path, store: Store) -> list[str]:
    """Load the entry's model as a user would and recount its parameters and non-zeros
    (the figures search and the catalog show), when the entry records them."""
    facts = entry.sparsity
    if not facts.model_parameters:
        return []
    from zoo.client.load import load_folder
    from zoo.client.session import Session
    from zoo.evaluation.counting import count_nonzero, count_parameters

    session = Session(store=store, cache_dir=workdir / "models", offline=False, progress=False)
    try:
        model = load_folder(session.download(entry).folder)
    except ZooError as exc:
        return [f"{entry.ref}: model does not load: {exc}"]
    problems = []
    parameters, nonzero = count_parameters(model), count_nonzero(model)
    if parameters != facts.model_parameters:
        problems.append(
            f"{entry.ref}: the loaded model has {parameters} parameters, "
            f"index says {facts.model_parameters}"
        )
    if nonzero != facts.model_nonzero:
        problems.append(
            f"{entry.ref}: the loaded model has {nonzero} non-zero weights, "
            f"index says {facts.model_nonzero}"
        )
    return problems


def _damaged(record: FileRecord, facts: BlobFacts) -> bool:
    return bool(facts.error) or facts.size != record.size or facts.sha256 != record.sha256


def good_copies(exports: list[str | os.PathLike[str]]) -> dict[str, Path]:
    """sha256 -> a file with those bytes, from export folders (checked as for publishing)."""
    from zoo.index.export import read_export

    copies: dict[str, Path] = {}
    for folder in exports:
        export = read_export(folder)
        for record in export.files:
            copies.setdefault(record.sha256, export.path_of(record))
    return copies


def verify_index(
    view: IndexView,
    progress: Callable[[str], None] | None = None,
    repair: Mapping[str, Path] | None = None,
) -> VerifyReport:
    """Check every entry of `view`; with `repair` (sha256 -> good file), replace each
    missing or damaged blob that has a good copy and check it again."""
    problems: list[str] = []
    repaired: list[str] = []
    checked: dict[tuple[str, bool], BlobFacts] = {}
    entries = 0
    with tempfile.TemporaryDirectory(prefix="zoo-verify-") as tmp:
        for record in view.records():
            known = {s.version for s in record.versions}
            for alias, version in sorted(record.aliases.items()):
                if version not in known:
                    missing = format_version(version)
                    problems.append(f"{record.stub}: alias {alias!r} points at missing {missing}")
            for summary in record.versions:
                entries += 1
                try:
                    entry = read_entry(view.store, summary.entry_sha256)
                except ZooError as exc:
                    problems.append(f"{summary.ref}: entry unreadable: {exc}")
                    continue
                if progress:
                    progress(entry.ref)
                if entry.stub != summary.stub or entry.version != summary.version:
                    problems.append(f"{summary.ref}: entry object is {entry.ref}")
                if entry.content_hash != summary.content_hash:
                    problems.append(f"{summary.ref}: content hash differs from the index's")
                for file in entry.files:
                    key = (file.sha256, file.path.endswith(".safetensors"))
                    if key not in checked:
                        checked[key] = _blob_facts(view.store, file, Path(tmp))
                        good = (repair or {}).get(file.sha256)
                        if good is not None and _damaged(file, checked[key]):
                            view.store.replace_blob(file.sha256, good)
                            repaired.append(file.sha256)
                            checked[key] = _blob_facts(view.store, file, Path(tmp))
                    problems.extend(_check_file(entry, file, checked[key]))
                problems.extend(_check_model_counts(entry, Path(tmp), view.store))
    blobs = len({k[0] for k in checked})
    return VerifyReport(view.generation, entries, blobs, problems, sorted(set(repaired)))
