"""GPTQ: lower layer output error than round-to-nearest, the grid it writes, the recipe form
(llm-compressor's GPTQModifier fields) and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.compress.export_identity import text_inputs, tiny_bert
from zoo.errors import RecipeError
from zoo.modifiers.gptq import gptq_quantize
from zoo.modifiers.pruning_calibrated import reconstruction_error
from zoo.modifiers.quantization.weight_only import WeightGrid, record_of, rtn_quantize
from zoo.recipes import check_model, oneshot, parse_recipe


def _layer_and_inputs(seed: int, columns: int = 256) -> tuple[nn.Linear, torch.Tensor]:
    """A random Linear and correlated inputs (real activations are far from white noise)."""
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(columns, 96)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(96, columns, generator=gen) * 0.05)
    basis = torch.randn(48, columns, generator=gen)
    x = torch.randn(1024, 48, generator=gen) @ basis + 0.1 * torch.randn(
        1024, columns, generator=gen
    )
    return layer, x


def _hessian(x: torch.Tensor) -> torch.Tensor:
    return 2 * x.T @ x / x.shape[0]


def _relative(layer: nn.Linear, new: torch.Tensor, x: torch.Tensor) -> float:
    return reconstruction_error(layer.weight.detach(), new, x) / float(
        torch.linalg.norm(x @ layer.weight.detach().T)
    )


@pytest.mark.parametrize("grid", [WeightGrid(4, 128), WeightGrid(8)], ids=["w4g128", "w8"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gptq_output_error_is_below_round_to_nearest(grid: WeightGrid, seed: int) -> None:
    layer, x = _layer_and_inputs(seed)
    gptq, _ = gptq_quantize(layer.weight, _hessian(x), grid)
    rtn, _ = rtn_quantize(layer.weight, grid)
    assert _relative(layer, gptq, x) < 0.8 * _relative(layer, rtn, x)


@pytest.mark.parametrize("actorder", [None, "weight", "group"])
def test_gptq_weights_lie_on_the_grid_with_their_recorded_groups(actorder: str | None) -> None:
    layer, x = _layer_and_inputs(3)
    grid = WeightGrid(4, 128)
    new, quantized = gptq_quantize(layer.weight, _hessian(x), grid, actorder=actorder)
    codes = new / quantized.column_scales()
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.round().min() >= -8 and codes.round().max() <= 7
    contiguous = torch.equal(quantized.groups, grid.default_groups(256))
    assert contiguous == (actorder != "group")  # only group act-order regroups columns
    assert torch.bincount(quantized.groups).tolist() == [128, 128]


def test_gptq_keeps_pruned_weights_at_zero() -> None:
    layer, x = _layer_and_inputs(4)
    with torch.no_grad():
        layer.weight[:, ::2] = 0.0  # 50% sparse, as after SparseGPT
    new, _ = gptq_quantize(layer.weight, _hessian(x), WeightGrid(4, 128))
    assert bool((new[:, ::2] == 0).all())


_RECIPE = """
quant_stage:
  quant_modifiers:
    GPTQModifier:
      targets: Linear
      scheme: {scheme}
      ignore: [lm_head, classifier]
      dampening_frac: 0.01
      block_size: 64
      actorder: {actorder}
{extra}"""


def _recipe(scheme: str = "W4A16", actorder: str = "static", extra: str = "") -> str:
    return _RECIPE.format(scheme=scheme, actorder=actorder, extra=extra)


@pytest.mark.parametrize(
    # tiny layers have 64 input columns: the presets' groups of 128 cannot tile them
    ("scheme", "group_size"),
    [("W4A16", "      group_size: 32\n"), ("W8A16", "      group_size: 64\n")],
)
def test_gptq_recipe_quantizes_every_linear_but_the_ignored(scheme: str, group_size: str) -> None:
    model = tiny_bert(0)
    batches = [text_inputs() for _ in range(2)]
    with torch.no_grad():
        before = model(**batches[0])
    recipe = parse_recipe(_recipe(scheme, extra=group_size))
    assert recipe.stages[0].run_type == "oneshot"  # inferred, as llm-compressor does
    oneshot(model, recipe, batches)
    record = record_of(model)
    assert record is not None and record.method == "gptq" and record.scheme == scheme
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert set(record.layers) == linears - {"classifier"}
    assert record.grid.group_size == (32 if scheme == "W4A16" else 64)
    with torch.no_grad():
        after = model(**batches[0])
    assert not torch.equal(before, after)
    assert torch.allclose(before, after, atol=0.1 if scheme == "W4A16" else 0.01)


def _error(text: str, model: nn.Module | None = None) -> str:
    with pytest.raises(RecipeError) as info:
        recipe = parse_recipe(text)
        if model is not None:
            check_model(recipe, model)
    return str(info.value)


def test_group_size_that_does_not_divide_a_layer_is_refused_naming_it() -> None:
    message = _error(_recipe(extra="      group_size: 48\n"), tiny_bert(0))
    assert "group_size 48 does not divide the 64 input columns" in message
    assert "GPTQModifier" in message and "group_size" in message


def test_unknown_scheme_lists_the_presets() -> None:
    message = _error(_recipe("W3A16"))
    assert "unknown scheme 'W3A16'" in message and "W4A16" in message and "NVFP4" in message


@pytest.mark.parametrize("scheme", ["FP8", "NVFP4", "W4A8"])
def test_schemes_this_cpu_cannot_run_are_refused_by_name(scheme: str) -> None:
    message = _error(_recipe(scheme))
    assert f"scheme {scheme!r} is known, not supported here" in message


def test_gptq_with_activation_quantization_points_to_quantization_modifier() -> None:
    message = _error(_recipe("W8A8"))
    assert "W8A8" in message and "QuantizationModifier with scheme W8A8" in message


def test_bad_actorder_and_damping_are_reported_together() -> None:
    message = _error(_recipe(actorder="sideways", extra="      dampening_frac: 1.5\n"))
    assert "dampening_frac" in message


def test_gptq_in_a_train_stage_is_refused() -> None:
    from zoo.recipes import RecipeManager

    text = _recipe(extra="      group_size: 32\n").replace(
        "quant_modifiers:", "run_type: train\n  quant_modifiers:"
    )
    model = tiny_bert(0)
    manager = RecipeManager(parse_recipe(text))
    with pytest.raises(RecipeError, match="GPTQ runs one-shot"):
        manager.modify(model, torch.optim.SGD(model.parameters(), lr=0.1), steps_per_epoch=1)
