r"""SmoothQuant (Xiao et al. 2022): move activation outliers into the weights before int8.

As llm-compressor's SmoothQuantModifier: each mapping ``[[balance regexes], smooth regex]``
names a layer whose output feeds the balance layers (a norm feeding Q/K/V, V feeding the
attention output projection). Per input channel j of the balance layers,

    s_j = max|X_j| ^ alpha / max_over_balance_layers |W_:,j| ^ (1 - alpha)

(alpha = ``smoothing_strength``; s_j = max|X_j| where the weights are zero), with max|X_j|
the largest absolute output of the smooth layer on the calibration batches. The smooth
layer's output channel j is divided by s_j (norm weight and bias, or a Linear's row and
bias) and the balance layers' input column j multiplied by it, so the float model computes
the same function while the activations the balance layers quantize get flatter.

Balance layers are searched under the smooth layer's lowest ancestor that holds a match
for every balance regex (llama's ``input_layernorm`` -> its decoder layer's q/k/v; BERT's
``attention.self.value`` -> its ``attention.output.dense``). A mapping is an identity only
if the smooth layer's output goes nowhere else: in a post-LayerNorm model (BERT) a norm's
output also feeds the residual connection, so smoothing it would change the model. Each
mapping is therefore checked on a calibration batch and refused, with the model restored,
when the outputs move. Without ``mappings`` llm-compressor's default (Llama's) is used.
Run it before static int8 (PostTrainingQuantizationModifier or QuantizationModifier with
a W8A8 scheme), in the same one-shot stage.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.errors import RecipeError
from zoo.modifiers.base import Modifier, ModifierState, forward_batch
from zoo.modifiers.quantization.weight_only import layer_weight

#: llm-compressor's DEFAULT_SMOOTHQUANT_MAPPINGS (Llama's layer names)
DEFAULT_MAPPINGS: list[Any] = [
    [["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"],
    [["re:.*gate_proj", "re:.*up_proj"], "re:.*post_attention_layernorm"],
]
#: The exact mapping of a post-LayerNorm BERT encoder, suggested when a mapping is refused.
BERT_MAPPING = '[["re:.*attention.output.dense"], "re:.*attention.self.value"]'
#: Largest relative change of the model's outputs a smoothing may cause (float rounding).
IDENTITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Smoothing:
    """One smooth layer and the balance layers its output feeds."""

    smooth: str
    balance: tuple[str, ...]


def _matches(entry: str, name: str) -> bool:
    if entry.startswith("re:"):
        return re.fullmatch(entry[3:], name) is not None
    return name == entry or name.endswith("." + entry)


def _ancestors(name: str) -> Iterator[str]:
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        yield ".".join(parts[:cut])


def resolve_mapping(
    model: nn.Module, balance: list[str], smooth: str, ignore: list[str]
) -> list[Smoothing]:
    """Every smooth layer matching `smooth` with its balance layers (module doc)."""
    names = [n for n, _ in model.named_modules() if n and not any(_matches(i, n) for i in ignore)]
    found: list[Smoothing] = []
    for name in names:
        if not _matches(smooth, name):
            continue
        for ancestor in _ancestors(name):
            inside = [n for n in names if not ancestor or n.startswith(ancestor + ".")]
            groups = [[n for n in inside if _matches(b, n)] for b in balance]
            if all(groups):
                found.append(Smoothing(name, tuple(n for g in groups for n in g)))
                break
    return found


def _output_tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    values = output.values() if isinstance(output, dict) else output
    if isinstance(values, list | tuple) or hasattr(values, "__iter__"):
        return [v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return []


def _relative_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    worst = 0.0
    for a, b in zip(before, after, strict=True):
        scale = float(a.abs().max()) or 1.0
        worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def activation_ranges(
    model: nn.Module, layers: list[str], batches: list[Any]
) -> dict[str, torch.Tensor]:
    """max |output| per output channel of each layer over the calibration batches."""
    ranges: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:

        def hook(_: nn.Module, __: Any, out: torch.Tensor, _name: str = name) -> None:
            peak = out.detach().abs().reshape(-1, out.shape[-1]).amax(dim=0).float()
            ranges[_name] = peak if _name not in ranges else torch.maximum(ranges[_name], peak)

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with _eval(model):
            for batch in batches:
                forward_batch(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


@torch.no_grad()
def smooth(model: nn.Module, smoothing: Smoothing, peak: torch.Tensor, alpha: float) -> None:
    """Divide the smooth layer's output channels by s and multiply the balance layers' inputs."""
    balance = [layer_weight(model.get_submodule(n)) for n in smoothing.balance]
    weights = torch.stack([b.detach().abs().amax(dim=0).float() for b in balance])
    weight_peak = weights.amax(dim=0)
    scales = peak.pow(alpha) / weight_peak.pow(1 - alpha)
    scales = torch.where(weight_peak > 0, scales, peak).clamp_min(1e-5)
    layer = model.get_submodule(smoothing.smooth)
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    if weight.dim() == 1:  # a norm: its scale per channel
        weight.div_(scales.to(weight.dtype))
    else:  # a Linear: its output rows
        weight.div_(scales.to(weight.dtype).reshape(-1, 1))
    bias = getattr(layer, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.div_(scales.to(bias.dtype))
    for balance_weight in balance:
        balance_weight.mul_(scales.to(balance_weight.dtype).reshape(1, -1))


@dataclass(kw_only=True)
class SmoothQuantModifier(Modifier):
    """llm-compressor's SmoothQuantModifier: activation smoothing before int8, one-shot."""

    oneshot_capable: ClassVar[bool] = True
    ignored_fields: ClassVar[frozenset[str]] = frozenset({"log_types"})
    unsupported_fields: ClassVar[dict[str, str]] = {
        "calibration_function": "a custom calibration forward is not taken from a recipe "
        "here; the calibration batches run through the model",
    }

    smoothing_strength: float = 0.5
    mappings: list[Any] | None = None
    ignore: list[str] = field(default_factory=list)
    num_calibration_steps: int | None = None

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.smoothing_strength <= 1.0:
            raise self.field_error(
                "smoothing_strength", f"must be in [0, 1], got {self.smoothing_strength}"
            )
        if self.num_calibration_steps is not None and self.num_calibration_steps < 1:
            raise self.field_error("num_calibration_steps", "must be at least 1")
        for mapping in self._mappings():
            ok = (
                isinstance(mapping, list | tuple)
                and len(mapping) == 2
                and isinstance(mapping[1], str)
                and isinstance(mapping[0], list | tuple)
                and mapping[0]
                and all(isinstance(b, str) for b in mapping[0])
            )
            if not ok:
                raise self.field_error(
                    "mappings",
                    f"{mapping!r} is not [[balance layer regexes], smooth layer regex]",
                )

    def _mappings(self) -> list[Any]:
        return self.mappings if self.mappings is not None else DEFAULT_MAPPINGS

    def resolve(self, model: nn.Module) -> list[list[Smoothing]]:
        """Per mapping, its smooth layers with their balance layers; empty is an error."""
        resolved = []
        for balance, smooth_entry in self._mappings():
            found = resolve_mapping(model, list(balance), smooth_entry, self.ignore)
            if not found:
                raise self.field_error(
                    "mappings",
                    f"mapping [{list(balance)}, {smooth_entry!r}] matches no smooth layer with "
                    f"balance layers in {type(model).__name__}"
                    + ("" if self.mappings is not None else " (the default, Llama's names)")
                    + f"; for a BERT encoder: {BERT_MAPPING}",
                )
            resolved.append(found)
        return resolved

    def check_model(self, model: nn.Module) -> None:
        self.resolve(model)

    def apply_oneshot(self, state: ModifierState) -> None:
        batches = list(self.calibration_of(state))[: self.num_calibration_steps]
        if not batches:
            raise RecipeError(
                "the calibration data is empty", modifier=self.type_name, field="calibration"
            )
        model = state.model
        resolved = self.resolve(model)
        peaks = activation_ranges(model, [s.smooth for group in resolved for s in group], batches)
        with _eval(model):
            reference = _output_tensors(forward_batch(model, batches[0]))
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for group in resolved:
            for smoothing in group:
                smooth(model, smoothing, peaks[smoothing.smooth], self.smoothing_strength)
            with _eval(model):
                change = _relative_change(
                    reference, _output_tensors(forward_batch(model, batches[0]))
                )
            if change > IDENTITY_TOLERANCE:
                model.load_state_dict(saved)
                first = group[0]
                raise self.field_error(
                    "mappings",
                    f"smoothing {first.smooth!r} into {list(first.balance)} changed the model's "
                    f"outputs (relative change {change:.2g}): the smooth layer's output also "
                    "feeds other layers (a residual connection, as after a post-LayerNorm "
                    "BERT norm), so this mapping is not an identity here and was not "
                    f"applied (the model is as it was). For a BERT encoder use {BERT_MAPPING}.",
                )
