"""Every demo entry on every runtime, timed side by side: `make bench-runtimes`.

For each family of entries (those sharing one dense baseline) one interleaved run times
the dense model and every entry on every runtime variant that applies (torch eager,
torch with CSR Linears, ONNX Runtime, OpenVINO, and for float models the runtimes' own
int8: ONNX Runtime's quantizer and OpenVINO's NNCF). Each figure is stated two ways:
against the dense model in torch eager fp32 (the baseline the pipeline reports), and
against the dense model on its own fastest fp32 runtime (what a user deploying it would
compare with). Reads the demo's outputs (params.yaml, data/, models/export/); writes
nothing but the --out JSON: checked writable before anything is measured, rewritten
(atomically) after each family, so a run that dies late keeps what it measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.evaluation.schema import BatchFigures, ModelFigures
from zoo.evaluation.speed import measure_side_by_side
from zoo.fsutil import atomic_write_json, temp_beside
from zoo.runtimes.demo import BENCH_SEQUENCE_LENGTH, DemoSetup, batches, repeat_to
from zoo.runtimes.prepare import VARIANTS, applies, on_variant

DEFAULT_ENTRIES = (
    "cnn_dense",
    "cnn_gmp90",
    "cnn_gmp90_qat",
    "cnn_structured_int8",
    "minilm_dense",
    "minilm_int8",
    "minilm_sparsegpt50",
)
DENSE_FP32 = ("torch", "onnxruntime", "openvino")  # the runtimes "dense" is judged on
CALIBRATION_EXAMPLES, CALIBRATION_BATCH = 256, 32
# Floors of issue 12 on the honest ratio (batch 64): (what, entries, floor, is a floor).
CLAIMS = (
    ("MiniLM int8", ("minilm_int8", "minilm_dense"), 2.5, True),
    ("structured + int8 CNN", ("cnn_structured_int8",), 2.0, True),
    ("GMP 90% + int8 CNN", ("cnn_gmp90_qat",), 1.5, False),
)
INT8_VARIANTS = ("onnxruntime-int8", "openvino-int8")
Timings = Mapping[str, Mapping[int, BatchFigures]]


def slot(key: str, variant: str) -> str:
    return f"{key}/{variant}"


def measure_family(
    setup: DemoSetup, baseline_key: str, keys: list[str], args: argparse.Namespace
) -> dict[str, object]:
    dense = setup.entry(baseline_key)
    test = setup.split(dense, "test", limit=max(args.batch_sizes), max_length=BENCH_SEQUENCE_LENGTH)
    train = setup.split(
        dense, "train", limit=CALIBRATION_EXAMPLES, max_length=BENCH_SEQUENCE_LENGTH
    )
    calibration = batches(train, CALIBRATION_BATCH)
    example = repeat_to(test, 1)
    models: dict[str, torch.nn.Module] = {}
    for key in [baseline_key, *[k for k in keys if k != baseline_key]]:
        entry = dense if key == baseline_key else setup.entry(key)
        for variant in VARIANTS:
            if variant.name in args.skip or not applies(variant, entry.model):
                continue
            started = time.perf_counter()
            models[slot(key, variant.name)] = on_variant(
                entry.model, variant, example, calibration, args.threads, repeat_to(test, 16)
            )
            print(f"  prepared {slot(key, variant.name)} in {time.perf_counter() - started:.1f} s")
    baseline = slot(baseline_key, "torch")
    timings = measure_side_by_side(
        models,
        lambda size: repeat_to(test, size),
        baseline=baseline,
        batch_sizes=tuple(args.batch_sizes),
        rounds=args.rounds,
        warmup=2,
        budget_s=args.budget_s,
    )
    return family_table(timings, baseline_key, args.batch_sizes)


def family_table(timings: Timings, baseline_key: str, sizes: Sequence[int]) -> dict[str, object]:
    """One row per model slot with its figures, stated against torch eager and against the
    dense model's fastest fp32 runtime at each batch size."""
    best: dict[int, str] = {}
    for size in sizes:
        fp32 = [slot(baseline_key, v) for v in DENSE_FP32 if slot(baseline_key, v) in timings]
        best[size] = max(fp32, key=lambda name: timings[name][size].speedup or 0.0)
    rows = []
    for name, per_batch in timings.items():
        key, _, variant = name.partition("/")
        row: dict[str, object] = {"entry": key, "variant": variant}
        row.update(ModelFigures(batches=dict(per_batch)).flat())
        for size, figures in per_batch.items():
            best_speedup = timings[best[size]][size].speedup or 1.0
            row[f"b{size}_vs_best_dense"] = round((figures.speedup or 0.0) / best_speedup, 3)
        rows.append(row)
    baseline = slot(baseline_key, "torch")
    return {"baseline": baseline, "best_dense": {str(k): v for k, v in best.items()}, "rows": rows}


def _plain(value: Any, where: str) -> Any:
    """`value` as plain JSON types: numpy and torch scalars become numbers; anything else
    JSON cannot hold is an error naming where it sits (not a crash after the run)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return _plain(item(), where)
    raise TypeError(f"{where}: {type(value).__name__} is not a JSON value")


def save_results(
    path: Path,
    families: Mapping[str, Mapping[str, object]],
    threads: int,
    claim_lines: Sequence[str] = (),
    complete: bool = False,
) -> None:
    """Write the table so far to `path` atomically (a reader never sees half a file)."""
    from zoo.pipeline.measure import machine_name

    document = {
        "machine": machine_name(),
        "threads": threads,
        "complete": complete,
        "families": families,
        "claims": list(claim_lines),
    }
    atomic_write_json(path, _plain(document, "results"))


def print_family(family: dict[str, object], sizes: list[int]) -> None:
    best = family["best_dense"]
    assert isinstance(best, dict)
    print(
        f"\nbaseline {family['baseline']}; best dense fp32: "
        + ", ".join(f"batch {k}: {v}" for k, v in best.items())
    )
    head = f"{'entry':24} {'runtime':20}"
    for size in sizes:
        p50, p90 = f"b{size} p50 ms", f"b{size} p90"
        head += f" {p50:>11} {p90:>8} {'vs torch':>8} {'vs best':>8}"
    print(head)
    rows = family["rows"]
    assert isinstance(rows, list)
    for row in rows:
        line = f"{row['entry']:24} {row['variant']:20}"
        for size in sizes:
            line += (
                f" {row[f'b{size}_p50_ms']:11.3f} {row[f'b{size}_p90_ms']:8.3f}"
                f" {row[f'b{size}_speedup']:7.2f}x {row[f'b{size}_vs_best_dense']:7.2f}x"
            )
        if any(row.get(f"b{size}_noisy") for size in sizes):
            line += "  NOISY"
        print(line)


def claims(families: dict[str, dict[str, object]], size: int) -> list[str]:
    """The issue's floors, each read off the fastest int8 form of its entries."""
    rows = [r for f in families.values() for r in f["rows"]]  # type: ignore[attr-defined]
    lines = []
    for what, keys, floor, binding in CLAIMS:
        candidates = [
            r
            for r in rows
            if r["entry"] in keys
            and (r["entry"] != "minilm_dense" or r["variant"] in INT8_VARIANTS)
        ]
        if not candidates:
            continue
        top = max(candidates, key=lambda r: r[f"b{size}_vs_best_dense"])
        ratio = top[f"b{size}_vs_best_dense"]
        verdict = "meets" if ratio >= floor else "MISSES"
        kind = "floor" if binding else "stretch"
        lines.append(
            f"{what}: {ratio:.2f}x the best dense runtime at batch {size} "
            f"({top['entry']} on {top['variant']}; {top[f'b{size}_speedup']:.2f}x torch eager)"
            f" -> {verdict} the {kind} {floor}x"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--exports", type=Path, default=Path("models/export"))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--entries", default=",".join(DEFAULT_ENTRIES), help="keys, or `all`")
    parser.add_argument("--skip", default="", help="runtime variants to leave out")
    parser.add_argument("--batch-sizes", default="1,64")
    # One thread per runtime by default: on a shared machine a multi-threaded run mostly
    # measures how long the scheduler keeps a thread waiting at each barrier.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--budget-s", type=float, default=6.0)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(s) for s in args.batch_sizes.split(",")]
    args.skip = {s for s in args.skip.split(",") if s}
    families: dict[str, dict[str, object]] = {}
    if args.out:
        try:  # an unwritable --out fails now, not after the whole run; a last run's file stays
            with temp_beside(args.out):
                pass
        except OSError as exc:
            print(f"cannot write --out {args.out}: {exc}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    setup = DemoSetup.at(args.params, args.exports, args.data_root)
    keys = setup.keys() if args.entries == "all" else args.entries.split(",")
    missing = [k for k in keys if not (args.exports / k).is_dir()]
    if missing:
        print(
            f"no export for {', '.join(missing)} under {args.exports}: run `make demo`",
            file=sys.stderr,
        )
        return 2
    by_baseline: dict[str, list[str]] = {}
    for key in keys:
        by_baseline.setdefault(setup.entry(key).config.baseline, []).append(key)
    for baseline_key, members in sorted(by_baseline.items()):
        print(f"== {baseline_key}: {', '.join(members)}")
        families[baseline_key] = measure_family(setup, baseline_key, members, args)
        print_family(families[baseline_key], args.batch_sizes)
        if args.out:
            save_results(args.out, families, args.threads)
    print()
    lines = [line for size in args.batch_sizes for line in claims(families, size)]
    print("\n".join(lines))
    if args.out:
        save_results(args.out, families, args.threads, lines, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
