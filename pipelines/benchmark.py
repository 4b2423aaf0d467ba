"""DVC stage `benchmark@<entry>`: CPU speed, memory, size and FLOPs beside the baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entry", required=True)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--out", required=True, type=Path, help="benchmark JSON")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.fsutil import atomic_write_json
        from zoo.pipeline.entries import bench_settings, entry_config
        from zoo.pipeline.measure import run_benchmark
        from zoo.pipeline.params import load_params

        params = load_params(args.params)
        entry = entry_config(params, args.entry)
        result = run_benchmark(
            entry, bench_settings(params), args.data_root, args.model, args.baseline
        )
        atomic_write_json(args.out, result)
        ours = result["model"]
        print(
            f"{entry.key}: batch 64 {ours['b64_p50_ms']:.2f} ms "
            f"({ours['b64_speedup']:.2f}x the baseline), size ratio {result['size_ratio']:.2f}x"
        )

    run_stage(stage)


if __name__ == "__main__":
    main()
