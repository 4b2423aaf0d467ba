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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from zoo.modifiers import early_exit, moe

T = TypeVar("T")
#: The facts' names, as the entry's metrics carry them (zoo/pipeline/export_stage.py).
FACTS = (
    "total_parameters",
    "active_parameters",
    "mean_layers_executed",
    "expert_load_max",
    "expert_load_min",
)


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
    return result, facts
