"""DVC stage `pareto`: one CSV per dataset of accuracy, size and latency, fronts marked."""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, type=Path, help="folder of evaluate JSONs")
    parser.add_argument("--bench", required=True, type=Path, help="folder of benchmark JSONs")
    parser.add_argument("--out", required=True, type=Path, help="folder for <dataset>.csv")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.fsutil import atomic_dir
        from zoo.pipeline.params import load_params
        from zoo.pipeline.pareto import collect_points, mark_fronts, points_csv

        entries = load_params(args.params)["zoo"]
        datasets = {key: str(entry["data"]) for key, entry in entries.items()}
        points = collect_points(args.metrics, args.bench, datasets)
        mark_fronts(points)
        with atomic_dir(args.out) as tmp:
            for dataset in sorted({p.dataset for p in points}):
                group = [p for p in points if p.dataset == dataset]
                (tmp / f"{dataset}.csv").write_text(points_csv(group))
        print(f"pareto: {len(points)} entries -> {args.out}")

    run_stage(stage)


if __name__ == "__main__":
    main()
