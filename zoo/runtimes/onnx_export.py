"""Write a zoo model as one checked ONNX file (`torch.onnx` + `onnx.checker`).

Float models export as they are. Static int8 models (torch.ao eager quantization) come
out of torch.onnx's TorchScript exporter as QuantizeLinear / DequantizeLinear (QDQ)
around float Conv / Gemm, which ONNX Runtime and OpenVINO fuse into int8 kernels; the
newer torch.export-based exporter rejects quantized modules, hence the older one.
Dynamically quantized Linear layers have no ONNX form at all (`quantized::linear_dynamic`):
they are exported as float layers holding their int8 weights dequantized, then ONNX
Runtime's own quantizer turns exactly those MatMuls back into int8 (weights on the same
int8 grid, activations quantized per batch, as torch does).
Mixture-of-experts layers route tokens by data-dependent control flow, which tracing
cannot record: they are exported computing every expert for every token, weighted by
their dense top-k gates (zoo.runtimes.onnx_moe, where the FLOP cost is explained).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from zoo.errors import OnnxExportError
from zoo.runtimes.onnx_moe import with_all_experts

if TYPE_CHECKING:
    import onnx
from zoo.runtimes.table import require

OPSET = 17
_OPERATOR = re.compile(r"operator '([^']+)'")


def _float_dynamic_linears(model: nn.Module) -> tuple[nn.Module, set[bytes]]:
    """A copy of `model` whose dynamically quantized Linears are float Linears holding
    the dequantized int8 weights, and the digests of those weights (as the exporter
    stores them, transposed or not) to find their MatMuls in the graph again."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from zoo.modifiers.lora import dequantized_linear

    names = [n for n, m in model.named_modules() if isinstance(m, DynamicLinear)]
    if not names:
        return model, set()
    model = copy.deepcopy(model)
    digests: set[bytes] = set()
    for name in names:
        layer = model.get_submodule(name)
        assert isinstance(layer, DynamicLinear)
        plain = dequantized_linear(layer)
        weight = plain.weight.detach()
        digests |= {_digest(weight.numpy()), _digest(weight.T.numpy())}
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, plain)
    return model, digests


def _digest(array: np.ndarray) -> bytes:
    data = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha256(repr(data.shape).encode() + data.tobytes()).digest()


def _has_int8(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def _check_traced(
    model: nn.Module, path: Path, inputs: Mapping[str, torch.Tensor], arch: str
) -> None:
    """The ONNX graph computes what the model computes on `inputs` (float models)."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = torch.from_numpy(session.run(None, {n: inputs[n].numpy() for n in names})[0])
    with torch.no_grad():
        want = model(**inputs)
    scale = max(1.0, float(want.abs().max()))
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-3 * scale, rtol=1e-3):
        raise OnnxExportError(
            arch,
            "data-dependent control flow",
            "the traced graph gives other outputs than the model on other inputs "
            "(a route taken while tracing was recorded as fixed, e.g. a router of "
            "its own that picks modules by input)",
        )


def _dynamic_axes(example: Mapping[str, torch.Tensor]) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {"logits": {0: "batch"}}
    for name, tensor in example.items():
        axes[name] = {0: "batch"}
        if tensor.dim() == 2 and not tensor.is_floating_point():  # token ids, masks
            axes[name][1] = "sequence"
    return axes


def _gemm_as_matmul(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Rewrite a plain Gemm (y = x W^T + b) as MatMul + Add, in place: ONNX Runtime's
    dynamic quantizer turns MatMuls into int8 but leaves Gemms in float."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        return
    inits = {init.name: init for init in model.graph.initializer}
    weight_name = node.input[1]
    if attrs.get("transB", 0):
        weight = numpy_helper.to_array(inits[weight_name]).T.copy()
        weight_name = f"{weight_name}_transposed"
        model.graph.initializer.append(numpy_helper.from_array(weight, weight_name))
    product = f"{node.name}_matmul_output"
    replacement = [helper.make_node("MatMul", [node.input[0], weight_name], [product], node.name)]
    if len(node.input) > 2 and node.input[2]:
        replacement.append(
            helper.make_node(
                "Add", [product, node.input[2]], list(node.output), f"{node.name}_bias"
            )
        )
    else:
        replacement[0].output[0] = node.output[0]
    index = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    for offset, new in enumerate(replacement):
        model.graph.node.insert(index + offset, new)


def _quantize_layers(source: Path, target: Path, weights: set[bytes]) -> None:
    """ONNX Runtime's dynamic quantization of the MatMul / Gemm nodes whose weight is
    one of `weights` (the layers torch ran in int8), and of no other node."""
    import onnx
    from onnx import numpy_helper

    quantization = require("onnxruntime", "onnxruntime.quantization")
    model = onnx.load(str(source))
    ours = {
        init.name
        for init in model.graph.initializer
        if init.data_type == onnx.TensorProto.FLOAT
        and _digest(numpy_helper.to_array(init)) in weights
    }
    for node in [n for n in model.graph.node if n.op_type == "Gemm" and n.input[1] in ours]:
        _gemm_as_matmul(model, node)
    ours |= {f"{name}_transposed" for name in ours}
    nodes = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in ours]
    rewritten = source.with_name("matmul.onnx")
    onnx.save(model, str(rewritten))
    quantization.quantize_dynamic(
        str(rewritten),
        str(target),
        per_channel=True,
        weight_type=quantization.QuantType.QInt8,
        nodes_to_quantize=nodes,
    )


def export_onnx(
    model: nn.Module,
    example: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    check: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Export `model` (called as `model(**example)`) to `path`, checked by onnx.checker.

    Every input has a dynamic batch axis (token inputs a dynamic sequence axis too); the
    output is named `logits`. `check` (other inputs than `example`) is run through ONNX
    Runtime and torch: tracing records the one path `example` took, so a float model
    whose control flow depends on its input exports without an error but computes
    something else; this catches it (the zoo's MoE layers are exported in a form without
    such flow, zoo.runtimes.onnx_moe). Written atomically: on any error
    nothing is left at `path`.
    """
    onnx = require("onnxruntime", "onnx")
    target = Path(path)
    arch = type(model).__name__
    float_model, dynamic = _float_dynamic_linears(model.eval())
    float_model = with_all_experts(float_model)
    # The exporter names graph inputs in the order of forward()'s parameters.
    order = list(inspect.signature(model.forward).parameters)
    example = {k: example[k] for k in sorted(example, key=order.index)}
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain = work / "float.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation, tracer notes
            try:
                torch.onnx.export(
                    float_model,
                    (),
                    str(plain),
                    kwargs=dict(example),
                    input_names=list(example),
                    output_names=["logits"],
                    dynamic_axes=_dynamic_axes(example),
                    opset_version=OPSET,
                    dynamo=False,
                )
            except Exception as exc:
                found = _OPERATOR.search(str(exc))
                operator = found.group(1) if found else "(not named by torch.onnx)"
                detail = str(exc).strip().splitlines()[0][:300]
                raise OnnxExportError(arch, operator, detail) from exc
        onnx.checker.check_model(str(plain))
        final = plain
        if dynamic:
            final = work / "int8.onnx"
            _quantize_layers(plain, final, dynamic)
            onnx.checker.check_model(str(final))
        if check is not None and not dynamic and not _has_int8(model):
            _check_traced(model, final, check, arch)
        os.replace(final, target)  # same folder: atomic
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
