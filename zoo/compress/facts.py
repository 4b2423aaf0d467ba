"""Sparsity and quantization facts measured on a model, for zoo.json and the model card."""

from __future__ import annotations

import torch
from torch import nn

from zoo.evaluation.counting import count_nonzero, count_parameters
from zoo.index.schema import QuantizationFacts, SparsityFacts
from zoo.modifiers import quantization as q
from zoo.modifiers.quantization.weight_only import record_of

_METHODS = {"qat": "qat", "static": "ptq", "dynamic": "dynamic"}


def _layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weight of every conv / linear layer by name (int8 layers: their quantized weight)."""
    found: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            continue  # not prunable, and would swamp a text model's numbers
        weight = getattr(module, "weight", None)
        if callable(weight) and not isinstance(weight, torch.Tensor):
            weight = weight()  # int8 modules return their quantized weight from a method
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            found[f"{name}.weight" if name else "weight"] = weight.detach()
    return found


def layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weight of every conv / linear layer by name; int8 layers give their int8 codes."""
    return {n: w.int_repr() if w.is_quantized else w for n, w in _layer_weights(model).items()}


def _structure(weights: dict[str, torch.Tensor], overall: float) -> str:
    if overall < 0.45:
        return "unstructured"
    two_four = all(
        w.shape[-1] % 4 == 0 and int((w.reshape(-1, 4) != 0).sum(1).max()) <= 2
        for w in weights.values()
        if w.numel() % 4 == 0
    )
    return "2:4" if two_four and overall < 0.55 else "unstructured"


def sparsity_facts(
    model: nn.Module, reference: nn.Module | None = None, structure: str | None = None
) -> SparsityFacts:
    """Zero weights of the conv / linear layers. With `reference` (the unpruned
    architecture), weights that structured pruning removed count as zeros too, so a
    50%-channel-pruned model reports how much of the original it no longer stores."""
    weights = layer_weights(model)
    original = {n: w.numel() for n, w in layer_weights(reference).items()} if reference else {}

    def size(name: str, weight: torch.Tensor) -> int:
        return original.get(name.replace(".module.", "."), weight.numel())

    total = sum(size(n, w) for n, w in weights.items())
    nonzero = sum(int((w != 0).sum()) for w in weights.values())
    per_layer = {n: round(1 - int((w != 0).sum()) / size(n, w), 6) for n, w in weights.items()}
    overall = (total - nonzero) / total if total else 0.0
    return SparsityFacts(
        overall=round(overall, 6),
        parameters=total,
        nonzero=nonzero,
        model_parameters=count_parameters(model),
        model_nonzero=count_nonzero(model),
        structure=structure or _structure(weights, overall),
        per_layer=per_layer,
    )


def quantization_facts(model: nn.Module) -> QuantizationFacts:
    plan = q.plan_of(model)
    weight_only = record_of(model)
    if plan is None and weight_only is not None:
        grid = weight_only.grid
        return QuantizationFacts(
            scheme=weight_only.scheme.lower(),
            weight_bits=grid.bits,
            activation_bits=None,  # float activations
            granularity="per_channel" if grid.group_size is None else "per_group",
            symmetric=True,
            method=weight_only.method,
            layers=list(weight_only.layers),
        )
    if plan is None:
        return QuantizationFacts()
    layers = [n.removesuffix(".weight") for n, w in _layer_weights(model).items() if w.is_quantized]
    return QuantizationFacts(
        scheme="int8",
        weight_bits=8,
        activation_bits=8 if not plan.reduce_range else 7,
        granularity="per_channel",
        symmetric=True,
        method=_METHODS.get(plan.scheme, plan.scheme),
        layers=layers,
    )
