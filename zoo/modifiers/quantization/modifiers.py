"""The recipe modifiers: QAT, static post-training and dynamic int8."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from zoo.modifiers.base import Modifier, ModifierState
from zoo.modifiers.quantization.dynamic import quantize_dynamic
from zoo.modifiers.quantization.flows import (
    calibrate,
    convert,
    disable_observers,
    freeze_bn_stats,
    prepare_qat,
    prepare_static,
)
from zoo.modifiers.quantization.plan import QuantPlan, refuse_twice
from zoo.modifiers.quantization.surgery import COMPUTE_TYPES, compute_modules


def _module_targets(
    model: nn.Module, params: Any, submodules: list[str] | None, owner: str
) -> list[str] | None:
    """Conv/linear module names a quantization modifier's selector picks (None = all)."""
    if params is not None:
        from zoo.modifiers.selection import select_params

        return [n.rpartition(".")[0] for n in select_params(model, params, owner=owner)]
    if submodules:
        modules = [n for n, m in model.named_modules() if isinstance(m, COMPUTE_TYPES)]
        inside = {r: [n for n in modules if n == r or n.startswith(f"{r}.")] for r in submodules}
        empty = [r for r, names in inside.items() if not names]
        if empty:
            # SparseML would quantize nothing there and end with a float model: refuse.
            from zoo.errors import RecipeError

            known = sorted({n.split(".")[0] for n in modules if n})
            raise RecipeError(
                f"submodules {empty} hold no Conv or Linear layer of this model, so nothing "
                f"there would be quantized. Top-level modules with such layers: {known}.",
                modifier=owner,
                field="submodules",
            )
        return sorted({n for names in inside.values() for n in names})
    return None


#: SparseML's per-layer-type activation switches; this zoo quantizes the activations of
#: every layer it quantizes, so only their default (true) keeps the recipe's meaning.
_ACTIVATION_SWITCHES = ("quantize_linear_activations", "quantize_conv_activations")


@dataclass(kw_only=True)
class _QuantModifierBase(Modifier):
    conflict_group: ClassVar[str | None] = "quantization"
    ignored_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "model_fuse_fn_name",
            "model_fuse_fn_kwargs",
            "quantize_embeddings",
            "quantize_embedding_activations",
            "exclude_batchnorm",
            "log_types",
        }
    )

    unsupported_fields: ClassVar[dict[str, str]] = {
        key: "llm-compressor's compressed-tensors schemes (W8A8, W4A16, FP8, NVFP4 presets "
        "and config_groups) are not implemented here; int8 here is torch's eager int8 "
        "(QuantizationModifier for QAT, PostTrainingQuantizationModifier for static, "
        "DynamicQuantizationModifier for dynamic)"
        for key in ("scheme", "config_groups", "kv_cache_scheme", "scheme_overrides")
    }

    #: TensorRT's symmetric int8 activations are not what fbgemm runs
    default_only_fields: ClassVar[dict[str, object]] = {"tensorrt": False}

    submodules: list[str] | None = None  # SparseML: quantize only inside these modules
    ignore: list[str] = field(default_factory=list)  # module names or re: patterns
    exclude_module_types: list[str] = field(default_factory=list)  # e.g. [Linear]
    # 7-bit activations (fbgemm's guard against 16-bit overflow before VNNI); null: 7 bits
    # unless this CPU has VNNI.
    reduce_range: bool | None = None
    weight_bits: int = 8
    activation_bits: int = 8
    quantize_linear_activations: bool | int = True
    quantize_conv_activations: bool | int = True

    def check(self) -> None:
        super().check()
        for name in _ACTIVATION_SWITCHES:
            if not getattr(self, name):
                raise self.field_error(
                    name,
                    f"{name}: {getattr(self, name)!r} (weight-only quantization of these "
                    "layers) is known, not supported here: every quantized layer gets int8 "
                    "activations. Keep such layers in float with `ignore` or "
                    "`exclude_module_types` instead.",
                )
        for name in ("weight_bits", "activation_bits"):
            if getattr(self, name) != 8:
                raise self.field_error(name, f"only 8 bits is supported, got {getattr(self, name)}")

    def module_targets(self, model: nn.Module) -> list[str] | None:
        names = _module_targets(model, self.params, self.submodules, self.type_name)
        if not self.exclude_module_types:
            return names
        if names is None:
            names = [n for n, m in model.named_modules() if isinstance(m, COMPUTE_TYPES)]
        excluded = set(self.exclude_module_types)
        return [n for n in names if type(model.get_submodule(n)).__name__ not in excluded]

    def targets(self, model: nn.Module) -> list[str]:
        names = compute_modules(model, self.module_targets(model), self.ignore)
        if not names:
            from zoo.errors import RecipeError

            raise RecipeError(
                "selects no Conv or Linear layer of this model (after ignore / "
                "exclude_module_types), so nothing would be quantized",
                modifier=self.type_name,
                field="params" if self.params is not None else "submodules",
            )
        return [f"{n}.weight" for n in names]


@dataclass(kw_only=True)
class QuantizationModifier(_QuantModifierBase):
    """Quantization-aware training: fake-quant int8 from `start_epoch`, int8 at the end.

    Batch-norm statistics freeze at `freeze_bn_stats_epoch` and the quantization ranges at
    `disable_quantization_observer_epoch` (-1: never), as in SparseML. `finalize` converts
    the model to real int8 modules unless `convert_on_finalize` is false.
    """

    field_aliases: ClassVar[dict[str, str]] = {
        "disable_observer_epoch": "disable_quantization_observer_epoch"
    }

    freeze_bn_stats_epoch: float = -1.0
    disable_quantization_observer_epoch: float = -1.0
    convert_on_finalize: bool = True

    def __post_init__(self) -> None:
        self._plan: QuantPlan | None = None
        self._bn_frozen = False
        self._observers_off = False

    def check(self) -> None:
        super().check()
        if self.end_epoch != -1:
            raise self.field_error(
                "end_epoch", "quantization cannot be undone mid-training: leave end_epoch at -1"
            )
        for name in ("freeze_bn_stats_epoch", "disable_quantization_observer_epoch"):
            value = getattr(self, name)
            if value != -1 and value < max(self.start_epoch, 0):
                raise self.field_error(name, f"{value} is before start_epoch {self.start_epoch}")
        observers_off = self.disable_quantization_observer_epoch
        if observers_off != -1 and observers_off <= max(self.start_epoch, 0):
            raise self.field_error(
                "disable_quantization_observer_epoch",
                f"{observers_off} is not after start_epoch {max(self.start_epoch, 0):g}: the "
                "observers would be switched off before they saw any data, leaving no "
                "quantization ranges. Disable them at least one epoch after start_epoch.",
            )

    def _at(self, state: ModifierState, epoch: float) -> bool:
        return epoch >= 0 and state.step >= state.epoch_to_step(epoch)

    def _update(self, state: ModifierState) -> None:
        if self._plan is None and self.started(state):
            refuse_twice(state.model, self.type_name)
            self._plan = prepare_qat(
                state.model, self.module_targets(state.model), self.ignore, self.reduce_range
            )
        if self._plan is None:
            return
        if not self._bn_frozen and self._at(state, self.freeze_bn_stats_epoch):
            freeze_bn_stats(state.model)
            self._bn_frozen = True
        if not self._observers_off and self._at(state, self.disable_quantization_observer_epoch):
            disable_observers(state.model)
            self._observers_off = True

    def initialize(self, state: ModifierState) -> None:
        self._update(state)

    def after_step(self, state: ModifierState) -> None:
        self._update(state)

    def finalize(self, state: ModifierState) -> None:
        if self._plan is not None and self.convert_on_finalize:
            convert(state.model)


@dataclass(kw_only=True)
class PostTrainingQuantizationModifier(_QuantModifierBase):
    """Static int8 after training: fuse, calibrate activation ranges, convert (one-shot)."""

    oneshot_capable: ClassVar[bool] = True
    num_calibration_steps: int | None = None

    def check(self) -> None:
        super().check()
        if self.num_calibration_steps is not None and self.num_calibration_steps < 1:
            raise self.field_error("num_calibration_steps", "must be at least 1")

    def apply_oneshot(self, state: ModifierState) -> None:
        from zoo.errors import RecipeError

        if state.calibration is None:
            raise RecipeError(
                "static quantization needs calibration data: pass calibration batches to oneshot()",
                modifier=self.type_name,
                field="calibration",
            )
        refuse_twice(state.model, self.type_name)
        prepare_static(
            state.model, self.module_targets(state.model), self.ignore, self.reduce_range
        )
        if calibrate(state.model, state.calibration, self.num_calibration_steps) == 0:
            raise RecipeError(
                "the calibration data is empty", modifier=self.type_name, field="calibration"
            )
        convert(state.model)


@dataclass(kw_only=True)
class DynamicQuantizationModifier(_QuantModifierBase):
    """Dynamic int8 Linear layers (weights int8, activations quantized per batch).

    One-shot, or at the end of a train stage (`finalize`). `reduce_range` null picks the
    activation range from the CPU (8 bits with VNNI, 7 without).
    """

    oneshot_capable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._done = False

    def apply_oneshot(self, state: ModifierState) -> None:
        refuse_twice(state.model, self.type_name)
        quantize_dynamic(
            state.model, self.module_targets(state.model), self.ignore, self.reduce_range
        )
        self._done = True

    def finalize(self, state: ModifierState) -> None:
        if not self._done:
            self.apply_oneshot(state)
