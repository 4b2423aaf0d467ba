"""The qconfigs: what int8 means for weights and activations in QAT and static PTQ."""

from __future__ import annotations

from typing import Any

from zoo.modifiers.quantization.engine import BACKEND


def qat_qconfig(reduce_range: bool = True) -> Any:
    """Fake-quant int8: per-channel symmetric weights, moving-average min/max activations
    (uint8, or 7 bits with `reduce_range`, the x86 default for pre-VNNI CPUs)."""
    from torch.ao.quantization import (
        FusedMovingAvgObsFakeQuantize,
        MovingAverageMinMaxObserver,
        QConfig,
        get_default_qat_qconfig,
    )

    default = get_default_qat_qconfig(BACKEND)
    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, reduce_range=reduce_range
    )
    return QConfig(activation=activation, weight=default.weight)


def static_qconfig(reduce_range: bool = True) -> Any:
    """Per-channel symmetric int8 weights; uint8 activations from histogram observers."""
    from torch.ao.quantization import HistogramObserver, QConfig, get_default_qconfig

    default = get_default_qconfig(BACKEND)
    activation = HistogramObserver.with_args(reduce_range=reduce_range)
    return QConfig(activation=activation, weight=default.weight)
