"""`python -m zoo.pipeline.summary`: the tables `make demo` ends with."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zoo.client.fmt import MODEL_SPARSITY, PRUNABLE_SPARSITY
from zoo.evaluation.schema import BenchmarkReport
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
    columns = (
        "test acc",
        "retained",
        PRUNABLE_SPARSITY,
        MODEL_SPARSITY,
        "size KB",
        "smaller",
        "b64 ms",
        "faster",
        "control",
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("registered as")
    for key, entry in entries.items():
        metrics = _json(root / "metrics/zoo" / f"{key}.json")
        bench_json = _json(root / "metrics/bench" / f"{key}.json")
        receipt = _json(root / "metrics/register" / f"{key}.json")
        export = _json(root / "models/export" / key / "zoo.json")
        if metrics is None or bench_json is None:
            table.add_row(key, entry["flow"], *["-"] * len(columns), "(not built)")
            continue
        ours = BenchmarkReport.from_dict(bench_json, f"metrics/bench/{key}.json").model
        b64 = ours.batches[max(ours.batches)]
        prunable = export["sparsity"]["overall"] if export else None
        test = metrics["test"]
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
            "-" if prunable is None else f"{100 * prunable:.0f}%",
            f"{100 * (ours.sparsity or 0.0):.0f}%",
            f"{(ours.size_bytes or 0) / 1024:.1f}",
            f"{ours.size_ratio or 0.0:.1f}x",
            f"{b64.p50_ms:.1f}",
            f"{b64.speedup or 0.0:.2f}x ±{100 * (b64.spread or 0.0):.0f}%"
            + (" (noisy)" if b64.noisy else ""),
            f"{b64.control or 0.0:.2f}x",
            receipt["ref"] if receipt else "-",
        )
    return table


def main() -> int:
    from zoo.pipeline.params import load_params

    root = Path(".")
    # Logs and pipes get the whole table, not one cut to rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 320)
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
