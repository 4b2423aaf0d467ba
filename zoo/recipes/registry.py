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
    "GPTQModifier": "zoo.modifiers.gptq:GPTQModifier",
    "SmoothQuantModifier": "zoo.modifiers.smoothquant:SmoothQuantModifier",
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
    # conditional computation (zoo/modifiers/moe.py, zoo/modifiers/early_exit.py)
    "MoEUpcyclingModifier": "zoo.modifiers.moe:MoEUpcyclingModifier",
    "ExpertPruningModifier": "zoo.modifiers.moe:ExpertPruningModifier",
    "REAPPruningModifier": "zoo.modifiers.moe:ExpertPruningModifier",
    "EarlyExitModifier": "zoo.modifiers.early_exit:EarlyExitModifier",
    # low-rank adapters (zoo/modifiers/lora.py)
    "LoRAModifier": "zoo.modifiers.lora:LoRAModifier",
}


#: Modifiers SparseML or llm-compressor has and this zoo does not: what to use instead.
#: A recipe naming one is refused with this text, never "did you mean" a different technique.
KNOWN_UNSUPPORTED: dict[str, str] = {
    "AWQModifier": "AWQ (llm-compressor) is not implemented here; int4 weights: "
    "GPTQModifier with scheme W4A16",
    "LogarithmicEqualizationModifier": "logarithmic activation equalization (llm-compressor) "
    "is not implemented here",
    "MovementPruningModifier": "movement pruning (SparseML) is not implemented here; "
    "gradual magnitude pruning: GMPruningModifier",
    "MFACPruningModifier": "M-FAC pruning (SparseML) is not implemented here; one-shot "
    "second-order pruning: SparseGPTModifier",
    "OBSPruningModifier": "oBERT / OBS pruning (SparseML) is not implemented here; one-shot "
    "second-order pruning: SparseGPTModifier, gradual: GMPruningModifier",
    "ACDCPruningModifier": "AC/DC pruning (SparseML) is not implemented here; GMPruningModifier",
    "LayerPruningModifier": "removing whole layers (SparseML) is not implemented here",
    "TrainableParamsModifier": "freezing parameters by recipe (SparseML) is not implemented "
    "here; freeze them in your training code",
    "SetParamModifier": "setting parameter values by recipe (SparseML) is not implemented here",
    "LayerThinningModifier": "thinning by recipe (SparseML) is not implemented here; "
    "physically smaller layers: StructuredPruningModifier",
    "PerLayerDistillationModifier": "SparseML's per-layer distillation (its projection and "
    "normalisation choices) is not implemented here; feature distillation with learned "
    "projections: LayerDistillationModifier",
}


def modifier_names() -> list[str]:
    return sorted(MODIFIER_TABLE)


def resolve_modifier(name: str) -> type[Modifier]:
    """The class registered as `name`; raises RecipeError with the nearest valid names."""
    target = MODIFIER_TABLE.get(name)
    if target is None and name in KNOWN_UNSUPPORTED:
        raise RecipeError(
            f"{name} is known, not supported here: {KNOWN_UNSUPPORTED[name]}.",
            modifier=name,
            field="type",
        )
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
