"""Int8 quantization: quantization-aware training, static post-training, dynamic.

Why `torch.ao.quantization` (eager mode) and not torchao
--------------------------------------------------------
torchao 0.18.0 installs beside torch 2.13.0 (``pip install --no-deps``) and runs, but on
this x86 CPU its int8 path (``Int8DynamicActivationInt8WeightConfig``) made MiniLM 3.4x
*slower* than fp32 in eager mode: it has no fbgemm/oneDNN int8 kernels without
``torch.compile``. ``torch.ao.quantization`` is deprecated but converts to real int8
modules backed by the x86 (fbgemm) kernels: dynamic int8 MiniLM runs about 2x faster than
fp32 here. Eager mode (not FX) because a recipe must change the user's model object *in
place*: a plain training loop keeps its own reference to the model and its optimizer.

How a float model becomes int8 here
-----------------------------------
1. Fuse conv/bn/relu, conv/bn, conv/relu and linear/relu runs found inside `nn.Sequential`s
   (execution order is only known there).
2. Insert quantize / dequantize stubs: inside a whole `nn.Sequential` (first and last, by
   name) when every layer in it runs in int8 (conv, linear, relu, pooling, flatten, ...),
   otherwise around each selected conv/linear on its own (sibling stubs run by hooks).
   Parameter names stay as they were, so modifiers that address parameters by name
   (pruning masks, regularization) keep working once quantization starts. Only a lone
   layer directly inside a container gets a `QuantWrapper` (``<name>.module.weight``).
3. `prepare_qat` (fake-quant, trainable) or `prepare` (observers, calibration), then
   `convert` swaps in the int8 modules. The resulting plan is recorded (`QuantPlan`) so a
   saved int8 model can be rebuilt from a float skeleton without pickle
   (zoo/compress/int8.py).

One job per module: `plan` (the record), `surgery` (selection, fusion, stubs, rebuild),
`qconfigs`, `qat_speed`, `flows` (prepare, calibrate, convert), `dynamic`, `modifiers`;
`engine` sets the x86 quantized engine and `torch_private` holds every private torch name.

Weights are int8, per-channel symmetric; activations uint8 affine from moving-average
min/max observers (QAT), histogram observers (static) or per batch (dynamic), as the x86
backend expects: full 8 bits on CPUs with VNNI, 7 bits otherwise (`reduce_range`).
`QuantizationModifier`, `PostTrainingQuantizationModifier` and `DynamicQuantizationModifier`
wrap these functions for recipes.
"""

from __future__ import annotations

from zoo.modifiers.quantization.dynamic import FullRangeDynamicLinear, quantize_dynamic
from zoo.modifiers.quantization.engine import BACKEND, quiet, use_backend, vnni_supported
from zoo.modifiers.quantization.flows import (
    calibrate,
    convert,
    disable_observers,
    freeze_bn_stats,
    prepare_qat,
    prepare_static,
    quantize_static,
)
from zoo.modifiers.quantization.modifiers import (
    DynamicQuantizationModifier,
    PostTrainingQuantizationModifier,
    QuantizationModifier,
)
from zoo.modifiers.quantization.plan import PLAN_ATTR, QuantPlan, Scheme, plan_of
from zoo.modifiers.quantization.qat_speed import _PooledFakeQuant
from zoo.modifiers.quantization.qconfigs import qat_qconfig, static_qconfig
from zoo.modifiers.quantization.surgery import (
    COMPUTE_TYPES,
    compute_modules,
    fusion_groups,
    rebuild,
    restore_stubs,
)

__all__ = [
    "BACKEND",
    "COMPUTE_TYPES",
    "PLAN_ATTR",
    "DynamicQuantizationModifier",
    "FullRangeDynamicLinear",
    "PostTrainingQuantizationModifier",
    "QuantPlan",
    "QuantizationModifier",
    "Scheme",
    "_PooledFakeQuant",
    "calibrate",
    "compute_modules",
    "convert",
    "disable_observers",
    "freeze_bn_stats",
    "fusion_groups",
    "plan_of",
    "prepare_qat",
    "prepare_static",
    "qat_qconfig",
    "quantize_dynamic",
    "quantize_static",
    "quiet",
    "rebuild",
    "restore_stubs",
    "static_qconfig",
    "use_backend",
    "vnni_supported",
]
