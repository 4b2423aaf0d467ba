"""Float to int8 in place: prepare (QAT or static), calibrate, convert."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from zoo.modifiers.base import forward_batch
from zoo.modifiers.quantization.engine import quiet, use_backend, vnni_supported
from zoo.modifiers.quantization.plan import QuantPlan, record_plan
from zoo.modifiers.quantization.qat_speed import (
    drop_pooled_fake_quant,
    fake_quant_after_pooling,
    speed_up_conv_bn,
)
from zoo.modifiers.quantization.qconfigs import qat_qconfig, static_qconfig
from zoo.modifiers.quantization.surgery import (
    chosen_after_fusion,
    compute_modules,
    fusion_groups,
    wrap_regions,
)


def _prepare(
    model: nn.Module,
    scheme: Literal["qat", "static"],
    targets: Iterable[str] | None,
    ignore: Iterable[str],
    reduce_range: bool | None = None,
) -> QuantPlan:
    from torch.ao.quantization import fuse_modules, fuse_modules_qat, prepare, prepare_qat

    use_backend()
    selected = compute_modules(model, targets, ignore)
    groups = fusion_groups(model, selected)
    with quiet():
        if groups:
            fuse = fuse_modules_qat if scheme == "qat" else fuse_modules
            fuse(model, groups, inplace=True)
        if reduce_range is None:
            reduce_range = not vnni_supported()
        plan = QuantPlan(scheme=scheme, fused=groups, reduce_range=reduce_range)
        wrap_regions(model, chosen_after_fusion(groups, selected), plan)
        make_qconfig = qat_qconfig if scheme == "qat" else static_qconfig
        qconfig = make_qconfig(reduce_range)
        for name in plan.qconfig_owners():
            model.get_submodule(name).qconfig = qconfig
        if scheme == "qat":
            prepare_qat(model, inplace=True)
            speed_up_conv_bn(model)
            fake_quant_after_pooling(model)
        else:
            prepare(model, inplace=True)
    record_plan(model, plan)
    return plan


def prepare_qat(
    model: nn.Module,
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Fuse, insert stubs and fake-quant modules, in place; puts the model in train mode.

    Conv and linear weights keep their identity (the optimizer keeps training them) and,
    outside containers, their names; fused batch norms move under the conv (``.bn``).
    """
    model.train()
    return _prepare(model, "qat", targets, ignore, reduce_range)


def prepare_static(
    model: nn.Module,
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Fuse (folding batch norm), wrap and insert observers, in place; model in eval mode."""
    model.eval()
    return _prepare(model, "static", targets, ignore, reduce_range)


def calibrate(model: nn.Module, batches: Iterable[Any], limit: int | None = None) -> int:
    """Run calibration batches through a prepared model; returns how many ran."""
    count = 0
    with torch.no_grad():
        for batch in batches:
            if limit is not None and count >= limit:
                break
            forward_batch(model, batch)
            count += 1
    return count


def convert(model: nn.Module) -> nn.Module:
    """Swap fake-quant / observed modules for real int8 modules, in place."""
    from torch.ao.quantization import convert as ao_convert

    use_backend()
    model.eval()
    drop_pooled_fake_quant(model)
    with quiet():
        ao_convert(model, inplace=True)
    return model


def freeze_bn_stats(model: nn.Module) -> None:
    """Stop updating batch-norm running statistics in fused QAT conv-bn modules."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats as freeze

    model.apply(freeze)


def disable_observers(model: nn.Module) -> None:
    """Freeze the learned quantization ranges (scales, zero points) of a QAT model."""
    from torch.ao.quantization import disable_observer

    model.apply(disable_observer)


def quantize_static(
    model: nn.Module,
    calibration: Iterable[Any],
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    limit: int | None = None,
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Post-training static int8 in place: prepare, calibrate, convert."""
    plan = prepare_static(model, targets, ignore, reduce_range)
    calibrate(model, calibration, limit)
    convert(model)
    return plan
