"""Bad recipes fail with one message naming file, stage, modifier and field; CLI exits non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.cli import main
from zoo.errors import RecipeError
from zoo.models import get_model
from zoo.recipes import check_model, load_recipe


def _native(modifiers: str) -> str:
    return "schema_version: 1\nstages:\n  prune:\n    run_type: train\n    modifiers:\n" + modifiers


CASES = {
    "unknown_modifier": (
        _native("      - {type: GMPrunningModifier, final_sparsity: 0.5, end_epoch: 3}\n"),
        [
            "modifiers[0] (GMPrunningModifier)",
            "unknown modifier",
            "Did you mean 'GMPruningModifier'",
        ],
    ),
    "wrong_type": (
        _native("      - {type: GMPruningModifier, final_sparsity: high, end_epoch: 3}\n"),
        ["modifiers[0] (GMPruningModifier)", "field 'final_sparsity'", "expected a number"],
    ),
    "sparsity_out_of_range": (
        _native(
            "      - {type: EpochRangeModifier, end_epoch: 3}\n"
            "      - {type: GMPruningModifier, final_sparsity: 1.0, end_epoch: 3}\n"
        ),
        ["modifiers[1] (GMPruningModifier)", "field 'final_sparsity'", "[0, 1)"],
    ),
    "end_before_start": (
        _native("      - {type: GMPruningModifier, start_epoch: 5, end_epoch: 2}\n"),
        ["modifiers[0] (GMPruningModifier)", "field 'end_epoch'", "before start_epoch"],
    ),
    "unknown_field": (
        _native("      - {type: GMPruningModifier, final_sparsty: 0.5}\n"),
        ["field 'final_sparsty'", "Did you mean 'final_sparsity'"],
    ),
    "fighting_pruners": (
        _native(
            "      - {type: GMPruningModifier, params: [re:.*weight], start_epoch: 0,"
            " end_epoch: 4}\n"
            "      - {type: GMPruningModifier, params: [re:.*weight], start_epoch: 2,"
            " end_epoch: 6}\n"
        ),
        ["modifiers[1] (GMPruningModifier)", "field 'params'", "modifiers[0]", "overlapping"],
    ),
    "undefined_variable": (
        _native("      - {type: GMPruningModifier, final_sparsity: '${sparsty}'}\n"),
        ["field 'final_sparsity'", "undefined variable 'sparsty'"],
    ),
    "legacy_bad_value": (
        "pruning_modifiers:\n"
        "  - !GMPruningModifier {final_sparsity: eval(2 * 0.6), end_epoch: 3}\n",
        ["stage 'default'", "modifiers[0] (GMPruningModifier)", "field 'final_sparsity'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_recipe_names_file_stage_modifier_field(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    stage = "stage 'default'" if text.startswith("pruning_modifiers") else "stage 'prune'"
    assert stage in message
    for part in expected:
        assert part in message, (part, message)

    assert main(["recipe", "validate", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"zoo: error: {message}"


def test_pattern_matching_no_parameter_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nomatch.yaml"
    path.write_text(
        _native(
            "      - {type: GMPruningModifier, params: ['re:.*[.]0[.]0[.]weight'], end_epoch: 3}\n"
        )
    )
    recipe = load_recipe(path)  # fine without a model
    with pytest.raises(RecipeError) as info:
        check_model(recipe, get_model("mlp"))
    message = str(info.value)
    for part in (
        str(path),
        "stage 'prune'",
        "modifiers[0] (GMPruningModifier)",
        "field 'params'",
        "'re:.*[.]0[.]0[.]weight' matches no parameter",
    ):
        assert part in message
    assert main(["recipe", "validate", str(path), "--model", "mlp"]) == 2
    assert main(["recipe", "validate", str(path), "--model", "cnn_small"]) == 0
    capsys.readouterr()


def test_overlap_found_only_with_a_model(tmp_path: Path) -> None:
    """Different selectors that hit the same parameter: seen once resolved on a model."""
    path = tmp_path / "overlap.yaml"
    path.write_text(
        _native(
            "      - {type: GMPruningModifier, params: __ALL_PRUNABLE__, end_epoch: 4}\n"
            "      - {type: SparseGPTModifier, params: [classifier],"
            " start_epoch: 1, end_epoch: 2}\n"
        )
    )
    recipe = load_recipe(path)
    with pytest.raises(RecipeError, match=r"parameter 'classifier.weight' is also targeted"):
        check_model(recipe, get_model("mlp"))


def test_sequential_pruners_do_not_conflict(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        _native(
            "      - {type: GMPruningModifier, start_epoch: 0, end_epoch: 2, final_sparsity: 0.5}\n"
            "      - {type: GMPruningModifier, start_epoch: 2, end_epoch: 4, init_sparsity: 0.5}\n"
        )
    )
    check_model(load_recipe(path), get_model("mlp"))


def test_show_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parent / "sparsezoo" / "mobilenet_v1_imagenet_pruned_moderate.md"
    assert main(["recipe", "show", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"modifier": "GMPruningModifier"' in out and "epoch 0 → 40, every 0.4" in out
    assert main(["recipe", "show", str(path)]) == 0
    table = capsys.readouterr().out
    assert "90 training epoch(s)" in table and table.count("default") >= 5
