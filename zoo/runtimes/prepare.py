"""A zoo model on a named runtime: the variants the benchmark times and `zoo.load` serves.

A variant is a runtime plus who made the model int8: the entry itself (torch.ao, kept as
QDQ in its ONNX export), or the runtime's own quantizer applied to a float entry
(ONNX Runtime's quantizer, OpenVINO's NNCF). A static int8 entry also runs as its float
twin (its int8 weights dequantized, zoo.runtimes.dequantize), and as its QDQ export with
the image-input convolution in fp32 (zoo.runtimes.qdq): on such narrow convolutions ONNX
Runtime's fp32 kernels beat its int8 ones. ONNX files go to a scratch folder that is
removed once the runtime has the model in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from zoo.runtimes.table import require, runtime_named

Inputs = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: str
    quantizer: str | None = None  # the runtime's own int8 of a float entry
    csr: bool = False  # torch with sparse Linear layers as CSR matmuls
    dequantize: bool = False  # a static int8 entry as its float twin
    float_stem: bool = False  # a static int8 entry with its image-input conv in fp32
    summary: str = ""


VARIANTS: tuple[Variant, ...] = (
    Variant("torch", "torch", summary="torch eager, as stored (fp32, or the entry's int8)"),
    Variant("torch-csr", "torch", csr=True, summary="torch, >=70% sparse Linears as CSR"),
    Variant("onnxruntime", "onnxruntime", summary="the ONNX export (int8 entries as QDQ)"),
    Variant(
        "onnxruntime-int8",
        "onnxruntime",
        quantizer="onnxruntime",
        summary="ONNX Runtime's quantizer on a float entry",
    ),
    Variant(
        "onnxruntime-dequant",
        "onnxruntime",
        dequantize=True,
        summary="a static int8 entry's weights dequantized, computed in fp32",
    ),
    Variant(
        "onnxruntime-mixed",
        "onnxruntime",
        float_stem=True,
        summary="a static int8 entry in int8, its image-input conv block in fp32",
    ),
    Variant("openvino", "openvino", summary="OpenVINO on the ONNX export"),
    Variant("openvino-int8", "openvino", quantizer="nncf", summary="NNCF int8 of a float entry"),
)
_BY_NAME = {v.name: v for v in VARIANTS}


def variant_named(name: str) -> Variant:
    from zoo.errors import UnknownNameError

    if name not in _BY_NAME:
        raise UnknownNameError("runtime variant", name, _BY_NAME)
    return _BY_NAME[name]


def is_int8(model: nn.Module) -> bool:
    """The model runs torch.ao int8 modules (static or dynamic quantization)."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def is_static_int8(model: nn.Module) -> bool:
    """The model is torch.ao static int8 (its activations pass quantize stubs)."""
    from torch.ao.nn.quantized import Quantize

    return any(isinstance(m, Quantize) for m in model.modules())


def is_text(example: Mapping[str, torch.Tensor]) -> bool:
    return "input_ids" in example


def has_sparse_linears(model: nn.Module) -> bool:
    """Some float Linear is sparse enough to run as CSR (zoo.compress.format's threshold)."""
    from zoo.compress.format import CSR_MIN_SPARSITY

    return any(
        type(m) is nn.Linear and float((m.weight == 0).float().mean()) >= CSR_MIN_SPARSITY
        for m in model.modules()
    )


def applies(variant: Variant, model: nn.Module) -> bool:
    """Runtime quantizers take float entries only (an int8 entry keeps its own int8);
    CSR only where a Linear layer is sparse enough; the float twin and the fp32 stem
    to static int8 entries (the stem where an int8 conv has few input channels)."""
    if variant.dequantize:
        return is_static_int8(model)
    if variant.float_stem:
        from zoo.runtimes.qdq import has_narrow_int8_conv

        return is_static_int8(model) and has_narrow_int8_conv(model)
    if variant.csr:
        return not is_int8(model) and has_sparse_linears(model)
    if variant.quantizer is not None:
        return not is_int8(model)
    return True


def on_variant(
    model: nn.Module,
    variant: Variant | str,
    example: Mapping[str, torch.Tensor],
    calibration: Sequence[Inputs] = (),
    threads: int | None = None,
    check: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """`model` ready to run on `variant`; `example` traces the ONNX export, `calibration`
    (a few real batches) sets activation ranges for the runtimes' static int8; `check`
    (other real inputs) must give the model's outputs through the export."""
    from zoo.runtimes.onnx_export import export_onnx

    chosen = variant_named(variant) if isinstance(variant, str) else variant
    require(chosen.runtime)
    if chosen.runtime == "torch":
        if chosen.csr:
            import copy

            from zoo.compress.load import to_sparse_linears

            model = copy.deepcopy(model)
            to_sparse_linears(model)
        return model.eval()
    if chosen.dequantize:
        from zoo.runtimes.dequantize import float_twin

        model = float_twin(model)
    with tempfile.TemporaryDirectory(prefix="zoo-onnx-") as scratch:
        path = export_onnx(model, example, Path(scratch) / "model.onnx", check)
        if chosen.quantizer == "onnxruntime":
            from zoo.runtimes.onnxrt import quantize_onnx

            path = quantize_onnx(
                path, Path(scratch) / "int8.onnx", calibration, dynamic=is_text(example)
            )
        if chosen.runtime == "onnxruntime":
            from zoo.runtimes.onnxrt import OnnxRuntimeModel

            if chosen.float_stem:
                from zoo.runtimes.qdq import DISABLED_OPTIMIZERS, float_narrow_convs

                path, _ = float_narrow_convs(path, Path(scratch) / "mixed.onnx")
                return OnnxRuntimeModel(path, threads, DISABLED_OPTIMIZERS).eval()
            return OnnxRuntimeModel(path, threads).eval()
        from zoo.runtimes.openvino import OpenVinoModel, quantize_openvino

        if chosen.quantizer == "nncf":
            quantized = quantize_openvino(path, calibration, transformer=is_text(example))
            return OpenVinoModel(quantized, threads).eval()
        return OpenVinoModel(path, threads).eval()


def sample_inputs(folder: str | os.PathLike[str]) -> Inputs:
    """The inputs recorded in an export's samples (what its ONNX export is traced with)."""
    from safetensors.torch import load_file

    from zoo.compress.format import SAMPLES
    from zoo.errors import ExportFileMissingError

    path = Path(folder) / SAMPLES
    if not path.is_file():
        raise ExportFileMissingError(
            str(folder), SAMPLES, "its sample inputs trace the model for ONNX export"
        )
    samples = load_file(str(path))
    samples.pop("output", None)
    return samples


def served(name: str) -> Variant:
    """What `zoo.load(ref, runtime=name)` may serve: a runtime of zoo.runtimes.table, or a
    form of a static int8 entry that needs no data (`onnxruntime-dequant`,
    `onnxruntime-mixed`: the fastest CNN forms of bench-runtimes). The runtimes' own
    quantizers are not served: they calibrate on training batches a download lacks."""
    from zoo.errors import ConfigError

    variant = _BY_NAME.get(name)
    if variant is None or variant.name == variant.runtime:
        runtime_named(name)  # an unknown name lists the known and the installed runtimes
        return _BY_NAME[name]
    if variant.runtime == "torch" or variant.quantizer is not None:
        raise ConfigError(
            f"runtime {name!r} is a benchmark variant, not a deployable form: "
            + (
                "use keep_compressed=True for CSR layers in torch"
                if variant.runtime == "torch"
                else f"it int8-quantizes a float model on calibration data, which zoo.load "
                f"does not have; load runtime={variant.runtime!r}, or an int8 entry"
            )
        )
    return variant


def on_runtime_of(model: nn.Module, runtime: str, inputs: Inputs) -> nn.Module:
    """`model` on `runtime` (a runtime of zoo.runtimes.table.RUNTIMES, or a form `served`
    names), traced with the first of `inputs` and checked on all of them."""
    from zoo.errors import ConfigError

    variant = served(runtime)
    if not applies(variant, model):
        raise ConfigError(
            f"runtime {runtime!r} runs {variant.summary}; this model is not one "
            f"(load it with runtime={variant.runtime!r})"
        )
    return on_variant(model, variant, {k: v[:1] for k, v in inputs.items()}, check=inputs)


def on_runtime(model: nn.Module, runtime: str, folder: str | os.PathLike[str]) -> nn.Module:
    """The model of export `folder` on `runtime`, traced with the folder's sample inputs."""
    import inspect

    samples = sample_inputs(folder)
    if set(samples) == {"input"}:  # one unnamed input (zoo.client.validate's convention)
        first = next(iter(inspect.signature(model.forward).parameters))
        samples = {first: samples["input"]}
    return on_runtime_of(model, runtime, samples)
