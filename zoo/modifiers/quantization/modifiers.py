"""The recipe modifiers: QAT, static post-training and dynamic int8."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.errors import RecipeError
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
from zoo.modifiers.quantization.schemes import ResolvedScheme, resolve_scheme
from zoo.modifiers.quantization.surgery import COMPUTE_TYPES, compute_modules
from zoo.modifiers.quantization.weight_only import (
    WeightOnlyRecord,
    attach,
    layer_weight,
    rtn_quantize,
)


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
            "model_fuse_fn_kwargs",  # arguments of model_fuse_fn_name, which is refused
            "quantize_embedding_activations",  # only acts with quantize_embeddings
            "exclude_batchnorm",
            "log_types",
        }
    )

    unsupported_fields: ClassVar[dict[str, str]] = {
        "scheme": "llm-compressor's schemes are read by QuantizationModifier (W8A8, W8A16, "
        "W4A16) and GPTQModifier; this modifier is SparseML's torch int8",
        "config_groups": "llm-compressor's config_groups are read by QuantizationModifier and "
        "GPTQModifier; this modifier is SparseML's torch int8",
        "kv_cache_scheme": "KV-cache quantization is for generative decoding on a GPU",
        "scheme_overrides": "per-layer scheme overrides (mixed precision) are not implemented here",
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
    #: SparseML's default is true; embeddings stay float here, so only false is accepted
    quantize_embeddings: bool | int = False
    model_fuse_fn_name: str | None = None

    def check(self) -> None:
        super().check()
        if self.quantize_embeddings:
            raise self.field_error(
                "quantize_embeddings",
                f"quantize_embeddings: {self.quantize_embeddings!r} is known, not supported "
                "here: embeddings stay float (this zoo's int8 covers Conv and Linear layers, "
                "and its saved int8 format has no quantized embedding). Write "
                "quantize_embeddings: false to accept float embeddings.",
            )
        if self.model_fuse_fn_name is not None:
            raise self.field_error(
                "model_fuse_fn_name",
                f"model_fuse_fn_name: {self.model_fuse_fn_name!r} is known, not supported "
                "here: fusion is the zoo's own (conv/bn/relu and linear/relu runs inside "
                "nn.Sequential), because the fused groups are recorded so that a saved int8 "
                "model can be rebuilt without pickle, and a model's own fuse function cannot "
                "be replayed at load time. Remove the field.",
            )
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

    def selector(self) -> Any:
        """The layers to quantize as a params selector (None: by `submodules` or all)."""
        return self.params

    def module_targets(self, model: nn.Module) -> list[str] | None:
        names = _module_targets(model, self.selector(), self.submodules, self.type_name)
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
        "disable_observer_epoch": "disable_quantization_observer_epoch",
        "targets": "params",  # llm-compressor
    }
    # llm-compressor's (deprecated) scheduling switch: how, not what, it computes
    ignored_fields: ClassVar[frozenset[str]] = _QuantModifierBase.ignored_fields | {
        "sequential_update"
    }
    unsupported_fields: ClassVar[dict[str, str]] = {
        k: v
        for k, v in _QuantModifierBase.unsupported_fields.items()
        if k not in ("scheme", "config_groups")
    }

    freeze_bn_stats_epoch: float = -1.0
    disable_quantization_observer_epoch: float = -1.0
    convert_on_finalize: bool = True
    #: llm-compressor's one-shot schemes (zoo/modifiers/quantization/schemes.py)
    scheme: str | dict[str, Any] | None = None
    config_groups: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._plan: QuantPlan | None = None
        self._bn_frozen = False
        self._observers_off = False

    # ---- llm-compressor's schemes: one-shot ----------------------------------------
    def resolved_scheme(self) -> ResolvedScheme | None:
        targets = self.params if self.params is not None else "Linear"
        try:
            return resolve_scheme(
                self.scheme,
                self.config_groups,
                [targets] if isinstance(targets, str) else list(targets),
            )
        except RecipeError as exc:
            raise self.locate(exc.with_context(modifier=self.type_name)) from None

    def runs_oneshot(self) -> bool:
        return self.scheme is not None or self.config_groups is not None

    def selector(self) -> Any:
        resolved = self.resolved_scheme()
        return resolved.targets if resolved is not None else self.params

    def apply_oneshot(self, state: ModifierState) -> None:
        resolved = self.resolved_scheme()
        if resolved is None:
            super().apply_oneshot(state)  # QAT: refused in a oneshot stage
        elif resolved.weight_only:
            self._round_to_nearest(state, resolved)
        elif resolved.activations == "static":
            static_oneshot(self, state)
        else:
            refuse_twice(state.model, self.type_name)
            quantize_dynamic(
                state.model, self.module_targets(state.model), self.ignore, self.reduce_range
            )

    def _round_to_nearest(self, state: ModifierState, resolved: ResolvedScheme) -> None:
        refuse_twice(state.model, self.type_name)
        names = self.module_targets(state.model) or []
        layers = {
            n: state.model.get_submodule(n)
            for n in compute_modules(state.model, names, self.ignore)
        }
        record = WeightOnlyRecord(resolved.grid, "rtn")
        for name, module in layers.items():
            resolved.grid.check_columns(name, layer_weight(module)[0].numel())
        for name, module in layers.items():
            new, record.layers[name] = rtn_quantize(layer_weight(module), resolved.grid)
            with torch.no_grad():
                layer_weight(module).copy_(new)
        attach(state.model, record)

    def check(self) -> None:
        super().check()
        resolved = self.resolved_scheme()
        if resolved is not None:
            qat_only = [
                name
                for name in ("freeze_bn_stats_epoch", "disable_quantization_observer_epoch")
                if getattr(self, name) != -1
            ]
            if qat_only:
                raise self.field_error(
                    qat_only[0],
                    f"{qat_only[0]} is for quantization-aware training; with a scheme "
                    "this modifier runs one-shot (as in llm-compressor)",
                )
            return
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
        if self.runs_oneshot():
            raise RecipeError(
                "with a scheme or config_groups QuantizationModifier runs one-shot here "
                "(quantization-aware training is SparseML's form, without them): put it in "
                "a oneshot stage",
                modifier=self.type_name,
                field="scheme",
            )
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
        static_oneshot(self, state, self.num_calibration_steps)


def static_oneshot(mod: _QuantModifierBase, state: ModifierState, steps: int | None = None) -> None:
    """Static int8 in one go: fuse, calibrate activation ranges, convert."""
    calibration = mod.calibration_of(state)
    refuse_twice(state.model, mod.type_name)
    prepare_static(state.model, mod.module_targets(state.model), mod.ignore, mod.reduce_range)
    if calibrate(state.model, calibration, steps) == 0:
        raise RecipeError(
            "the calibration data is empty", modifier=mod.type_name, field="calibration"
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
