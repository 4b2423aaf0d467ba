"""Recipe fidelity (issue 13): fields mean what SparseML / llm-compressor document, or the
recipe is refused with a message that says why. Each test here failed on the code before
the fix it names.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from tests.modifiers.test_training import _run
from zoo.cli import main
from zoo.errors import RecipeError, RecipeErrors
from zoo.models import get_model
from zoo.modifiers.distillation import soft_kl
from zoo.modifiers.pruning_masks import make_mask, parse_structure
from zoo.recipes import RecipeManager, check_model, oneshot, parse_recipe


def _stage(modifiers: str, run_type: str = "train") -> str:
    return f"stages:\n  s:\n    run_type: {run_type}\n    modifiers:\n{modifiers}"


# ---- learning rate ------------------------------------------------------------------------
def test_multistep_milestones_are_absolute_epochs() -> None:
    recipe = _stage(
        "      - {type: EpochRangeModifier, end_epoch: 6}\n"
        "      - {type: LearningRateModifier, lr_class: MultiStepLR, init_lr: 0.5,"
        " start_epoch: 2, lr_kwargs: {milestones: [4], gamma: 0.1}}\n"
    )
    used = [g[0] for g in _run(recipe, steps_per_epoch=1)]
    # epochs 0, 1 untouched; 2, 3 at init_lr; the drop at ABSOLUTE epoch 4 (old code: 2 + 4)
    assert used == [1.0, 1.0, 0.5, 0.5, pytest.approx(0.05), pytest.approx(0.05)]


@pytest.mark.parametrize(("milestone", "why"), [(2, "at or before start_epoch"), (7, "end_epoch")])
def test_multistep_milestones_outside_the_range_are_refused(milestone: int, why: str) -> None:
    with pytest.raises(RecipeError, match=why) as info:
        parse_recipe(
            _stage(
                "      - {type: LearningRateModifier, lr_class: MultiStepLR, init_lr: 0.5,"
                f" start_epoch: 2, end_epoch: 7, lr_kwargs: {{milestones: [{milestone}]}}}}\n"
            )
        )
    assert "field 'lr_kwargs'" in str(info.value)


def test_exponent_numbers_yaml_reads_as_strings_are_numbers() -> None:
    recipe = parse_recipe(
        "lr: 8e-5\n"
        "training_modifiers:\n"
        "  - !SetLearningRateModifier {learning_rate: eval(lr), start_epoch: 0}\n"
        "  - !LearningRateFunctionModifier {lr_func: linear, init_lr: 1e-4, final_lr: 1E-6,"
        " start_epoch: 0, end_epoch: 1}\n"
    )
    set_lr, function = recipe.stages[0].modifiers
    assert set_lr.learning_rate == 8e-5  # type: ignore[attr-defined]
    assert (function.init_lr, function.final_lr) == (1e-4, 1e-6)  # type: ignore[attr-defined]
    with pytest.raises(RecipeError, match="expected a number"):
        parse_recipe(_stage("      - {type: SetLearningRateModifier, learning_rate: 1e-4x}\n"))


# ---- quantization -------------------------------------------------------------------------
def _images() -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(8, 1, 28, 28) for _ in range(2)]


def test_quantization_submodules_that_match_nothing_are_an_error() -> None:
    recipe = parse_recipe(
        _stage(
            "      - {type: PostTrainingQuantizationModifier, submodules: [features, backbone]}\n",
            run_type="oneshot",
        )
    )
    model = get_model("cnn_small")
    with pytest.raises(RecipeError) as info:
        check_model(recipe, model)
    message = str(info.value)
    assert "field 'submodules'" in message and "['backbone']" in message
    with pytest.raises(RecipeError, match="backbone"):
        oneshot(model, recipe, _images())
    assert not any(type(m).__module__.startswith("torch.ao") for m in model.modules())


@pytest.mark.parametrize(
    "field", ["quantize_conv_activations: false", "quantize_linear_activations: 0"]
)
def test_activation_switches_off_are_refused_as_not_supported(field: str) -> None:
    with pytest.raises(RecipeError, match="known, not supported here") as info:
        parse_recipe(_stage(f"      - {{type: QuantizationModifier, {field}}}\n"))
    assert f"field '{field.split(':')[0]}'" in str(info.value)
    parse_recipe(_stage("      - {type: QuantizationModifier, quantize_conv_activations: true}\n"))


def test_observers_disabled_at_the_quantization_start_are_refused() -> None:
    with pytest.raises(RecipeError, match="before they saw any data"):
        parse_recipe(
            _stage(
                "      - {type: QuantizationModifier, start_epoch: 1,"
                " disable_quantization_observer_epoch: 1}\n"
            )
        )


# ---- distillation -------------------------------------------------------------------------
class _TwoHeads(nn.Module):
    """A real two-output network: (start logits, end logits), as a QA model returns."""

    def __init__(self, seed: int, as_model_output: bool) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.start = nn.Linear(6, 5)
        self.end = nn.Linear(6, 5)
        self.as_model_output = as_model_output

    def forward(self, x: torch.Tensor) -> Any:
        start, end = self.start(x), self.end(x)
        if self.as_model_output:
            return QuestionAnsweringModelOutput(start_logits=start, end_logits=end)
        return start, end


def _kd_loss(keys: str, as_model_output: bool) -> tuple[torch.Tensor, Any, Any]:
    student, teacher = _TwoHeads(0, as_model_output), _TwoHeads(1, as_model_output)
    recipe = _stage(
        "      - {type: EpochRangeModifier, end_epoch: 1}\n"
        "      - {type: OutputDistillationModifier, hardness: 1.0, temperature: 2.0"
        f"{keys}}}\n"
    )
    manager = RecipeManager.from_yaml(recipe)
    manager.modify(student, torch.optim.SGD(student.parameters(), lr=0.1), 1, teacher=teacher)
    x = torch.randn(4, 6)
    out = student(x)
    loss = manager.loss_update(torch.tensor(0.0), inputs=x, outputs=out)
    manager.finalize()
    with torch.no_grad():
        return loss, out, teacher.eval()(x)


def test_distill_output_keys_choose_the_outputs() -> None:
    loss, out, t = _kd_loss(", distill_output_keys: [1]", as_model_output=False)
    torch.testing.assert_close(loss, soft_kl(out[1], t[1], 2.0).mean())
    # without keys SparseML distills every output of a tuple, averaged
    loss, out, t = _kd_loss("", as_model_output=False)
    both = (soft_kl(out[0], t[0], 2.0).mean() + soft_kl(out[1], t[1], 2.0).mean()) / 2
    torch.testing.assert_close(loss, both)


def test_distillation_reads_a_transformers_model_output() -> None:
    loss, out, t = _kd_loss(", distill_output_keys: [end_logits]", as_model_output=True)
    torch.testing.assert_close(loss, soft_kl(out.end_logits, t.end_logits, 2.0).mean())
    loss, out, t = _kd_loss("", as_model_output=True)  # every *logits entry
    both = soft_kl(out.start_logits, t.start_logits, 2.0).mean()
    both = (both + soft_kl(out.end_logits, t.end_logits, 2.0).mean()) / 2
    torch.testing.assert_close(loss, both)
    with pytest.raises(RecipeError, match=r"'answer_logits'\] are not among"):
        _kd_loss(", distill_output_keys: [answer_logits]", as_model_output=True)


# ---- block masks on convolutions ----------------------------------------------------------
def test_block_mask_on_a_conv_groups_four_input_channels_at_one_kernel_position() -> None:
    torch.manual_seed(0)
    weight = torch.randn(8, 16, 3, 3)
    keep = make_mask(weight.abs(), 0.5, parse_structure([1, 4]))
    # [out, in/4, 4, kh, kw]: each group of 4 consecutive input channels at one (out, kh, kw)
    groups = keep.reshape(8, 4, 4, 3, 3).float().mean(2)
    assert set(groups.unique().tolist()) == {0.0, 1.0}
    assert int((~keep).sum()) == weight.numel() // 2
    # the old grouping (4 consecutive flattened in*kh*kw elements) is not what was kept
    flat_groups = keep.reshape(8, -1, 4).float().mean(2)
    assert not set(flat_groups.unique().tolist()) <= {0.0, 1.0}


def test_validate_with_a_model_refuses_blocks_that_do_not_tile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "blocks.yaml"
    path.write_text(
        _stage(
            "      - {type: GMPruningModifier, params: __ALL_PRUNABLE__, mask_type: [1, 4],"
            " final_sparsity: 0.5, end_epoch: 2}\n"
        )
    )
    assert main(["recipe", "validate", str(path), "--model", "cnn_small"]) == 2
    err = capsys.readouterr().err
    # cnn_small's first conv has 1 input channel: 4 input channels cannot be grouped
    assert "features.0.0.weight" in err and "(16, 1, 3, 3)" in err and "field 'mask_type'" in err


# ---- llm-compressor layout ----------------------------------------------------------------
class _Decoder(nn.Module):
    """Layer names as a Llama's (``model.layers.N.self_attn.q_proj``), real Linear layers."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        block = nn.ModuleDict(
            {
                "self_attn": nn.ModuleDict(
                    {"q_proj": nn.Linear(16, 16), "o_proj": nn.Linear(16, 16)}
                ),
                "norm": nn.LayerNorm(16),
            }
        )
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([copy.deepcopy(block) for _ in range(2)])
        self.lm_head = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.model.layers:  # type: ignore[union-attr]
            attn = layer["self_attn"]
            x = layer["norm"](x + attn["o_proj"](F.relu(attn["q_proj"](x))))
        return self.lm_head(x)


def test_targets_naming_a_layer_block_mean_the_linear_layers_inside() -> None:
    model = _Decoder()
    recipe = parse_recipe(
        "sparsity_stage:\n  sparsity_modifiers:\n    SparseGPTModifier:\n"
        "      sparsity: 0.5\n      targets: ['re:model.layers.\\d+$']\n"
    )
    targets = check_model(recipe, model)[("sparsity_stage", 0)]
    assert targets == [
        f"model.layers.{i}.self_attn.{p}.weight" for i in range(2) for p in ("q_proj", "o_proj")
    ]
    torch.manual_seed(1)
    oneshot(model, recipe, [torch.randn(4, 16) for _ in range(4)])
    for name in targets:
        assert float((model.get_parameter(name) == 0).float().mean()) == pytest.approx(0.5)
    assert int((model.lm_head.weight == 0).sum()) == 0


def test_constant_pruning_reads_llm_compressor_fields_and_errors_name_targets() -> None:
    recipe = parse_recipe(
        "finetune_stage:\n  finetuning_modifiers:\n    ConstantPruningModifier:\n"
        "      targets: ['re:.*q_proj.weight']\n      start: 0\n      end: 2\n"
    )
    (mod,) = recipe.stages[0].modifiers
    assert (mod.params, mod.start_epoch, mod.end_epoch) == (["re:.*q_proj.weight"], 0.0, 2.0)
    bad = parse_recipe(
        "oneshot_stage:\n  pruning_modifiers:\n    SparseGPTModifier:\n"
        "      sparsity: 0.5\n      targets: ['re:model.decoder.*']\n"
    )
    with pytest.raises(RecipeError) as info:
        check_model(bad, _Decoder())
    assert "field 'targets'" in str(info.value) and "field 'params'" not in str(info.value)


def test_gptq_is_read_as_gptq_not_a_typo() -> None:
    recipe = parse_recipe(
        "quant_stage:\n  quant_modifiers:\n    GPTQModifier:\n"
        "      scheme: W4A16\n      targets: Linear\n"
    )
    (modifier,) = recipe.stages[0].modifiers
    assert modifier.type_name == "GPTQModifier" and recipe.stages[0].run_type == "oneshot"


def test_a_modifier_known_but_not_here_is_not_a_typo() -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe("quant_stage:\n  quant_modifiers:\n    AWQModifier:\n      targets: Linear\n")
    message = str(info.value)
    assert "AWQModifier is known, not supported here" in message
    assert "Did you mean" not in message


# ---- every error in one run ---------------------------------------------------------------
def test_validate_reports_all_three_errors_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "three.yaml"
    path.write_text(
        _stage(
            "      - {type: GMPruningModifier, final_sparsity: high, end_epoch: 3}\n"
            "      - {type: LearningRateFunctionModifer, init_lr: 0.1, end_epoch: 3}\n"
            "      - {type: SetLearningRateModifier, learning_rate: 0.1, start_epok: 1}\n"
        )
    )
    assert main(["recipe", "validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "zoo: error: 3 problems in the recipe:"
    assert len(lines) == 4
    assert "modifiers[0] (GMPruningModifier), field 'final_sparsity'" in lines[1]
    assert "modifiers[1] (LearningRateFunctionModifer)" in lines[2] and "Did you mean" in lines[2]
    assert "modifiers[2] (SetLearningRateModifier), field 'start_epok'" in lines[3]
    assert all(line.startswith(f"  {path}: stage 's', ") for line in lines[1:])
    with pytest.raises(RecipeErrors) as info:
        parse_recipe(path.read_text(), source=str(path))
    assert len(info.value.errors) == 3


# ---- fields that used to be ignored whatever they said -------------------------------------
@pytest.mark.parametrize(
    ("modifier", "field"),
    [
        ("GMPruningModifier", "phased: true"),
        ("GMPruningModifier", "score_type: movement"),
        ("SparseGPTModifier", "quantize: true"),
        ("WandaPruningModifier", "owl_m: 5"),
        ("QuantizationModifier", "tensorrt: true"),
        ("QuantizationModifier", "scheme: NVFP4"),
        ("QuantizationModifier", "quantize_embeddings: true"),
        ("PostTrainingQuantizationModifier", "model_fuse_fn_name: fuse_module"),
    ],
)
def test_fields_that_would_change_the_result_are_refused_not_ignored(
    modifier: str, field: str
) -> None:
    with pytest.raises(RecipeError, match="known, not supported here") as info:
        parse_recipe(_stage(f"      - {{type: {modifier}, {field}}}\n"))
    assert f"field '{field.split(':')[0]}'" in str(info.value)


def test_fields_at_the_value_this_zoo_always_uses_are_accepted() -> None:
    parse_recipe(
        _stage(
            "      - {type: GMPruningModifier, phased: false, score_type: magnitude,"
            " end_epoch: 2}\n"
            "      - {type: QuantizationModifier, tensorrt: false, start_epoch: 2,"
            " quantize_embeddings: false}\n"
        )
    )


def test_layer_distillation_names_are_checked_at_validate_with_a_model() -> None:
    recipe = parse_recipe(
        _stage(
            "      - {type: EpochRangeModifier, end_epoch: 1}\n"
            "      - {type: LayerDistillationModifier, layers: {featurs.0: features.0}}\n"
        )
    )
    with pytest.raises(RecipeError, match=r"student has no layer 'featurs\.0'") as info:
        check_model(recipe, get_model("cnn_small"))
    assert "field 'layers'" in str(info.value)
