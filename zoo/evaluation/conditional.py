"""Facts of conditional-computation models, measured while they run on real data.

Mixture-of-experts layers (zoo.modifiers.moe) count the tokens routed to each expert and
early-exit models (zoo.modifiers.early_exit) count the examples entering each layer;
`measure_conditional` switches both counters on around a caller's evaluation and turns
the counts into scalar facts for the entry's metrics (search and the catalog read those):

    total_parameters                 every parameter the model holds
    active_parameters                parameters used per example on average: experts a
                                     token was not routed to, and layers / exits an
                                     example never reached, do not count
    mean_layers_executed             early exit: encoder layers run per example
    expert_load_max, expert_load_min MoE: the busiest and idlest expert's share of the
                                     routed assignments, over all MoE layers (1/E each
                                     when perfectly balanced)
    expert_load/<layer>/<expert>     MoE: the load histogram, every expert's share

`choose_exit_threshold` sweeps an early-exit model's threshold on labelled batches and
sets the chosen one; its facts (the sweep, `exit_threshold`) join the same metrics.
Names and readers: zoo.evaluation.conditional_names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from zoo.evaluation.conditional_names import load_name, sweep_name
from zoo.modifiers import early_exit, moe

T = TypeVar("T")
Batch = tuple[dict[str, torch.Tensor], torch.Tensor]
#: Thresholds as fractions of the way from "never exit" to "always exit", every 2.5%
#: up to 97.5%: the sweep replays one pass per point (early_exit.sweep), so a fine grid
#: is free, and on MiniLM / Rotten Tomatoes the 0.8 -> 0.95 step alone went from 4.3 to
#: 3.0 layers run.
SWEEP_FRACTIONS = tuple(i / 40 for i in range(40))


def is_conditional(model: nn.Module) -> bool:
    return early_exit.exit_spec(model) is not None or any(True for _ in moe.moe_layers(model))


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _unused_by_depth(model: nn.Module) -> tuple[float, float | None]:
    """Parameters of layers / exits an average example skipped, and mean layers run."""
    usage = early_exit.layer_usage(model)
    if usage is None:
        return 0.0, None
    mean_layers, entered, examples = usage
    layers = early_exit.encoder_layers(model)
    unused = sum(
        _params(layer) * (1 - n / examples) for layer, n in zip(layers, entered, strict=True)
    )
    heads: Any = getattr(model, early_exit.HEADS)
    unused += sum(_params(heads[str(i)]) * (1 - entered[i] / examples) for i in map(int, heads))
    classifier: Any = model.classifier
    unused += _params(classifier) * (1 - entered[-1] / examples)
    return unused, mean_layers


def measure_conditional(model: nn.Module, run: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """Run `run()` (an evaluation of `model`) with the counters on; its result and the
    facts above ({} for a model with no conditional part)."""
    if not is_conditional(model):
        return run(), {}
    moe.set_tracking(model, True)
    early_exit.set_tracking(model, True)
    try:
        result = run()
        unused_experts, load = moe.active_share(model)
        unused_depth, mean_layers = _unused_by_depth(model)
    finally:
        moe.set_tracking(model, False)
        early_exit.set_tracking(model, False)
    total = _params(model)
    facts: dict[str, float] = {
        "total_parameters": float(total),
        "active_parameters": round(total - unused_experts - unused_depth, 1),
    }
    if mean_layers is not None:
        facts["mean_layers_executed"] = round(mean_layers, 4)
    shares = [s for layer in load.values() for s in layer]
    if shares:
        facts["expert_load_max"], facts["expert_load_min"] = max(shares), min(shares)
    for layer, layer_shares in load.items():
        facts.update({load_name(layer, i): share for i, share in enumerate(layer_shares)})
    return result, facts


def sweep_thresholds(criterion: str, num_classes: int) -> list[float]:
    """The thresholds swept for `criterion`, the first one never firing: entropy from 0
    up to 0.975 x the largest possible (ln C), top probability from 1 down to 1/C +
    2.5% of the way to 1."""
    if criterion == "entropy":
        top = math.log(num_classes)
        values = [f * top for f in SWEEP_FRACTIONS]
    else:
        values = [1.0 - f * (1.0 - 1.0 / num_classes) for f in SWEEP_FRACTIONS]
    return [float(f"{v:.6g}") for v in values]  # as the metric names spell them


def choose_exit_threshold(
    model: nn.Module, batches: Sequence[Batch], max_drop: float, threshold: float | None = None
) -> dict[str, float]:
    """Sweep an early-exit model's threshold on labelled `batches` (validation data) and
    set the operating point on the model: `threshold` when given, else the fastest point
    within `max_drop` accuracy (a fraction: 0.01 is one point) of the full model.
    Returns the sweep and the choice as metric facts; {} for a model without exits."""
    spec = early_exit.exit_spec(model)
    if spec is None:
        return {}
    classifier: Any = model.classifier
    thresholds = sweep_thresholds(spec["criterion"], classifier.out_features)
    if threshold is not None and threshold not in thresholds:
        thresholds.append(float(threshold))
    points = early_exit.sweep(model, list(batches), thresholds)
    if threshold is None:
        full = points[0]["accuracy"]  # the first threshold never (entropy) or hardly fires
        threshold = early_exit.choose_operating_point(points, max_drop, reference=full)["threshold"]
    early_exit.set_threshold(model, threshold)
    facts = {"exit_threshold": float(threshold), "exit_max_drop": float(max_drop)}
    for point in points:
        for measure in ("accuracy", "mean_layers"):
            facts[sweep_name(point["threshold"], measure)] = round(point[measure], 6)
    return facts
