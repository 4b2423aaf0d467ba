"""`python -m zoo.pipeline.summary`: a table of what the pipeline produced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zoo.models.checkpoint import read_config


def dense_rows(models_dir: Path, metrics_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for metrics_path in sorted(metrics_dir.glob("*.json")):
        flow = metrics_path.stem
        metrics = json.loads(metrics_path.read_text())
        checkpoint = models_dir / flow
        config = read_config(checkpoint) if checkpoint.is_dir() else {}
        size = sum(f.stat().st_size for f in checkpoint.glob("*")) if checkpoint.is_dir() else 0
        rows.append(
            {
                "flow": flow,
                "model": config.get("arch", "?"),
                "dataset": config.get("extra", {}).get("dataset", "?"),
                "parameters": metrics.get("parameters"),
                "size_mb": size / 1e6,
                "val_accuracy": metrics["val"]["accuracy"],
                "test_accuracy": metrics["test"]["accuracy"],
                "train_seconds": metrics.get("train_seconds"),
                "path": str(checkpoint),
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Dense baselines")
    for column in (
        "flow",
        "model",
        "dataset",
        "parameters",
        "size MB",
        "val acc",
        "test acc",
        "train s",
        "checkpoint",
    ):
        table.add_column(
            column, justify="right" if column[0].islower() and " " in column else "left"
        )
    for r in rows:
        table.add_row(
            r["flow"],
            r["model"],
            r["dataset"],
            r["path"],
            f"{r['parameters']:,}",
            f"{r['size_mb']:.2f}",
            f"{100 * r['val_accuracy']:.2f}%",
            f"{100 * r['test_accuracy']:.2f}%",
            f"{r['train_seconds']}",
        )
    return table


def main() -> int:
    rows = dense_rows(Path("models/dense"), Path("metrics/dense"))
    if not rows:
        print("nothing produced yet: run `make demo` (or `dvc repro`)")
        return 1
    Console().print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
