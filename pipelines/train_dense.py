"""DVC stage `train_<flow>`: train one flow's dense baseline from params.yaml."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flow", required=True, help="vision or text")
    parser.add_argument("--data", required=True, type=Path, help="prepared dataset folder")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder")
    parser.add_argument("--metrics", required=True, type=Path)
    parser.add_argument("--plots", required=True, type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.pipeline.dense import run_dense_stage
        from zoo.pipeline.params import flow_config, load_params, train_key
        from zoo.training.distributed import main_process, relaunch

        cfg = flow_config(load_params(args.params), args.flow)
        # train.distributed.nproc_per_node > 1: this script again, N times, under torchrun.
        launched = relaunch(
            cfg.train.distributed,
            [__file__, *sys.argv[1:]],
            cfg.train.batch_size,
            train_key(cfg.flow),
        )
        if launched is not None:
            sys.exit(launched)
        metrics = run_dense_stage(cfg, args.data, args.out, args.metrics, args.plots)
        if main_process():
            print(
                f"dense {args.flow}: test accuracy {metrics['test']['accuracy']:.4f} -> {args.out}"
            )

    run_stage(stage)


if __name__ == "__main__":
    main()
