"""`zoo publish`, `zoo versions`, `zoo alias set|rm|history`, `zoo index verify|mirror`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

STORE_HELP = (
    "store URL: folder, file://, s3://bucket/prefix, hf://org/repo "
    "(default: $ZOO_STORE, then .zoo/store in the repository)"
)


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", "--registry", dest="store", default=None, help=STORE_HELP)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("publish", help="publish an export folder as the next version")
    p.add_argument("export_dir", help="export folder (with zoo.json)")
    p.add_argument("--stub", default=None, help="stub to publish as (overrides zoo.json)")
    p.add_argument("--alias", action="append", default=[], help="alias to point here (repeat)")
    p.add_argument("--registry-dir", default=None, help="also mirror the stub into this folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _store_arg(p)
    p.set_defaults(func=run_publish)

    p = subparsers.add_parser("versions", help="list a stub's versions and aliases")
    p.add_argument("stub")
    p.add_argument("--json", action="store_true")
    _store_arg(p)
    p.set_defaults(func=run_versions)

    p = subparsers.add_parser("alias", help="move, remove or show a stub's aliases")
    sub = p.add_subparsers(dest="alias_command", metavar="ACTION", required=True)
    s = sub.add_parser("set", help="point NAME at STUB@vN")
    s.add_argument("ref", help="STUB@vN")
    s.add_argument("name")
    _store_arg(s)
    s.set_defaults(func=run_alias_set)
    s = sub.add_parser("rm", help="remove alias NAME from STUB (history is kept)")
    s.add_argument("ref", help="STUB (an @version suffix is ignored)")
    s.add_argument("name")
    _store_arg(s)
    s.set_defaults(func=run_alias_rm)
    s = sub.add_parser("history", help="every move of a stub's aliases")
    s.add_argument("ref", help="STUB")
    s.add_argument("--json", action="store_true")
    _store_arg(s)
    s.set_defaults(func=run_alias_history)

    p = subparsers.add_parser(
        "gc", help="list (or with --yes delete) store objects no published entry references"
    )
    p.add_argument("--yes", action="store_true", help="delete them (default: a dry run)")
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep objects younger than this (default 86400: a publish in flight is safe)",
    )
    p.add_argument("--json", action="store_true")
    _store_arg(p)
    p.set_defaults(func=run_gc)

    p = subparsers.add_parser("index", help="check or mirror the published index")
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    s = sub.add_parser("verify", help="recompute size, sha256, parameters, sparsity of all files")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--repair",
        nargs="+",
        default=[],
        metavar="EXPORT",
        help="replace missing or damaged blobs with the matching files of these export folders",
    )
    _store_arg(s)
    s.set_defaults(func=run_verify)
    s = sub.add_parser("mirror", help="write the index as one file per entry version (registry/)")
    s.add_argument("--out", default="registry", help="folder (default registry/)")
    _store_arg(s)
    s.set_defaults(func=run_mirror)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def run_publish(args: argparse.Namespace) -> int:
    from zoo.errors import MirrorDivergedError
    from zoo.index.mirror import mirror_stub
    from zoo.index.publish import publish
    from zoo.index.view import open_index

    result = publish(args.export_dir, args.store, stub=args.stub, aliases=args.alias)
    entry = result.entry
    changed = []
    if args.registry_dir:
        view = open_index(args.store)
        try:
            changed = [str(p) for p in mirror_stub(view, entry.stub, args.registry_dir)]
        except MirrorDivergedError as exc:
            raise MirrorDivergedError(f"published {entry.ref} in {args.store}, but {exc}") from exc
    if args.json:
        _print_json(
            {
                "ref": entry.ref,
                "created": result.created,
                "generation": result.generation,
                "uploaded_blobs": result.uploaded,
                "repaired_blobs": result.repaired,
                "registry_files": changed,
            }
        )
    elif result.created:
        print(f"published {entry.ref} ({len(entry.files)} files, {result.uploaded} new blobs)")
    else:
        print(f"unchanged: {entry.ref} already holds this content; nothing new published")
    if result.repaired:
        print(
            f"repaired {result.repaired} blob(s) whose stored bytes no longer matched their "
            "sha256 (replaced from this export)"
        )
    return 0


def _stub(text: str):  # type: ignore[no-untyped-def]
    from zoo.index.schema import parse_ref

    return parse_ref(text)


def run_versions(args: argparse.Namespace) -> int:
    from zoo.index.schema import format_version
    from zoo.index.view import open_index

    stub, _ = _stub(args.stub)
    view = open_index(args.store)
    versions = view.versions(stub)
    aliases = view.aliases(stub)
    by_version: dict[int, list[str]] = {}
    for name, number in sorted(aliases.items()):
        by_version.setdefault(number, []).append(name)
    if args.json:
        _print_json(
            {
                "stub": str(stub),
                "generation": view.generation,
                "aliases": {k: format_version(v) for k, v in aliases.items()},
                "versions": [s.to_dict() for s in versions],
            }
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "version", "aliases", "created", "size", "params", "sparsity", "metrics", title=str(stub)
    )
    for s in versions:
        metrics = "; ".join(
            f"{ds}: " + ", ".join(f"{k}={v}" for k, v in m.items()) for ds, m in s.metrics.items()
        )
        table.add_row(
            format_version(s.version),
            ", ".join(by_version.get(s.version, [])),
            s.created_at[:19],
            f"{s.size:,}",
            f"{s.parameters:,}",
            f"{s.sparsity:.1%}",
            metrics,
        )
    Console().print(table)
    return 0


def _version_of(text: str) -> tuple[Any, int]:
    from zoo.errors import InvalidStubError
    from zoo.index.schema import parse_version

    stub, ref = _stub(text)
    number = parse_version(ref) if ref else None
    if number is None:
        raise InvalidStubError(text, "expected STUB@vN (a version number, not an alias)")
    return stub, number


def run_alias_set(args: argparse.Namespace) -> int:
    from zoo.index.publish import set_alias

    stub, version = _version_of(args.ref)
    generation = set_alias(args.store, stub, version, args.name)
    print(f"{args.name} -> {stub.at(version)} (index generation {generation})")
    return 0


def run_alias_rm(args: argparse.Namespace) -> int:
    from zoo.index.publish import remove_alias

    stub, _ = _stub(args.ref)
    generation = remove_alias(args.store, stub, args.name)
    print(f"removed alias {args.name} from {stub} (index generation {generation})")
    return 0


def run_alias_history(args: argparse.Namespace) -> int:
    from zoo.index.schema import format_version
    from zoo.index.view import open_index

    stub, _ = _stub(args.ref)
    history = open_index(args.store).alias_history(stub)
    if args.json:
        _print_json([e.to_dict() for e in history])
        return 0
    for e in history:
        before = format_version(e.previous) if e.previous else "-"
        after = format_version(e.version) if e.version else "(removed)"
        print(f"{e.at[:19]}  gen {e.generation:>5}  {e.alias}: {before} -> {after}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from zoo.errors import IndexVerifyError
    from zoo.index.verify import good_copies, verify_index
    from zoo.index.view import open_index

    copies = good_copies(args.repair)
    view = open_index(args.store)
    report = verify_index(view, repair=copies)
    for sha in report.repaired:
        print(f"repaired blob {sha} from {copies[sha]}", file=sys.stderr)
    if args.json:
        _print_json(
            {
                "store": view.store.url,
                "generation": report.generation,
                "entries": report.entries,
                "blobs": report.blobs,
                "problems": report.problems,
                "repaired": report.repaired,
            }
        )
        return 0 if report.ok else IndexVerifyError.exit_code
    if not report.ok:
        raise IndexVerifyError(report.problems)
    print(
        f"ok: {report.entries} entries, {report.blobs} blobs verified in {view.store.url} "
        f"(generation {report.generation})",
        file=sys.stdout,
    )
    return 0


def run_mirror(args: argparse.Namespace) -> int:
    from zoo.index.mirror import mirror_index
    from zoo.index.view import open_index

    changed = mirror_index(open_index(args.store), args.out)
    print(f"{len(changed)} file(s) written under {args.out}")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from zoo.index.gc import DEFAULT_GRACE_S, collect
    from zoo.storage.base import open_store

    store = open_store(args.store, create=False)
    grace = DEFAULT_GRACE_S if args.grace is None else args.grace
    report = collect(store, grace, delete=args.yes)
    if args.json:
        _print_json(report.__dict__ | {"store": store.url, "grace_s": grace})
        return 0
    verb = "deleted" if report.deleted else "would delete (dry run; --yes deletes)"
    for key in [*report.garbage, *report.temporaries]:
        print(f"{verb}: {key}")
    print(
        f"{len(report.garbage)} unreferenced object(s) and {len(report.temporaries)} stale "
        f"temporary file(s) {'deleted' if report.deleted else 'to delete'}; "
        f"{len(report.young)} unreferenced but younger than {grace:g} s kept; "
        f"{report.referenced} referenced by generation {report.generation} of {store.url}"
    )
    return 0
