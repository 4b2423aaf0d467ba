"""Modifier names a recipe may use, mapped to where their classes live.

An explicit table, read when a recipe is parsed: classes are imported lazily by
`resolve_modifier`, so importing this module imports no modifier family. A family adds
its rows here ("RecipeName": "module.path:ClassName"). Legacy spellings that mean the same
class get their own row pointing at it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from zoo.errors import RecipeError, suggest

if TYPE_CHECKING:
    from zoo.modifiers.base import Modifier

MODIFIER_TABLE: dict[str, str] = {
    # training control (zoo/modifiers/training.py)
    "EpochRangeModifier": "zoo.modifiers.training:EpochRangeModifier",
    "SetLearningRateModifier": "zoo.modifiers.training:SetLearningRateModifier",
    "LearningRateModifier": "zoo.modifiers.training:StepLearningRateModifier",
    "StepLearningRateModifier": "zoo.modifiers.training:StepLearningRateModifier",
    "LearningRateFunctionModifier": "zoo.modifiers.training:LearningRateFunctionModifier",
    "SetWeightDecayModifier": "zoo.modifiers.training:SetWeightDecayModifier",
    # pruning (zoo/modifiers/pruning.py)
    "GMPruningModifier": "zoo.modifiers.pruning:GMPruningModifier",
    "MagnitudePruningModifier": "zoo.modifiers.pruning:GMPruningModifier",
    "GlobalMagnitudePruningModifier": "zoo.modifiers.pruning:GlobalMagnitudePruningModifier",
    "ConstantPruningModifier": "zoo.modifiers.pruning:ConstantPruningModifier",
    "OneShotMagnitudePruningModifier": "zoo.modifiers.pruning:OneShotMagnitudePruningModifier",
    "WandaPruningModifier": "zoo.modifiers.pruning:WandaPruningModifier",
    "SparseGPTModifier": "zoo.modifiers.pruning:SparseGPTModifier",
    "StructuredPruningModifier": "zoo.modifiers.pruning_structured:StructuredPruningModifier",
    # quantization, distillation, regularization, low-rank, weight sharing: rows below
    "QuantizationModifier": "zoo.modifiers.quantization.modifiers:QuantizationModifier",
    "PostTrainingQuantizationModifier": (
        "zoo.modifiers.quantization.modifiers:PostTrainingQuantizationModifier"
    ),
    "DynamicQuantizationModifier": (
        "zoo.modifiers.quantization.modifiers:DynamicQuantizationModifier"
    ),
    "OutputDistillationModifier": "zoo.modifiers.distillation:OutputDistillationModifier",
    "DistillationModifier": "zoo.modifiers.distillation:OutputDistillationModifier",
    "KnowledgeDistillationModifier": "zoo.modifiers.distillation:OutputDistillationModifier",
    "LayerDistillationModifier": "zoo.modifiers.distillation:LayerDistillationModifier",
    "InstanceDistillationModifier": "zoo.modifiers.distillation:InstanceDistillationModifier",
    "L1RegularizationModifier": "zoo.modifiers.regularization:L1RegularizationModifier",
    "L2RegularizationModifier": "zoo.modifiers.regularization:L2RegularizationModifier",
    "GroupLassoModifier": "zoo.modifiers.regularization:GroupLassoModifier",
    "LowRankModifier": "zoo.modifiers.lowrank:LowRankModifier",
    "WeightSharingModifier": "zoo.modifiers.weight_sharing:WeightSharingModifier",
    "LoRAModifier": "zoo.modifiers.lora:LoRAModifier",
}


def modifier_names() -> list[str]:
    return sorted(MODIFIER_TABLE)


def resolve_modifier(name: str) -> type[Modifier]:
    """The class registered as `name`; raises RecipeError with the nearest valid names."""
    target = MODIFIER_TABLE.get(name)
    if target is None:
        raise RecipeError(
            f"unknown modifier {name!r}.{suggest(name, MODIFIER_TABLE)} "
            f"Known modifiers: {', '.join(modifier_names())}.",
            modifier=name,
            field="type",
        )
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Modifier] = getattr(module, class_name)
    return cls
