"""DVC stage `export@<entry>`: the deployable folder (weights, card, recipe, samples, facts)."""

from __future__ import annotations

import json
from pathlib import Path

from zoo.pipeline.stage import entry_parser, load_entry, run_stage


def main() -> None:
    parser = entry_parser(__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--benchmark", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="export folder")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.evaluation.schema import BenchmarkReport
        from zoo.pipeline.entries import bench_settings
        from zoo.pipeline.export_stage import run_export

        params, entry = load_entry(args)
        run_export(
            entry,
            params["zoo"],
            bench_settings(params),
            args.data_root,
            args.model,
            json.loads(args.metrics.read_text()),
            BenchmarkReport.from_dict(json.loads(args.benchmark.read_text()), str(args.benchmark)),
            args.out,
        )
        print(f"{entry.key} -> {args.out} ({entry.stub})")

    run_stage(stage)


if __name__ == "__main__":
    main()
