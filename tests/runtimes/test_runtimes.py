"""ONNX export and the ONNX Runtime / OpenVINO runtimes on small real models: float, static
int8 (QDQ) and dynamic int8 (MatMulInteger) agree with torch; bad input fails clearly."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tests.compress.export_identity import text_inputs, tiny_bert
from zoo.data.loaders import image_tensor
from zoo.data.sources import get_dataset_spec
from zoo.errors import OnnxExportError, RuntimePackageMissingError, UnknownRuntimeError
from zoo.models import get_model
from zoo.modifiers import quantization as q
from zoo.runtimes.dequantize import float_twin
from zoo.runtimes.onnx_export import export_onnx
from zoo.runtimes.prepare import VARIANTS, applies, is_int8, on_variant, variant_named
from zoo.runtimes.qdq import DISABLED_OPTIMIZERS, float_narrow_convs
from zoo.runtimes.table import RUNTIMES, installed_runtimes, require, runtime_named

TEST_IMAGES = 1000


@pytest.fixture(scope="module")
def test_split() -> tuple[torch.Tensor, torch.Tensor]:
    spec = get_dataset_spec("fashion_mnist")
    _, test = spec.read(spec.locate())
    assert test is not None
    labels = torch.from_numpy(test["y"][:TEST_IMAGES].astype(np.int64))
    return image_tensor(test["x"][:TEST_IMAGES], spec), labels


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(
            [model(x=images[i : i + 250]).argmax(1) for i in range(0, len(images), 250)]
        )


class Wrapped(nn.Module):
    """cnn_small called as the zoo's runtimes call models: with named inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_float_cnn_agrees_with_torch_on_the_test_split(
    trained_cnn: nn.Module, test_split: tuple[torch.Tensor, torch.Tensor], runtime: str
) -> None:
    images, _ = test_split
    model = Wrapped(trained_cnn)
    served = on_variant(model, runtime, {"x": images[:1]})
    assert type(served).__name__ == {"onnxruntime": "OnnxRuntimeModel"}.get(
        runtime, "OpenVinoModel"
    )
    agreement = (predict(model, images) == predict(served, images)).float().mean()
    assert agreement >= 0.995
    with torch.inference_mode():
        torch.testing.assert_close(
            served(x=images[:64]), model(x=images[:64]), atol=1e-4, rtol=1e-4
        )


@pytest.fixture
def int8_cnn(trained_cnn: nn.Module, fashion: dict[str, torch.Tensor]) -> nn.Module:
    """The trained CNN in torch.ao static int8, calibrated on 256 training images."""
    int8 = copy.deepcopy(trained_cnn)
    q.quantize_static(int8, [fashion["x"][i : i + 64] for i in range(0, 256, 64)])
    return Wrapped(int8)


def assert_accuracy_within_half_a_point(
    model: nn.Module, served: nn.Module, test_split: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, labels = test_split
    accuracy_torch = (predict(model, images) == labels).float().mean()
    accuracy_served = (predict(served, images) == labels).float().mean()
    assert abs(float(accuracy_torch - accuracy_served)) <= 0.005


def test_static_int8_cnn_exports_as_qdq_and_keeps_its_accuracy(
    int8_cnn: nn.Module, test_split: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    images, model = test_split[0], int8_cnn
    path = export_onnx(model, {"x": images[:1]}, tmp_path / "cnn.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    served = on_variant(model, "onnxruntime", {"x": images[:1]})
    assert_accuracy_within_half_a_point(model, served, test_split)


def test_static_int8_cnn_runs_as_its_float_twin_within_half_a_point(
    trained_cnn: nn.Module, int8_cnn: nn.Module, test_split: tuple[torch.Tensor, torch.Tensor]
) -> None:
    images, model = test_split[0], int8_cnn
    before = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    twin = float_twin(model)
    assert is_int8(model) and not is_int8(twin)
    conv = next(m for m in twin.modules() if isinstance(m, nn.Conv2d))
    quantized = next(m for m in model.modules() if type(m).__name__ == "ConvReLU2d")
    assert torch.equal(conv.weight, quantized.weight().dequantize())  # the int8 grid, exactly
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    served = on_variant(model, "onnxruntime-dequant", {"x": images[:1]}, check={"x": images[:8]})
    assert_accuracy_within_half_a_point(model, served, test_split)
    dynamic = copy.deepcopy(trained_cnn)
    q.quantize_dynamic(dynamic)
    assert applies(variant_named("onnxruntime-dequant"), model)
    assert not applies(variant_named("onnxruntime-dequant"), dynamic)
    assert not applies(variant_named("onnxruntime-dequant"), trained_cnn)


def test_static_int8_cnn_runs_int8_with_an_fp32_stem_within_half_a_point(
    trained_cnn: nn.Module,
    int8_cnn: nn.Module,
    test_split: tuple[torch.Tensor, torch.Tensor],
    tmp_path: Path,
) -> None:
    import onnxruntime as ort

    images, model = test_split[0], int8_cnn
    qdq = export_onnx(model, {"x": images[:1]}, tmp_path / "qdq.onnx")
    mixed, rewritten = float_narrow_convs(qdq, tmp_path / "mixed.onnx")
    assert rewritten == 1  # the one-channel image input; 16 and 32 channels stay int8
    convs = [n for n in onnx.load(str(mixed)).graph.node if n.op_type == "Conv"]
    assert [c.input[0] for c in convs].count("x") == 1
    # What ONNX Runtime then runs: the stem as fp32 Conv, the other convolutions in int8,
    # no pooling on uint8 before the first int8 layer.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3  # not the note that NCHWc files suit this CPU only
    ort.InferenceSession(str(mixed), options, disabled_optimizers=list(DISABLED_OPTIMIZERS))
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 2 and {"Conv", "FusedConv"} & set(ops)
    served = on_variant(model, "onnxruntime-mixed", {"x": images[:1]})
    assert_accuracy_within_half_a_point(model, served, test_split)
    assert not applies(variant_named("onnxruntime-mixed"), trained_cnn)  # float: no


def test_an_int8_model_without_a_narrow_conv_gets_no_fp32_stem(
    fashion: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    mlp = Wrapped(get_model("mlp", hidden=[32]).eval())
    q.quantize_static(mlp, [fashion["x"][i : i + 64] for i in range(0, 256, 64)])
    assert not applies(variant_named("onnxruntime-mixed"), mlp)
    qdq = export_onnx(mlp, {"x": fashion["x"][:1]}, tmp_path / "qdq.onnx")
    _, rewritten = float_narrow_convs(qdq, tmp_path / "same.onnx")
    assert rewritten == 0
    assert onnx.load(str(tmp_path / "same.onnx")).graph == onnx.load(str(qdq)).graph


def test_an_int8_module_without_a_float_twin_is_named() -> None:
    from torch.ao.nn.quantized import Conv1d

    model = nn.Sequential(Conv1d(2, 2, 1))
    with pytest.raises(OnnxExportError, match=r"'Conv1d'.*without a float twin"):
        float_twin(model)


def test_dynamic_int8_text_model_runs_its_int8_layers_as_matmulinteger(tmp_path: Path) -> None:
    model = tiny_bert(seed=0)
    plan = q.quantize_dynamic(model)
    inputs = text_inputs()
    path = export_onnx(model, {k: v[:1, :5] for k, v in inputs.items()}, tmp_path / "bert.onnx")
    graph = onnx.load(str(path)).graph
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == len(plan.dynamic)
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    served = on_variant(model, "onnxruntime", {k: v[:1, :5] for k, v in inputs.items()})
    with torch.inference_mode():  # other batch and sequence sizes than the traced ones
        torch.testing.assert_close(served(**inputs), model(**inputs), atol=0.05, rtol=0.05)


def test_runtime_quantizers_apply_to_float_models_only(trained_cnn: nn.Module) -> None:
    int8 = copy.deepcopy(trained_cnn)
    q.quantize_dynamic(int8)
    names = {v.name for v in VARIANTS if applies(v, int8)}
    assert names == {"torch", "onnxruntime", "openvino"}  # no float twin: dynamic int8
    assert {"onnxruntime-int8", "openvino-int8"} <= {
        v.name for v in VARIANTS if applies(v, trained_cnn)
    }


def test_unknown_runtime_lists_the_installed_ones() -> None:
    from zoo.client import api

    with pytest.raises(UnknownRuntimeError) as caught:
        api.load("zoo:cv/classification/mlp/fashion_mnist/base", runtime="tensorrt")
    message = str(caught.value)
    assert "'tensorrt'" in message and "Installed here: onnxruntime, openvino, torch" in message
    assert caught.value.exit_code == 2
    assert installed_runtimes() == [r.name for r in RUNTIMES]


def test_a_missing_runtime_package_names_it_and_its_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zoo.client import api

    monkeypatch.setitem(sys.modules, "openvino", None)  # what Python sees when it is absent
    assert "openvino" not in installed_runtimes()
    with pytest.raises(RuntimePackageMissingError, match=r"pip install .*openvino==2026\.4\.1"):
        api.load("zoo:cv/classification/mlp/fashion_mnist/base", runtime="openvino")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(RuntimePackageMissingError, match=r"package 'onnx'.*pip install onnx=="):
        require("onnxruntime", "onnx")
    assert runtime_named("torch").package == "torch"


class BesselHead(nn.Module):
    """A layer whose operator (aten::i0) torch.onnx cannot export."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(self.linear(x))


def test_an_export_that_fails_names_the_operator_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(OnnxExportError, match=r"BesselHead.*'aten::i0'") as caught:
        export_onnx(BesselHead(), {"x": torch.randn(2, 4)}, target)
    assert caught.value.operator == "aten::i0" and caught.value.exit_code == 2
    assert list(target.parent.iterdir()) == []  # no model.onnx, no scratch folder


class SignRouter(nn.Module):
    """Routes on its input by Python control flow, as a router of one's own might: tracing
    records one branch as the graph. (The zoo's MoE layers export without such flow:
    tests/runtimes/test_onnx_moe.py.)"""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x) if bool(x.sum() > 0) else self.down(x)


def test_a_traced_route_is_refused_not_exported_wrong(tmp_path: Path) -> None:
    positive, negative = torch.ones(1, 4), -torch.ones(3, 4)
    target = tmp_path / "router.onnx"
    export_onnx(SignRouter(), {"x": positive}, target)  # without a check it "works"
    target.unlink()
    with pytest.raises(OnnxExportError, match="data-dependent control flow"):
        export_onnx(SignRouter(), {"x": positive}, target, check={"x": negative})
    assert list(tmp_path.iterdir()) == []


def test_load_serves_the_int8_cnn_forms_and_refuses_the_rest(
    trained_cnn: nn.Module, int8_cnn: nn.Module, test_split: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """What `zoo.load(ref, runtime=...)` builds (on_runtime_of with the export's samples):
    a static int8 CNN as its float twin or with its fp32 stem, traced on one image and
    checked on the others; the forms that do not apply, or need calibration, refused."""
    from zoo.errors import ConfigError
    from zoo.runtimes.prepare import on_runtime_of, served

    images = test_split[0][:8]
    with torch.inference_mode():
        expected = int8_cnn(images)
    for name in ("onnxruntime-dequant", "onnxruntime-mixed"):
        model = on_runtime_of(int8_cnn, name, {"x": images})
        with torch.inference_mode():
            got = model(images)
        assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.75
    with pytest.raises(ConfigError, match=r"not one.*runtime='onnxruntime'"):
        on_runtime_of(trained_cnn, "onnxruntime-mixed", {"x": images})  # a float model
    for name in ("onnxruntime-int8", "openvino-int8", "torch-csr"):
        with pytest.raises(ConfigError, match=f"runtime '{name}' is a benchmark variant"):
            served(name)
    with pytest.raises(UnknownRuntimeError):
        served("tensorrt")
    assert served("openvino").name == "openvino"
