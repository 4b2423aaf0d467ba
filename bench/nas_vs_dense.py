"""A search's best trial beside the demo's hand-designed dense CNN, measured in one run
(acceptance 1 of the architecture search: at least the dense CNN's test accuracy with
>= 2x lower batch-1 latency or >= 3x smaller deployable size).

For each front trial of the study, its model (`models/zoo/<entry>` of its DVC experiment,
fetched from DVC's cache at the experiment's commit) and the dense CNN are evaluated on
the same full test split and timed side by side in interleaved rounds.

Run (after `make demo` and `make nas`):
    .venv/bin/python bench/nas_vs_dense.py --study demo --dense models/zoo/cnn_dense
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from zoo.nas.config import load_search
from zoo.nas.driver import default_storage, open_study
from zoo.nas.front import front
from zoo.pipeline.entries import BenchSettings, CompressSettings, EntryConfig
from zoo.pipeline.measure import run_benchmark, run_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="demo")
    parser.add_argument("--overrides", nargs="*", default=[], help="the study's overrides")
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--dense", type=Path, default=Path("models/zoo/cnn_dense"))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=None, help="JSON report")
    args = parser.parse_args()

    root = args.repo.resolve()
    config = load_search(args.study, root / "conf" / "search", args.overrides)
    study = open_study(config, default_storage(root, config), create=False)
    from dvc.api import DVCFileSystem

    bench = BenchSettings(batch_sizes=[1, 64], rounds=30, budget_s=3.0, warmup=2)
    rows = []
    for trial in front(study):
        with tempfile.TemporaryDirectory(prefix="zoo-nas-bench-") as tmp:
            model_dir = Path(tmp) / "model"
            fs = DVCFileSystem(str(root), rev=trial.commit)
            fs.get(f"models/zoo/{config.entry}", str(model_dir), recursive=True)
            entry = EntryConfig(
                key=f"t{trial.number}",
                flow="dense",
                parent=str(args.dense),
                data="fashion_mnist",
                stub=trial.stub,
                baseline="cnn_dense",
                recipe="",
            )
            metrics = run_evaluate(entry, CompressSettings(), args.data_root, model_dir, args.dense)
            report = run_benchmark(entry, bench, args.data_root, model_dir, args.dense)
        ours, dense = report.model, report.baseline
        row = {
            "trial": trial.number,
            "params": trial.params,
            "test_accuracy": metrics["test"]["accuracy"],
            "dense_test_accuracy": metrics["test"]["baseline_accuracy"],
            "b1_ms": ours.batches[1].p50_ms,
            "dense_b1_ms": dense.batches[1].p50_ms,
            "latency_ratio": dense.batches[1].p50_ms / ours.batches[1].p50_ms,
            "size_bytes": ours.size_bytes,
            "dense_size_bytes": dense.size_bytes,
            "size_ratio": (dense.size_bytes or 0) / (ours.size_bytes or 1),
        }
        row["dominates"] = row["test_accuracy"] >= row["dense_test_accuracy"] and (
            row["latency_ratio"] >= 2.0 or row["size_ratio"] >= 3.0
        )
        rows.append(row)
        print(
            f"t{trial.number}: test accuracy {row['test_accuracy']:.4f} vs dense "
            f"{row['dense_test_accuracy']:.4f}; batch-1 {row['b1_ms']:.3f} ms vs "
            f"{row['dense_b1_ms']:.3f} ms ({row['latency_ratio']:.2f}x); size "
            f"{row['size_bytes']} vs {row['dense_size_bytes']} B ({row['size_ratio']:.2f}x)"
            f"{'  DOMINATES' if row['dominates'] else ''}"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{sum(r['dominates'] for r in rows)} of {len(rows)} front trials dominate the dense CNN")


if __name__ == "__main__":
    main()
