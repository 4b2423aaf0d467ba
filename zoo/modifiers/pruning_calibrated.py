"""One-shot pruning from calibration activations: Wanda and SparseGPT.

Both need the inputs X of each layer, captured with forward pre-hooks while calibration
batches run through the model. Layers are pruned sequentially, one block at a time (the
layers under one numbered module such as ``encoder.layer.3``): a block's statistics are
collected with all earlier blocks already pruned, so later layers see the outputs of the
pruned network, as in the SparseGPT paper. Conv2d inputs are unfolded into columns, so a
conv is a Linear over its (C * kh * kw) receptive field.

- Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2; each output row is a comparison
  group (per-row unstructured, or N:M along the row). No weight update.
- SparseGPT (Frantar & Alistarh 2023): H = 2 X X^T / n from the calibration inputs,
  dampened by ``dampening_frac * mean(diag H)``; the upper Cholesky factor of H^-1 drives
  OBS updates over column blocks of ``block_size``: each pruned weight's error is spread
  over the not-yet-processed columns. Masks are chosen per block from w^2 / [H^-1]_jj^2.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zoo.errors import RecipeError
from zoo.modifiers.base import forward_batch
from zoo.modifiers.pruning_masks import MaskStructure, count_to_prune, make_mask

_BLOCK = re.compile(r"^(.*?\.\d+)\.")


def layer_inputs_2d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of `module` as rows of features matching weight.reshape(out, -1)."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(
            x,
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,  # type: ignore[arg-type]
            stride=module.stride,
        )
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    raise RecipeError(
        f"calibrated pruning supports Linear and Conv2d layers, not {type(module).__name__}",
        field="params",
    )


class _Stats:
    """Running sums over calibration inputs of one layer."""

    def __init__(self, want_hessian: bool) -> None:
        self.want_hessian = want_hessian
        self.rows = 0
        self.sq: torch.Tensor | None = None  # sum of x_j^2 per input feature
        self.xtx: torch.Tensor | None = None  # sum of x x^T

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        self.rows += x.shape[0]
        sq = (x * x).sum(0)
        self.sq = sq if self.sq is None else self.sq + sq
        if self.want_hessian:
            xtx = x.T @ x
            self.xtx = xtx if self.xtx is None else self.xtx + xtx

    def feature_norm(self) -> torch.Tensor:
        assert self.sq is not None
        return self.sq.sqrt()

    def hessian(self) -> torch.Tensor:
        assert self.xtx is not None
        return 2.0 * self.xtx / max(self.rows, 1)


class _StopForward(Exception):
    """Raised by a hook to cut a calibration forward pass short."""


def _stop_forward(*_: Any) -> None:
    raise _StopForward


def _blocks(names: Sequence[str]) -> list[list[str]]:
    """Consecutive names grouped by their numbered parent block (encoder.layer.3.*)."""
    groups: list[list[str]] = []
    last: str | None = None
    for name in names:
        match = _BLOCK.match(name)
        key = match.group(1) if match else name
        if groups and key == last:
            groups[-1].append(name)
        else:
            groups.append([name])
        last = key
    return groups


def run_sequential(
    model: nn.Module,
    modules: dict[str, nn.Module],
    calibration: Iterable[Any],
    prune: Callable[[str, nn.Module, _Stats], None],
    *,
    want_hessian: bool,
    sequential: bool = True,
) -> None:
    """Collect input statistics block by block and call `prune` for each layer."""
    batches = list(calibration)
    if not batches:
        raise RecipeError("calibration data is empty; pass a few batches of model inputs")
    was_training = model.training
    model.eval()
    order = list(modules)
    groups = _blocks(order) if sequential else [order]
    try:
        for group in groups:
            stats = {name: _Stats(want_hessian) for name in group}
            handles = []
            for name in group:
                module = modules[name]

                def hook(mod: nn.Module, args: tuple[Any, ...], _acc: _Stats = stats[name]) -> None:
                    _acc.add(layer_inputs_2d(mod, args[0]))

                handles.append(module.register_forward_pre_hook(hook))
            # Nothing after the group's last layer matters for its statistics: stop there.
            handles.append(modules[group[-1]].register_forward_hook(_stop_forward))
            try:
                with torch.no_grad():
                    for batch in batches:
                        with contextlib.suppress(_StopForward):
                            forward_batch(model, batch)
            finally:
                for handle in handles:
                    handle.remove()
            for name in group:
                if stats[name].rows == 0:
                    raise RecipeError(
                        f"layer {name!r} saw no calibration input (not on the forward path?)",
                        field="params",
                    )
                prune(name, modules[name], stats[name])
    finally:
        model.train(was_training)


def wanda_prune(
    weight: torch.Tensor, feature_norm: torch.Tensor, sparsity: float, structure: MaskStructure
) -> torch.Tensor:
    """Wanda keep-mask for a weight viewed as [out, in]; the weight is not changed."""
    w = weight.detach().reshape(weight.shape[0], -1)
    score = w.abs().float() * feature_norm.reshape(1, -1)
    return make_mask(score, sparsity, structure, per_row=True).reshape(weight.shape)


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    structure: MaskStructure,
    *,
    block_size: int = 128,
    dampening_frac: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new weight, keep-mask) by SparseGPT's OBS updates; `weight` is [out, ...]."""
    if structure.kind not in ("unstructured", "nm"):
        raise RecipeError("SparseGPT supports unstructured and N:M masks", field="mask_structure")
    prune_n = structure.m - structure.n if structure.kind == "nm" else 0
    m = structure.m
    if prune_n and block_size % m:
        raise RecipeError(f"block_size must be a multiple of {m} for N:M", field="block_size")
    shape, dtype = weight.shape, weight.dtype
    # Work on W^T so that a weight column is a contiguous row: the inner loop touches one
    # column at a time and CPU kernels are far faster on contiguous memory.
    T = weight.detach().reshape(shape[0], -1).T.contiguous().float()
    pruned = torch.zeros_like(T, dtype=torch.bool)
    with one_thread():
        Hinv = upper_cholesky_of_inverse(hessian, T, dampening_frac)
        _obs_blocks(T, Hinv, pruned, sparsity, prune_n, m, block_size)
    return T.T.reshape(shape).to(dtype), (~pruned).T.reshape(shape)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded for a while.

    The OBS loop issues thousands of small kernels; with several threads each one pays an
    OpenMP fork/join, which on a busy machine (more runnable threads than cores) made the
    loop 10-20x slower than on one thread, measured here.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _obs_blocks(
    T: torch.Tensor,
    Hinv: torch.Tensor,
    pruned: torch.Tensor,
    sparsity: float,
    prune_n: int,
    m: int,
    block_size: int,
) -> None:
    """SparseGPT's column-block loop over W^T (`T`, updated in place), filling `pruned`."""
    cols, rows = T.shape
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        T1 = T[i1:i2].clone()
        Err1 = torch.zeros_like(T1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1).reshape(-1, 1)
        mask1 = torch.zeros_like(T1, dtype=torch.bool)
        if not prune_n:
            # per-block counts that add up to exactly round(s * numel) over the layer
            k = count_to_prune(sparsity, rows * i2) - count_to_prune(sparsity, rows * i1)
            if k > 0:
                tmp = (T1**2 / d1**2).reshape(-1)
                mask1.view(-1)[torch.topk(tmp, k, largest=False).indices] = True
        scale = mask1.float() / d1  # err = w * [pruned] / [H^-1]_ii
        for i in range(i2 - i1):
            if prune_n and i % m == 0:
                tmp = T1[i : i + m] ** 2 / d1[i : i + m] ** 2
                idx = torch.topk(tmp, min(prune_n, tmp.shape[0]), dim=0, largest=False).indices
                mask1.scatter_(0, i + idx, True)
                scale[i : i + m] = mask1[i : i + m].float() / d1[i : i + m]
            err = T1[i] * scale[i]
            # OBS: spread this column's pruning error over the columns not yet processed
            T1[i:].addr_(Hinv1[i, i:], err, alpha=-1.0)
            Err1[i] = err
        T1.masked_fill_(mask1, 0.0)  # exact zeros (the update leaves rounding residue)
        T[i1:i2] = T1
        pruned[i1:i2] = mask1
        T[i2:] -= Hinv[i1:i2, i2:].T @ Err1


def upper_cholesky_of_inverse(
    hessian: torch.Tensor, T: torch.Tensor, dampening_frac: float
) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1; zeroes dead inputs in T."""
    H = hessian.clone().float()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    T[dead] = 0.0
    H += dampening_frac * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype)
    for dtype in (torch.float32, torch.float64):  # float64 only if float32 is not enough
        try:
            Hd = H.to(dtype)
            Hinv = torch.cholesky_inverse(torch.linalg.cholesky(Hd))
            return torch.linalg.cholesky(Hinv, upper=True).float()
        except torch.linalg.LinAlgError:
            continue
    raise RecipeError(
        "the calibration Hessian is not positive definite; raise dampening_frac "
        "or use more calibration data",
        field="dampening_frac",
    )


def reconstruction_error(
    weight: torch.Tensor, new_weight: torch.Tensor, inputs: torch.Tensor
) -> float:
    """||W X - W' X||_F for inputs given as rows [n, in] (as `layer_inputs_2d` returns)."""
    w = weight.reshape(weight.shape[0], -1).float()
    w2 = new_weight.reshape(new_weight.shape[0], -1).float()
    return float(torch.linalg.norm(inputs.float() @ (w - w2).T))
