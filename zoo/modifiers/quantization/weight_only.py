"""Weight-only integer quantization (W4A16, W8A16): the grid, round-to-nearest, the record.

The grid is compressed-tensors' symmetric int grid, as llm-compressor's W4A16 / W8A16
presets use it: codes in [-2^(b-1), 2^(b-1) - 1], one scale per output channel
(``group_size`` None) or per ``group_size`` consecutive input columns of each output
channel, ``scale = max|w| / ((qmax - qmin) / 2)`` (so 7.5 for int4), clamped to float32's
eps so an all-zero group stays zero. Weights are kept in the model as the float values
``code * scale`` (activations stay float: A16), and the scales are recorded on the model
(`WeightOnlyRecord`) so the export can store the codes packed (two int4 per byte) with
their scales (zoo/compress/weight_int.py) and `zoo.load` can put the same floats back.

GPTQ (zoo/modifiers/gptq.py) and round-to-nearest (`rtn_quantize`, the baseline, and what
QuantizationModifier's W4A16 / W8A16 schemes do) both write this record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from zoo.errors import RecipeError

RECORD_ATTR = "zoo_weight_only"
Method = Literal["gptq", "rtn"]


@dataclass(frozen=True)
class WeightGrid:
    """Symmetric int grid: `bits` bits, one scale per channel or per `group_size` columns."""

    bits: int
    group_size: int | None = None

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def check_columns(self, name: str, columns: int) -> None:
        """`group_size` must tile the layer's input columns."""
        if self.group_size is not None and columns % self.group_size:
            raise RecipeError(
                f"group_size {self.group_size} does not divide the {columns} input columns "
                f"of layer {name!r}; pick a divisor of {columns} or ignore the layer",
                field="group_size",
            )

    def default_groups(self, columns: int) -> torch.Tensor:
        """Group of each input column when groups are contiguous (one group: channel)."""
        if self.group_size is None:
            return torch.zeros(columns, dtype=torch.long)
        return torch.arange(columns) // self.group_size

    def scales(self, w: torch.Tensor) -> torch.Tensor:
        """[out, groups] scales of a weight viewed as [out, in] (contiguous groups)."""
        rows, columns = w.shape
        size = columns if self.group_size is None else self.group_size
        absmax = w.float().reshape(rows, columns // size, size).abs().amax(dim=2)
        half_range = (self.qmax - self.qmin) / 2
        return (absmax / half_range).clamp_min(torch.finfo(torch.float32).eps)

    def codes(self, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Integer codes of `w` under `scale` (broadcast), round half to even."""
        return torch.clamp(torch.round(w / scale), self.qmin, self.qmax)

    def fake_quantize(self, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.codes(w, scale) * scale


@dataclass
class QuantizedLayer:
    """Scales of one layer and the group of each input column (contiguous unless GPTQ's
    group act-order reordered them)."""

    scales: torch.Tensor  # [out, groups] float32
    groups: torch.Tensor  # [in] long

    def column_scales(self) -> torch.Tensor:
        """[out, in] scale of every weight."""
        return self.scales[:, self.groups]


@dataclass
class WeightOnlyRecord:
    """What weight-only quantization did to a model: the grid and each layer's scales."""

    grid: WeightGrid
    method: Method
    layers: dict[str, QuantizedLayer] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return f"W{self.grid.bits}A16"


def record_of(model: nn.Module) -> WeightOnlyRecord | None:
    record = getattr(model, RECORD_ATTR, None)
    return record if isinstance(record, WeightOnlyRecord) else None


def attach(model: nn.Module, record: WeightOnlyRecord) -> None:
    setattr(model, RECORD_ATTR, record)


def layer_weight(module: nn.Module) -> nn.Parameter:
    weight = module.weight
    assert isinstance(weight, nn.Parameter)
    return weight


def layer_codes(
    weight: torch.Tensor, layer: QuantizedLayer, grid: WeightGrid, name: str
) -> torch.Tensor:
    """The int codes of a quantized layer's float weight ([out, in], int8).

    The weight must still lie on its grid: a weight changed after quantization (trained
    further, pruned again) would be silently re-rounded by packing, so it is an error.
    """
    w = weight.detach().reshape(weight.shape[0], -1).float()
    scale = layer.column_scales()
    codes = grid.codes(w, scale)
    if not torch.allclose(codes * scale, w, rtol=0, atol=1e-6 * float(scale.max())):
        raise RecipeError(
            f"layer {name!r} is no longer on its W{grid.bits} grid: its weight changed after "
            "quantization (trained or pruned afterwards?); quantize last",
            field="weights",
        )
    return codes.to(torch.int8)


def dequantize(codes: torch.Tensor, layer: QuantizedLayer) -> torch.Tensor:
    return codes.float() * layer.column_scales()


@torch.no_grad()
def rtn_quantize(weight: torch.Tensor, grid: WeightGrid) -> tuple[torch.Tensor, QuantizedLayer]:
    """Round-to-nearest: (new weight, its scales), the baseline GPTQ improves on."""
    w = weight.detach().reshape(weight.shape[0], -1).float()
    layer = QuantizedLayer(grid.scales(w), grid.default_groups(w.shape[1]))
    new = grid.fake_quantize(w, layer.column_scales())
    return new.reshape(weight.shape).to(weight.dtype), layer
