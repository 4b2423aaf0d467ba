"""DVC stage `evaluate@<entry>`: accuracy, loss and agreement with the dense baseline."""

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
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.fsutil import atomic_write_json
        from zoo.pipeline.entries import compress_settings, entry_config
        from zoo.pipeline.measure import run_evaluate
        from zoo.pipeline.params import load_params

        params = load_params(args.params)
        entry = entry_config(params, args.entry)
        metrics = run_evaluate(
            entry, compress_settings(params), args.data_root, args.model, args.baseline
        )
        atomic_write_json(args.metrics, metrics)
        test = metrics["test"]
        print(
            f"{entry.key}: test accuracy {test['accuracy']:.4f} "
            f"({100 * test['retained']:.2f}% of {entry.baseline}), "
            f"agreement {test['agreement']:.4f}"
        )

    run_stage(stage)


if __name__ == "__main__":
    main()
