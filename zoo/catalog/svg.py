"""Inline SVG drawings for the catalog: scatter plots with the Pareto front, lineage graphs.

Hand-written SVG rather than matplotlib: the pages stay self-contained and offline, each
point can link to its model page, and building a catalog of hundreds of plots stays fast.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    href: str
    on_front: bool
    searched: bool = False  # found by an architecture search (drawn as a diamond)


@dataclass(frozen=True)
class Node:
    label: str
    sublabel: str
    href: str | None
    current: bool = False


W, H = 560, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 34, 48


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0**exponent
            if lo <= value <= hi:
                ticks.append(value)
    return ticks or [lo, hi]


def _linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def scatter(
    points: Sequence[Point],
    *,
    x_label: str,
    y_label: str,
    x_format: Callable[[float], str],
    y_format: Callable[[float], str] = lambda v: f"{v:.3g}",
    title: str = "",
) -> str:
    """A log-x scatter plot; front members filled and joined by a staircase line."""
    usable = [p for p in points if p.x > 0 and math.isfinite(p.x) and math.isfinite(p.y)]
    if not usable:
        return f'<p class="empty">No models with both {escape(x_label)} and {escape(y_label)}.</p>'
    xs = [p.x for p in usable]
    ys = [p.y for p in usable]
    x_lo, x_hi = min(xs) / 1.4, max(xs) * 1.4
    y_pad = max((max(ys) - min(ys)) * 0.12, 0.005)
    y_lo, y_hi = min(ys) - y_pad, max(ys) + y_pad
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(v: float) -> float:
        span = math.log10(x_hi) - math.log10(x_lo)
        return LEFT + (math.log10(v) - math.log10(x_lo)) / span * plot_w

    def sy(v: float) -> float:
        return TOP + (1 - (v - y_lo) / (y_hi - y_lo)) * plot_h

    out = [
        f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title or y_label + " vs " + x_label)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]
    for tick in _log_ticks(x_lo, x_hi):
        x = sx(tick)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" class="grid"/>')
        out.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" class="tick" text-anchor="middle">'
            f"{escape(x_format(tick))}</text>"
        )
    for tick in _linear_ticks(y_lo, y_hi):
        y = sy(tick)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{escape(y_format(tick))}</text>"
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{H - 8}" class="axis" text-anchor="middle">'
        f"{escape(x_label)} (log scale)</text>"
    )
    out.append(
        f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" class="axis" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    front = sorted((p for p in usable if p.on_front), key=lambda p: p.x)
    if front:
        # Staircase: the best quality reachable at each cost, flat until the next member.
        steps = [f"{sx(front[0].x):.1f},{sy(front[0].y):.1f}"]
        for prev, cur in itertools.pairwise(front):
            steps.append(f"{sx(cur.x):.1f},{sy(prev.y):.1f}")
            steps.append(f"{sx(cur.x):.1f},{sy(cur.y):.1f}")
        steps.append(f"{LEFT + plot_w},{sy(front[-1].y):.1f}")
        out.append(f'<polyline points="{" ".join(steps)}" class="front-line"/>')
    for p in sorted(usable, key=lambda p: p.on_front):
        cls = "pt front" if p.on_front else "pt"
        tip = f"{p.label}\n{x_label}: {x_format(p.x)}\n{y_label}: {y_format(p.y)}"
        if p.searched:
            tip += "\nfound by an architecture search"
        shape = _marker(sx(p.x), sy(p.y), 6 if p.on_front else 5, p.searched, cls)
        out.append(f'<a href="{escape(p.href)}">{shape}<title>{escape(tip)}</title></a>')
    # The legend sits above the frame, where it can never hide a point.
    legend_x = LEFT + 6
    out.append(
        f'<circle cx="{legend_x}" cy="14" r="5" class="pt front"/>'
        f'<text x="{legend_x + 10}" y="18" class="legend">Pareto front</text>'
        f'<circle cx="{legend_x + 110}" cy="14" r="5" class="pt"/>'
        f'<text x="{legend_x + 120}" y="18" class="legend">dominated</text>'
    )
    if any(p.searched for p in usable):
        out.append(
            _marker(legend_x + 200, 14, 5, True, "pt legend-sample")
            + f'<text x="{legend_x + 210}" y="18" class="legend">architecture search</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _marker(x: float, y: float, r: float, diamond: bool, cls: str) -> str:
    """A circle for a hand-designed model, a diamond for one an architecture search found:
    the two stay apart on the same front, whatever their colour."""
    if not diamond:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" class="{cls}"/>'
    d = r * 1.3
    points = f"{x:.1f},{y - d:.1f} {x + d:.1f},{y:.1f} {x:.1f},{y + d:.1f} {x - d:.1f},{y:.1f}"
    return f'<polygon points="{points}" class="{cls} searched"/>'


def _short(ref: str) -> tuple[str, str]:
    """`zoo:cv/classification/mlp/mnist/pruned90@v2` -> (`mlp/mnist`, `pruned90@v2`)."""
    body = ref.removeprefix("zoo:")
    path, _, version = body.partition("@")
    parts = path.split("/")
    if len(parts) != 5:
        return body[-30:], ""
    return f"{parts[2]}/{parts[3]}", f"{parts[4]}@{version}" if version else parts[4]


def chain(nodes: Sequence[Node]) -> str:
    """A left-to-right graph of a lineage chain (oldest ancestor first)."""
    if not nodes:
        return ""
    box_w, box_h, gap = 200, 66, 40
    width = len(nodes) * box_w + (len(nodes) - 1) * gap + 8
    height = box_h + 8
    out = [
        f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="lineage" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/>'
        "</marker></defs>",
    ]
    for i, node in enumerate(nodes):
        x = 4 + i * (box_w + gap)
        top, bottom = _short(node.label)
        mid = x + box_w / 2
        box = (
            f"<g><title>{escape(node.label)}</title>"
            f'<rect x="{x}" y="4" width="{box_w}" height="{box_h}" rx="6" '
            f'class="node{" current" if node.current else ""}"/>'
            f'<text x="{mid}" y="23" text-anchor="middle" class="node-sub">{escape(top)}</text>'
            f'<text x="{mid}" y="42" text-anchor="middle" class="node-label">'
            f"{escape(bottom)}</text>"
            f'<text x="{mid}" y="60" text-anchor="middle" class="node-sub">'
            f"{escape(node.sublabel)}</text></g>"
        )
        out.append(f'<a href="{escape(node.href)}">{box}</a>' if node.href else box)
        if i:
            out.append(
                f'<line x1="{x - gap + 2}" y1="{4 + box_h / 2}" x2="{x - 2}" '
                f'y2="{4 + box_h / 2}" class="edge" marker-end="url(#arrow)"/>'
            )
    out.append("</svg>")
    return "\n".join(out)


def bars(shares: Sequence[float], label: str) -> str:
    """A small column chart of shares in [0, 1] (an MoE layer's expert load), with the
    even share (1/n) drawn as a dashed line."""
    if not shares:
        return ""
    col, gap, plot_h, top, bottom = 28, 8, 60, 14, 16
    width = len(shares) * (col + gap) + gap
    height = top + plot_h + bottom
    even_y = top + plot_h * (1 - 1 / len(shares))
    out = [
        f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, share in enumerate(shares):
        value = min(1.0, max(0.0, share))
        x, h = gap + i * (col + gap), plot_h * value
        out.append(
            f'<rect x="{x}" y="{top + plot_h - h:.1f}" width="{col}" height="{h:.1f}" '
            f'class="bar"><title>expert {i}: {100 * share:.1f}%</title></rect>'
            f'<text x="{x + col / 2}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle" '
            f'class="tick">{100 * share:.0f}%</text>'
            f'<text x="{x + col / 2}" y="{height - 3}" text-anchor="middle" class="tick">'
            f"{i}</text>"
        )
    out.append(
        f'<line x1="0" y1="{even_y:.1f}" x2="{width}" y2="{even_y:.1f}" class="even">'
        f"<title>even load: {100 / len(shares):.1f}%</title></line>"
    )
    out.append("</svg>")
    return "\n".join(out)
