"""Turn a shipped source into seeded train/val/test splits saved as .npz (no pickle)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from zoo.data.sources import Arrays, DatasetSpec, get_dataset_spec, verified_source_dir
from zoo.fsutil import atomic_dir, sha256_file

SPLITS = ("train", "val", "test")
META = "meta.json"


def _take(arrays: Arrays, index: np.ndarray) -> Arrays:
    return {k: v[index] for k, v in arrays.items()}


def stratified_split(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Split indices per class so every part keeps the class balance; the rest goes last.

    Each part's indices are shuffled with the same seeded generator, so the split depends
    only on the labels, the fractions and the seed.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for i, fraction in enumerate(fractions):
            count = round(fraction * len(members))
            parts[i].append(members[start : start + count])
            start += count
        parts[-1].append(members[start:])
    return [rng.permutation(np.concatenate(p)) for p in parts]


def make_splits(spec: DatasetSpec, source_dir: Path, seed: int) -> dict[str, Arrays]:
    pool, test = spec.read(source_dir)
    if test is not None:
        val_idx, train_idx = stratified_split(pool["y"], [spec.val_fraction], seed)
        return {"train": _take(pool, train_idx), "val": _take(pool, val_idx), "test": test}
    assert spec.test_fraction is not None
    test_idx, val_idx, train_idx = stratified_split(
        pool["y"], [spec.test_fraction, spec.val_fraction], seed
    )
    return {
        "train": _take(pool, train_idx),
        "val": _take(pool, val_idx),
        "test": _take(pool, test_idx),
    }


def dataset_digest(folder: str | Path) -> str:
    """One sha256 over a prepared dataset's files (splits and meta.json), in name order."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*")):
        if path.is_file():
            digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def prepare_dataset(
    name: str, out_dir: str | Path, seed: int = 0, source_dir: str | Path | None = None
) -> dict[str, object]:
    """Verify the source, split it and write `out_dir/{train,val,test}.npz` + `meta.json`.

    The folder appears complete or not at all: a failure leaves any previous output intact.
    """
    spec = get_dataset_spec(name)
    folder = verified_source_dir(spec, Path(source_dir) if source_dir else None)
    splits = make_splits(spec, folder, seed)
    meta: dict[str, object] = {
        "dataset": name,
        "kind": spec.kind,
        "classes": list(spec.classes),
        "seed": seed,
        "sources": {f.name: f.sha256 for f in spec.files},
        "splits": {
            split: {
                "size": len(arrays["y"]),
                "class_counts": np.bincount(arrays["y"], minlength=spec.num_classes).tolist(),
            }
            for split, arrays in splits.items()
        },
    }
    with atomic_dir(out_dir) as tmp:
        for split, arrays in splits.items():
            np.savez_compressed(tmp / f"{split}.npz", **arrays)  # type: ignore[arg-type]
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta
