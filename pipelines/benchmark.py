"""DVC stage `benchmark@<entry>`: CPU speed, memory, size and FLOPs beside the baseline."""

from __future__ import annotations

import json
from pathlib import Path

from zoo.pipeline.stage import entry_parser, load_entry, run_stage


def main() -> None:
    parser = entry_parser(__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="benchmark JSON")
    parser.add_argument(
        "--metrics", type=Path, help="the evaluate stage's JSON (early exit: its threshold)"
    )
    args = parser.parse_args()

    def stage() -> None:
        from zoo.fsutil import atomic_write_json
        from zoo.pipeline.entries import bench_settings
        from zoo.pipeline.measure import run_benchmark

        params, entry = load_entry(args)
        metrics = json.loads(args.metrics.read_text()) if args.metrics else None
        report = run_benchmark(
            entry,
            bench_settings(params),
            args.data_root,
            args.model,
            args.baseline,
            metrics,
            str(args.metrics),
        )
        atomic_write_json(args.out, report.to_dict())
        largest = max(report.model.batches)
        ours = report.model.batches[largest]
        print(
            f"{entry.key}: batch {largest} {ours.p50_ms:.2f} ms ({ours.speedup:.2f}x the "
            f"baseline, control {ours.control:.2f}x, spread {ours.spread:.2f}"
            f"{', NOISY' if ours.noisy else ''}), size ratio {report.size_ratio:.2f}x"
        )

    run_stage(stage)


if __name__ == "__main__":
    main()
