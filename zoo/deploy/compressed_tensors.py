"""compressed-tensors folders: the one owner of the mapping between zoo models and the format
llm-compressor writes and transformers and vLLM read (PyPI `compressed-tensors`).

`export_compressed_tensors(model, out)` writes a zoo transformers model (the `hf`
architecture, or the MiniLM `minilm_classifier`) as a Hugging Face folder:

- weights through compressed-tensors' own `ModelCompressor` (`int-quantized` for the
  zoo's dynamic int8: per-channel symmetric int8 weights, activations quantized per tensor,
  asymmetric, at run time, which is what torch's dynamic int8 does); the int8 codes in the
  file are checked to be the zoo's own, bit for bit;
- integer weights with group scales handed in as `QuantizedWeight`s (int4 from GPTQ, say)
  as W4A16 `pack-quantized`, weight-only, the packed codes checked the same way;
- sparse models as `dense` weights (zeros stored) with a `sparsity_config` (compressed-
  tensors' `DenseSparsityConfig`: global sparsity, structure "2:4" or "unstructured").
  compressed-tensors dropped its `sparse-bitmask` / `sparse-24-bitmask` compressors after
  0.14, and transformers 5 needs 0.15 or later, so no reader here could load a bitmask
  folder: writing one would produce files nobody in this toolchain opens.

Static int8 (fused conv / linear with observers), 7-bit activations, structure edits,
low-rank pairs and every other zoo transform have no compressed-tensors scheme that computes
the same thing: they are refused, by name.

`import_compressed_tensors(folder, out)` turns such a folder (ours, or one compressed-tensors'
own compressor wrote) into a zoo export: the weights are decompressed by compressed-tensors,
stored as a float `hf` model (the zoo's packed format stores their zeros as a bitmask), and
the folder's scheme is recorded as the entry's quantization facts; sparsity is measured.

Every folder is written to a temporary sibling and renamed at the end (zoo.fsutil.atomic_dir).
compressed-tensors and transformers are imported inside the functions: both are slow to import.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import (
    CompressedFormatError,
    ExportError,
    SourceMissingError,
    UnsupportedArchitectureError,
)
from zoo.models.checkpoint import CONFIG, WEIGHTS  # transformers' names too

PACKAGE_PIN = "compressed-tensors==0.20.0"
INSTALL = f"pip install --no-deps {PACKAGE_PIN} loguru==0.7.3"
QUANTIZATION_CONFIG = "quantization_config"
METHOD = "compressed-tensors"
#: Remote code for the MiniLM classifier (see zoo/deploy/modeling_zoo_text.py).
MODELING_FILE = "modeling_zoo_text.py"
MEAN_POOLING_CLASS = "MeanPoolingBertForSequenceClassification"
#: Weight formats compressed-tensors decompresses on a CPU and the zoo's facts describe.
IMPORTABLE_FORMATS = ("dense", "int-quantized", "naive-quantized", "pack-quantized")
#: Gone from compressed-tensors after 0.14 (transformers 5 needs 0.15 or later).
LEGACY_SPARSE_FORMATS = ("sparse-bitmask", "sparse-24-bitmask", "marlin-24")
#: A Linear layer with at least this fraction of zero weights counts as pruned (int8
#: rounding alone leaves ~1% zeros).
SPARSE_FROM = 0.1
#: The tokenizer files a transformers folder may carry.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
)


@dataclass(frozen=True)
class CtFolder:
    """What a compressed-tensors folder holds, as written or as read."""

    folder: Path
    weight_format: str  # "dense", "int-quantized", ...
    quantized_layers: list[str]
    sparsity: float  # zero weights of the Linear layers
    sparsity_structure: str | None  # "2:4", "unstructured"; None when dense
    remote_code: bool  # needs trust_remote_code for AutoModelForSequenceClassification


def require_package() -> None:
    """Raise SourceMissingError with the install command when compressed-tensors is absent."""
    import importlib.util

    if importlib.util.find_spec("compressed_tensors") is None:
        raise SourceMissingError("the compressed-tensors package", "compressed_tensors", INSTALL)


# --- zoo model -> transformers model -------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The transformers model to write and how the zoo's module names map onto it."""

    model: Any  # a transformers PreTrainedModel, float, random weights
    prefixes: tuple[tuple[str, str], ...]  # (zoo module, transformers module); "" = the root
    remote_code: bool

    def rename(self, name: str) -> str:
        """The transformers name of the zoo's module or tensor `name`."""
        for source, dest in self.prefixes:
            if source and name != source and not name.startswith(source + "."):
                continue
            rest = name[len(source) :].lstrip(".") if source else name
            return ".".join(part for part in (dest, rest) if part)
        raise ExportError(f"module {name!r} has no place in the transformers model")

    def inverse(self) -> _Target:
        """The mapping the other way (transformers name -> zoo name)."""
        return _Target(self.model, tuple((d, s) for s, d in self.prefixes), self.remote_code)


def _target(model: nn.Module, what: str) -> _Target:
    from zoo.models.arch import arch_config_of
    from zoo.models.hf import quiet_transformers

    arch = arch_config_of(model)
    if arch.arch == "hf":
        from transformers import AutoConfig, AutoModelForSequenceClassification

        config = dict(arch.kwargs["config"])
        if arch.kwargs.get("task") != "sequence_classification":
            raise UnsupportedArchitectureError(
                f"{what} is a transformers {arch.kwargs.get('task')} model; the zoo maps "
                "sequence classifiers (its text entries) to and from compressed-tensors"
            )
        hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
        with quiet_transformers():
            hf = AutoModelForSequenceClassification.from_config(hf_config)
        return _Target(hf.float().eval(), (("model", ""),), remote_code=False)
    if arch.arch == "minilm_classifier":
        from transformers import BertConfig

        from zoo.deploy.modeling_zoo_text import MeanPoolingBertForSequenceClassification

        kwargs = arch.kwargs
        bert = BertConfig(**kwargs["encoder_config"])
        bert.num_labels = int(kwargs.get("num_classes", 2))
        bert.classifier_dropout = float(kwargs.get("dropout", 0.1))
        bert.architectures = [MEAN_POOLING_CLASS]
        with quiet_transformers():
            hf = MeanPoolingBertForSequenceClassification(bert)
        prefixes = (("encoder", "bert"), ("classifier", "classifier"), ("dropout", "dropout"))
        return _Target(hf.float().eval(), prefixes, remote_code=True)
    raise UnsupportedArchitectureError(
        f"{what} is a {arch.arch!r} model, not a transformers model: compressed-tensors folders "
        "hold transformers models (the zoo's `hf` and `minilm_classifier` architectures). "
        "Export it with `zoo publish` / the zoo format instead"
    )


@dataclass(frozen=True)
class QuantizedWeight:
    """A Linear weight as symmetric integer codes and their scales: `codes * scales`
    (scales repeated over each group of `group_size` inputs; None: one scale a row)."""

    codes: torch.Tensor  # int8 holding `bits`-bit values, [out, in]
    scales: torch.Tensor  # float32 [out] (per channel) or [out, in // group_size]
    bits: int = 8
    group_size: int | None = None

    def dequantize(self) -> torch.Tensor:
        scales = self.scales.reshape(self.codes.shape[0], -1)
        if self.group_size:
            scales = scales.repeat_interleave(self.group_size, dim=1)
        return self.codes.to(torch.float32) * scales


def _float_state(model: nn.Module, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every float tensor of `model` (int8 layers dequantized) and its int8 layers' codes."""
    from torch.ao.nn.quantized import dynamic as nnqd

    from zoo.modifiers import quantization as q

    plan = q.plan_of(model)
    if plan is not None and plan.scheme != "dynamic":
        raise ExportError(
            f"{what} is {plan.scheme} int8 (observer-calibrated activations, fused layers): "
            "compressed-tensors has no scheme that computes the same thing; the zoo maps only "
            "its dynamic int8 (W8A8 int-quantized, dynamic per-tensor activations)"
        )
    if plan is not None and plan.reduce_range:
        raise ExportError(
            f"{what} quantizes activations to 7 bits (reduce_range, for CPUs without VNNI): "
            "compressed-tensors' int8 schemes use 8; quantize it again with reduce_range=False"
        )
    state: dict[str, torch.Tensor] = {}
    int8: dict[str, QuantizedWeight] = {}
    for name, module in model.named_modules():
        if any(name.startswith(done + ".") for done in int8):
            continue  # the packed parameters inside an int8 layer
        if isinstance(module, nnqd.Linear):
            weight = module.weight()
            if weight.qscheme() not in (torch.per_channel_affine, torch.per_channel_symmetric):
                raise ExportError(f"{what}: layer {name} has per-tensor int8 weights, not mapped")
            if bool((weight.q_per_channel_zero_points() != 0).any()):
                raise ExportError(
                    f"{what}: layer {name} has asymmetric int8 weights (non-zero zero points); "
                    "compressed-tensors' W8A8 weights are symmetric"
                )
            int8[name] = QuantizedWeight(
                weight.int_repr().contiguous(),
                weight.q_per_channel_scales().to(torch.float32).contiguous(),
            )
            state[f"{name}.weight"] = weight.dequantize()
            bias = module.bias()
            if bias is not None:
                state[f"{name}.bias"] = bias.detach()
            continue
        if type(module).__module__.startswith("torch.ao.nn"):
            raise ExportError(f"{what}: layer {name} is a {type(module).__name__}, not mapped")
        skip: set[str] = getattr(module, "_non_persistent_buffers_set", set())
        for key, tensor in [
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        ]:
            if key in skip or tensor is None:
                continue
            state[f"{name}.{key}" if name else key] = tensor.detach()
    return state, int8


def _load_into(target: _Target, state: dict[str, torch.Tensor], what: str) -> None:
    renamed = {target.rename(k): v for k, v in state.items()}
    own = target.model.state_dict()
    missing = sorted(set(own) - set(renamed))
    unexpected = sorted(set(renamed) - set(own))
    shapes = sorted(k for k in set(own) & set(renamed) if own[k].shape != renamed[k].shape)
    if missing or unexpected or shapes:
        raise ExportError(
            f"{what} does not fit its transformers architecture (a zoo transform that changes "
            f"the modules: structure, low-rank, adapters, experts?): missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, other shapes {shapes[:5]}"
        )
    target.model.load_state_dict(renamed, strict=True)


def _quantization_config(target: _Target, layers: dict[str, QuantizedWeight]) -> Any:
    """compressed-tensors' description of the quantized Linear layers: the zoo's dynamic
    int8 (W8A8) or integer weights only (W4A16 and the like, packed)."""
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
    )

    kinds = {(w.bits, w.group_size) for w in layers.values()}
    if len(kinds) != 1:
        raise ExportError(f"one weight scheme a folder; these layers mix {sorted(kinds)}")
    bits, group_size = kinds.pop()
    strategy = "group" if group_size else "channel"
    weights = QuantizationArgs(
        num_bits=bits, type="int", symmetric=True, strategy=strategy, group_size=group_size
    )
    # torch's dynamic int8 quantizes each activation tensor with its own min / max,
    # asymmetric (uint8 with a zero point): per tensor, at run time.
    inputs = QuantizationArgs(
        num_bits=8, type="int", symmetric=False, strategy="tensor", dynamic=True
    )
    scheme = QuantizationScheme(
        targets=["Linear"], weights=weights, input_activations=inputs if bits == 8 else None
    )
    linears = [n for n, m in target.model.named_modules() if isinstance(m, nn.Linear)]
    quantized = {target.rename(n) for n in layers}
    return QuantizationConfig(
        config_groups={"group_0": scheme},
        ignore=[n for n in linears if n not in quantized],
        quantization_status="frozen",
    )


def _linear_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def _is_two_four(weight: torch.Tensor) -> bool:
    """At most 2 non-zeros in every 4 consecutive weights of a row (vLLM's 2:4 pattern)."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return int((weight.reshape(-1, 4) != 0).sum(1).max()) <= 2


def measure_sparsity(model: nn.Module) -> tuple[float, str | None, list[str]]:
    """(zero fraction of every parameter, structure, Linear layers at least SPARSE_FROM
    zeros) of a float model; structure None when no layer is sparse. The fraction
    counts every parameter, as llm-compressor's `global_sparsity` does."""
    params = [p.detach() for p in model.parameters()]
    total = sum(p.numel() for p in params)
    zeros = sum(int((p == 0).sum()) for p in params)
    weights = _linear_weights(model)
    sparse = [n for n, w in weights.items() if float((w == 0).float().mean()) >= SPARSE_FROM]
    if not sparse:
        return round(zeros / total, 6) if total else 0.0, None, []
    structure = "2:4" if all(_is_two_four(weights[n]) for n in sparse) else "unstructured"
    return round(zeros / total, 6), structure, sparse


def _sparsity_config(model: nn.Module) -> dict[str, Any] | None:
    """compressed-tensors' `DenseSparsityConfig` of a sparse model: weights stored dense."""
    from compressed_tensors.config import DenseSparsityConfig

    overall, structure, sparse = measure_sparsity(model)
    if structure is None:
        return None
    ignore = [n for n in _linear_weights(model) if n not in sparse]
    config = DenseSparsityConfig(
        global_sparsity=overall,
        sparsity_structure=structure,
        targets=["Linear"],
        ignore=ignore or None,
    )
    data: dict[str, Any] = config.model_dump(exclude={"registry_requires_subclass"})
    return data


def export_compressed_tensors(
    model: nn.Module,
    out: str | os.PathLike[str],
    *,
    what: str = "the model",
    tokenizer: str | os.PathLike[str] | None = None,
    weight_only: Mapping[str, QuantizedWeight] | None = None,
) -> CtFolder:
    """Write `model` (a zoo transformers model: float, sparse or dynamic int8) as a
    compressed-tensors folder `out`, atomically; see the module docstring.

    `tokenizer`: a folder whose tokenizer files are copied along (the MiniLM entries get
    the shipped all-MiniLM-L6-v2 tokenizer without it). `weight_only`: zoo Linear layer
    name -> its integer codes and scales (e.g. int4 with group scales from GPTQ), written
    weight-only (W4A16: `pack-quantized`); the layers' float weights are replaced by
    `codes * scales`.
    """
    require_package()
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import apply_quantization_config
    from safetensors.torch import load_file

    from zoo.fsutil import atomic_dir
    from zoo.models.hf import quiet_transformers

    target = _target(model, what)
    state, layers = _float_state(model, what)
    if weight_only and layers:
        raise ExportError(f"{what} is dynamic int8 already; weight_only layers cannot join it")
    for name, layer in (weight_only or {}).items():
        if f"{name}.weight" not in state or state[f"{name}.weight"].shape != layer.codes.shape:
            raise ExportError(
                f"{what} has no Linear layer {name!r} of shape {tuple(layer.codes.shape)}"
            )
        state[f"{name}.weight"] = layer.dequantize()
    layers.update(weight_only or {})
    _load_into(target, state, what)
    hf = target.model
    sparsity = _sparsity_config(hf)
    compressor = None
    if layers:
        config = _quantization_config(target, layers)
        apply_quantization_config(hf, config, show_progress=False)
        for name, layer in layers.items():
            module = hf.get_submodule(target.rename(name))
            module.weight_scale.data.copy_(layer.scales.reshape(module.weight_scale.shape))
            zero_point = getattr(module, "weight_zero_point", None)
            if zero_point is not None:
                zero_point.data.zero_()
        compressor = ModelCompressor.from_pretrained_model(hf)
        with quiet_bars():
            compressor.compress_model(hf)
    with atomic_dir(out) as tmp:
        if target.remote_code:
            type(hf).register_for_auto_class("AutoModelForSequenceClassification")
        with quiet_transformers():
            hf.save_pretrained(tmp)
        if compressor is not None:
            compressor.update_config(str(tmp))
        config_path = tmp / CONFIG
        data = json.loads(config_path.read_text())
        if sparsity is not None:
            section = data.setdefault(
                QUANTIZATION_CONFIG,
                {"quant_method": METHOD, "format": "dense", "version": _version()},
            )
            section["sparsity_config"] = sparsity
        config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        written = load_file(str(tmp / WEIGHTS))
        for name, layer in layers.items():
            _check_codes(written, target.rename(name), layer, what)
        _copy_tokenizer(tokenizer, tmp, model)
        section = data.get(QUANTIZATION_CONFIG) or {}
    return CtFolder(
        folder=Path(out),
        weight_format=str(section.get("format", "dense")),
        quantized_layers=sorted(target.rename(n) for n in layers),
        sparsity=float((sparsity or {}).get("global_sparsity") or 0.0),
        sparsity_structure=(sparsity or {}).get("sparsity_structure"),
        remote_code=target.remote_code,
    )


#: compressed-tensors modules that draw a tqdm bar per model pass (no switch to turn it off).
_BAR_MODULES = (
    "compressed_tensors.compressors.model_compressors.model_compressor",
    "compressed_tensors.offload.dispatch",
)


@contextlib.contextmanager
def quiet_bars() -> Iterator[None]:
    """Without compressed-tensors' progress bars: for a model this size they are noise in a
    zoo command's output, and tqdm reads its TQDM_DISABLE switch only when imported."""
    import importlib

    from tqdm import tqdm

    def silent(*args: Any, **kwargs: Any) -> Any:
        return tqdm(*args, **{**kwargs, "disable": True})  # callers pass their own disable=

    modules = [importlib.import_module(name) for name in _BAR_MODULES]
    saved = [getattr(module, "tqdm", None) for module in modules]
    for module in modules:
        module.tqdm = silent  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.tqdm = original  # type: ignore[attr-defined]


def _version() -> str:
    from compressed_tensors import __version__

    return str(__version__)


def _check_codes(
    written: dict[str, torch.Tensor], name: str, layer: QuantizedWeight, what: str
) -> None:
    """compressed-tensors rounds weight / scale again (and packs sub-byte codes into int32);
    the codes in the file must come out as the zoo's."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    codes = written.get(f"{name}.weight")
    packed = written.get(f"{name}.weight_packed")
    if packed is not None:
        codes = unpack_from_int32(packed, layer.bits, layer.codes.shape)
    if codes is None or codes.dtype != torch.int8 or not torch.equal(codes, layer.codes):
        raise ExportError(
            f"{what}: compressed-tensors wrote other codes for {name} than the zoo's model "
            "holds; the folder would not hold the same model"
        )


def _copy_tokenizer(source: str | os.PathLike[str] | None, folder: Path, model: nn.Module) -> None:
    from zoo.models.arch import arch_config_of

    if source is None and arch_config_of(model).arch == "minilm_classifier":
        from zoo.models.text import encoder_dir

        source = encoder_dir()  # the shipped all-MiniLM-L6-v2 tokenizer the entries use
    if source is None:
        return
    root = Path(source)
    found = [name for name in TOKENIZER_FILES if (root / name).is_file()]
    if not found:
        raise ExportError(f"tokenizer folder {root} holds none of {', '.join(TOKENIZER_FILES)}")
    for name in found:
        shutil.copyfile(root / name, folder / name)


# --- compressed-tensors folder -> zoo export -----------------------------------------------


def read_quantization_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json's `quantization_config` of a transformers folder, checked: every scheme
    must be one the zoo can decompress on a CPU and describe in its facts. A folder without
    one (a dense model: compressed-tensors writes nothing for it) gives {}."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise CompressedFormatError(
            f"{folder} holds no {CONFIG}: it is not a transformers model folder"
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressedFormatError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CompressedFormatError(f"{path} is not a transformers model's config (no model_type)")
    section = config.get(QUANTIZATION_CONFIG)
    if section is None:
        return {}
    if not isinstance(section, dict) or section.get("quant_method") != METHOD:
        found = section.get("quant_method") if isinstance(section, dict) else section
        raise CompressedFormatError(
            f"{path}: quantization_config is {found!r}, not compressed-tensors; the zoo "
            "imports compressed-tensors folders (and plain dense ones) only"
        )
    _check_importable(section, path)
    return section


def _check_importable(section: dict[str, Any], path: Path) -> None:
    sparse = section.get("sparsity_config") or {}
    formats = {str(section.get("format") or "dense")}
    groups = section.get("config_groups") or {}
    if not isinstance(groups, dict):
        raise CompressedFormatError(f"{path}: quantization_config.config_groups is not a mapping")
    formats |= {
        str(g["format"]) for g in groups.values() if isinstance(g, dict) and g.get("format")
    }
    if isinstance(sparse, dict) and sparse.get("format"):
        formats.add(str(sparse["format"]))
    legacy = sorted(formats & set(LEGACY_SPARSE_FORMATS))
    if legacy:
        raise CompressedFormatError(
            f"{path} stores weights as {', '.join(legacy)}: compressed-tensors removed that "
            f"format after 0.14 and {PACKAGE_PIN} (the version transformers 5 reads) cannot "
            "decompress it. Re-save the model with an older llm-compressor as `dense`"
        )
    unknown = sorted(formats - {"mixed-precision", *IMPORTABLE_FORMATS})
    if unknown:
        raise CompressedFormatError(
            f"{path} uses the compressed-tensors format {', '.join(unknown)}, which the zoo "
            f"does not map (it imports {', '.join(IMPORTABLE_FORMATS)})"
        )
    for key, why in (
        ("kv_cache_scheme", "a quantized key/value cache"),
        ("transform_config", "rotations (transform_config) applied at run time"),
    ):
        if section.get(key):
            raise CompressedFormatError(
                f"{path}: quantization_config has {why}; a zoo model stores the weights only "
                "and would run without it, so the import refuses it"
            )
    parsed = parse_quantization_config(section, path)
    for name, scheme in (parsed.config_groups if parsed else {}).items():
        for role, args in (
            ("weights", scheme.weights),
            ("input_activations", scheme.input_activations),
        ):
            kind = str(getattr(args.type, "value", args.type)) if args is not None else "int"
            if kind != "int":
                raise CompressedFormatError(
                    f"{path}: config group {name!r} quantizes {role} to {kind}"
                    f"{args.num_bits}; the zoo maps integer schemes only"
                )


def parse_quantization_config(section: dict[str, Any], path: Path) -> Any:
    """compressed-tensors' QuantizationConfig of `section`; None when it only describes
    sparsity (no config_groups: the weights are plain)."""
    from pydantic import ValidationError

    require_package()
    from compressed_tensors.quantization import QuantizationConfig

    if not section.get("config_groups"):
        return None
    try:
        return QuantizationConfig.model_validate(section)
    except ValidationError as exc:
        raise CompressedFormatError(f"{path}: invalid quantization_config: {exc}") from None


def quantization_facts(section: dict[str, Any], layers: list[str]) -> Any:
    """The zoo's QuantizationFacts for a checked `quantization_config` (None scheme: none)."""
    from zoo.index.schema import QuantizationFacts

    groups = [g for g in (section.get("config_groups") or {}).values() if g.get("weights")]
    if not groups:
        return QuantizationFacts()
    schemes = {
        json.dumps([g.get("weights"), g.get("input_activations")], sort_keys=True) for g in groups
    }
    if len(schemes) > 1:
        return QuantizationFacts(scheme="mixed-precision", method=METHOD, layers=layers)
    weights, inputs = groups[0]["weights"], groups[0].get("input_activations")
    bits = int(weights["num_bits"])
    act_bits = int(inputs["num_bits"]) if inputs else None
    strategy = str(weights.get("strategy") or "tensor")
    granularity = {"channel": "per_channel", "tensor": "per_tensor"}.get(
        strategy,
        f"per_{strategy}" + (f"{weights['group_size']}" if weights.get("group_size") else ""),
    )
    kind = "weight-only" if inputs is None else ("dynamic" if inputs.get("dynamic") else "static")
    return QuantizationFacts(
        scheme=f"w{bits}a{act_bits or 16}",
        weight_bits=bits,
        activation_bits=act_bits,
        granularity=granularity,
        symmetric=bool(weights.get("symmetric", True)),
        method=f"{METHOD} ({kind})",
        layers=layers,
    )


def _folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors weights (one file, or shards by index)."""
    from safetensors.torch import load_file

    from zoo.errors import SchemaError
    from zoo.storage.names import check_file_name

    index = folder / f"{WEIGHTS}.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            for name in names:
                check_file_name(name, str(index))  # never a path outside the folder
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, SchemaError) as exc:
            raise CompressedFormatError(f"{index} is not a weights index: {exc}") from None
    elif (folder / WEIGHTS).is_file():
        names = [WEIGHTS]
    else:
        raise CompressedFormatError(
            f"{folder} holds no {WEIGHTS} (nor an index of shards); the zoo reads safetensors "
            "weights only, never pickled .bin files"
        )
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        tensors.update(load_file(str(folder / name)))
    return tensors


def _is_own_remote_code(folder: Path, config: dict[str, Any]) -> bool:
    """Whether `auto_map` names the zoo's own MiniLM class with this file unchanged: then the
    zoo builds the class from its own package and runs nothing from the folder."""
    from zoo.fsutil import sha256_file

    ours = Path(__file__).with_name(MODELING_FILE)
    theirs = folder / MODELING_FILE
    named = set((config.get("auto_map") or {}).values()) == {f"{ours.stem}.{MEAN_POOLING_CLASS}"}
    return named and theirs.is_file() and sha256_file(theirs) == sha256_file(ours)


_HF_ONLY_KEYS = ("auto_map", QUANTIZATION_CONFIG, "architectures", "dtype", "torch_dtype")


def _zoo_skeleton(folder: Path, config: dict[str, Any]) -> nn.Module:
    """The zoo model (random weights) of a transformers config without its quantization."""
    plain = {k: v for k, v in config.items() if k not in _HF_ONLY_KEYS}
    if config.get("auto_map"):
        if not _is_own_remote_code(folder, config):
            raise UnsupportedArchitectureError(
                f"{folder / CONFIG} names remote code ({config['auto_map']}): the zoo runs no "
                "code from a model folder. Re-save the model with a transformers class"
            )
        from transformers import BertConfig

        from zoo.models import get_model

        labels = plain.pop("num_labels", None) or len(plain.get("id2label") or {}) or 2
        dropout = plain.pop("classifier_dropout", None)
        for key in ("id2label", "label2id", "transformers_version"):
            plain.pop(key, None)
        return get_model(
            "minilm_classifier",
            num_classes=int(labels),
            pretrained=False,
            encoder_config=BertConfig(**plain).to_diff_dict(),
            dropout=0.1 if dropout is None else float(dropout),
        )
    from zoo.models.hf import hf_model

    plain["architectures"] = config.get("architectures")
    return hf_model(config=plain, pretrained=False)


def load_compressed_tensors(
    folder: str | os.PathLike[str],
) -> tuple[nn.Module, dict[str, Any], list[str]]:
    """(zoo model with the decompressed float weights, quantization_config, quantized layers)
    of a compressed-tensors folder; compressed-tensors' ModelCompressor decompresses them."""
    require_package()
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationStatus, apply_quantization_config
    from compressed_tensors.quantization.utils import is_module_quantized

    root = Path(folder)
    section = read_quantization_config(root)
    config = json.loads((root / CONFIG).read_text())
    zoo_model = _zoo_skeleton(root, config).eval()
    what = str(root)
    target = _target(zoo_model, what)
    hf = target.model
    float_keys = set(hf.state_dict())
    parsed = parse_quantization_config(section, root / CONFIG)
    if parsed is not None:
        apply_quantization_config(hf, parsed, show_progress=False)
    compressor = ModelCompressor(quantization_config=parsed)
    if parsed is not None and parsed.quantization_status == QuantizationStatus.COMPRESSED:
        with quiet_bars():  # the layout the stored tensors have (as transformers does)
            compressor.compress_model(hf)
    tensors = _folder_tensors(root)
    expected = hf.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(
        k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape
    )
    if missing or unexpected or shapes:
        raise CompressedFormatError(
            f"{what}: the weights do not fit the model its config.json describes: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]}"
        )
    hf.load_state_dict(tensors, strict=True)
    layers = sorted(n for n, m in hf.named_modules() if is_module_quantized(m))
    if parsed is not None:
        with quiet_bars():
            compressor.decompress_model(hf)
    state = {
        k: v.to(torch.float32) if v.is_floating_point() else v
        for k, v in hf.state_dict().items()
        if k in float_keys
    }
    inverse = target.inverse()
    zoo_state = {inverse.rename(k): v for k, v in state.items()}
    zoo_model.load_state_dict(zoo_state, strict=True)
    return zoo_model.eval(), section, layers


def sample_inputs(model: nn.Module, batch: int = 2, length: int = 16) -> dict[str, torch.Tensor]:
    """Fixed token ids (seeded) within the model's vocabulary, the second row padded."""
    from zoo.models.arch import arch_config_of

    kwargs = arch_config_of(model).kwargs
    config = kwargs.get("config") or kwargs.get("encoder_config") or {}
    vocab = int(config.get("vocab_size", 1000))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(min(8, vocab - 1), vocab, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1:, length // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def import_compressed_tensors(
    folder: str | os.PathLike[str], out: str | os.PathLike[str], *, stub: str | None = None
) -> Any:
    """Write the compressed-tensors `folder` as a zoo export `out` (publishable with
    `zoo publish`), atomically; returns zoo.compress.export's ExportResult.

    The weights are decompressed by compressed-tensors and stored as a float model; the
    folder's scheme becomes the entry's quantization facts and its sparsity is measured.
    """
    from zoo.compress.export import export_model
    from zoo.compress.facts import sparsity_facts
    from zoo.index.schema import Lineage

    model, section, layers = load_compressed_tensors(folder)
    sparsity = sparsity_facts(model)
    structure = measure_sparsity(model)[1]
    if structure is not None:
        sparsity = replace(sparsity, structure=structure)
    sparse = section.get("sparsity_config") or {}
    lineage = Lineage(
        extra={
            "imported_from": "compressed-tensors",
            "compressed_tensors_format": str(section.get("format") or "dense"),
            "compressed_tensors_version": str(section.get("version") or "unknown"),
            "sparsity_structure": str(sparse.get("sparsity_structure") or "none"),
        }
    )
    return export_model(
        model,
        out,
        stub=stub,
        sample_inputs=sample_inputs(model),
        lineage=lineage,
        sparsity=sparsity,
        quantization=quantization_facts(section, layers),
    )
