"""Early exit (adaptive depth, as DeeBERT, Xin et al. 2020): classifiers after chosen
encoder layers, and inference that stops at the first confident one.

`attach` adds a linear head after each chosen layer of a BERT-style text classifier
(`model.encoder` a transformers BertModel, masked mean pooling, `model.classifier`: the
zoo's minilm_classifier) and swaps in a forward that runs the layers one by one. In eval
mode, after each exit the examples whose prediction is confident enough (entropy below
the threshold, or top probability at or above it) leave the batch with that exit's
logits; the rest run on, so the work is per example even in a batch. In train mode every
layer runs and the exits' logits are kept for the loss.

The exits learn by self-distillation from the final classifier (KL to its detached
softmax, as BERxiT / PABEE variants do): the manager's loss hook sees inputs and outputs,
not labels, and the final classifier's answer is what an exit should reproduce early.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modifiers.base import ModifierState, TransformOnceModifier
from zoo.modifiers.lowrank import replace_params_in_optimizer

Criterion = Literal["entropy", "max_prob"]
#: The attribute an early-exit model keeps its settings in (saved by the format).
SPEC_ATTR = "zoo_early_exit"
HEADS = "exit_heads"


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder blocks of a zoo text classifier; TypeError for any other model."""
    layers = getattr(getattr(getattr(model, "encoder", None), "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not isinstance(
        getattr(model, "classifier", None), nn.Linear
    ):
        raise TypeError(
            f"{type(model).__name__} is not a BERT-style text classifier "
            "(encoder.encoder.layer + classifier)"
        )
    return layers


def confident(logits: torch.Tensor, criterion: str, threshold: float) -> torch.Tensor:
    """Per example: does this prediction pass the threshold?"""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if criterion == "entropy":
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return entropy < threshold
    return log_probs.exp().max(-1).values >= threshold


def _pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """[B, S] 1/0 -> [B, 1, 1, S] 0/-inf-like, what eager and SDPA attention both take;
    None without padding (a batch of one), as transformers' own BertModel passes it, so
    attention takes the same mask-free kernel as the dense model it is timed against."""
    if bool(attention_mask.all()):
        return None
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _all_exits(
    model: Any, hidden: torch.Tensor, mask: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every layer run: each exit's logits (in layer order) and the final classifier's."""
    heads: nn.ModuleDict = getattr(model, HEADS)
    additive = _additive_mask(mask, hidden.dtype)
    exit_logits = []
    for i, layer in enumerate(encoder_layers(model)):
        hidden = layer(hidden, additive)
        if str(i) in heads:
            exit_logits.append(heads[str(i)](model.dropout(_pool(hidden, mask))))
    return exit_logits, model.classifier(model.dropout(_pool(hidden, mask)))


def early_exit_forward(
    self: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    spec = getattr(self, SPEC_ATTR)
    hidden = self.encoder.embeddings(input_ids=input_ids)
    if self.training:
        exit_logits, final = _all_exits(self, hidden, attention_mask)
        spec["exit_logits"] = exit_logits  # for the loss hook, taken by it
        return final
    return _exit_early(self, spec, hidden, attention_mask)


def _exit_early(
    model: Any, spec: dict[str, Any], hidden: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Inference: examples leave the batch at their first confident exit. Kept lean on
    purpose (one host sync per exit, the mask built once), as its Python overhead is paid
    on every layer of a batch-1 call and would eat the layers it saves."""
    heads: nn.ModuleDict = getattr(model, HEADS)
    layers = encoder_layers(model)
    out = hidden.new_empty(hidden.shape[0], model.classifier.out_features)
    active = torch.arange(hidden.shape[0], device=hidden.device)
    additive = _additive_mask(mask, hidden.dtype)
    entered = [0] * len(layers) if spec.get("tracking") else None
    examples = hidden.shape[0]
    for i, layer in enumerate(layers):
        if entered is not None:
            entered[i] = hidden.shape[0]
        hidden = layer(hidden, additive)
        if str(i) not in heads:
            continue
        logits = heads[str(i)](_pool(hidden, mask))
        done = confident(logits, spec["criterion"], spec["threshold"])
        if not bool(done.any()):
            continue
        out[active[done]] = logits[done].to(out.dtype)
        keep = ~done
        active, hidden, mask = active[keep], hidden[keep], mask[keep]
        additive = None if additive is None else additive[keep]
        if active.numel() == 0:
            break
    if active.numel():
        out[active] = model.classifier(_pool(hidden, mask)).to(out.dtype)
    if entered is not None:
        spec["examples"] = spec.get("examples", 0) + examples
        spec["layers_executed"] = spec.get("layers_executed", 0) + sum(entered)
        counts = spec.setdefault("entered", [0] * len(layers))
        for i, n in enumerate(entered):
            counts[i] += n
    return out


def attach(model: nn.Module, exits: list[int], criterion: str, threshold: float) -> nn.ModuleDict:
    """Add exit heads after the layers `exits` (0-based) and the early-exit forward, in
    place; heads start as copies of the final classifier. Returns the heads."""
    layers = encoder_layers(model)
    bad = [i for i in exits if not 0 <= i < len(layers) - 1]
    if bad:
        raise IndexError(f"exits {bad} are outside 0..{len(layers) - 2}")
    final: Any = model.classifier
    heads = nn.ModuleDict()
    for i in sorted(exits):
        head = nn.Linear(final.in_features, final.out_features).to(final.weight.device)
        head.load_state_dict(final.state_dict())
        heads[str(i)] = head
    setattr(model, HEADS, heads)
    setattr(
        model, SPEC_ATTR, {"exits": sorted(exits), "criterion": criterion, "threshold": threshold}
    )
    # The forward is the model's own attribute: the class stays the architecture's.
    model.forward = types.MethodType(early_exit_forward, model)
    return heads


def exit_spec(model: nn.Module) -> dict[str, Any] | None:
    """The saved settings of an early-exit model ({"exits", "criterion", "threshold"})."""
    spec = getattr(model, SPEC_ATTR, None)
    return {k: spec[k] for k in ("exits", "criterion", "threshold")} if spec else None


def set_threshold(model: nn.Module, threshold: float) -> None:
    getattr(model, SPEC_ATTR)["threshold"] = float(threshold)


def set_tracking(model: nn.Module, on: bool) -> None:
    spec = getattr(model, SPEC_ATTR, None)
    if spec is not None:
        for key in ("examples", "layers_executed", "entered"):
            spec.pop(key, None)
        spec["tracking"] = on


def layer_usage(model: nn.Module) -> tuple[float, list[int], int] | None:
    """(mean layers executed, examples entering each layer, examples) since tracking began."""
    spec = getattr(model, SPEC_ATTR, None)
    if not spec or not spec.get("examples"):
        return None
    return spec["layers_executed"] / spec["examples"], list(spec["entered"]), spec["examples"]


@torch.no_grad()
def exit_trace(
    model: Any, batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]]
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """One pass with every layer run: each exit's logits and the final logits over all
    `batches` ([N, C] each), and the labels ([N])."""
    was, encoder = model.training, model.encoder
    model.eval()
    try:
        per_batch = []
        for inputs, _ in batches:
            hidden = encoder.embeddings(input_ids=inputs["input_ids"])
            per_batch.append(_all_exits(model, hidden, inputs["attention_mask"]))
    finally:
        model.train(was)
    exits = [torch.cat([b[0][k] for b in per_batch]) for k in range(len(per_batch[0][0]))]
    return exits, torch.cat([b[1] for b in per_batch]), torch.cat([y for _, y in batches])


def replay(
    model: nn.Module,
    trace: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor],
    threshold: float,
) -> dict[str, float]:
    """Accuracy and mean layers executed at `threshold`, from an `exit_trace`: what the
    early-exit forward decides, example by example (an example's states do not depend on
    the rest of its batch), without running the model again."""
    spec = getattr(model, SPEC_ATTR)
    exit_logits, final, labels = trace
    layers = torch.full_like(labels, len(encoder_layers(model)))
    predicted = final.argmax(-1)
    undecided = torch.ones_like(labels, dtype=torch.bool)
    for layer, logits in zip(spec["exits"], exit_logits, strict=True):
        leaves = undecided & confident(logits, spec["criterion"], threshold)
        layers[leaves], predicted[leaves] = layer + 1, logits[leaves].argmax(-1)
        undecided &= ~leaves
    n = max(1, labels.numel())
    return {
        "threshold": threshold,
        "accuracy": int((predicted == labels).sum()) / n,
        "mean_layers": int(layers.sum()) / n,
    }


def sweep(
    model: nn.Module,
    batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
    thresholds: list[float],
) -> list[dict[str, float]]:
    """Accuracy and mean layers executed at each threshold, on labelled batches: one
    pass through the model however many thresholds (so the sweep can be fine)."""
    if not batches:
        return [{"threshold": t, "accuracy": 0.0, "mean_layers": 0.0} for t in thresholds]
    trace = exit_trace(model, batches)
    return [replay(model, trace, threshold) for threshold in thresholds]


def choose_operating_point(
    results: list[dict[str, float]], max_drop: float, reference: float | None = None
) -> dict[str, float]:
    """The sweep point with the fewest layers whose accuracy is within `max_drop` of
    `reference` (the full model's accuracy; default: the best accuracy seen)."""
    best = max(r["accuracy"] for r in results) if reference is None else reference
    fit = [r for r in results if r["accuracy"] >= best - max_drop]
    if not fit:  # nothing within budget of an outside reference: the most accurate point
        return max(results, key=lambda r: (r["accuracy"], r["mean_layers"]))
    return min(fit, key=lambda r: (r["mean_layers"], -r["accuracy"]))


@dataclass(kw_only=True)
class EarlyExitModifier(TransformOnceModifier):
    """Add exits after the encoder layers in `exits` (0-based, before the last layer) and
    train them by self-distillation (`exit_loss` x the summed KL of each exit to the final
    classifier). `freeze_backbone` trains only the exits; otherwise the backbone trains
    jointly. Inference stops at the first exit passing `threshold` on `criterion`
    ("entropy": entropy below it; "max_prob": top probability at or above it).

    Optional, off unless written: `exit_weights` weighs each exit's term (in the order of
    `exits`; PABEE's depth weighting is [1, 2, ..., n]; default all 1), and `head_lr`
    gives the exits their own optimizer group at that learning rate (default: they join
    the first group). A learning-rate modifier acting on every group overrides `head_lr`;
    give it `param_groups: [0]` to leave the exits' rate alone."""

    conflict_group: ClassVar[str | None] = "structure"

    exits: list[int]
    criterion: Criterion = "entropy"
    threshold: float = 0.3
    freeze_backbone: bool = True
    exit_loss: float = 1.0
    temperature: float = 1.0
    exit_weights: list[float] | None = None
    head_lr: float | None = None

    def check(self) -> None:
        super().check()
        if not self.exits:
            raise self.field_error("exits", "name at least one encoder layer to exit after")
        if len(set(self.exits)) != len(self.exits):
            raise self.field_error("exits", f"lists a layer twice: {self.exits}")
        if self.criterion == "max_prob" and not 0.0 <= self.threshold <= 1.0:
            raise self.field_error("threshold", f"a probability in [0, 1], got {self.threshold}")
        if self.threshold < 0:
            raise self.field_error("threshold", f"must be >= 0, got {self.threshold}")
        for name in ("exit_loss", "temperature"):
            if getattr(self, name) <= 0:
                raise self.field_error(name, f"must be > 0, got {getattr(self, name)}")
        if self.head_lr is not None and not (math.isfinite(self.head_lr) and self.head_lr > 0):
            raise self.field_error("head_lr", f"a learning rate > 0, got {self.head_lr}")
        self._check_weights()

    def _check_weights(self) -> None:
        weights = self.exit_weights
        if weights is None:
            return
        if len(weights) != len(self.exits):
            raise self.field_error(
                "exit_weights",
                f"one weight per exit in `exits` {self.exits}: {len(self.exits)} values, got "
                f"{len(weights)}",
            )
        if any(not math.isfinite(w) or w < 0 for w in weights) or not sum(weights) > 0:
            raise self.field_error("exit_weights", f"finite values >= 0, not all 0, got {weights}")

    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Any:
        try:
            layers = encoder_layers(model)
        except TypeError as exc:
            raise self.field_error("type", str(exc)) from None
        bad = [i for i in self.exits if not 0 <= i < len(layers) - 1]
        if bad:
            raise self.field_error(
                "exits",
                f"layers {bad} do not exist before the last of the encoder's {len(layers)} "
                f"layers; exits go after layers 0..{len(layers) - 2}",
            )
        if self.freeze_backbone:
            for param in model.parameters():
                param.requires_grad_(False)
        heads = attach(model, self.exits, self.criterion, self.threshold)
        if optimizer is not None and self.head_lr is not None:
            group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
            optimizer.add_param_group(
                {**group, "params": list(heads.parameters()), "lr": self.head_lr}
            )
        elif optimizer is not None:
            replace_params_in_optimizer(optimizer, [], list(heads.parameters()))
        self._done = True

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        exit_logits = (getattr(state.model, SPEC_ATTR, None) or {}).pop("exit_logits", None)
        if not self._done or not self.active(state) or not exit_logits or outputs is None:
            return loss
        t = self.temperature
        target = F.softmax(outputs.detach().float() / t, dim=-1)
        weight_of = dict(zip(self.exits, self.exit_weights or [1.0] * len(self.exits), strict=True))
        terms = [  # exit_logits come in layer order
            weight_of[layer]
            * F.kl_div(F.log_softmax(logits.float() / t, dim=-1), target, reduction="batchmean")
            for layer, logits in zip(sorted(self.exits), exit_logits, strict=True)
        ]
        # With a frozen backbone the task loss carries no gradient; only the exits learn.
        base = loss if loss.requires_grad else loss.detach()
        return base + self.exit_loss * (t * t) * torch.stack(terms).sum()
