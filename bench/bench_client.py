"""Client benchmarks, measured in one run and printed side by side.

1. Download throughput from a real SeaweedFS (loopback) through the zoo client
   (resolve + resumable, verified, locked download into the cache) against a plain
   boto3 `download_file` of the same blob.            target: ratio >= 0.8
2. Loading a cached model with `zoo.load(stub@vN)` against reading its safetensors
   directly and building the module by hand.          target: ratio <= 1.5
3. Search over 100,000 synthetic index entries (facets + metric condition + sort).
                                                      target: median < 50 ms

Usage: .venv/bin/python bench/bench_client.py [--mib 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def timed(
    fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None
) -> list[float]:
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_download(work: Path, mib: int, repeats: int) -> dict[str, float]:
    import os

    from zoo.client.session import Session
    from zoo.index.export import write_tiny_export
    from zoo.index.publish import publish
    from zoo.storage.base import blob_key, open_store
    from zoo.storage.seaweed import seaweedfs

    side = int((mib * (1 << 20) / 4) ** 0.5)
    export = write_tiny_export(
        work / "export", stub="zoo:cv/classification/tiny/bench/dense", size=side
    )
    with seaweedfs(work / "seaweed") as server:
        server.make_bucket("zoo-bench")
        os.environ.update(server.env())
        url = "s3://zoo-bench/registry"
        entry = publish(export, url).entry
        weights = entry.file("model.safetensors")
        key = f"registry/{blob_key(weights.sha256)}"
        client = server.client()
        cache = work / "cache"
        target = work / "boto3.bin"

        def clean() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            target.unlink(missing_ok=True)

        # One store (one boto3 client) for all runs, as the baseline has one client.
        store = open_store(url)

        def ours() -> None:
            Session(store=store, cache_dir=cache, progress=False).download(entry.ref)

        def boto() -> None:
            client.download_file("zoo-bench", key, str(target))

        ours_t, boto_t = [], []
        for _ in range(repeats):  # interleaved, so drift hits both alike
            boto_t += timed(boto, 1, clean)
            ours_t += timed(ours, 1, clean)
        clean()
    total = entry.size  # ours moves every file of the model; boto3 only the weights blob
    ours_mb_s = total / statistics.median(ours_t) / 1e6
    boto_mb_s = weights.size / statistics.median(boto_t) / 1e6
    return {"ours_mb_s": ours_mb_s, "boto3_mb_s": boto_mb_s, "ratio": ours_mb_s / boto_mb_s}


def bench_load(work: Path, repeats: int) -> dict[str, float]:
    import torch
    from safetensors.torch import load_file

    from tests.demo_models import DemoModel, populate
    from zoo.client import api
    from zoo.models import build_from_config

    torch.set_num_threads(1)
    model = DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/bench",
        arch_kwargs={"hidden": [1024, 512]},
        sparsity=0.5,
    )
    store = str(work / "load-store")
    ref = populate(store, work / "load-exports", [model])[0]
    cache = work / "load-cache"
    folder = api.download(ref, registry=store, cache_dir=cache)

    def zoo_load() -> None:
        api.load(ref, registry=store, cache_dir=cache)

    def direct() -> None:
        config = json.loads((folder / "config.json").read_text())
        net = build_from_config(config)
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
        net.eval()

    zoo_load()
    direct()  # warm both paths (imports, page cache)
    ours_t, direct_t = [], []
    for _ in range(repeats):
        ours_t += timed(zoo_load, 1)
        direct_t += timed(direct, 1)
    ours_ms = statistics.median(ours_t) * 1e3
    direct_ms = statistics.median(direct_t) * 1e3
    return {"zoo_load_ms": ours_ms, "direct_ms": direct_ms, "ratio": ours_ms / direct_ms}


def synthetic_summaries(n: int) -> list:
    from zoo.index.schema import EntrySummary, Stub

    rng = random.Random(0)
    archs = [f"arch{i}" for i in range(40)]
    datasets = [f"data{i}" for i in range(25)]
    tags = ["base", "pruned50", "pruned80", "pruned90", "pruned95", "pruned90_quant", "quant"]
    out = []
    for i in range(n):
        dataset = rng.choice(datasets)
        tag = rng.choice(tags)
        stub = Stub(
            rng.choice(["cv", "nlp"]),
            rng.choice(["classification", "detection", "text_classification"]),
            rng.choice(archs),
            dataset,
            f"{tag}-{i % 997}",
        )
        out.append(
            EntrySummary(
                stub=stub,
                version=1 + i % 3,
                entry_sha256="0" * 64,
                content_hash=str(i),
                size=rng.randint(10_000, 100_000_000),
                parameters=rng.randint(1_000, 25_000_000),
                sparsity=rng.choice([0.0, 0.5, 0.8, 0.9, 0.95]),
                quantization="int8" if "quant" in tag else None,
                metrics={
                    dataset: {"accuracy": rng.uniform(0.5, 0.99), "f1": rng.uniform(0.4, 0.9)}
                },
                created_at="2026-01-01T00:00:00Z",
            )
        )
    return out


def bench_search(n: int, repeats: int) -> dict[str, float]:
    from zoo.client.search import Query, SearchIndex, Threshold

    summaries = synthetic_summaries(n)
    start = time.perf_counter()
    index = SearchIndex(summaries)
    build_s = time.perf_counter() - start
    queries = [
        Query(facets={"dataset": "data3"}, where=[Threshold.parse("accuracy>=0.9")], sort="size"),
        Query(facets={"architecture": "arch1*", "domain": "cv"}, sort="accuracy", limit=20),
        Query(quantized=True, min_sparsity=0.8, sort="parameters"),
        Query(text="pruned90 arch7", sort="accuracy"),
        Query(facets={"dataset": "data7"}, pareto="size"),
        Query(latest_only=False, where=[Threshold.parse("f1>0.85")], sort="size", limit=10),
    ]
    per_query: list[float] = []
    for query in queries:
        per_query += timed(lambda q=query: index.search(q), repeats)
    return {
        "entries": n,
        "build_s": build_s,
        "median_ms": statistics.median(per_query) * 1e3,
        "p95_ms": sorted(per_query)[int(0.95 * (len(per_query) - 1))] * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=64, help="size of the downloaded blob")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a target is missed (noisy on shared CPUs)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zoo-bench-client-"))
    try:
        dl = bench_download(work, args.mib, args.repeats)
        ld = bench_load(work, max(args.repeats * 4, 20))
        sr = bench_search(args.entries, max(args.repeats * 4, 20))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'benchmark':<46} {'zoo':>12} {'baseline':>12} {'ratio':>7}  target")
    print(
        f"{f'download {args.mib} MiB from SeaweedFS (MB/s)':<46} {dl['ours_mb_s']:>12.1f} "
        f"{dl['boto3_mb_s']:>12.1f} {dl['ratio']:>7.2f}  >= 0.80 (boto3 download_file)"
    )
    print(
        f"{'load cached model (ms)':<46} {ld['zoo_load_ms']:>12.2f} {ld['direct_ms']:>12.2f} "
        f"{ld['ratio']:>7.2f}  <= 1.50 (safetensors + build by hand)"
    )
    label = f"search {sr['entries']:,} entries, median (ms)"
    print(
        f"{label:<46} {sr['median_ms']:>12.2f} "
        f"{'':>12} {'':>7}  < 50 ms (p95 {sr['p95_ms']:.1f} ms; index built in "
        f"{sr['build_s']:.2f} s)"
    )
    ok = dl["ratio"] >= 0.8 and ld["ratio"] <= 1.5 and sr["median_ms"] < 50
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
