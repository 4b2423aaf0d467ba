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
   (zoo/modifiers/quantization_io.py).

Weights are int8, per-channel symmetric; activations uint8 affine from moving-average
min/max observers (QAT), histogram observers (static) or per batch (dynamic), as the x86
backend expects: full 8 bits on CPUs with VNNI, 7 bits otherwise (`reduce_range`).
`QuantizationModifier`, `PostTrainingQuantizationModifier` and `DynamicQuantizationModifier`
wrap these functions for recipes.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import MethodType
from typing import Any, ClassVar, Literal

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn

from zoo.modifiers.base import Modifier, ModifierState, forward_batch

BACKEND = "x86"
Scheme = Literal["qat", "static", "dynamic"]

COMPUTE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
# Layers that accept a quantized tensor once converted, so a Sequential made only of these
# can run end to end in int8 without dequantizing in between.
_INT8_SAFE: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)
_FUSION_PATTERNS: tuple[tuple[type[nn.Module], ...], ...] = (
    (nn.Conv2d, nn.BatchNorm2d, nn.ReLU),
    (nn.Conv1d, nn.BatchNorm1d, nn.ReLU),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.ReLU),
    (nn.Conv1d, nn.ReLU),
    (nn.Linear, nn.ReLU),
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao.quantization warns on every call that it is deprecated; we chose it on
    purpose (see the module docstring), so the warning would only be noise to users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        yield


def _is_fused(module: nn.Module) -> bool:
    from torch.ao.nn.intrinsic import _FusedModule

    return isinstance(module, _FusedModule)


def vnni_supported() -> bool:
    """True when this CPU has VNNI int8 dot products (no 16-bit overflow in fbgemm)."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(probe()) if callable(probe) else False


@dataclass
class QuantPlan:
    """What was done to a float model: enough to redo it on a fresh skeleton."""

    scheme: Scheme
    fused: list[list[str]] = field(default_factory=list)
    wrapped: list[str] = field(default_factory=list)
    inlined: list[str] = field(default_factory=list)
    hooked: list[str] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)
    reduce_range: bool = True

    def qconfig_owners(self) -> list[str]:
        """Modules that carry the qconfig: regions, wrappers, hooked layers and their stubs."""
        stubs = [_stub_name(n, kind) for n in self.hooked for kind in ("quant", "dequant")]
        return [*self.wrapped, *self.inlined, *self.hooked, *stubs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "backend": BACKEND,
            "fused": [list(g) for g in self.fused],
            "wrapped": list(self.wrapped),
            "inlined": list(self.inlined),
            "hooked": list(self.hooked),
            "dynamic": list(self.dynamic),
            "reduce_range": self.reduce_range,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantPlan:
        return cls(
            scheme=data["scheme"],
            fused=[list(g) for g in data.get("fused", [])],
            wrapped=list(data.get("wrapped", [])),
            inlined=list(data.get("inlined", [])),
            hooked=list(data.get("hooked", [])),
            dynamic=list(data.get("dynamic", [])),
            reduce_range=bool(data.get("reduce_range", True)),
        )


# ---- selection ---------------------------------------------------------------------------
def compute_modules(
    model: nn.Module, targets: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> list[str]:
    """Names of the conv/linear modules to quantize.

    `targets`: module names, or parameter names (``a.weight`` means module ``a``) as a
    recipe's ``params`` selector resolves them; None means every conv and linear.
    `ignore`: module names or ``re:`` patterns kept in float.
    """
    names = [n for n, m in model.named_modules() if n and isinstance(m, COMPUTE_TYPES)]
    if targets is not None:
        wanted = {t[: -len(".weight")] if t.endswith(".weight") else t for t in targets}
        names = [n for n in names if n in wanted]
    patterns = [re.compile(i[3:]) for i in ignore if i.startswith("re:")]
    exact = {i for i in ignore if not i.startswith("re:")}
    return [n for n in names if n not in exact and not any(p.match(n) for p in patterns)]


def fusion_groups(model: nn.Module, selected: Iterable[str]) -> list[list[str]]:
    """Runs of consecutive Sequential children that fuse, led by a selected conv/linear."""
    chosen = set(selected)
    groups: list[list[str]] = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        i = 0
        while i < len(children):
            for pattern in _FUSION_PATTERNS:
                run = children[i : i + len(pattern)]
                if len(run) == len(pattern) and all(
                    type(m) is t for (_, m), t in zip(run, pattern, strict=True)
                ):
                    names = [f"{parent_name}.{n}" if parent_name else n for n, _ in run]
                    if names[0] in chosen:
                        groups.append(names)
                        i += len(pattern) - 1
                    break
            i += 1
    return groups


def _int8_region(module: nn.Module, chosen: set[str], prefix: str) -> bool:
    """True if a Sequential runs wholly in int8: every leaf int8-safe, every conv/linear chosen."""
    has_compute = False
    for name, sub in module.named_modules(prefix=prefix):
        if sub is module or (isinstance(sub, nn.Sequential) and not _is_fused(sub)):
            continue
        if _is_fused(sub):
            if name not in chosen:
                return False
            has_compute = True
            continue
        if any(name.startswith(f"{f}.") for f in chosen):  # inside a fused module
            continue
        if isinstance(sub, COMPUTE_TYPES):
            if name not in chosen:
                return False
            has_compute = True
        elif not isinstance(sub, _INT8_SAFE):
            return False
    return has_compute


def _inline_stubs(seq: nn.Sequential) -> bool:
    """Put a QuantStub first and a DeQuantStub last *inside* a Sequential, by name.

    Unlike `QuantWrapper`, this leaves every parameter name of the region unchanged
    (``features.0.0.weight`` stays that), so modifiers that address parameters by name,
    such as pruning masks, keep working after quantization starts. Positional indexing of
    the Sequential shifts by one; names do not.
    """
    from torch.ao.quantization import DeQuantStub, QuantStub

    if "quant" in seq._modules or "dequant" in seq._modules:
        return False
    items = [("quant", QuantStub()), *seq._modules.items(), ("dequant", DeQuantStub())]
    seq._modules.clear()
    seq._modules.update(items)
    return True


def _wrap_leaf(model: nn.Module, name: str) -> None:
    from torch.ao.quantization import QuantWrapper

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, QuantWrapper(getattr(parent, child)))


def _stub_name(layer: str, kind: str) -> str:
    """Where the stub of a hooked layer lives: a sibling, ``classifier`` -> ``classifier_quant``."""
    return f"{layer}_{kind}"


class _StubHook:
    """Runs a stub kept on the layer's parent before (quant) or after (dequant) the layer.

    An object, not a closure: `deepcopy` of the model copies it with the parent it points
    to, and `torch.ao` carries hooks over when it swaps the layer for its QAT / int8 twin.
    """

    def __init__(self, parent: nn.Module, attr: str) -> None:
        self.parent = parent
        self.attr = attr

    def __call__(self, module: nn.Module, args: Any, output: Any = None) -> Any:
        stub = getattr(self.parent, self.attr)
        if output is None:  # forward pre-hook
            return (stub(args[0]), *args[1:])
        return stub(output)


def _hook_leaf(model: nn.Module, name: str) -> bool:
    """Give a layer quant/dequant stubs as siblings plus hooks, keeping its parameter names
    (``classifier.weight`` stays that). Not possible inside containers, whose iteration
    would run the stubs as layers; returns False there."""
    from torch.ao.quantization import DeQuantStub, QuantStub

    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential | nn.ModuleList | nn.ModuleDict):
        return False
    quant, dequant = _stub_name(child, "quant"), _stub_name(child, "dequant")
    if hasattr(parent, quant) or hasattr(parent, dequant):
        return False
    parent.add_module(quant, QuantStub())
    parent.add_module(dequant, DeQuantStub())
    layer = getattr(parent, child)
    layer.register_forward_pre_hook(_StubHook(parent, quant))
    layer.register_forward_hook(_StubHook(parent, dequant))
    return True


def _wrap_regions(model: nn.Module, chosen: set[str], plan: QuantPlan) -> None:
    """Insert quant/dequant stubs, keeping parameter names wherever possible: inline in
    int8-only Sequentials, as hooked siblings of single layers, else (a layer directly in
    a container) with `QuantWrapper`. Records where in `plan`."""

    def visit(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            full = f"{prefix}.{name}" if prefix else name
            if (
                isinstance(child, nn.Sequential)
                and not _is_fused(child)
                and _int8_region(child, chosen, full)
                and _inline_stubs(child)
            ):
                plan.inlined.append(full)
            elif full in chosen:
                if _hook_leaf(model, full):
                    plan.hooked.append(full)
                else:
                    _wrap_leaf(model, full)
                    plan.wrapped.append(full)
            else:
                visit(child, full)

    visit(model, "")


def restore_stubs(model: nn.Module, plan: QuantPlan) -> None:
    """Redo a plan's stub insertion on a freshly fused model (used when loading)."""
    for name in plan.inlined:
        seq = model.get_submodule(name)
        assert isinstance(seq, nn.Sequential)
        _inline_stubs(seq)
    for name in plan.hooked:
        _hook_leaf(model, name)
    for name in plan.wrapped:
        _wrap_leaf(model, name)


def _chosen_after_fusion(groups: list[list[str]], selected: list[str]) -> set[str]:
    # A fused group lives at its first member's name; the others became Identity.
    absorbed = {n for g in groups for n in g[1:]}
    return {n for n in selected if n not in absorbed}


def qat_qconfig(reduce_range: bool = True) -> Any:
    """Fake-quant int8: per-channel symmetric weights, moving-average min/max activations
    (uint8, or 7 bits with `reduce_range`, the x86 default for pre-VNNI CPUs)."""
    from torch.ao.quantization import (
        FusedMovingAvgObsFakeQuantize,
        MovingAverageMinMaxObserver,
        QConfig,
        get_default_qat_qconfig,
    )

    default = get_default_qat_qconfig(BACKEND)
    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, reduce_range=reduce_range
    )
    return QConfig(activation=activation, weight=default.weight)


def static_qconfig(reduce_range: bool = True) -> Any:
    """Per-channel symmetric int8 weights; uint8 activations from histogram observers."""
    from torch.ao.quantization import HistogramObserver, QConfig, get_default_qconfig

    default = get_default_qconfig(BACKEND)
    activation = HistogramObserver.with_args(reduce_range=reduce_range)
    return QConfig(activation=activation, weight=default.weight)


def _conv_bn_forward_scaling_weights(self: Any, input: torch.Tensor) -> torch.Tensor:
    """torch's `_ConvBnNd._forward_approximate` with the division moved onto the weights.

    torch convolves with the bn-scaled, fake-quantized weights and then divides the whole
    output by the bn scale to undo it; a convolution is linear in each output channel, so
    dividing the (far smaller) weights first gives the same values and gradients and saves
    a divide, its backward and their memory traffic per layer: most of QAT's step overhead
    on a small CNN.
    """
    running_std = torch.sqrt(self.bn.running_var + self.bn.eps)
    scale = (self.bn.weight / running_std).reshape([-1] + [1] * (self.weight.dim() - 1))
    weight = self.weight_fake_quant(self.weight * scale) / scale
    return self.bn(self._conv_forward(input, weight, self.bias))


def _speed_up_conv_bn(model: nn.Module) -> None:
    from torch.ao.nn.intrinsic.qat.modules.conv_fused import _ConvBnNd

    for module in model.modules():
        if isinstance(module, _ConvBnNd):
            # An instance attribute: convert() still sees torch's own module class.
            module._forward_approximate = MethodType(  # type: ignore[method-assign]
                _conv_bn_forward_scaling_weights, module
            )


# The forward hook torch.ao's prepare() hangs on a module to observe/fake-quantize its output.
OBSERVER_HOOK = "_observer_forward_hook"


class _PooledFakeQuant:
    """Forward hook on a max-pool: the fake-quant of the conv before it, on the pooled output.

    Max-pooling commutes with a monotone quantizer, so fake-quantizing after the pool gives
    the values fake-quantizing before it would, on a quarter of the elements. The observer
    sees the same maximum, and after a ReLU its range includes zero either way (torch's
    observers always include zero), so the conv's int8 output parameters do not change.
    Activation fake-quant is most of QAT's step overhead on a small CNN.
    """

    def __init__(self, fake_quant: nn.Module) -> None:
        self.fake_quant = fake_quant

    def __call__(self, module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return self.fake_quant(output)


def _output_of(module: nn.Module) -> nn.Module:
    """The module whose output a container's output is (Identity placeholders skipped)."""
    from torch.ao.nn.intrinsic.modules.fused import _FusedModule

    # Fused modules subclass Sequential too, but run as one layer.
    if isinstance(module, nn.Sequential) and not isinstance(module, _FusedModule):
        for child in reversed(list(module.children())):
            if not isinstance(child, nn.Identity):
                return _output_of(child)
    return module


def _fake_quant_after_pooling(model: nn.Module) -> None:
    import torch.ao.nn.intrinsic.qat as nniqat

    relu_fused = (nniqat.ConvBnReLU1d, nniqat.ConvBnReLU2d, nniqat.ConvReLU1d, nniqat.ConvReLU2d)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        previous: nn.Module | None = None
        for child in seq.children():
            if isinstance(child, nn.Identity):
                continue
            producer = _output_of(previous) if previous is not None else None
            previous = child
            if not isinstance(child, (nn.MaxPool1d, nn.MaxPool2d)):
                continue
            if not isinstance(producer, relu_fused):
                continue
            hooks = producer._forward_hooks
            observing = [k for k, h in hooks.items() if getattr(h, "__name__", "") == OBSERVER_HOOK]
            if not observing:
                continue
            for key in observing:
                del hooks[key]
            fake_quant = producer.get_submodule("activation_post_process")
            child.register_forward_hook(_PooledFakeQuant(fake_quant))


def _drop_pooled_fake_quant(model: nn.Module) -> None:
    """convert() replaces the convs; the pools must not fake-quantize int8 tensors after."""
    for module in model.modules():
        for key in [k for k, h in module._forward_hooks.items() if isinstance(h, _PooledFakeQuant)]:
            del module._forward_hooks[key]


def _prepare(
    model: nn.Module,
    scheme: Literal["qat", "static"],
    targets: Iterable[str] | None,
    ignore: Iterable[str],
    reduce_range: bool | None = None,
) -> QuantPlan:
    from torch.ao.quantization import fuse_modules, fuse_modules_qat, prepare, prepare_qat

    torch.backends.quantized.engine = BACKEND
    selected = compute_modules(model, targets, ignore)
    groups = fusion_groups(model, selected)
    with _quiet():
        if groups:
            fuse = fuse_modules_qat if scheme == "qat" else fuse_modules
            fuse(model, groups, inplace=True)
        if reduce_range is None:
            reduce_range = not vnni_supported()
        plan = QuantPlan(scheme=scheme, fused=groups, reduce_range=reduce_range)
        _wrap_regions(model, _chosen_after_fusion(groups, selected), plan)
        make_qconfig = qat_qconfig if scheme == "qat" else static_qconfig
        qconfig = make_qconfig(reduce_range)
        for name in plan.qconfig_owners():
            model.get_submodule(name).qconfig = qconfig
        if scheme == "qat":
            prepare_qat(model, inplace=True)
            _speed_up_conv_bn(model)
            _fake_quant_after_pooling(model)
        else:
            prepare(model, inplace=True)
    _record(model, plan)
    return plan


def prepare_qat(
    model: nn.Module,
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Fuse, insert stubs and fake-quant modules, in place; puts the model in train mode.

    Conv and linear weights keep their identity (the optimizer keeps training them) and,
    outside containers, their names; fused batch norms move under the conv (``.bn``).
    """
    model.train()
    return _prepare(model, "qat", targets, ignore, reduce_range)


def prepare_static(
    model: nn.Module,
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Fuse (folding batch norm), wrap and insert observers, in place; model in eval mode."""
    model.eval()
    return _prepare(model, "static", targets, ignore, reduce_range)


def calibrate(model: nn.Module, batches: Iterable[Any], limit: int | None = None) -> int:
    """Run calibration batches through a prepared model; returns how many ran."""
    count = 0
    with torch.no_grad():
        for batch in batches:
            if limit is not None and count >= limit:
                break
            forward_batch(model, batch)
            count += 1
    return count


def convert(model: nn.Module) -> nn.Module:
    """Swap fake-quant / observed modules for real int8 modules, in place."""
    from torch.ao.quantization import convert as ao_convert

    torch.backends.quantized.engine = BACKEND
    model.eval()
    _drop_pooled_fake_quant(model)
    with _quiet():
        ao_convert(model, inplace=True)
    return model


def freeze_bn_stats(model: nn.Module) -> None:
    """Stop updating batch-norm running statistics in fused QAT conv-bn modules."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats as freeze

    model.apply(freeze)


def disable_observers(model: nn.Module) -> None:
    """Freeze the learned quantization ranges (scales, zero points) of a QAT model."""
    from torch.ao.quantization import disable_observer

    model.apply(disable_observer)


def quantize_static(
    model: nn.Module,
    calibration: Iterable[Any],
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    limit: int | None = None,
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Post-training static int8 in place: prepare, calibrate, convert."""
    plan = prepare_static(model, targets, ignore, reduce_range)
    calibrate(model, calibration, limit)
    convert(model)
    return plan


# ---- dynamic -----------------------------------------------------------------------------
class FullRangeDynamicLinear(nnqd.Linear):
    """Dynamic int8 linear that quantizes activations to the full 8 bits.

    fbgemm keeps activations to 7 bits by default so that the 16-bit accumulations of
    pre-VNNI AVX2 CPUs cannot saturate. With VNNI (`vnni_supported`) they cannot, and the
    8th bit lifts MiniLM's sentence-embedding cosine to float from 0.967 to 0.990 here.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(
            x, self._packed_params._packed_params, reduce_range=False
        )
        return y.to(x.dtype)

    def _get_name(self) -> str:
        return "FullRangeDynamicQuantizedLinear"


def quantize_dynamic(
    model: nn.Module,
    targets: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    reduce_range: bool | None = None,
) -> QuantPlan:
    """Dynamic int8 for the selected Linear layers, in place.

    Weights become int8 per-channel; activations are quantized per batch at run time, so
    no calibration is needed. `reduce_range` None picks 8-bit activations on VNNI CPUs.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig
    from torch.ao.quantization import quantize_dynamic as ao_quantize_dynamic

    torch.backends.quantized.engine = BACKEND
    names = [
        n
        for n in compute_modules(model, targets, ignore)
        if isinstance(model.get_submodule(n), nn.Linear)
    ]
    if reduce_range is None:
        reduce_range = not vnni_supported()
    linear_cls = nnqd.Linear if reduce_range else FullRangeDynamicLinear
    with _quiet():
        ao_quantize_dynamic(
            model,
            {n: per_channel_dynamic_qconfig for n in names},
            mapping={nn.Linear: linear_cls},
            inplace=True,
        )
    plan = QuantPlan(scheme="dynamic", dynamic=names, reduce_range=reduce_range)
    _record(model, plan)
    return plan


# ---- plans on models ---------------------------------------------------------------------
PLAN_ATTR = "zoo_quant_plan"


def plan_of(model: nn.Module) -> QuantPlan | None:
    """The quantization plan recorded on a model, if it was quantized here."""
    plan = getattr(model, PLAN_ATTR, None)
    return plan if isinstance(plan, QuantPlan) else None


def _record(model: nn.Module, plan: QuantPlan) -> None:
    setattr(model, PLAN_ATTR, plan)


def _refuse_twice(model: nn.Module, owner: str) -> None:
    from zoo.errors import RecipeError

    existing = plan_of(model)
    if existing is not None:
        raise RecipeError(
            f"the model is already quantized ({existing.scheme}); one quantization "
            "modifier per model: remove one of them from the recipe",
            modifier=owner,
        )


# ---- modifiers ---------------------------------------------------------------------------
def _module_targets(
    model: nn.Module, params: Any, submodules: list[str] | None, owner: str
) -> list[str] | None:
    """Conv/linear module names a quantization modifier's selector picks (None = all)."""
    if params is not None:
        from zoo.modifiers.selection import select_params

        return [n.rpartition(".")[0] for n in select_params(model, params, owner=owner)]
    if submodules:
        roots = tuple(submodules)
        return [
            n
            for n, m in model.named_modules()
            if isinstance(m, COMPUTE_TYPES) and any(n == r or n.startswith(f"{r}.") for r in roots)
        ]
    return None


@dataclass(kw_only=True)
class _QuantModifierBase(Modifier):
    conflict_group: ClassVar[str | None] = "quantization"
    ignored_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "model_fuse_fn_name",
            "model_fuse_fn_kwargs",
            "quantize_embeddings",
            "quantize_embedding_activations",
            "quantize_linear_activations",
            "quantize_conv_activations",
            "exclude_batchnorm",
            "tensorrt",
            "log_types",
        }
    )

    submodules: list[str] | None = None  # SparseML: quantize only inside these modules
    ignore: list[str] = field(default_factory=list)  # module names or re: patterns
    exclude_module_types: list[str] = field(default_factory=list)  # e.g. [Linear]
    # 7-bit activations (fbgemm's guard against 16-bit overflow before VNNI); null: 7 bits
    # unless this CPU has VNNI.
    reduce_range: bool | None = None
    weight_bits: int = 8
    activation_bits: int = 8

    def check(self) -> None:
        super().check()
        for name in ("weight_bits", "activation_bits"):
            if getattr(self, name) != 8:
                raise self.field_error(name, f"only 8 bits is supported, got {getattr(self, name)}")

    def module_targets(self, model: nn.Module) -> list[str] | None:
        names = _module_targets(model, self.params, self.submodules, self.type_name)
        if not self.exclude_module_types:
            return names
        if names is None:
            names = [n for n, m in model.named_modules() if isinstance(m, COMPUTE_TYPES)]
        excluded = set(self.exclude_module_types)
        return [n for n in names if type(model.get_submodule(n)).__name__ not in excluded]

    def targets(self, model: nn.Module) -> list[str]:
        names = compute_modules(model, self.module_targets(model), self.ignore)
        return [f"{n}.weight" for n in names]


@dataclass(kw_only=True)
class QuantizationModifier(_QuantModifierBase):
    """Quantization-aware training: fake-quant int8 from `start_epoch`, int8 at the end.

    Batch-norm statistics freeze at `freeze_bn_stats_epoch` and the quantization ranges at
    `disable_quantization_observer_epoch` (-1: never), as in SparseML. `finalize` converts
    the model to real int8 modules unless `convert_on_finalize` is false.
    """

    field_aliases: ClassVar[dict[str, str]] = {
        "disable_observer_epoch": "disable_quantization_observer_epoch"
    }

    freeze_bn_stats_epoch: float = -1.0
    disable_quantization_observer_epoch: float = -1.0
    convert_on_finalize: bool = True

    def __post_init__(self) -> None:
        self._plan: QuantPlan | None = None
        self._bn_frozen = False
        self._observers_off = False

    def check(self) -> None:
        super().check()
        if self.end_epoch != -1:
            raise self.field_error(
                "end_epoch", "quantization cannot be undone mid-training: leave end_epoch at -1"
            )
        for name in ("freeze_bn_stats_epoch", "disable_quantization_observer_epoch"):
            value = getattr(self, name)
            if value != -1 and value < max(self.start_epoch, 0):
                raise self.field_error(name, f"{value} is before start_epoch {self.start_epoch}")

    def _at(self, state: ModifierState, epoch: float) -> bool:
        return epoch >= 0 and state.step >= state.epoch_to_step(epoch)

    def _update(self, state: ModifierState) -> None:
        if self._plan is None and self.started(state):
            _refuse_twice(state.model, self.type_name)
            self._plan = prepare_qat(
                state.model, self.module_targets(state.model), self.ignore, self.reduce_range
            )
        if self._plan is None:
            return
        if not self._bn_frozen and self._at(state, self.freeze_bn_stats_epoch):
            freeze_bn_stats(state.model)
            self._bn_frozen = True
        if not self._observers_off and self._at(state, self.disable_quantization_observer_epoch):
            disable_observers(state.model)
            self._observers_off = True

    def initialize(self, state: ModifierState) -> None:
        self._update(state)

    def after_step(self, state: ModifierState) -> None:
        self._update(state)

    def finalize(self, state: ModifierState) -> None:
        if self._plan is not None and self.convert_on_finalize:
            convert(state.model)


@dataclass(kw_only=True)
class PostTrainingQuantizationModifier(_QuantModifierBase):
    """Static int8 after training: fuse, calibrate activation ranges, convert (one-shot)."""

    oneshot_capable: ClassVar[bool] = True
    num_calibration_steps: int | None = None

    def check(self) -> None:
        super().check()
        if self.num_calibration_steps is not None and self.num_calibration_steps < 1:
            raise self.field_error("num_calibration_steps", "must be at least 1")

    def apply_oneshot(self, state: ModifierState) -> None:
        from zoo.errors import RecipeError

        if state.calibration is None:
            raise RecipeError(
                "static quantization needs calibration data: pass calibration batches to oneshot()",
                modifier=self.type_name,
                field="calibration",
            )
        _refuse_twice(state.model, self.type_name)
        prepare_static(
            state.model, self.module_targets(state.model), self.ignore, self.reduce_range
        )
        if calibrate(state.model, state.calibration, self.num_calibration_steps) == 0:
            raise RecipeError(
                "the calibration data is empty", modifier=self.type_name, field="calibration"
            )
        convert(state.model)


@dataclass(kw_only=True)
class DynamicQuantizationModifier(_QuantModifierBase):
    """Dynamic int8 Linear layers (weights int8, activations quantized per batch).

    One-shot, or at the end of a train stage (`finalize`). `reduce_range` null picks the
    activation range from the CPU (8 bits with VNNI, 7 without).
    """

    oneshot_capable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._done = False

    def apply_oneshot(self, state: ModifierState) -> None:
        _refuse_twice(state.model, self.type_name)
        quantize_dynamic(
            state.model, self.module_targets(state.model), self.ignore, self.reduce_range
        )
        self._done = True

    def finalize(self, state: ModifierState) -> None:
        if not self._done:
            self.apply_oneshot(state)
