"""`zoo search|show|download|validate|diff|cache`: the client on the command line.

Tables for people, `--json` for scripts; errors print one line and exit non-zero
(2: bad input, 3: registry unreachable or offline, 1: anything else).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zoo.client.fmt import PRUNABLE_SPARSITY, fmt_bytes, fmt_int, fmt_metric, fmt_pct


def _common(parser: argparse.ArgumentParser, json_flag: bool = True) -> None:
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="store URL (path, s3://bucket/prefix, hf://org/repo); default $ZOO_REGISTRY, "
        "then the local demo store",
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="default $ZOO_CACHE_DIR, then ~/.cache/zoo"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="use only the cache (also $ZOO_OFFLINE=1)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def _session_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"registry": args.registry, "cache_dir": args.cache_dir, "offline": args.offline}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="find models by facets, metrics, size")
    p.add_argument("text", nargs="?", help="words that must appear in the stub")
    p.add_argument("--domain")
    p.add_argument("--task")
    p.add_argument("--arch", "--architecture", dest="architecture")
    p.add_argument("--dataset")
    p.add_argument("--tag", "--sparse-tag", dest="sparse_tag", help="e.g. 'pruned*'")
    quant = p.add_mutually_exclusive_group()
    quant.add_argument("--quantized", action="store_true", default=None, help="quantized only")
    quant.add_argument("--not-quantized", dest="quantized", action="store_false")
    p.add_argument("--min-sparsity", type=float, metavar="F", help="e.g. 0.8")
    p.add_argument("--max-sparsity", type=float, metavar="F")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COND",
        help="metric condition, e.g. 'accuracy>=0.9' or 'accuracy@mnist>0.95' (repeatable)",
    )
    p.add_argument(
        "--sort", help="size, parameters, sparsity, latency, created, stub, or a metric name"
    )
    order = p.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="descending", action="store_false", default=None)
    order.add_argument("--desc", dest="descending", action="store_true")
    p.add_argument(
        "--pareto",
        choices=("size", "latency"),
        help="keep only the Pareto front of --metric against size or latency",
    )
    p.add_argument("--metric", default="accuracy", help="quality metric shown (default accuracy)")
    p.add_argument(
        "--runtime",
        default="torch",
        help="latency measured on this runtime: torch (default), onnxruntime, openvino",
    )
    p.add_argument("--all-versions", action="store_true", help="not only the latest versions")
    p.add_argument("--limit", type=int)
    p.add_argument(
        "--adapters-of",
        metavar="STUB[@vN]",
        help="only the adapters over this base (adapters are listed under their base anyway)",
    )
    _common(p)
    p.set_defaults(func=run_search)

    p = subparsers.add_parser("show", help="everything the index records about a model")
    p.add_argument("ref", metavar="STUB[@VERSION]")
    p.add_argument("--recipe", action="store_true", help="print only the model's recipe (YAML)")
    _common(p)
    p.set_defaults(func=run_show)

    p = subparsers.add_parser("download", help="download a model into the cache")
    p.add_argument("ref", metavar="STUB[@VERSION]")
    p.add_argument("--to", metavar="DIR", help="also copy the files into DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(func=run_download)

    p = subparsers.add_parser("validate", help="run a model's sample inputs, compare outputs")
    p.add_argument("ref", metavar="STUB[@VERSION]")
    _common(p)
    p.set_defaults(func=run_validate)

    p = subparsers.add_parser("diff", help="what changed between two versions")
    p.add_argument("old", metavar="STUB@VERSION")
    p.add_argument("new", metavar="STUB@VERSION")
    _common(p)
    p.set_defaults(func=run_diff)

    p = subparsers.add_parser("cache", help="list or clean the local model cache")
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="cached models and their size")
    ls.add_argument("--cache-dir", metavar="DIR")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_cache_ls)
    pr = sub.add_parser("prune", help="remove versions, unused blobs and stale partial files")
    pr.add_argument("refs", nargs="*", metavar="STUB@VERSION", help="versions to remove")
    pr.add_argument("--all", action="store_true", help="remove every cached model")
    pr.add_argument("--cache-dir", metavar="DIR")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_cache_prune)
    ve = sub.add_parser("verify", help="re-hash every cached blob; report (or remove) damaged ones")
    ve.add_argument("--remove", action="store_true", help="delete damaged blobs (re-downloaded)")
    ve.add_argument("--cache-dir", metavar="DIR")
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=run_cache_verify)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _table(*columns: str) -> Any:
    from rich.table import Table

    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    return table


def _print(renderable: Any) -> None:
    from rich.console import Console

    Console(soft_wrap=False, width=max(100, _width())).print(renderable)


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 24)).columns


def run_search(args: argparse.Namespace) -> int:
    from zoo.client import api
    from zoo.client.search import under_bases

    facets = {
        k: v
        for k in ("domain", "task", "architecture", "dataset", "sparse_tag")
        if (v := getattr(args, k))
    }
    hits = api.search(
        args.text,
        where=args.where,
        sort=args.sort,
        descending=args.descending,
        pareto=args.pareto,
        metric=args.metric,
        quantized=args.quantized,
        min_sparsity=args.min_sparsity,
        max_sparsity=args.max_sparsity,
        all_versions=args.all_versions,
        limit=args.limit,
        runtime=args.runtime,
        adapters_of=args.adapters_of,
        **facets,
        **_session_kwargs(args),
    )
    if args.json:
        _print_json(
            [
                {
                    "ref": h.ref,
                    **h.summary.stub.facets(),
                    "version": h.summary.version,
                    args.metric: h.metric,
                    "size": h.summary.size,
                    "parameters": h.summary.parameters,
                    "sparsity": h.summary.sparsity,
                    "quantization": h.summary.quantization,
                    "latency_ms": h.latency_ms,
                    "adapter_of": h.summary.adapter_of,
                }
                for h in hits
            ]
        )
        return 0
    if not hits:
        print("no models match", file=sys.stderr)
        return 0
    show_latency = any(h.latency_ms is not None for h in hits)
    columns = ["model", args.metric, "size", "params", "sparsity", "quant"]
    table = _table(*(columns + (["latency"] if show_latency else [])))
    # The default listing puts each adapter under its base; a sort or a front keeps its order.
    grouped = under_bases(hits) if args.sort is None and args.pareto is None else None
    for h, nested in grouped or [(h, False) for h in hits]:
        s = h.summary
        name = h.ref
        if nested:
            name = f"  └ {h.ref}"
        elif s.adapter_of is not None:
            name = f"{h.ref}\n  adapter of {s.adapter_of}"  # a second line: the width stays
        row = [
            name,
            fmt_metric(h.metric),
            fmt_bytes(s.size),
            f"{s.parameters:,}",
            fmt_pct(s.sparsity),
            s.quantization or "-",
        ]
        if show_latency:
            row.append("-" if h.latency_ms is None else f"{h.latency_ms:.3g} ms")
        table.add_row(*row)
    _print(table)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from zoo.client import api

    if args.recipe:
        text = api.recipe(args.ref, **_session_kwargs(args))
        if text is None:
            print(
                f"{args.ref} has no recipe (a model trained without compression)", file=sys.stderr
            )
            return 1
        print(text, end="" if text.endswith("\n") else "\n")
        return 0
    entry = api.info(args.ref, **_session_kwargs(args))
    if args.json:
        _print_json(entry.to_dict())
        return 0
    lines = [
        f"[bold]{entry.ref}[/bold]  published {entry.created_at or '?'}",
        f"size {fmt_bytes(entry.size)}, {entry.parameters:,} parameters "
        f"({fmt_int(entry.nonzero)} non-zero), {PRUNABLE_SPARSITY} "
        f"{fmt_pct(entry.sparsity.overall)} ({entry.sparsity.structure}), "
        f"quantization {entry.quantization.scheme or 'none'}",
    ]
    _print("\n".join(lines))
    table = _table("section", "name", "value")
    for dataset, values in sorted(entry.metrics.items()):
        for name, value in sorted(values.items()):
            table.add_row("metric", f"{dataset}/{name}", fmt_metric(value))
    for machine, values in sorted(entry.benchmarks.items()):
        for name, value in sorted(values.items()):
            table.add_row("benchmark", f"{machine}/{name}", fmt_metric(value))
    lineage = entry.lineage
    for name, value in (
        ("parent", lineage.parent),
        ("data hash", lineage.data_hash),
        ("recipe hash", lineage.recipe_hash),
        ("git commit", lineage.git_commit),
        *((f"dvc stage {k}", v) for k, v in sorted(lineage.dvc_stages.items())),
    ):
        if value:
            table.add_row("lineage", name, str(value))
    _print(table)
    files = _table("file", "size", "sha256")
    for record in entry.files:
        files.add_row(record.path, fmt_bytes(record.size), record.sha256)
    _print(files)
    print(f"\ndownload: zoo download {entry.ref}")
    print(f"load:     python -c \"import zoo; print(zoo.load('{entry.ref}'))\"")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from zoo.client import api

    folder = api.download(
        args.ref, args.to, progress=False if args.quiet else None, **_session_kwargs(args)
    )
    if args.json:
        _print_json({"ref": args.ref, "folder": str(folder)})
    else:
        print(folder)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from zoo.client import api

    report = api.validate(args.ref, strict=False, **_session_kwargs(args))
    if args.json:
        _print_json(
            {
                "ref": report.ref,
                "ok": report.ok,
                "checks": [c.__dict__ | {"ok": c.ok} for c in report.checks],
            }
        )
    else:
        table = _table("sample", "output", "max |diff|", "tolerance", "same top-1", "ok")
        for c in report.checks:
            table.add_row(
                c.file,
                c.output,
                f"{c.max_abs_diff:.3g}",
                f"{c.tolerance:.3g}",
                fmt_pct(c.same_argmax),
                "yes" if c.ok else "NO",
            )
        _print(table)
    report.raise_if_failed()
    if not args.json:
        print(f"{report.ref}: OK, {len(report.checks)} sample file(s) reproduce")
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from zoo.client import api

    result = api.diff(args.old, args.new, **_session_kwargs(args))
    if args.json:
        _print_json(result.to_dict())
        return 0
    if result.same:
        print(f"{result.old} and {result.new} do not differ")
        return 0
    table = _table("section", "name", result.old, result.new, "change")
    for c in result.changes:
        delta = c.delta
        table.add_row(
            c.section,
            c.key,
            fmt_metric(c.old),
            fmt_metric(c.new),
            "" if delta is None else f"{delta:+.4g}",
        )
    _print(table)
    if result.recipe_diff:
        print(result.recipe_diff, end="" if result.recipe_diff.endswith("\n") else "\n")
    return 0


def run_cache_ls(args: argparse.Namespace) -> int:
    from zoo.client.cache import Cache
    from zoo.client.cachectl import scan

    cache = Cache.at(args.cache_dir)
    items = scan(cache)
    if args.json:
        _print_json([i.__dict__ | {"ref": i.ref} for i in items])
        return 0
    table = _table("model", "aliases", "files", "size", "registry")
    for i in items:
        table.add_row(
            i.ref + ("" if i.complete else " (incomplete)"),
            ", ".join(i.aliases),
            str(i.files),
            fmt_bytes(i.size),
            i.registry_dir,
        )
    _print(table)
    on_disk = sum(b.stat().st_size for b in cache.blobs())
    print(f"{len(items)} version(s), {fmt_bytes(on_disk)} of blobs in {cache.root}")
    return 0


def run_cache_prune(args: argparse.Namespace) -> int:
    from zoo.client.cache import Cache
    from zoo.client.cachectl import prune

    result = prune(Cache.at(args.cache_dir), args.refs, everything=args.all)
    if args.json:
        _print_json(result.__dict__)
    else:
        print(
            f"removed {len(result.snapshots)} version(s), {result.blobs} blob(s), "
            f"{result.partials} partial download(s); freed {fmt_bytes(result.freed)}"
        )
    return 0


def run_cache_verify(args: argparse.Namespace) -> int:
    from zoo.client.cache import Cache
    from zoo.client.cachectl import verify

    cache = Cache.at(args.cache_dir)
    result = verify(cache, remove=args.remove)
    if args.json:
        _print_json(result.__dict__)
    else:
        for path in result.damaged:
            print(f"damaged: {path}" + (" (removed)" if result.removed else ""))
        print(f"{result.checked} blob(s) checked in {cache.root}, {len(result.damaged)} damaged")
    if result.damaged and not result.removed:
        print("zoo: run `zoo cache verify --remove`, then download again", file=sys.stderr)
        return 1
    return 0
