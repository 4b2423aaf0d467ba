"""How publishing and facet queries scale with the size of the index (local store).

For 1k, 10k and 100k synthetic entries (4 versions per stub, realistic facets), builds
a store's published index directly, then times one more real publish (a small export)
and a facet query (open the index, filter by facets, latest versions only). Prints a
table of medians and the growth from the smallest size.

    .venv/bin/python bench/bench_index.py [--sizes 1000 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from zoo.index.document import Root, Shard, StubRecord, shard_key, shard_of
from zoo.index.export import write_tiny_export
from zoo.index.publish import now, publish
from zoo.index.schema import EntrySummary, Stub
from zoo.index.view import open_index
from zoo.storage.base import sha256_bytes
from zoo.storage.local import LocalStore

DOMAINS = {
    "cv": (
        "classification",
        ["mlp", "cnn_small", "resnet18", "mobilenet"],
        ["fashion_mnist", "mnist", "digits", "cifar10"],
    ),
    "nlp": (
        "text_classification",
        ["minilm", "bert_base", "distilbert"],
        ["rotten_tomatoes", "sst2", "imdb"],
    ),
}
TAGS = ["base", "pruned50", "pruned70", "pruned90", "pruned90_quant", "quant"]
VERSIONS_PER_STUB = 4


def synthetic_stubs(count: int) -> list[Stub]:
    stubs = []
    i = 0
    while len(stubs) < count:
        for domain, (task, archs, datasets) in DOMAINS.items():
            arch = archs[i % len(archs)]
            dataset = datasets[(i // len(archs)) % len(datasets)]
            tag = f"{TAGS[i % len(TAGS)]}_r{i}"
            stubs.append(Stub(domain, task, arch, dataset, tag))
        i += 1
    return stubs[:count]


def build_index(store: LocalStore, entries: int) -> None:
    """Write a published index of `entries` summaries (shards + root), as publishing would."""
    shards: dict[str, Shard] = {}
    stamp = now()
    for n, stub in enumerate(synthetic_stubs(entries // VERSIONS_PER_STUB)):
        versions = [
            EntrySummary(
                stub=stub,
                version=v,
                entry_sha256=f"{n:032x}{v:032x}",
                content_hash=f"{v:032x}{n:032x}",
                size=950_000,
                parameters=235_146,
                sparsity=0.5 + 0.01 * v,
                quantization="int8" if "quant" in stub.sparse_tag else None,
                metrics={stub.dataset: {"accuracy": 0.8 + 0.001 * v}},
                created_at=stamp,
            )
            for v in range(1, VERSIONS_PER_STUB + 1)
        ]
        record = StubRecord(stub, versions, {"latest": VERSIONS_PER_STUB, "stable": 1})
        shard_id = shard_of(stub)
        shards[shard_id] = shards.get(shard_id, Shard()).with_record(record)
    root = Root(generation=entries, count=entries, updated_at=stamp)
    for shard_id, shard in shards.items():
        data = shard.to_bytes()
        sha = sha256_bytes(data)
        store.put_if_absent(shard_key(sha), data)
        root.shards[shard_id] = sha
    store.swap_index(root.to_bytes(), None)


def median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


BENCH_STUB = "zoo:cv/classification/mlp/fashion_mnist/bench"
Row = tuple[int, float, float, float, float, int, float, float]


def measure(tmp: Path, size: int, repeat: int) -> Row:
    store = LocalStore(tmp / f"store-{size}")
    started = time.perf_counter()
    build_index(store, size)
    build_s = time.perf_counter() - started
    exports = iter(
        [write_tiny_export(tmp / f"e-{size}-{i}", seed=i, stub=BENCH_STUB) for i in range(repeat)]
    )
    publish_s = median_time(lambda: publish(next(exports), store), repeat)
    hits: list[int] = []

    def query() -> None:
        view = open_index(store)
        hits.append(len(view.query(domain="cv", dataset="fashion_mnist", sparse_tag="pruned90*")))

    query_s = median_time(query, repeat)
    all_s = median_time(lambda: open_index(store).query(), 1)
    stub = Stub.parse(BENCH_STUB)
    resolve_s = median_time(lambda: open_index(store).resolve(stub), repeat)
    view = open_index(store)
    shard_bytes = sum(
        (store.root / shard_key(sha)).stat().st_size for sha in view.root.shards.values()
    )
    return (size, build_s, publish_s, query_s, resolve_s, hits[-1], shard_bytes / 1e6, all_s)


def run(sizes: list[int], repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="zoo-bench-index-") as tmp:
        rows = [measure(Path(tmp), size, repeat) for size in sizes]

    base = rows[0]
    print(
        f"\n{'entries':>8} {'index MB':>9} {'publish s':>10} {'x':>6} {'query s':>9} {'x':>6} "
        f"{'resolve s':>10} {'hits':>6} {'list all s':>11} {'build s':>8}"
    )
    for size, build_s, publish_s, query_s, resolve_s, hits_n, index_mb, all_s in rows:
        print(
            f"{size:>8,} {index_mb:>9.1f} {publish_s:>10.4f} {publish_s / base[2]:>6.1f} "
            f"{query_s:>9.4f} {query_s / base[3]:>6.1f} {resolve_s:>10.4f} {hits_n:>6} "
            f"{all_s:>11.3f} {build_s:>8.1f}"
        )
    print(
        "\npublish: one more version of a small export (read root + one shard, write blobs, "
        "entry, shard, root)\nquery: open the index, filter by 3 facets, latest versions\n"
        "resolve: open the index, resolve one stub's latest\nlist all: latest of every stub, "
        "no facet (parses the whole index)\nx: time relative to the smallest index"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(args.sizes, args.repeat)


if __name__ == "__main__":
    main()
