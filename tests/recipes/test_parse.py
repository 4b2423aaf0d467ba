"""Parsing: native and legacy forms give the same typed objects; nothing runs code."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.errors import RecipeError
from zoo.modifiers.pruning import ConstantPruningModifier, GMPruningModifier, SparseGPTModifier
from zoo.modifiers.training import EpochRangeModifier, LearningRateFunctionModifier
from zoo.recipes import load_recipe, parse_recipe
from zoo.recipes.expressions import Variables

EXAMPLES = Path(__file__).resolve().parents[2] / "zoo" / "recipes" / "examples"

NATIVE = """
schema_version: 1
variables:
  num_epochs: 10.0
  init_lr: 0.01
  prune_end: ${num_epochs - 2}
stages:
  train:
    run_type: train
    modifiers:
      - type: EpochRangeModifier
        start_epoch: 0.0
        end_epoch: ${num_epochs}
      - type: LearningRateFunctionModifier
        start_epoch: 0
        end_epoch: ${num_epochs}
        lr_func: cosine
        init_lr: ${init_lr}
        final_lr: 0.0
      - type: GMPruningModifier
        params: __ALL_PRUNABLE__
        init_sparsity: 0.05
        final_sparsity: 0.9
        start_epoch: 1.0
        end_epoch: ${prune_end}
        update_frequency: 0.5
"""

LEGACY = """
version: 1.1.0
num_epochs: 10.0
init_lr: 0.01
prune_end: eval(num_epochs - 2)
training_modifiers:
  - !EpochRangeModifier {start_epoch: 0.0, end_epoch: eval(num_epochs)}
  - !LearningRateFunctionModifier {start_epoch: 0, end_epoch: eval(num_epochs), lr_func: cosine,
                                   init_lr: eval(init_lr), final_lr: 0.0}
pruning_modifiers:
  - !GMPruningModifier
    params: __ALL_PRUNABLE__
    init_sparsity: 0.05
    final_sparsity: 0.9
    start_epoch: 1.0
    end_epoch: eval(prune_end)
    update_frequency: 0.5
    leave_enabled: True
    inter_func: cubic
    mask_type: unstructured
    log_types: __ALL__
"""


def test_native_and_legacy_parse_to_the_same_modifiers() -> None:
    native = parse_recipe(NATIVE, source="native.yaml")
    legacy = parse_recipe(LEGACY, source="legacy.yaml")
    assert legacy.legacy and not native.legacy
    mods_n = native.stages[0].modifiers
    mods_l = legacy.stages[0].modifiers
    assert [type(m) for m in mods_n] == [
        EpochRangeModifier,
        LearningRateFunctionModifier,
        GMPruningModifier,
    ]
    assert mods_n == mods_l
    gmp = mods_n[2]
    assert isinstance(gmp, GMPruningModifier)
    assert gmp.end_epoch == 8.0 and isinstance(gmp.end_epoch, float)
    assert native.max_epochs == legacy.max_epochs == 10.0


def test_sparsezoo_recipe_md_front_matter() -> None:
    text = "---\n" + LEGACY + "---\n\n# Pruned model\n\nThis recipe prunes: 90%.\n"
    recipe = parse_recipe(text, source="recipe.md")
    assert [m.type_name for m in recipe.stages[0].modifiers][-1] == "GMPruningModifier"


def test_llm_compressor_stage_form() -> None:
    text = """
sparsity_stage:
  run_type: oneshot
  sparsity_modifiers:
    SparseGPTModifier:
      sparsity: 0.5
      block_size: 128
      dampening_frac: 0.01
      mask_structure: "2:4"
      sequential_update: true
      targets: ["re:encoder.layer.*(query|key|value)$"]
"""
    recipe = parse_recipe(text)
    (stage,) = recipe.stages
    assert stage.name == "sparsity_stage" and stage.run_type == "oneshot"
    (mod,) = stage.modifiers
    assert isinstance(mod, SparseGPTModifier)
    assert mod.mask_structure == "2:4" and mod.params == ["re:encoder.layer.*(query|key|value)$"]


def test_stage_without_run_type_inferred_oneshot() -> None:
    text = "prune_stage:\n  pruning_modifiers:\n    - !SparseGPTModifier {sparsity: 0.5}\n"
    assert parse_recipe(text).stages[0].run_type == "oneshot"


def test_variable_overrides_replace_recipe_values() -> None:
    recipe = parse_recipe(NATIVE, overrides={"num_epochs": 4.0})
    assert recipe.max_epochs == 4.0
    gmp = recipe.stages[0].modifiers[2]
    assert gmp.end_epoch == 2.0


def test_string_interpolation_and_functions() -> None:
    variables = Variables({"a": 3, "b": "eval(max(a, 5) * 2)", "name": "run-${a + 1}"})
    assert variables.get("b") == 10
    assert variables.get("name") == "run-4"


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "(1).__class__", "[1, 2]", "open('x')", "10 ** 10 ** 10"],
)
def test_expressions_cannot_run_code(expression: str) -> None:
    with pytest.raises(RecipeError):
        Variables({"x": f"eval({expression})"}).get("x")


def test_variable_cycle_is_an_error() -> None:
    with pytest.raises(RecipeError, match="cycle"):
        Variables({"a": "${b}", "b": "${a}"}).get("a")


def test_python_yaml_tags_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"x: !!python/object/apply:os.system ['touch {marker}']\nmodifiers: []\n"
    with pytest.raises(RecipeError, match="invalid YAML"):
        parse_recipe(text)
    assert not marker.exists()


def test_constant_pruning_never_conflicts_with_gmp() -> None:
    text = LEGACY + "  - !ConstantPruningModifier {params: __ALL_PRUNABLE__, start_epoch: 0.0}\n"
    recipe = parse_recipe(text)
    assert isinstance(recipe.stages[0].modifiers[-1], ConstantPruningModifier)


def test_train_stages_are_laid_end_to_end() -> None:
    text = """
stages:
  prune:
    modifiers:
      - {type: GMPruningModifier, start_epoch: 0, end_epoch: 4, final_sparsity: 0.5}
      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 5}
  finetune:
    modifiers:
      - {type: ConstantPruningModifier}
      - {type: EpochRangeModifier, start_epoch: 0, end_epoch: 3}
"""
    recipe = parse_recipe(text)
    timeline = recipe.timeline()
    constant = next(m for _, _, m in timeline if isinstance(m, ConstantPruningModifier))
    assert constant.epoch_range() == (5.0, float("inf"))
    assert recipe.max_epochs == 8.0


SPARSEZOO = Path(__file__).parent / "sparsezoo"


@pytest.mark.parametrize(
    "path",
    sorted(EXAMPLES.glob("*.yaml"))
    + sorted(EXAMPLES.glob("*.md"))
    + sorted(SPARSEZOO.glob("m*.md")),
    ids=lambda p: p.name,
)
def test_shipped_examples_parse(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.stages and all(stage.modifiers for stage in recipe.stages)


@pytest.mark.parametrize(
    "path",
    sorted(EXAMPLES.glob("*.yaml"))
    + sorted(EXAMPLES.glob("*.md"))
    + sorted(SPARSEZOO.glob("m*.md")),
    ids=lambda p: p.name,
)
def test_dump_round_trips_to_equal_objects(path: Path) -> None:
    from zoo.recipes import dump_recipe

    recipe = load_recipe(path)
    again = parse_recipe(dump_recipe(recipe))
    assert [(s.name, s.run_type) for s in again.stages] == [
        (s.name, s.run_type) for s in recipe.stages
    ]
    assert [s.modifiers for s in again.stages] == [s.modifiers for s in recipe.stages]
