"""The Modifier base class: the lifecycle every technique family implements.

How a family module plugs in
----------------------------
1. Subclass `Modifier` as a keyword-only dataclass in ``zoo/modifiers/<family>.py``::

       @dataclass(kw_only=True)
       class MyModifier(Modifier):
           conflict_group: ClassVar[str | None] = "quantization"
           bits: int = 8

   Common fields come from the base: ``start_epoch`` / ``end_epoch`` (-1 means "from the
   beginning" / "never ends"), ``update_frequency`` (epochs between updates, -1 = every
   step) and ``params`` (a selector: names, ``re:`` regexes or ``__ALL_PRUNABLE__``; see
   zoo/modifiers/selection.py). The field annotations ARE the schema: the recipe parser
   checks every YAML value against them (float, int, bool, str, Literal[...], list[...],
   dict[str, Any], X | None) and rejects unknown keys. ``field_aliases`` maps legacy
   SparseML / llm-compressor field names onto ours; ``ignored_fields`` lists legacy fields
   accepted and ignored (e.g. ``log_types``).
2. Override `check()` to validate values; raise ``self.field_error("field", "why")``. The
   parser turns it into one `RecipeError` naming file, stage, modifier index + type, field.
3. Override the hooks you need; all default to no-ops. Order inside a training step::

       initialize(state)                  once: manager.modify(...) or oneshot(...)
       ... forward ...
       loss = loss_update(loss, state, inputs=batch, outputs=out)  KD / regularization terms
       loss.backward()
       before_step(state)                 optimizer pre-step hook; grads exist; state.step = k
       optimizer.step()
       after_step(state)                  optimizer post-step hook; state.step already k + 1
       ...
       apply_oneshot(state)               stages with run_type "oneshot" (state.calibration)
       finalize(state)                    once at the end: remove hooks, make results permanent

   The manager calls every hook on every step for every modifier; use `active(state)` /
   `started(state)` / `ended(state)` / `is_update_step(state)` to decide whether to act.
4. Register by name WITHOUT import side effects: add one row to ``MODIFIER_TABLE`` in
   zoo/recipes/registry.py, e.g. ``"MyModifier": "zoo.modifiers.myfamily:MyModifier"``.
   The class is imported only when a recipe names it.
5. Conflicts: modifiers whose ``conflict_group`` is the same non-None string (e.g.
   "sparsity", "quantization") must not act on one parameter in overlapping epoch ranges of
   one stage. `targets(model)` returns the parameter names a modifier writes (default: its
   ``params`` selector resolved on the model); the recipe validator intersects them.
   Without a model, `selector_entries()` (the selector strings as written) are compared.

`ModifierState` is the one object the hooks share: model, optimizer, teacher, steps per
epoch, the step counter (``state.epoch`` is a float), calibration batches and ``store``, a
dict for state shared across modifiers (pruning keeps its per-parameter masks there under
"masks"). `forward_batch(model, batch)` runs one calibration batch: a Tensor is ``model(x)``,
a dict is ``model(**d)``, a tuple/list is ``model(*t)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.errors import RecipeError

#: A parameter selector as written in a recipe: one entry or a list of entries.
ParamSelector = str | list[str]


@dataclass
class ModifierState:
    """Everything the hooks of all modifiers of one recipe share while it is applied."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    teacher: nn.Module | None = None
    steps_per_epoch: int = 1
    step: int = 0  # optimizer steps taken so far
    calibration: Iterable[Any] | None = None  # batches of model inputs for one-shot modifiers
    store: dict[str, Any] = field(default_factory=dict)  # shared between modifiers

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def epoch_to_step(self, epoch: float) -> int:
        """The optimizer step at which `epoch` begins (epochs are on a step grid)."""
        return round(epoch * self.steps_per_epoch)


def forward_batch(model: nn.Module, batch: Any) -> Any:
    """Run `model` on one calibration batch (Tensor, dict of kwargs, or tuple of args)."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, list | tuple):
        return model(*batch)
    return model(batch)


@dataclass(kw_only=True)
class Modifier:
    """One compression or training-control technique, scheduled over epochs."""

    #: Modifiers of the same non-None group may not share a parameter in overlapping epochs.
    conflict_group: ClassVar[str | None] = None
    #: Legacy field name -> our field name (SparseML, llm-compressor spellings).
    field_aliases: ClassVar[dict[str, str]] = {}
    #: Legacy fields accepted and ignored.
    ignored_fields: ClassVar[frozenset[str]] = frozenset()
    #: Fields SparseML / llm-compressor have and this zoo refuses: name -> why, and what
    #: to use instead (the recipe is refused with "known, not supported here").
    unsupported_fields: ClassVar[dict[str, str]] = {}
    #: Fields accepted only at the value that means what this zoo does anyway (SparseML's
    #: default); any other value is refused rather than ignored.
    default_only_fields: ClassVar[dict[str, Any]] = {}
    #: True for modifiers whose work is `apply_oneshot` (run_type "oneshot").
    oneshot_capable: ClassVar[bool] = False

    start_epoch: float = -1.0
    end_epoch: float = -1.0
    update_frequency: float = -1.0
    params: ParamSelector | None = None

    # ---- schema ---------------------------------------------------------------------
    @property
    def type_name(self) -> str:
        return type(self).__name__

    def field_error(self, field_name: str, message: str) -> RecipeError:
        """An error about one field; the parser adds file, stage and modifier index."""
        return RecipeError(message, modifier=self.type_name, field=self.written_name(field_name))

    def written_name(self, field_name: str) -> str:
        """The field as the recipe spelled it (``targets`` for our ``params``, ...)."""
        written: dict[str, str] = getattr(self, "_written_as", {})
        return written.get(field_name, field_name)

    def locate(self, error: RecipeError) -> RecipeError:
        """`error` with its field named as the recipe wrote it."""
        if error.field is not None:
            error.field = self.written_name(error.field)
        return error

    def check(self) -> None:
        """Validate field values; raise `self.field_error(...)`. Subclasses call super()."""
        if self.end_epoch != -1 and self.start_epoch > self.end_epoch:
            raise self.field_error(
                "end_epoch",
                f"end_epoch {self.end_epoch} is before start_epoch {self.start_epoch}",
            )
        if self.update_frequency != -1 and self.update_frequency <= 0:
            raise self.field_error(
                "update_frequency", f"must be > 0 or -1, got {self.update_frequency}"
            )

    def runs_oneshot(self) -> bool:
        """Whether this modifier, with its fields, is a one-shot one (a stage without a
        run_type is one-shot when all its modifiers are, as llm-compressor infers it)."""
        return type(self).oneshot_capable

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # ---- schedule -------------------------------------------------------------------
    def epoch_range(self) -> tuple[float, float]:
        """[start, end) in epochs; -1 start is 0, -1 end is infinity."""
        start = 0.0 if self.start_epoch < 0 else float(self.start_epoch)
        end = math.inf if self.end_epoch < 0 else float(self.end_epoch)
        return start, end

    def overlaps(self, other: Modifier) -> bool:
        a0, a1 = self.epoch_range()
        b0, b1 = other.epoch_range()
        if a0 == a1 or b0 == b1:  # a point modifier (one-shot at an epoch)
            return max(a0, b0) <= min(a1, b1)
        return a0 < b1 and b0 < a1

    def started(self, state: ModifierState) -> bool:
        return state.step >= state.epoch_to_step(self.epoch_range()[0])

    def ended(self, state: ModifierState) -> bool:
        end = self.epoch_range()[1]
        return end != math.inf and state.step >= state.epoch_to_step(end)

    def active(self, state: ModifierState) -> bool:
        return self.started(state) and not self.ended(state)

    def update_steps(self, state: ModifierState) -> int:
        """Steps between updates (at least one)."""
        if self.update_frequency <= 0:
            return 1
        return max(1, state.epoch_to_step(self.update_frequency))

    def is_update_step(self, state: ModifierState) -> bool:
        """True at the start step and every `update_frequency` epochs after, while active."""
        if not self.active(state):
            return False
        start = state.epoch_to_step(self.epoch_range()[0])
        return (state.step - start) % self.update_steps(state) == 0

    # ---- selection ------------------------------------------------------------------
    def selector_entries(self) -> set[str]:
        """The selector strings as written (static conflict check without a model)."""
        if self.params is None:
            return set()
        return {self.params} if isinstance(self.params, str) else set(self.params)

    def targets(self, model: nn.Module) -> list[str]:
        """Names of the parameters this modifier writes (for conflict detection)."""
        if self.params is None:
            return []
        from zoo.modifiers.selection import select_params

        return list(select_params(model, self.params, owner=self.type_name))

    def check_model(self, model: nn.Module) -> None:
        """Checks that need the model beyond `targets` (shapes a block pattern must tile)."""

    # ---- lifecycle hooks (no-ops by default) ----------------------------------------
    def initialize(self, state: ModifierState) -> None:
        """Once, when the recipe is attached to the model (before the first step)."""

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        """Return `loss` plus this modifier's terms (distillation, regularization)."""
        return loss

    def before_step(self, state: ModifierState) -> None:
        """After backward, before optimizer.step(): gradients are available."""

    def after_step(self, state: ModifierState) -> None:
        """Right after optimizer.step(); `state.step` already counts the step just taken."""

    def calibration_of(self, state: ModifierState) -> Iterable[Any]:
        """`state.calibration`, or an error saying that this modifier needs it."""
        if state.calibration is None:
            raise RecipeError(
                f"{self.type_name} needs calibration data: oneshot(model, recipe, "
                "calibration_batches) or manager.modify(..., calibration=batches)",
                modifier=self.type_name,
                field="calibration",
            )
        return state.calibration

    def apply_oneshot(self, state: ModifierState) -> None:
        """Do the whole technique at once with `state.calibration` (run_type "oneshot")."""
        raise RecipeError(
            f"{self.type_name} cannot run in a oneshot stage; put it in a train stage",
            modifier=self.type_name,
            field="run_type",
        )

    def finalize(self, state: ModifierState) -> None:
        """Once at the end: remove hooks/parametrizations, leave plain tensors behind."""


@dataclass(kw_only=True)
class TransformOnceModifier(Modifier):
    """A modifier that rewrites the model once: one-shot, or when its start epoch is
    reached in a train stage (low-rank factorisation, weight sharing). Subclasses
    implement `apply(model, optimizer)` and set `self._done = True` when it has run."""

    oneshot_capable: ClassVar[bool] = True
    _done: bool = field(default=False, init=False, repr=False)

    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> Any:
        raise NotImplementedError

    def apply_oneshot(self, state: ModifierState) -> None:
        self.apply(state.model, state.optimizer)

    def _apply_when_started(self, state: ModifierState) -> None:
        if not self._done and self.started(state):
            self.apply(state.model, state.optimizer)

    def initialize(self, state: ModifierState) -> None:
        self._apply_when_started(state)

    def after_step(self, state: ModifierState) -> None:
        self._apply_when_started(state)


def remove_handles(handles: Iterable[Any]) -> None:
    """Remove torch hook handles (anything with .remove()) collected by a modifier."""
    for handle in handles:
        handle.remove()
