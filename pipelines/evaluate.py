"""DVC stage `evaluate@<entry>`: accuracy, loss and agreement with the dense baseline."""

from __future__ import annotations

from pathlib import Path

from zoo.pipeline.stage import entry_parser, load_entry, run_stage


def main() -> None:
    parser = entry_parser(__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--metrics", required=True, type=Path)
    args = parser.parse_args()

    def stage() -> None:
        from zoo.fsutil import atomic_write_json
        from zoo.pipeline.entries import compress_settings
        from zoo.pipeline.measure import run_evaluate

        params, entry = load_entry(args)
        metrics = run_evaluate(
            entry, compress_settings(params), args.data_root, args.model, args.baseline
        )
        atomic_write_json(args.metrics, metrics)
        test = metrics["test"]
        if "perplexity" in test:
            print(
                f"{entry.key}: test perplexity {test['perplexity']:.2f} "
                f"(parent {test['parent_perplexity']:.2f})"
            )
            return
        print(
            f"{entry.key}: test accuracy {test['accuracy']:.4f} "
            f"({100 * test['retained']:.2f}% of {entry.baseline}), "
            f"agreement {test['agreement']:.4f}"
        )

    run_stage(stage)


if __name__ == "__main__":
    main()
