"""GPTQ (Frantar et al. 2022): weight-only int quantization with OBS error feedback.

As llm-compressor's GPTQModifier runs it: the Hessian H = 2 X X^T / n of each layer's
calibration inputs (collected block by block with SparseGPT's machinery,
zoo/modifiers/pruning_calibrated.py, so later blocks see the quantized earlier ones),
dampened by ``dampening_frac * mean(diag H)``; the upper Cholesky factor of H^-1 drives
the column loop: each column is rounded to the grid and its error, divided by [H^-1]_jj,
is spread over the columns not yet quantized, ``block_size`` columns at a time.

Scales are fixed before the loop from the layer's original weights (llm-compressor's
min-max observer), per group of 128 input columns (W4A16 and W8A16, compressed-tensors'
presets) or per output channel (a ``channel`` strategy in ``config_groups``).
``actorder`` as compressed-tensors reads it: null / false quantize columns in their order;
"weight" (and its alias "static", llm-compressor's default) processes columns by descending
diag(H) with the original contiguous groups; "group" (aliases "dynamic", true) also forms
the groups in that order, so each column's group is recorded (``g_idx``). Weights that are
exactly zero in a layer at least 5% sparse stay zero (SparseGPT first, then GPTQ, keeps the
mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.errors import RecipeError
from zoo.modifiers.base import Modifier, ModifierState, ParamSelector
from zoo.modifiers.pruning_calibrated import one_thread, run_sequential, upper_cholesky_of_inverse
from zoo.modifiers.quantization.plan import refuse_twice
from zoo.modifiers.quantization.schemes import ResolvedScheme, resolve_scheme
from zoo.modifiers.quantization.weight_only import (
    QuantizedLayer,
    WeightGrid,
    WeightOnlyRecord,
    attach,
    layer_weight,
)
from zoo.modifiers.selection import owning_module, select_except

#: llm-compressor keeps exact zeros only in layers at least this sparse.
PRESERVE_ZEROS_FROM = 0.05
_ACTORDERS = {
    None: None,
    False: None,
    "static": "weight",  # compressed-tensors' ActivationOrdering: an alias of weight
    "weight": "weight",
    "dynamic": "group",  # and of group
    "group": "group",
    True: "group",
}


def parse_actorder(value: str | bool | None) -> str | None:
    """None (columns in order), "weight" or "group"; raises on anything else."""
    key = value.lower() if isinstance(value, str) else value
    if key not in _ACTORDERS:
        raise RecipeError(
            f"actorder {value!r} is not one of null, false, true, static, weight, dynamic, "
            "group (compressed-tensors' ActivationOrdering)",
            field="actorder",
        )
    return _ACTORDERS[key]


@torch.no_grad()
def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    grid: WeightGrid,
    *,
    block_size: int = 128,
    dampening_frac: float = 0.01,
    actorder: str | None = None,
) -> tuple[torch.Tensor, QuantizedLayer]:
    """(quantized float weight, scales and column groups); `weight` is [out, ...]."""
    shape, dtype = weight.shape, weight.dtype
    W = weight.detach().reshape(shape[0], -1).float()
    columns = W.shape[1]
    groups = grid.default_groups(columns)
    H = hessian.float()
    perm: torch.Tensor | None = None
    if actorder is not None and grid.group_size is not None:
        perm = torch.argsort(torch.diag(H), descending=True)
        if actorder == "weight":  # groups as in the original order, fixed before reordering
            scales = grid.scales(W)
            groups = groups[perm]
        W, H = W[:, perm], H[perm][:, perm]
        if actorder == "group":  # groups formed in the new order
            scales = grid.scales(W)
    else:
        scales = grid.scales(W)
    sparse = float((W == 0).float().mean()) >= PRESERVE_ZEROS_FROM
    # Work on W^T so a weight column is a contiguous row (as SparseGPT does).
    T = W.T.contiguous()
    keep = (T != 0).float() if sparse else None
    with one_thread():
        Hinv = upper_cholesky_of_inverse(H, T, dampening_frac)
        _columns(T, Hinv, keep, scales.T.contiguous(), groups, grid, block_size)
    if perm is not None:
        inverse = torch.argsort(perm)
        T, groups = T[inverse], groups[inverse]
    new = T.T.reshape(shape).to(dtype)
    return new, QuantizedLayer(scales, groups)


def _columns(
    T: torch.Tensor,
    Hinv: torch.Tensor,
    keep: torch.Tensor | None,
    scales_t: torch.Tensor,
    groups: torch.Tensor,
    grid: WeightGrid,
    block_size: int,
) -> None:
    """GPTQ's column-block loop over W^T (`T`, [in, out], quantized in place)."""
    columns = T.shape[0]
    group_of = groups.tolist()
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        T1 = T[i1:i2].clone()
        Err1 = torch.zeros_like(T1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = T1[i]
            source = w * keep[i1 + i] if keep is not None else w
            q = grid.fake_quantize(source, scales_t[group_of[i1 + i]])
            err = (w - q) / Hinv1[i, i]
            if keep is None:
                T1[i:].addr_(Hinv1[i, i:], err, alpha=-1.0)
            else:
                T1[i:] -= torch.outer(Hinv1[i, i:], err) * keep[i1 + i : i2]
            T1[i] = q
            Err1[i] = err
        T[i1:i2] = T1
        update = Hinv[i1:i2, i2:].T @ Err1
        T[i2:] -= update * keep[i2:] if keep is not None else update


@dataclass(kw_only=True)
class GPTQModifier(Modifier):
    """llm-compressor's GPTQModifier: W4A16 / W8A16 weights by GPTQ, one-shot."""

    conflict_group: ClassVar[str | None] = "quantization"
    oneshot_capable: ClassVar[bool] = True
    field_aliases: ClassVar[dict[str, str]] = {"targets": "params", "percdamp": "dampening_frac"}
    ignored_fields: ClassVar[frozenset[str]] = frozenset(
        {
            # how llm-compressor schedules the work on GPUs, not what it computes
            "sequential_update",
            "sequential_targets",
            "offload_hessians",
            "log_types",
        }
    )
    unsupported_fields: ClassVar[dict[str, str]] = {
        "kv_cache_scheme": "KV-cache quantization is for generative decoding on a GPU",
    }

    params: ParamSelector | None = "Linear"
    ignore: list[str] = field(default_factory=list)
    scheme: str | dict[str, Any] | None = None
    config_groups: dict[str, Any] | None = None
    #: overrides the scheme's group size (W4A16: 128); null keeps it
    group_size: int | None = None
    block_size: int = 128
    dampening_frac: float = 0.01
    actorder: str | bool | None = "static"

    def __post_init__(self) -> None:
        self._done = False

    def check(self) -> None:
        super().check()
        resolved = self.resolved()
        if resolved.activations != "none":
            raise self.field_error(
                "scheme",
                f"{resolved.name} with activation quantization is known, not supported here "
                "in GPTQModifier: GPTQ here quantizes weights only (W4A16, W8A16); for W8A8 "
                "use QuantizationModifier with scheme W8A8",
            )
        if self.group_size is not None and self.group_size < 1:
            raise self.field_error("group_size", f"must be >= 1, got {self.group_size}")
        if self.block_size < 1:
            raise self.field_error("block_size", f"must be >= 1, got {self.block_size}")
        if not 0.0 <= self.dampening_frac < 1.0:
            raise self.field_error(
                "dampening_frac", f"must be in [0, 1), got {self.dampening_frac}"
            )
        parse_actorder(self.actorder)

    def resolved(self) -> ResolvedScheme:
        selector = self.params if self.params is not None else "Linear"
        targets = [selector] if isinstance(selector, str) else list(selector)
        try:
            resolved = resolve_scheme(self.scheme, self.config_groups, targets)
        except RecipeError as exc:
            raise self.locate(exc.with_context(modifier=self.type_name)) from None
        if resolved is None:
            raise self.field_error(
                "scheme",
                "GPTQModifier without scheme or config_groups is known, not supported here: "
                "SparseML's form quantizes with its default W8A8 scheme (int8 activations), "
                "and GPTQ here quantizes weights only; write scheme: W4A16 or W8A16",
            )
        return resolved

    def grid(self) -> WeightGrid:
        grid = self.resolved().grid
        return WeightGrid(grid.bits, self.group_size) if self.group_size else grid

    def _layers(self, model: nn.Module) -> dict[str, nn.Module]:
        params = select_except(model, self.resolved().targets, self.ignore, owner=self.type_name)
        layers = {n.rpartition(".")[0]: owning_module(model, n) for n in params}
        grid = self.grid()
        for name, module in layers.items():
            if not isinstance(module, nn.Linear | nn.Conv2d):
                raise self.field_error(
                    "params", f"{name!r} is a {type(module).__name__}; GPTQ takes Linear layers"
                )
            grid.check_columns(name, layer_weight(module)[0].numel())
        return layers

    def targets(self, model: nn.Module) -> list[str]:
        return [f"{n}.weight" for n in self._layers(model)]

    def check_model(self, model: nn.Module) -> None:
        try:
            self._layers(model)
        except RecipeError as exc:
            raise self.locate(exc.with_context(modifier=self.type_name)) from None

    def apply_oneshot(self, state: ModifierState) -> None:
        calibration = self.calibration_of(state)
        refuse_twice(state.model, self.type_name)
        grid = self.grid()
        actorder = parse_actorder(self.resolved().actorder or self.actorder)
        layers = self._layers(state.model)
        record = WeightOnlyRecord(grid, "gptq")

        def quantize(name: str, module: nn.Module, stats: Any) -> None:
            new, layer = gptq_quantize(
                layer_weight(module),
                stats.hessian(),
                grid,
                block_size=self.block_size,
                dampening_frac=self.dampening_frac,
                actorder=actorder,
            )
            with torch.no_grad():
                layer_weight(module).copy_(new)
            record.layers[name] = layer

        run_sequential(state.model, layers, calibration, quantize, want_hessian=True)
        attach(state.model, record)
        self._done = True

    def initialize(self, state: ModifierState) -> None:
        raise RecipeError(
            "GPTQ runs one-shot: put it in a oneshot stage (run_type: oneshot)",
            modifier=self.type_name,
            field="run_type",
        )
