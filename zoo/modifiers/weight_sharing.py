"""Weight sharing: each layer's weights clustered into 2^b shared values (Deep Compression).

Per layer, 1-D k-means with a deterministic linear initialisation (k centroids evenly
spaced between the min and max weight: Han et al., 2016 found it beats random and
density-based init because it keeps the rare large weights). The weight is then stored as
`indices` (fixed) + `codebook` (trainable): the forward pass gathers
``weight = codebook[indices]``, so autograd gives each shared value ONE gradient, the sum
of its members' gradients (``gradient="mean"`` divides by the member count).

Export: `shared_state(model)` -> uint8 indices + float codebooks for safetensors and a JSON
config; `load_shared` writes them back into a float model of the same architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from zoo.errors import CheckpointError
from zoo.modifiers.base import ModifierState, ParamSelector, TransformOnceModifier
from zoo.modifiers.lowrank import replace_params_in_optimizer
from zoo.modifiers.selection import ALL_PRUNABLE, select_params

FORMAT = "zoo-weight-sharing/1"
LAYERS_ATTR = "zoo_weight_sharing"


def kmeans_1d(
    values: torch.Tensor, k: int, iterations: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor, linear init; returns (codebook [k], indices).

    Deterministic: same values, same result. In 1-D the nearest centroid is found by
    binary search between sorted centroid midpoints, O(n log k) per iteration.
    """
    flat = values.detach().reshape(-1).double()
    low, high = flat.min(), flat.max()
    centroids = torch.linspace(float(low), float(high), k, dtype=torch.float64)
    indices = torch.zeros_like(flat, dtype=torch.long)
    for _ in range(iterations):
        centroids = centroids.sort().values
        midpoints = (centroids[1:] + centroids[:-1]) / 2
        new_indices = torch.bucketize(flat, midpoints)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, new_indices, flat)
        counts = torch.bincount(new_indices, minlength=k).double()
        # An empty cluster keeps its centroid (it may gain members later).
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.equal(new_indices, indices):
            break
        indices = new_indices
    return centroids.to(values.dtype), indices.reshape(values.shape)


def cluster_weight(
    weight: torch.Tensor, bits: int, keep_zeros: bool = True
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(codebook [2^bits], indices, zero pinned?) for one weight tensor.

    With `keep_zeros` and a weight that has exact zeros (a pruned layer), code 0 is
    reserved for 0.0 and k-means runs on the non-zero weights with the other 2^bits - 1
    codes, so clustering keeps the sparsity (Deep Compression prunes, then shares).
    """
    k = 2**bits
    nonzero = weight != 0
    if not keep_zeros or bool(nonzero.all()) or not bool(nonzero.any()):
        codebook, indices = kmeans_1d(weight, k)
        return codebook, indices, False
    values, codes = kmeans_1d(weight[nonzero], k - 1)
    indices = torch.zeros(weight.shape, dtype=torch.long)
    indices[nonzero] = codes + 1
    codebook = torch.cat([torch.zeros(1, dtype=values.dtype), values])
    return codebook, indices, True


class SharedWeight:
    """Turns a module's `weight` into ``codebook[indices]`` via a forward pre-hook.

    The module gets a `weight_codebook` Parameter and a `weight_indices` buffer; its
    `weight` becomes a plain tensor recomputed before every forward.
    """

    def __init__(
        self,
        module: nn.Module,
        bits: int,
        gradient: Literal["sum", "mean"] = "sum",
        keep_zeros: bool = True,
    ) -> None:
        weight = module._parameters["weight"]
        if weight is None:
            raise TypeError(f"{type(module).__name__} has no weight parameter")
        codebook, indices, pinned = cluster_weight(weight.detach(), bits, keep_zeros)
        self.module = module
        self.old = weight
        del module._parameters["weight"]
        module.register_parameter("weight_codebook", nn.Parameter(codebook))
        module.register_buffer("weight_indices", indices.to(torch.uint8))
        self._handles: list[Any] = [module.register_forward_pre_hook(self._gather)]
        scale = torch.ones(codebook.numel(), dtype=codebook.dtype)
        if gradient == "mean":
            scale /= torch.bincount(indices.reshape(-1), minlength=codebook.numel()).clamp_min(1)
        if pinned:
            scale[0] = 0.0  # the zero of a pruned layer stays exactly zero
        if gradient == "mean" or pinned:
            self._handles.append(self.codebook.register_hook(lambda g: g * scale.to(g)))
        self._gather(module, ())

    @staticmethod
    def _weight(module: nn.Module) -> torch.Tensor:
        codebook = module._parameters["weight_codebook"]
        indices = module._buffers["weight_indices"]
        assert codebook is not None and indices is not None
        return codebook[indices.long()]

    @staticmethod
    def _gather(module: nn.Module, args: Any) -> None:
        module.weight = SharedWeight._weight(module)

    @property
    def codebook(self) -> nn.Parameter:
        param = self.module._parameters["weight_codebook"]
        assert isinstance(param, nn.Parameter)
        return param

    def bake(self) -> nn.Parameter:
        """Make `weight` a plain Parameter again (holding only the shared values)."""
        for handle in self._handles:
            handle.remove()
        with torch.no_grad():
            weight = self._weight(self.module).clone()
        del self.module.weight
        del self.module._parameters["weight_codebook"]
        del self.module._buffers["weight_indices"]
        param = nn.Parameter(weight)
        self.module.weight = param
        return param


def distinct_values(tensor: torch.Tensor) -> int:
    return int(torch.unique(tensor.detach()).numel())


def shared_state(
    model: nn.Module, bits: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """uint8 indices + codebook per clustered weight (as recorded on the model), and config.

    Works on live clustered layers and on baked ones: a weight with at most 2^b distinct
    values is re-indexed by `torch.unique`.
    """
    recorded = getattr(model, LAYERS_ATTR, None)
    if not recorded:
        raise CheckpointError("the model has no weight-shared layers recorded")
    bits = bits or int(recorded["bits"])
    if bits > 8:
        raise CheckpointError(f"uint8 indices hold at most 8 bits, the layers use {bits}")
    params = dict(model.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, list[int]] = {}
    for name in recorded["layers"]:
        module = model.get_submodule(name)
        codebook_param = module._parameters.get("weight_codebook")
        live_indices = module._buffers.get("weight_indices")
        if codebook_param is not None and live_indices is not None:
            codebook = codebook_param.detach()
            indices, shape = live_indices.to(torch.uint8), list(live_indices.shape)
        else:
            weight = params[f"{name}.weight" if name else "weight"].detach()
            codebook, inverse = torch.unique(weight, return_inverse=True)
            if codebook.numel() > 2**bits:
                raise CheckpointError(
                    f"{name}.weight has {codebook.numel()} distinct values, more than 2^{bits}"
                )
            indices, shape = inverse.to(torch.uint8), list(weight.shape)
        tensors[f"{name}.weight.indices"] = indices.contiguous().reshape(-1)
        tensors[f"{name}.weight.codebook"] = codebook.contiguous().clone()
        layers[name] = shape
    return tensors, {"format": FORMAT, "bits": bits, "layers": layers}


def load_shared(model: nn.Module, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write ``codebook[indices]`` into each listed layer's weight of a float model."""
    if config.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} config (format={config.get('format')!r})")
    for name, shape in config["layers"].items():
        codebook = tensors[f"{name}.weight.codebook"]
        indices = tensors[f"{name}.weight.indices"].long()
        weight = model.get_submodule(name)._parameters["weight"]
        if weight is None:
            raise CheckpointError(f"{name} has no weight to load shared values into")
        with torch.no_grad():
            weight.copy_(codebook[indices].reshape(shape))


@dataclass(kw_only=True)
class WeightSharingModifier(TransformOnceModifier):
    """Cluster each selected layer into 2^bits shared values at `start_epoch` (or one-shot)
    and fine-tune the shared values; `finalize` bakes them back into plain weights."""

    conflict_group: ClassVar[str | None] = "structure"

    params: ParamSelector | None = ALL_PRUNABLE
    bits: int = 4
    gradient: Literal["sum", "mean"] = "sum"
    keep_zeros: bool = True  # pruned zeros keep a code of their own and stay zero

    def __post_init__(self) -> None:
        self._shared: dict[str, SharedWeight] = {}

    def check(self) -> None:
        super().check()
        if not 1 <= self.bits <= 8:
            raise self.field_error("bits", f"must be in 1..8 (uint8 indices), got {self.bits}")

    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        if self.params is None:
            return
        for param_name in select_params(model, self.params, owner=self.type_name):
            name = param_name.rpartition(".")[0]
            module = model.get_submodule(name)
            if param_name.rpartition(".")[2] != "weight" or name in self._shared:
                continue
            shared = SharedWeight(module, self.bits, self.gradient, self.keep_zeros)
            if optimizer is not None:
                replace_params_in_optimizer(optimizer, [shared.old], [shared.codebook])
            self._shared[name] = shared
        recorded = getattr(model, LAYERS_ATTR, None) or {"bits": self.bits, "layers": []}
        recorded["layers"] = sorted({*recorded["layers"], *self._shared})
        setattr(model, LAYERS_ATTR, recorded)
        self._done = True

    def finalize(self, state: ModifierState) -> None:
        for shared in self._shared.values():
            codebook = shared.codebook
            param = shared.bake()
            if state.optimizer is not None:
                replace_params_in_optimizer(state.optimizer, [codebook], [param])
        self._shared = {}
