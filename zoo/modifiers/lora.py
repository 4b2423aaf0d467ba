"""LoRA adapters (on peft) over a frozen base, and merges that keep what compression bought.

peft's own `merge_and_unload` adds the dense update B·A to each weight, so a pruned base
comes back dense and an int8 base comes back float. `LoRAModifier.finalize` merges instead
as the recipe says (SQFT, arXiv 2410.03750):

- ``masked``: W + (B·A·scaling) ⊙ mask(W != 0) — SparsePEFT: the merged layer has exactly
  the base's non-zeros.
- ``quantized``: the base is dynamic int8 (zoo.modifiers.quantization); it trains as its
  dequantised float weights, and the merged W_deq + (B·A·scaling) ⊙ mask(W_deq != 0) is
  requantised to the base's own per-channel scales and zero points (QA-SparsePEFT): int8
  again, same scales, exactly the base's non-zeros. An int8 weight of zero counts as a
  pruned one, so on a dense int8 base the few weights that rounded to zero stay zero too.
  A kept weight whose merged value would round to zero takes the smallest level of its
  sign instead (one step, not half a step, from the float value), so no non-zero is lost.
  Updates past the range those scales span are clipped, with a warning counting them.
- ``dense``: peft's plain merge (a dense base; the update is dense anyway).
- ``none``: the adapter stays separate (peft's LoRA layers remain in the model), to be
  saved in peft's format as an adapter entry (zoo/compress/adapter.py).

With ``masked`` and ``quantized`` the adapter also trains masked, as SQFT does: each LoRA
layer's update is (B·A·scaling) ⊙ mask in the forward (a peft LoRA variant, `MaskedUpdate`),
so the merge changes nothing the training saw: the merged model computes what the trained
one did (up to int8 rounding for ``quantized``), instead of losing the part of the update
that fell on pruned weights. It costs one dense (out × in) product per layer and step.

Targets are module names: ``all-linear`` (every Linear but those in `modules_to_save`), an
exact module name, or ``re:PATTERN`` matched against the whole module name. A target that
matches no Linear layer is an error, as is ``merge: masked`` on a base without zeros or
``merge: quantized`` on a base without int8 layers.
"""

from __future__ import annotations

import copy
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn

from zoo.modifiers.base import Modifier, ModifierState
from zoo.modifiers.lowrank import replace_params_in_optimizer, weight_of

ALL_LINEAR = "all-linear"
ADAPTER_NAME = "default"
MergeMode = Literal["masked", "quantized", "dense", "none"]


def lora_layers(model: nn.Module) -> dict[str, Any]:
    """Module name -> peft LoRA layer, for every LoRA layer injected in `model`."""
    if "peft" not in sys.modules:  # nothing imported peft, so no LoRA layer exists: every
        return {}  # export asks, and importing peft (and bitsandbytes) costs seconds
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and isinstance(m, nn.Linear | nnqd.Linear)]


def _int8_weight_bias(layer: nnqd.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    # torch's quantized Linear exposes its packed tensors through methods, not attributes.
    return layer.weight(), layer.bias()


def dequantized_linear(layer: nnqd.Linear) -> nn.Linear:
    """A float Linear whose weight is the int8 layer's dequantised weight (frozen)."""
    weight, bias = _int8_weight_bias(layer)
    flat = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None)
    with torch.no_grad():
        flat.weight.copy_(weight.dequantize())
        if bias is not None and flat.bias is not None:
            flat.bias.copy_(bias)
    return flat


def _steps(quantized: torch.Tensor) -> torch.Tensor:
    """The quantisation step of every element of `quantized` (its scale, broadcast)."""
    if quantized.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
        return torch.full(quantized.shape, quantized.q_scale())
    shape = [1] * quantized.dim()
    shape[quantized.q_per_channel_axis()] = -1
    scales = quantized.q_per_channel_scales().float().reshape(shape)
    return scales.expand(quantized.shape)


def requantize_like(
    layer: nnqd.Linear, weight: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[nnqd.Linear, int]:
    """A copy of int8 `layer` holding `weight` quantised to `layer`'s own scales, and how
    many weights fell outside the range those scales span (clipped to its ends).

    `keep` (bool, the weight's shape): weights that must stay non-zero; one whose value
    would round to zero is given the smallest level of its sign (of the base's where the
    value is exactly zero)."""
    old, bias = _int8_weight_bias(layer)
    weight = weight.detach().float()
    if keep is not None:
        steps = _steps(old)
        sign = torch.where(weight != 0, weight.sign(), old.dequantize().sign())
        weight = torch.where(keep & (weight.abs() < steps), sign * steps, weight)
    if old.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        q = torch.quantize_per_channel(
            weight,
            old.q_per_channel_scales(),
            old.q_per_channel_zero_points(),
            old.q_per_channel_axis(),
            old.dtype,
        )
    else:
        q = torch.quantize_per_tensor(weight, old.q_scale(), old.q_zero_point(), old.dtype)
    info = torch.iinfo(torch.int8)
    clipped = int(((q.int_repr() == info.min) | (q.int_repr() == info.max)).sum())
    clipped -= int(((old.int_repr() == info.min) | (old.int_repr() == info.max)).sum())
    merged = copy.deepcopy(layer)
    merged.set_weight_bias(q, bias)
    return merged, max(clipped, 0)


class MaskedUpdate:
    """A peft LoRA variant (peft's `LoraVariant` protocol) whose update is masked by the
    base's non-zeros: result + dropout(x) · ((B·A·scaling) ⊙ mask)ᵀ (SQFT's SparsePEFT)."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def supports_lora_conversion(self) -> bool:
        return False  # a masked update is not a plain low-rank one

    def delta(self, module: Any, adapter: str) -> torch.Tensor:
        update = module.lora_B[adapter].weight @ module.lora_A[adapter].weight
        return update * module.scaling[adapter] * self.mask.to(update.dtype)

    def forward(
        self, module: Any, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **_: Any
    ) -> torch.Tensor:
        dropped = module.lora_dropout[active_adapter](x)
        return result + nn.functional.linear(dropped, self.delta(module, active_adapter))

    def merge_safe(self, module: Any, active_adapter: str, orig_weight: torch.Tensor) -> Any:
        return orig_weight + self.delta(module, active_adapter)

    def merge_unsafe(self, module: Any, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += self.delta(module, active_adapter)

    def unmerge(self, module: Any, active_adapter: str, orig_weight: torch.Tensor) -> Any:
        return orig_weight - self.delta(module, active_adapter)


@dataclass(kw_only=True)
class LoRAModifier(Modifier):
    """Train low-rank adapters (peft LoRA) on the selected Linear layers of a frozen base.

    `rank` / `alpha` / `dropout` are peft's r / lora_alpha / lora_dropout. The whole base is
    frozen except `modules_to_save` (module names trained in full and saved with the
    adapter, e.g. a new task's classifier). Injected at `initialize`; the optimizer is
    updated in place (frozen parameters out, adapter parameters in). `merge` says what
    `finalize` does with the adapter (see the module docstring).
    """

    conflict_group: ClassVar[str | None] = "structure"

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = ALL_LINEAR
    modules_to_save: list[str] = field(default_factory=list)
    merge: MergeMode = "none"
    #: "nf4": QLoRA: the targeted base layers are stored and run in 4-bit NF4 with double
    #: quantisation (zoo/modifiers/nf4.py) while the adapter trains in float32.
    quantize_base: Literal["none", "nf4"] = "none"

    def __post_init__(self) -> None:
        self.peft_config: Any = None
        self._masks: dict[str, torch.Tensor] = {}
        self._int8: dict[str, nnqd.Linear] = {}

    def check(self) -> None:
        super().check()
        if self.rank < 1:
            raise self.field_error("rank", f"must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise self.field_error("alpha", f"must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise self.field_error("dropout", f"must be in [0, 1), got {self.dropout}")

    # ---- selection ------------------------------------------------------------------
    def selector_entries(self) -> set[str]:
        entries = self.target_modules
        return {entries} if isinstance(entries, str) else set(entries)

    def target_names(self, model: nn.Module) -> list[str]:
        """Linear modules the adapter goes on, in model order; an entry matching none is an
        error naming it."""
        linears = _linear_names(model)
        chosen: set[str] = set()
        for entry in sorted(self.selector_entries()):
            if entry == ALL_LINEAR:
                names = [
                    n
                    for n in linears
                    if not any(n == s or n.startswith(s + ".") for s in self.modules_to_save)
                ]
            elif entry.startswith("re:"):
                pattern = re.compile(entry[3:])
                names = [n for n in linears if pattern.fullmatch(n)]
            else:
                names = [n for n in linears if n == entry]
            if not names:
                raise self.field_error(
                    "target_modules",
                    f"target {entry!r} matches no Linear layer of the model "
                    f"({type(model).__name__}, {len(linears)} Linear layers, e.g. "
                    f"{', '.join(linears[:3]) or 'none'})",
                )
            chosen.update(names)
        return [n for n in linears if n in chosen]

    def targets(self, model: nn.Module) -> list[str]:
        return [f"{n}.weight" for n in self.target_names(model)]

    # ---- lifecycle ------------------------------------------------------------------
    def initialize(self, state: ModifierState) -> None:
        import peft

        model = state.model
        names = self.target_names(model)
        for missing in self.modules_to_save:
            if missing not in dict(model.named_modules()):
                raise self.field_error(
                    "modules_to_save", f"{missing!r} is not a module of the model"
                )
        self._check_merge(model, names)
        for name in names:
            layer = model.get_submodule(name)
            if isinstance(layer, nnqd.Linear):
                self._int8[name] = layer
                model.set_submodule(name, dequantized_linear(layer))
            elif self.quantize_base == "nf4" and isinstance(layer, nn.Linear):
                from zoo.modifiers.nf4 import nf4_linear

                model.set_submodule(name, nf4_linear(layer))
        # int8 layers are dequantised by now: an int8 zero reads as an exact 0.0.
        self._masks = (
            {n: weight_of(model.get_submodule(n)).detach() != 0 for n in names}
            if self.merge in ("masked", "quantized")
            else {}
        )
        self.peft_config = peft.LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            # A regex (peft full-matches it) so a name never matches other modules' suffixes.
            target_modules="|".join(re.escape(n) for n in names),
            modules_to_save=list(self.modules_to_save) or None,
        )
        peft.inject_adapter_in_model(self.peft_config, model, adapter_name=ADAPTER_NAME)
        for name, layer in lora_layers(model).items():
            if name in self._masks:  # train what the masked merge will keep
                layer.lora_variant[ADAPTER_NAME] = MaskedUpdate(self._masks[name])
        if state.optimizer is not None:
            # Out: every parameter frozen or swapped away; in: the adapter's (and copies
            # of modules_to_save).
            trainable = [p for p in model.parameters() if p.requires_grad]
            keep = {id(p) for p in trainable}
            stale = [
                p for g in state.optimizer.param_groups for p in g["params"] if id(p) not in keep
            ]
            known = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
            replace_params_in_optimizer(
                state.optimizer, stale, [p for p in trainable if id(p) not in known]
            )

    def _check_merge(self, model: nn.Module, names: list[str]) -> None:
        if self.quantize_base == "nf4" and self.merge != "none":
            raise self.field_error(
                "merge",
                f"merge: {self.merge} with quantize_base: nf4: QLoRA keeps its 4-bit base "
                "and the adapter apart (folding a float update into NF4 would requantise "
                "the base); use merge: none",
            )
        int8 = [n for n in names if isinstance(model.get_submodule(n), nnqd.Linear)]
        if self.merge == "quantized":
            if not int8:
                raise self.field_error(
                    "merge",
                    "merge: quantized needs an int8 base (dynamic int8 Linear layers), but "
                    f"none of the {len(names)} target layers is int8; use merge: dense",
                )
            return
        if int8:
            raise self.field_error(
                "merge",
                f"target {int8[0]!r} is an int8 layer: use merge: quantized, which keeps "
                "the base int8 with its own scales",
            )
        if self.merge == "masked":
            zeros = sum(int((weight_of(model.get_submodule(n)) == 0).sum()) for n in names)
            if zeros == 0:
                raise self.field_error(
                    "merge",
                    f"merge: masked needs a sparse base, but none of the {len(names)} target "
                    "layers has a zero weight (sparsity 0%); use merge: dense, or merge: "
                    "none to keep the adapter separate",
                )

    def finalize(self, state: ModifierState) -> None:
        if self.merge != "none":
            merge_adapters(state.model, self.merge, self._masks, self._int8)


def merge_adapters(
    model: nn.Module,
    mode: MergeMode,
    masks: dict[str, torch.Tensor] | None = None,
    int8: dict[str, nnqd.Linear] | None = None,
) -> nn.Module:
    """Fold every LoRA layer of `model` into its base layer, in place, by `mode`.

    masked and quantized: the update is multiplied by `masks[name]` (the base's non-zeros;
    computed from the base weight when not given). quantized: `int8[name]` is the original
    int8 layer, whose scales the masked merged weight is requantised to. Modules trained in full
    (`modules_to_save`) keep their trained copy.
    """
    from peft.utils import ModulesToSaveWrapper

    masks, int8 = masks or {}, int8 or {}
    for name, layer in lora_layers(model).items():
        base = layer.get_base_layer()
        delta = layer.get_delta_weight(ADAPTER_NAME).detach()
        weight = base.weight.detach()
        mask = masks.get(name, weight != 0)
        merged_weight = weight + delta * mask if mode in ("masked", "quantized") else weight + delta
        merged: nn.Module
        if mode == "quantized" and name in int8:
            merged, clipped = requantize_like(int8[name], merged_weight, keep=mask)
            if clipped:
                warnings.warn(
                    f"LoRA merge into int8 layer {name!r}: {clipped} more weights sit at the "
                    "ends of the base's int8 range (the update reached past what its scales "
                    "span); use a smaller learning rate or merge: none",
                    stacklevel=2,
                )
        else:
            with torch.no_grad():
                base.weight.copy_(merged_weight)
            merged = base
        model.set_submodule(name, merged)
    for name, wrapper in list(model.named_modules()):
        if isinstance(wrapper, ModulesToSaveWrapper):
            model.set_submodule(name, wrapper.modules_to_save[ADAPTER_NAME])
    for param in model.parameters():
        param.requires_grad_(True)
    return model
