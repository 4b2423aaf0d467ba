"""llm-compressor's scheme presets and config_groups on QuantizationModifier: what runs on
this CPU runs with that meaning, the rest is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.compress.export_identity import text_inputs, tiny_bert
from zoo.errors import RecipeError
from zoo.modifiers import quantization as q
from zoo.modifiers.quantization.schemes import resolve_scheme
from zoo.modifiers.quantization.weight_only import WeightGrid, record_of
from zoo.recipes import oneshot, parse_recipe


@pytest.mark.parametrize(
    ("scheme", "grid", "activations"),
    [
        ("W4A16", WeightGrid(4, 128), "none"),
        ("w8a16", WeightGrid(8, 128), "none"),  # compressed-tensors: groups of 128 too
        ("W8A8", WeightGrid(8), "dynamic"),
        ("INT8", WeightGrid(8), "dynamic"),
    ],
)
def test_presets_resolve_to_what_they_mean(scheme: str, grid: WeightGrid, activations: str) -> None:
    resolved = resolve_scheme(scheme, None, ["Linear"])
    assert resolved is not None
    assert (resolved.grid, resolved.activations, resolved.targets) == (
        grid,
        activations,
        ["Linear"],
    )


def test_a_preset_mapped_to_targets_takes_them() -> None:
    resolved = resolve_scheme({"W4A16": ["re:.*query"]}, None, ["Linear"])
    assert resolved is not None and resolved.targets == ["re:.*query"]


def _groups(weights: str, activations: str = "null") -> dict:
    import yaml

    return yaml.safe_load(
        f"group_0:\n  targets: [Linear]\n  weights: {weights}\n  input_activations: {activations}\n"
    )


_INT8 = "{num_bits: 8, type: int, symmetric: true, strategy: channel}"


def test_config_groups_static_and_dynamic_int8() -> None:
    static = resolve_scheme(None, _groups(_INT8, "{num_bits: 8, type: int, strategy: tensor}"), [])
    dynamic = resolve_scheme(None, _groups(_INT8, "{num_bits: 8, dynamic: true}"), [])
    assert static is not None and static.activations == "static"
    assert dynamic is not None and dynamic.activations == "dynamic"


@pytest.mark.parametrize(
    ("weights", "activations", "says"),
    [
        ("{num_bits: 8, type: float, strategy: channel}", "null", "float weights"),
        (
            "{num_bits: 4, type: int, strategy: group, group_size: 128, symmetric: false}",
            "null",
            "asymmetric weights",
        ),
        (
            "{num_bits: 4, type: int, strategy: group, group_size: 128}",
            "{num_bits: 8}",
            "4-bit weights with int8 activations",
        ),
        (_INT8, "{num_bits: 8, type: float, dynamic: true}", "8-bit float activations"),
        (
            "{num_bits: 4, type: int, strategy: group, group_size: 128, observer: mse}",
            "null",
            "'mse' observer",
        ),
        (_INT8, "{num_bits: 8, type: int, strategy: token}", "static activations with strategy"),
    ],
)
def test_config_groups_this_cpu_cannot_run_are_refused_saying_what(
    weights: str, activations: str, says: str
) -> None:
    with pytest.raises(RecipeError, match="known, not supported here") as info:
        resolve_scheme(None, _groups(weights, activations), [])
    assert says in str(info.value)


def _quantize(fields: str) -> nn.Module:
    model = tiny_bert(0)
    recipe = parse_recipe(
        "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n"
        f"      targets: Linear\n      ignore: [classifier]\n{fields}"
    )
    assert recipe.stages[0].run_type == "oneshot"  # a scheme makes it llm-compressor's PTQ
    oneshot(model, recipe, [text_inputs() for _ in range(2)])
    return model


def test_w8a8_preset_gives_dynamic_int8_linears() -> None:
    model = _quantize("      scheme: W8A8\n")
    plan = q.plan_of(model)
    assert plan is not None and plan.scheme == "dynamic"
    assert "classifier" not in plan.dynamic and len(plan.dynamic) == 12


def test_static_config_group_gives_calibrated_int8() -> None:
    model = _quantize(
        "      config_groups:\n        group_0:\n          targets: [Linear]\n"
        f"          weights: {_INT8}\n"
        "          input_activations: {num_bits: 8, type: int, symmetric: true, strategy: tensor,"
        " dynamic: false}\n"
    )
    plan = q.plan_of(model)
    assert plan is not None and plan.scheme == "static"
    with torch.inference_mode():
        assert torch.isfinite(model(**text_inputs())).all()


def test_w4a16_group_size_must_divide_the_layers() -> None:
    with pytest.raises(RecipeError, match="group_size 128 does not divide the 64 input columns"):
        _quantize("      scheme: W4A16\n")


def test_w4a16_config_group_rounds_to_nearest() -> None:
    model = _quantize(
        "      config_groups:\n        g:\n          targets: [Linear]\n"
        "          weights: {num_bits: 4, type: int, symmetric: true, strategy: group,"
        " group_size: 32}\n"
    )
    record = record_of(model)
    assert record is not None and record.method == "rtn" and record.grid == WeightGrid(4, 32)
    assert q.plan_of(model) is None
    weight = model.get_parameter("encoder.encoder.layer.1.output.dense.weight")
    codes = weight / record.layers["encoder.encoder.layer.1.output.dense"].column_scales()
    assert torch.allclose(codes, codes.round(), atol=1e-4)


@pytest.mark.parametrize("scheme", ["FP8", "FP8_DYNAMIC", "NVFP4", "MXFP4"])
def test_gpu_presets_are_refused_by_name(scheme: str) -> None:
    with pytest.raises(RecipeError) as info:
        _quantize(f"      scheme: {scheme}\n")
    assert f"scheme {scheme!r} is known, not supported here: needs a GPU" in str(info.value)


def test_qat_fields_beside_a_one_shot_scheme_are_refused() -> None:
    with pytest.raises(RecipeError, match="quantization-aware training"):
        parse_recipe(
            "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n"
            "      scheme: W8A8\n      disable_quantization_observer_epoch: 2\n"
        )
