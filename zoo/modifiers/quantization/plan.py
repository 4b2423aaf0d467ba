"""The record of what quantization did to a model (`QuantPlan`), kept on the model, so a
saved int8 model can be rebuilt on a fresh float skeleton without pickle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from zoo.modifiers.quantization.engine import BACKEND

Scheme = Literal["qat", "static", "dynamic"]


@dataclass
class QuantPlan:
    """What was done to a float model: enough to redo it on a fresh skeleton."""

    scheme: Scheme
    fused: list[list[str]] = field(default_factory=list)
    wrapped: list[str] = field(default_factory=list)
    inlined: list[str] = field(default_factory=list)
    hooked: list[str] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)
    reduce_range: bool = True

    def qconfig_owners(self) -> list[str]:
        """Modules that carry the qconfig: regions, wrappers, hooked layers and their stubs."""
        stubs = [stub_name(n, kind) for n in self.hooked for kind in ("quant", "dequant")]
        return [*self.wrapped, *self.inlined, *self.hooked, *stubs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "backend": BACKEND,
            "fused": [list(g) for g in self.fused],
            "wrapped": list(self.wrapped),
            "inlined": list(self.inlined),
            "hooked": list(self.hooked),
            "dynamic": list(self.dynamic),
            "reduce_range": self.reduce_range,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantPlan:
        return cls(
            scheme=data["scheme"],
            fused=[list(g) for g in data.get("fused", [])],
            wrapped=list(data.get("wrapped", [])),
            inlined=list(data.get("inlined", [])),
            hooked=list(data.get("hooked", [])),
            dynamic=list(data.get("dynamic", [])),
            reduce_range=bool(data.get("reduce_range", True)),
        )


def stub_name(layer: str, kind: str) -> str:
    """Where the stub of a hooked layer lives: a sibling, ``classifier`` -> ``classifier_quant``."""
    return f"{layer}_{kind}"


PLAN_ATTR = "zoo_quant_plan"


def plan_of(model: nn.Module) -> QuantPlan | None:
    """The quantization plan recorded on a model, if it was quantized here."""
    plan = getattr(model, PLAN_ATTR, None)
    return plan if isinstance(plan, QuantPlan) else None


def record_plan(model: nn.Module, plan: QuantPlan) -> None:
    setattr(model, PLAN_ATTR, plan)


def refuse_twice(model: nn.Module, owner: str) -> None:
    """One quantization per model: int8 on top of weight-only int (or the reverse) would
    stack two roundings, and the saved format holds one of them."""
    from zoo.errors import RecipeError
    from zoo.modifiers.quantization.weight_only import record_of

    existing = plan_of(model)
    weight_only = record_of(model)
    done = existing.scheme if existing else weight_only.scheme if weight_only else None
    if done is not None:
        raise RecipeError(
            f"the model is already quantized ({done}); one quantization "
            "modifier per model: remove one of them from the recipe",
            modifier=owner,
        )
