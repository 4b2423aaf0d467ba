"""How numbers are shown to people, in the CLI and the catalog alike."""

from __future__ import annotations

from typing import Any

#: The two sparsity figures, named the same way in the CLI, the catalog, the summary table
#: and the README: zeros among the weights of prunable (conv / linear) layers, and zeros
#: among every weight of the model (embeddings, norms and biases included).
PRUNABLE_SPARSITY = "sparsity (prunable layers)"
MODEL_SPARSITY = "sparsity (all weights)"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} GB"


def fmt_metric(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.4g}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def fmt_int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
