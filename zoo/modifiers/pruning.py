"""Pruning modifiers: gradual magnitude (GMP), constant, one-shot magnitude, Wanda, SparseGPT.

GMP schedule, on the optimizer-step grid (``spe`` = steps per epoch)::

    t0 = round(start_epoch * spe), t1 = round(end_epoch * spe)
    dt = max(1, round(update_frequency * spe))
    updates at t0, t0 + dt, t0 + 2 dt, ... (< t1), and at t1
    at update step t: s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3     (cubic)

so the first update prunes to init_sparsity, the last to final_sparsity, and between
updates the mask is held. Each update ranks |W| (already-pruned weights score 0, so sparsity
only grows) per layer, or over all selected layers at once with ``global_sparsity``. The
achieved count is round(s * numel) per layer (or over all layers), the same rounding as
`torch.nn.utils.prune`. Masks live in a shared `MaskSet`: gradients are masked before
``optimizer.step()`` and weights after it, which keeps pruned weights exactly zero under
momentum and weight decay. With ``leave_enabled`` (default) masks stay after end_epoch.

In a one-shot stage GMP prunes straight to final_sparsity; Wanda and SparseGPT need
calibration batches (``oneshot(model, recipe, calibration)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from zoo.errors import RecipeError
from zoo.modifiers.base import Modifier, ModifierState, ParamSelector
from zoo.modifiers.pruning_calibrated import run_sequential, sparsegpt_prune, wanda_prune
from zoo.modifiers.pruning_masks import (
    MaskSet,
    MaskStructure,
    block_shape,
    global_masks,
    interpolate,
    make_mask,
    mask_set,
    parse_structure,
)
from zoo.modifiers.selection import ALL_PRUNABLE, owning_module, select_except, select_params

_LOGGING_FIELDS = frozenset({"log_types", "constant_logging"})
#: llm-compressor's spellings of the common fields (its start / end are epochs too)
_LLMC_ALIASES = {"targets": "params", "start": "start_epoch", "end": "end_epoch"}


def _check_sparsity(mod: Modifier, name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise mod.field_error(name, f"sparsity must be in [0, 1), got {value}")


class _PruningBase(Modifier):
    """Shared plumbing: resolved params, the MaskSet, masking around optimizer steps."""

    conflict_group: ClassVar[str | None] = "sparsity"

    def _resolve(self, state: ModifierState) -> dict[str, nn.Parameter]:
        selector = self.params if self.params is not None else ALL_PRUNABLE
        return select_params(state.model, selector, owner=self.type_name)

    def _masks(self, state: ModifierState) -> MaskSet:
        return mask_set(state.store)

    def before_step(self, state: ModifierState) -> None:
        self._masks(state).mask_grads(state.step)

    def after_step(self, state: ModifierState) -> None:
        self._masks(state).mask_weights(state.step)

    def _release(self, state: ModifierState) -> None:
        """Stop holding this modifier's masks (the zeros stay in the weights)."""
        self._masks(state).drop(list(self._resolve(state)))

    def finalize(self, state: ModifierState) -> None:
        self._masks(state).mask_weights(-2)  # one last time, whatever step we are at
        self._release(state)


class _ActsAtStart(_PruningBase):
    """Sets its masks once, at start_epoch (or at initialize when training starts later),
    and holds them from then on."""

    def _act(self, state: ModifierState) -> None:
        raise NotImplementedError

    def initialize(self, state: ModifierState) -> None:
        self._resolve(state)
        if self.started(state):
            self._act(state)

    def after_step(self, state: ModifierState) -> None:
        super().after_step(state)
        if state.step == state.epoch_to_step(self.epoch_range()[0]):
            self._act(state)


@dataclass(kw_only=True)
class GMPruningModifier(_PruningBase):
    """Gradual magnitude pruning from init_sparsity to final_sparsity on a cubic schedule."""

    oneshot_capable: ClassVar[bool] = True
    field_aliases: ClassVar[dict[str, str]] = {"mask_structure": "mask_type"}
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS
    default_only_fields: ClassVar[dict[str, object]] = {"phased": False, "score_type": "magnitude"}

    params: ParamSelector | None = ALL_PRUNABLE
    init_sparsity: float = 0.05
    #: one target, or SparseML's {sparsity: [params]} mapping (then `params` is unused)
    final_sparsity: float | dict[str, list[str]] = 0.9
    inter_func: Literal["cubic", "linear", "inverse_cubic"] = "cubic"
    mask_type: str | list[int] = "unstructured"
    leave_enabled: bool = True
    global_sparsity: bool = False

    def check(self) -> None:
        super().check()
        _check_sparsity(self, "init_sparsity", self.init_sparsity)
        structure = self.structure()
        for final, _ in self.groups():
            _check_sparsity(self, "final_sparsity", final)
            if self.init_sparsity > final:
                raise self.field_error(
                    "init_sparsity",
                    f"init_sparsity {self.init_sparsity} is above final_sparsity "
                    f"{final}; pruning only grows",
                )
            if final > structure.max_sparsity + 1e-9:
                raise self.field_error(
                    "final_sparsity",
                    f"{self.mask_type} allows at most {structure.max_sparsity:g} sparsity",
                )
        if self.global_sparsity and structure.kind != "unstructured":
            raise self.field_error("global_sparsity", "global sparsity needs unstructured masks")

    def groups(self) -> list[tuple[float, ParamSelector]]:
        """(final sparsity, selector) pairs."""
        if not isinstance(self.final_sparsity, dict):
            return [(self.final_sparsity, self.params if self.params is not None else ALL_PRUNABLE)]
        pairs: list[tuple[float, ParamSelector]] = []
        for key, selector in self.final_sparsity.items():
            try:
                pairs.append((float(key), selector))
            except ValueError:
                raise self.field_error(
                    "final_sparsity", f"mapping keys must be sparsities, got {key!r}"
                ) from None
        return pairs

    def structure(self) -> MaskStructure:
        try:
            return parse_structure(self.mask_type)
        except RecipeError as exc:
            raise exc.with_context(modifier=self.type_name) from None

    def check_model(self, model: nn.Module) -> None:
        check_block_tiling(self, self.structure(), model)

    def _resolve(self, state: ModifierState) -> dict[str, nn.Parameter]:
        chosen: dict[str, nn.Parameter] = {}
        for _, selector in self.groups():
            chosen.update(select_params(state.model, selector, owner=self.type_name))
        return chosen

    # ---- schedule ---------------------------------------------------------------------
    def schedule_steps(self, state: ModifierState) -> tuple[int, int, int]:
        start, end = self.epoch_range()
        t0 = state.epoch_to_step(start)
        t1 = t0 if end == float("inf") else state.epoch_to_step(end)
        return t0, t1, self.update_steps(state)

    def fraction_at(self, step: int, state: ModifierState) -> float | None:
        """How far along the schedule an update at `step` is, or None between updates."""
        t0, t1, dt = self.schedule_steps(state)
        if step == t1:
            return 1.0
        if step < t0 or step > t1 or (step - t0) % dt:
            return None
        return (step - t0) / (t1 - t0)

    def sparsity_at(
        self, step: int, state: ModifierState, final: float | None = None
    ) -> float | None:
        """Target sparsity if `step` is an update step of the schedule, else None."""
        fraction = self.fraction_at(step, state)
        if fraction is None:
            return None
        final = self.groups()[0][0] if final is None else final
        return interpolate(fraction, self.init_sparsity, final, self.inter_func)

    def _update(self, state: ModifierState, fraction: float) -> None:
        masks = self._masks(state)
        structure = self.structure()
        for final, selector in self.groups():
            sparsity = interpolate(fraction, self.init_sparsity, final, self.inter_func)
            params = select_params(state.model, selector, owner=self.type_name)
            scores = {n: p.detach().abs() for n, p in params.items()}
            if self.global_sparsity:
                keep = global_masks(scores, sparsity)
            else:
                keep = {n: make_mask(s, sparsity, structure) for n, s in scores.items()}
            for name, param in params.items():
                masks.set(name, param, keep[name])

    def _maybe_update(self, state: ModifierState) -> None:
        fraction = self.fraction_at(state.step, state)
        if fraction is not None:
            self._update(state, fraction)
        t1 = self.schedule_steps(state)[1]
        if not self.leave_enabled and state.step >= t1 and state.step > 0:
            self._release(state)

    def selector_entries(self) -> set[str]:
        entries: set[str] = set()
        for _, selector in self.groups():
            entries |= {selector} if isinstance(selector, str) else set(selector)
        return entries

    def targets(self, model: nn.Module) -> list[str]:
        names: list[str] = []
        for _, selector in self.groups():
            names += [
                n for n in select_params(model, selector, owner=self.type_name) if n not in names
            ]
        return names

    def initialize(self, state: ModifierState) -> None:
        self._resolve(state)  # fail early on a selector that matches nothing
        self._maybe_update(state)

    def after_step(self, state: ModifierState) -> None:
        super().after_step(state)
        self._maybe_update(state)

    def apply_oneshot(self, state: ModifierState) -> None:
        self._update(state, 1.0)
        self._release(state)


@dataclass(kw_only=True)
class GlobalMagnitudePruningModifier(GMPruningModifier):
    """GMP ranking all selected weights together (SparseML's global magnitude pruning)."""

    global_sparsity: bool = True


@dataclass(kw_only=True)
class ConstantPruningModifier(_ActsAtStart):
    """Hold the current zeros of the selected weights (sparse transfer learning)."""

    conflict_group: ClassVar[str | None] = None  # it keeps masks others made; never fights
    oneshot_capable: ClassVar[bool] = True
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS
    field_aliases: ClassVar[dict[str, str]] = _LLMC_ALIASES

    params: ParamSelector | None = ALL_PRUNABLE

    def _act(self, state: ModifierState) -> None:
        """Capture the zeros as masks (those another modifier already holds stay its)."""
        masks = self._masks(state)
        for name, param in self._resolve(state).items():
            if name not in masks.masks:
                masks.set(name, param, param.detach() != 0)

    def after_step(self, state: ModifierState) -> None:
        super().after_step(state)
        if self.ended(state):
            self._release(state)

    def apply_oneshot(self, state: ModifierState) -> None:
        """Nothing to hold in a one-shot stage: zeros stay zero without training."""


@dataclass(kw_only=True)
class OneShotMagnitudePruningModifier(_ActsAtStart):
    """Prune |W| to `sparsity` at once (at start_epoch in a train stage, then hold)."""

    oneshot_capable: ClassVar[bool] = True
    field_aliases: ClassVar[dict[str, str]] = {
        "mask_structure": "mask_type",
        "targets": "params",
    }
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS

    params: ParamSelector | None = ALL_PRUNABLE
    sparsity: float = 0.5
    mask_type: str | list[int] = "unstructured"
    global_sparsity: bool = False

    def check(self) -> None:
        super().check()
        _check_sparsity(self, "sparsity", self.sparsity)
        structure = _structure(self, self.mask_type, "mask_type")
        if self.sparsity > structure.max_sparsity + 1e-9:
            raise self.field_error(
                "sparsity", f"{self.mask_type} allows at most {structure.max_sparsity:g} sparsity"
            )

    def check_model(self, model: nn.Module) -> None:
        check_block_tiling(self, _structure(self, self.mask_type, "mask_type"), model)

    def _act(self, state: ModifierState) -> None:
        params = self._resolve(state)
        scores = {n: p.detach().abs() for n, p in params.items()}
        if self.global_sparsity:
            keep = global_masks(scores, self.sparsity)
        else:
            structure = _structure(self, self.mask_type, "mask_type")
            keep = {n: make_mask(s, self.sparsity, structure) for n, s in scores.items()}
        masks = self._masks(state)
        for name, param in params.items():
            masks.set(name, param, keep[name])

    def apply_oneshot(self, state: ModifierState) -> None:
        self._act(state)
        self._release(state)


def check_block_tiling(mod: Modifier, structure: MaskStructure, model: nn.Module) -> None:
    """Every weight `mod` targets tiles into `structure`'s blocks (validation with a model)."""
    if structure.kind != "block":
        return
    for name in mod.targets(model):
        try:
            block_shape(structure, tuple(model.get_parameter(name).shape))
        except RecipeError as exc:
            exc.message = f"{name}: {exc.message}"
            raise exc.with_context(modifier=mod.type_name) from None


def _structure(mod: Modifier, value: str | list[int], name: str) -> MaskStructure:
    try:
        return parse_structure(value)
    except RecipeError as exc:
        raise exc.with_context(modifier=mod.type_name, field=name) from None


@dataclass(kw_only=True)
class _CalibratedPruning(_PruningBase):
    """Shared fields of Wanda and SparseGPT (llm-compressor's spellings accepted)."""

    oneshot_capable: ClassVar[bool] = True
    field_aliases: ClassVar[dict[str, str]] = {**_LLMC_ALIASES, "mask_type": "mask_structure"}
    unsupported_fields: ClassVar[dict[str, str]] = {
        "preserve_sparsity_mask": "pruning on top of an existing sparsity mask "
        "(llm-compressor) is not implemented here; prune from the dense model"
    }
    ignored_fields: ClassVar[frozenset[str]] = _LOGGING_FIELDS | {
        "sequential_targets",
        "target_ids",  # SparseML OBCQ: forward kwargs for its layer runner; ours runs the model
    }
    # OWL's non-uniform layer sparsity and SparseML's quantize-while-pruning change results
    default_only_fields: ClassVar[dict[str, object]] = {
        "quantize": False,
        "owl_m": None,
        "owl_lmbda": None,
    }

    params: ParamSelector | None = ALL_PRUNABLE
    ignore: list[str] = field(default_factory=list)
    sparsity: float = 0.5
    mask_structure: str | list[int] = "unstructured"
    sequential_update: bool = True

    def check(self) -> None:
        super().check()
        _check_sparsity(self, "sparsity", self.sparsity)
        structure = _structure(self, self.mask_structure, "mask_structure")
        if structure.kind not in ("unstructured", "nm"):
            raise self.field_error("mask_structure", "use unstructured or N:M (e.g. '2:4')")
        if structure.kind == "nm" and abs(self.sparsity - structure.max_sparsity) > 1e-9:
            # llm-compressor writes sparsity 0.5 with 2:4; the pattern fixes the sparsity
            self.sparsity = structure.max_sparsity

    def _select_on(self, model: nn.Module) -> dict[str, nn.Parameter]:
        selector = self.params if self.params is not None else ALL_PRUNABLE
        return select_except(model, selector, self.ignore, owner=self.type_name)

    def _resolve(self, state: ModifierState) -> dict[str, nn.Parameter]:
        return self._select_on(state.model)

    def targets(self, model: nn.Module) -> list[str]:
        return list(self._select_on(model))

    def _modules(self, state: ModifierState) -> dict[str, nn.Module]:
        return {n.rpartition(".")[0]: owning_module(state.model, n) for n in self._resolve(state)}

    def _prune_layer(
        self, state: ModifierState, name: str, module: nn.Module, stats: object
    ) -> None:
        raise NotImplementedError

    def _run(self, state: ModifierState) -> None:
        if state.calibration is None:
            raise RecipeError(
                "needs calibration data: oneshot(model, recipe, calibration_batches) or "
                "manager.modify(..., calibration=batches)",
                modifier=self.type_name,
                field="calibration",
            )

        def prune(module_name: str, module: nn.Module, stats: object) -> None:
            self._prune_layer(state, module_name, module, stats)

        run_sequential(
            state.model,
            self._modules(state),
            state.calibration,
            prune,
            want_hessian=isinstance(self, SparseGPTModifier),
            sequential=self.sequential_update,
        )

    def initialize(self, state: ModifierState) -> None:
        self._resolve(state)
        if state.calibration is not None and self.started(state):
            self._run(state)

    def apply_oneshot(self, state: ModifierState) -> None:
        self._run(state)
        self._release(state)


@dataclass(kw_only=True)
class WandaPruningModifier(_CalibratedPruning):
    """Wanda: prune by |W| * ||X||_2 per output row, no weight update."""

    def _prune_layer(
        self, state: ModifierState, name: str, module: nn.Module, stats: object
    ) -> None:
        weight = module.weight
        assert isinstance(weight, nn.Parameter)
        structure = _structure(self, self.mask_structure, "mask_structure")
        keep = wanda_prune(weight, stats.feature_norm(), self.sparsity, structure)  # type: ignore[attr-defined]
        self._masks(state).set(f"{name}.weight" if name else "weight", weight, keep)


@dataclass(kw_only=True)
class SparseGPTModifier(_CalibratedPruning):
    """SparseGPT: OBS weight updates from a calibration Hessian, column block by block."""

    field_aliases: ClassVar[dict[str, str]] = {
        **_CalibratedPruning.field_aliases,
        "percdamp": "dampening_frac",
    }

    block_size: int = 128
    dampening_frac: float = 0.01

    def check(self) -> None:
        super().check()
        if self.block_size < 1:
            raise self.field_error("block_size", f"must be >= 1, got {self.block_size}")
        if not 0.0 <= self.dampening_frac < 1.0:
            raise self.field_error(
                "dampening_frac", f"must be in [0, 1), got {self.dampening_frac}"
            )

    def _prune_layer(
        self, state: ModifierState, name: str, module: nn.Module, stats: object
    ) -> None:
        weight = module.weight
        assert isinstance(weight, nn.Parameter)
        structure = _structure(self, self.mask_structure, "mask_structure")
        new_weight, keep = sparsegpt_prune(
            weight,
            stats.hessian(),  # type: ignore[attr-defined]
            self.sparsity,
            structure,
            block_size=self.block_size,
            dampening_frac=self.dampening_frac,
        )
        with torch.no_grad():
            weight.copy_(new_weight)
        self._masks(state).set(f"{name}.weight" if name else "weight", weight, keep)
