"""DVC stage `register`: publish an export folder to the store and mirror it into registry/.

The store is `storage.url` from params.yaml (a param of the stage), so changing it re-runs
the stage and publishes there.

Lineage is completed from git and dvc.lock (the stages that produced the export), and
its parent pinned to `stub@vN` (zoo/pipeline/register.py). Running
it again on the same export publishes nothing new, so a second `dvc repro` is a no-op.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.pipeline.stage import run_stage


def _portable(url: str, repo: Path) -> str:
    """A local store inside the repository as a relative path: the receipt is committed,
    and a clone elsewhere must still find the store its transfer stages fetch from."""
    path, root = Path(url), repo.resolve()
    return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", required=True, type=Path, help="export folder (zoo.json)")
    parser.add_argument("--stub", default=None, help="stub (default: the one in zoo.json)")
    parser.add_argument("--alias", action="append", default=[], help="alias to move here")
    parser.add_argument(
        "--store", default=None, help="store URL (default: storage.url in --params)"
    )
    parser.add_argument("--params", default="params.yaml", help="params file (storage.url)")
    parser.add_argument("--registry-dir", default=Path("registry"), type=Path)
    parser.add_argument("--receipt", required=True, type=Path, help="JSON written for DVC")
    parser.add_argument("--repo", default=Path("."), type=Path, help="git/DVC repository root")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.pipeline.params import load_params, store_url
        from zoo.pipeline.register import register_export, write_receipt

        store = args.store or store_url(load_params(args.params))
        if "://" not in store and not Path(store).is_absolute():
            store = str(args.repo / store)  # a folder in params is relative to the repository
        done = register_export(
            args.export, store, args.registry_dir, args.repo, args.stub, tuple(args.alias)
        )
        result = done.result
        write_receipt(args.receipt, result.entry.ref, _portable(done.store.url, args.repo))
        verb = "registered" if result.created else "unchanged"
        changed = ", ".join(sorted(str(p) for p in done.changed)) or "none"
        print(
            f"{verb}: {result.entry.ref} in {done.store.url} (generation "
            f"{result.generation}; registry files written: {changed})"
        )
        if done.not_mirrored:
            print(f"registry/ not mirrored: {done.not_mirrored}")

    run_stage(stage)


if __name__ == "__main__":
    main()
