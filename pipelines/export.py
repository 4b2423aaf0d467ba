"""DVC stage `export@<entry>`: the deployable folder (weights, card, recipe, samples, facts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entry", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--benchmark", required=True, type=Path)
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--out", required=True, type=Path, help="export folder")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.pipeline.entries import bench_settings, entry_config
        from zoo.pipeline.export_stage import run_export
        from zoo.pipeline.params import load_params

        params = load_params(args.params)
        entry = entry_config(params, args.entry)
        run_export(
            entry,
            params["zoo"],
            bench_settings(params),
            args.data_root,
            args.model,
            json.loads(args.metrics.read_text()),
            json.loads(args.benchmark.read_text()),
            args.out,
        )
        print(f"{entry.key} -> {args.out} ({entry.stub})")

    run_stage(stage)


if __name__ == "__main__":
    main()
