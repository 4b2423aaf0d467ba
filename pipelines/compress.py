"""DVC stage `compress@<entry>`: make one zoo entry's model from its parent and recipe."""

from __future__ import annotations

import sys
from pathlib import Path

from zoo.pipeline.stage import entry_parser, load_entry, run_stage


def main() -> None:
    parser = entry_parser(__doc__)
    parser.add_argument("--out", required=True, type=Path, help="model folder")
    parser.add_argument("--plots", required=True, type=Path, help="training history (CSV)")
    args = parser.parse_args()

    def stage() -> None:
        from zoo.fsutil import atomic_write_text
        from zoo.pipeline.compress import distribution_of, run_compress
        from zoo.pipeline.dense import history_csv
        from zoo.pipeline.entries import compress_settings
        from zoo.training.distributed import main_process, relaunch

        params, entry = load_entry(args)
        distribution = distribution_of(params, entry, args.data_root)
        # <flow's train>.distributed.nproc_per_node > 1: this script again, N times.
        launched = relaunch(
            distribution.config,
            [__file__, *sys.argv[1:]],
            entry.batch_size,
            f"zoo.{entry.key}",
            distribution.switch,
        )
        if launched is not None:
            sys.exit(launched)
        history = run_compress(
            entry, compress_settings(params), args.data_root, args.out, distribution
        )
        if main_process():
            # Entries made without training still get a (header-only) curve: DVC wants it.
            atomic_write_text(args.plots, history_csv(history))
            print(f"{entry.key} ({entry.flow}) -> {args.out}")

    run_stage(stage)


if __name__ == "__main__":
    main()
