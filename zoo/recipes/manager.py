"""Apply a recipe inside any plain PyTorch training loop, or all at once (`oneshot`).

    manager = RecipeManager.from_file("recipe.yaml")
    optimizer = manager.modify(model, optimizer, steps_per_epoch=len(loader))
    for epoch in range(manager.num_epochs):
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)
            loss = manager.loss_update(F.cross_entropy(out, y), inputs=x, outputs=out)
            loss.backward()
            optimizer.step()          # the recipe's hooks run around this call
    manager.finalize()

`modify` hooks the optimizer with `register_step_pre_hook` / `register_step_post_hook`, so
the loop keeps calling the optimizer it already has (the same object is returned). One-shot
stages placed before the last train stage run inside `modify` (they need ``calibration``
when they use data); those after it run in `finalize`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import RecipeError
from zoo.modifiers.base import Modifier, ModifierState
from zoo.recipes.parse import load_recipe, parse_recipe
from zoo.recipes.schema import Recipe, Stage
from zoo.recipes.validate import check_model

RecipeLike = Recipe | str | Path


def as_recipe(recipe: RecipeLike, overrides: dict[str, Any] | None = None) -> Recipe:
    """A Recipe from a Recipe, a path, or YAML text (a string with a newline or a colon)."""
    if isinstance(recipe, Recipe):
        return recipe
    text = str(recipe)
    if isinstance(recipe, str) and ("\n" in text or ": " in text) and not _is_file(text):
        return parse_recipe(text, overrides=overrides)
    return load_recipe(text, overrides=overrides)


def _is_file(text: str) -> bool:
    try:
        return Path(text).exists()
    except OSError:  # YAML text longer than a file name can be (ENAMETOOLONG)
        return False


def _run_oneshot_stage(stage: Stage, state: ModifierState, source: str) -> None:
    for index, mod in enumerate(stage.modifiers):
        try:
            mod.apply_oneshot(state)
        except RecipeError as exc:
            raise mod.locate(exc).with_context(
                file=source, stage=stage.name, index=index, modifier=mod.type_name
            ) from None
    for mod in stage.modifiers:
        mod.finalize(state)


class RecipeManager:
    """Schedules a recipe's modifiers over the optimizer steps of a training loop."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.state: ModifierState | None = None
        # One timeline, built once: later train stages get shifted copies of their modifiers,
        # and the copies that are initialized must be the ones that receive the step hooks.
        self._placed = recipe.timeline()
        self._modifiers: list[Modifier] = [m for _, _, m in self._placed]
        self._handles: list[Any] = []
        self._finalized = False

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> RecipeManager:
        return cls(load_recipe(path, overrides or None))

    @classmethod
    def from_yaml(cls, text: str, **overrides: Any) -> RecipeManager:
        return cls(parse_recipe(text, overrides=overrides or None))

    @property
    def max_epochs(self) -> float:
        return self.recipe.max_epochs

    @property
    def num_epochs(self) -> int:
        """Whole epochs to loop over (max_epochs rounded up)."""
        return math.ceil(self.recipe.max_epochs - 1e-9)

    @property
    def epoch(self) -> float:
        return self.state.epoch if self.state else 0.0

    def _split_oneshot(self) -> tuple[list[Stage], list[Stage]]:
        stages = self.recipe.stages
        last_train = max((i for i, s in enumerate(stages) if s.run_type == "train"), default=-1)
        oneshot = [(i, s) for i, s in enumerate(stages) if s.run_type == "oneshot"]
        return [s for i, s in oneshot if i < last_train], [s for i, s in oneshot if i > last_train]

    def modify(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        *,
        teacher: nn.Module | None = None,
        calibration: Iterable[Any] | None = None,
    ) -> torch.optim.Optimizer:
        """Attach the recipe to `model` and `optimizer`; returns the (same) optimizer."""
        if self.state is not None:
            raise RecipeError("this manager is already attached; build a new one", file=None)
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        check_model(self.recipe, model)
        state = ModifierState(
            model=model,
            optimizer=optimizer,
            teacher=teacher,
            steps_per_epoch=steps_per_epoch,
            calibration=list(calibration) if calibration is not None else None,
        )
        self.state = state
        before, _ = self._split_oneshot()
        for stage in before:
            _run_oneshot_stage(stage, state, self.recipe.source)
        for stage, index, mod in self._placed:
            try:
                mod.initialize(state)
            except RecipeError as exc:
                raise mod.locate(exc).with_context(
                    file=self.recipe.source, stage=stage.name, index=index, modifier=mod.type_name
                ) from None
        self._handles = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        return optimizer

    def _before_step(self, *_: Any) -> None:
        assert self.state is not None
        for mod in self._modifiers:
            mod.before_step(self.state)

    def _after_step(self, *_: Any) -> None:
        assert self.state is not None
        self.state.step += 1
        for mod in self._modifiers:
            mod.after_step(self.state)

    def loss_update(
        self, loss: torch.Tensor, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        """`loss` plus the terms of active distillation / regularization modifiers."""
        if self.state is None:
            raise RecipeError("call manager.modify(model, optimizer, ...) before loss_update")
        for mod in self._modifiers:
            loss = mod.loss_update(loss, self.state, inputs=inputs, outputs=outputs)
        return loss

    def finalize(self, model: nn.Module | None = None) -> nn.Module:
        """Remove the hooks, run trailing one-shot stages, make results permanent."""
        if self.state is None:
            raise RecipeError("call manager.modify(model, optimizer, ...) before finalize")
        if self._finalized:
            return self.state.model
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for mod in self._modifiers:
            mod.finalize(self.state)
        _, after = self._split_oneshot()
        for stage in after:
            _run_oneshot_stage(stage, self.state, self.recipe.source)
        self._finalized = True
        return self.state.model


def oneshot(
    model: nn.Module,
    recipe: RecipeLike,
    calibration: Iterable[Any] | None = None,
    *,
    teacher: nn.Module | None = None,
) -> nn.Module:
    """Apply every stage of `recipe` at once to `model` (in place) and return it.

    `calibration` yields model inputs (Tensor, tuple of args or dict of kwargs), e.g.
    ``[x for x, _ in loader][:16]``. Learning-rate and epoch-range modifiers are skipped;
    pruning modifiers prune straight to their final sparsity.
    """
    parsed = as_recipe(recipe)
    check_model(parsed, model)
    state = ModifierState(
        model=model,
        teacher=teacher,
        calibration=list(calibration) if calibration is not None else None,
    )
    for stage in parsed.stages:
        _run_oneshot_stage(stage, state, parsed.source)
    return model
