"""`python -m zoo.pipeline.summary`: the tables `make demo` ends with."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zoo.models.checkpoint import read_config


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def dense_table(models_dir: Path, metrics_dir: Path) -> Table:
    table = Table(title="Dense baselines")
    for column in ("flow", "model", "dataset"):
        table.add_column(column)
    for column in ("parameters", "val acc", "test acc"):
        table.add_column(column, justify="right")
    for metrics_path in sorted(metrics_dir.glob("*.json")):
        metrics = json.loads(metrics_path.read_text())
        checkpoint = models_dir / metrics_path.stem
        config = read_config(checkpoint) if checkpoint.is_dir() else {}
        table.add_row(
            metrics_path.stem,
            config.get("arch", "?"),
            config.get("extra", {}).get("dataset", "?"),
            f"{metrics.get('parameters', 0):,}",
            f"{100 * metrics['val']['accuracy']:.2f}%",
            f"{100 * metrics['test']['accuracy']:.2f}%",
        )
    return table


def zoo_table(entries: dict[str, Any], root: Path) -> Table:
    table = Table(title="The zoo (each model against its dense baseline)")
    table.add_column("entry")
    table.add_column("flow")
    for column in ("test acc", "retained", "sparsity", "size KB", "smaller", "b64 ms", "faster"):
        table.add_column(column, justify="right")
    table.add_column("registered as")
    for key, entry in entries.items():
        metrics = _json(root / "metrics/zoo" / f"{key}.json")
        bench = _json(root / "metrics/bench" / f"{key}.json")
        receipt = _json(root / "metrics/register" / f"{key}.json")
        if metrics is None or bench is None:
            table.add_row(key, entry["flow"], *["-"] * 7, "(not built)")
            continue
        ours, test = bench["model"], metrics["test"]
        # A causal LM: perplexity (and the ratio to its parent's) in the quality columns.
        quality = (
            (f"ppl {test['perplexity']:.1f}", f"{test['perplexity_ratio']:.2f}x ppl")
            if "perplexity" in test
            else (f"{100 * test['accuracy']:.2f}%", f"{100 * test['retained']:.1f}%")
        )
        table.add_row(
            key,
            entry["flow"],
            *quality,
            f"{100 * ours['sparsity']:.0f}%",
            f"{ours['size_bytes'] / 1024:.1f}",
            f"{bench['size_ratio']:.1f}x",
            f"{ours['b64_p50_ms']:.1f}",
            f"{ours['b64_speedup']:.2f}x",
            receipt["ref"] if receipt else "-",
        )
    return table


def main() -> int:
    from zoo.pipeline.params import load_params

    root = Path(".")
    # Logs and pipes get the whole table, not one cut to rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not any((root / "metrics/dense").glob("*.json")):
        print("nothing produced yet: run `make demo` (or `dvc repro`)")
        return 1
    console.print(dense_table(root / "models/dense", root / "metrics/dense"))
    entries = load_params(root / "params.yaml").get("zoo", {})
    if entries:
        console.print(zoo_table(entries, root))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
