"""Masks: which weights to keep, and keeping pruned weights at exactly zero while training.

Mask structures (the ``mask_type`` / ``mask_structure`` field):

- ``unstructured``: the k = round(s * numel) lowest-scoring elements are pruned, chosen
  with `torch.topk` exactly as `torch.nn.utils.prune.l1_unstructured` chooses them.
- ``"N:M"`` (e.g. ``"2:4"``): in every group of M consecutive weights along a row of the
  weight viewed as [out, -1], the N highest-scoring are kept. Rows whose length is not a
  multiple of M end with a shorter group that keeps min(N, len) weights. A sparsity below
  (M-N)/M applies the N:M pattern to that fraction of groups (those that lose least), so a
  schedule can ramp up to the full pattern. ``"0:0"`` (llm-compressor) means unstructured.
- ``[a, b]`` or ``block`` (= [1, 4]): blocks of a output x b input channels (-1: the whole
  dimension), scored by mean magnitude, as SparseML's BlockMaskCreator documents; a conv
  weight is blocked at each kernel position separately (``[1, 4]`` groups 4 input channels
  at one kernel position). Channel counts the block does not divide are an error.
- ``filter`` / ``channel``: whole output rows / input channels (zeroed, not removed; see
  pruning_structured.py for physically smaller layers).

Training keeps masks in a `MaskSet` (state.store["masks"]): gradients are multiplied by
the mask before optimizer.step and weights after it. Masking the gradient alone is not
enough: momentum and decoupled weight decay move weights whose gradient is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from zoo.errors import RecipeError


@dataclass(frozen=True)
class MaskStructure:
    kind: str  # "unstructured", "nm", "block", "filter", "channel"
    n: int = 0
    m: int = 0
    block: tuple[int, int] = (1, 1)

    @property
    def max_sparsity(self) -> float:
        return (self.m - self.n) / self.m if self.kind == "nm" else 1.0


def parse_structure(value: str | list[int]) -> MaskStructure:
    """Parse a mask_type value; raises RecipeError(field="mask_type") if malformed."""
    if isinstance(value, list):
        if len(value) != 2 or any(v < 1 and v != -1 for v in value):
            raise RecipeError(
                f"a block mask is [out channels, in channels], each >= 1 or -1 (whole "
                f"dimension), got {value}",
                field="mask_type",
            )
        return MaskStructure("block", block=(value[0], value[1]))
    text = value.strip().lower()
    if text in ("unstructured", "0:0"):
        return MaskStructure("unstructured")
    if text == "block":
        return MaskStructure("block", block=(1, 4))
    if text in ("filter", "channel"):
        return MaskStructure(text)
    if ":" in text:
        n_text, _, m_text = text.partition(":")
        if n_text.isdigit() and m_text.isdigit() and 0 < int(n_text) < int(m_text):
            return MaskStructure("nm", n=int(n_text), m=int(m_text))
    raise RecipeError(
        f"mask_type {value!r} is not one of: unstructured, N:M (e.g. '2:4'), block, "
        "[rows, cols], filter, channel",
        field="mask_type",
    )


def count_to_prune(sparsity: float, total: int) -> int:
    # Python's round, as torch.nn.utils.prune._compute_nparams_toprune uses.
    return min(total, round(sparsity * total))


def _lowest(flat: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        keep[torch.topk(flat, k, largest=False).indices] = False
    return keep


def nm_mask(score: torch.Tensor, n: int, m: int, fraction: float = 1.0) -> torch.Tensor:
    """Keep-mask with the N:M pattern in `fraction` of the groups (lowest loss first)."""
    rows = score.reshape(score.shape[0], -1)
    cols = rows.shape[1]
    pad = (-cols) % m
    padded = F.pad(rows, (0, pad), value=math.inf) if pad else rows
    groups = padded.reshape(-1, m)
    pruned_idx = groups.argsort(dim=1)[:, : m - n]
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(1, pruned_idx, False)
    if fraction < 1.0:
        loss = groups.gather(1, pruned_idx).sum(1)
        chosen = ~_lowest(loss, count_to_prune(fraction, int(torch.isfinite(loss).sum())))
        keep[~chosen] = True
    return keep.reshape(padded.shape)[:, :cols].reshape(score.shape)


def make_mask(
    score: torch.Tensor, sparsity: float, structure: MaskStructure, *, per_row: bool = False
) -> torch.Tensor:
    """Boolean keep-mask for one tensor: prune the lowest scores to `sparsity`."""
    score = score.detach()
    if structure.kind == "nm":
        return nm_mask(score, structure.n, structure.m, min(1.0, sparsity / structure.max_sparsity))
    if structure.kind == "unstructured":
        if per_row:
            rows = score.reshape(score.shape[0], -1)
            k = count_to_prune(sparsity, rows.shape[1])
            keep = torch.ones_like(rows, dtype=torch.bool)
            if k > 0:
                keep.scatter_(1, torch.topk(rows, k, dim=1, largest=False).indices, False)
            return keep.reshape(score.shape)
        flat = score.reshape(-1)
        return _lowest(flat, count_to_prune(sparsity, flat.numel())).reshape(score.shape)
    view = score.reshape(score.shape[0], -1)
    if structure.kind == "filter":
        keep_rows = _lowest(view.abs().mean(1), count_to_prune(sparsity, view.shape[0]))
        return keep_rows[:, None].expand_as(view).reshape(score.shape).clone()
    if structure.kind == "channel":
        per_in = score.reshape(score.shape[0], score.shape[1], -1).abs().mean((0, 2))
        keep_in = _lowest(per_in, count_to_prune(sparsity, per_in.numel()))
        shape = [1, -1] + [1] * (score.dim() - 2)
        return keep_in.reshape(shape).expand_as(score).clone()
    br, bc = block_shape(structure, score.shape)
    per_position = score.abs().reshape(score.shape[0], score.shape[1], -1)  # [out, in, k]
    out, inp, positions = per_position.shape
    blocks = per_position.reshape(out // br, br, inp // bc, bc, positions).mean((1, 3))
    keep_blocks = _lowest(blocks.reshape(-1), count_to_prune(sparsity, blocks.numel()))
    keep = keep_blocks.reshape(blocks.shape).repeat_interleave(br, 0).repeat_interleave(bc, 1)
    return keep.reshape(score.shape)


def block_shape(structure: MaskStructure, shape: tuple[int, ...]) -> tuple[int, int]:
    """(out, in) channels of one block of `structure` on a weight of `shape`; raises
    RecipeError(field="mask_type") when the block does not tile the weight."""
    br, bc = structure.block
    if len(shape) < 2:
        raise RecipeError(
            f"a block mask needs a weight with out and in channels, got shape {tuple(shape)}",
            field="mask_type",
        )
    br = shape[0] if br == -1 else br
    bc = shape[1] if bc == -1 else bc
    if shape[0] % br or shape[1] % bc:
        raise RecipeError(
            f"a weight of shape {tuple(shape)} ({shape[0]} out x {shape[1]} in channels) does "
            f"not tile into blocks of {br} out x {bc} in channels",
            field="mask_type",
        )
    return br, bc


def global_masks(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Unstructured keep-masks with `sparsity` over all tensors together."""
    flat = torch.cat([s.detach().reshape(-1) for s in scores.values()])
    keep = _lowest(flat, count_to_prune(sparsity, flat.numel()))
    out, offset = {}, 0
    for name, s in scores.items():
        out[name] = keep[offset : offset + s.numel()].reshape(s.shape)
        offset += s.numel()
    return out


def sparsity_of(tensor: torch.Tensor) -> float:
    return float((tensor == 0).sum()) / tensor.numel()


class MaskSet:
    """Per-parameter keep-masks, applied to gradients before and weights after each step."""

    def __init__(self) -> None:
        self.masks: dict[str, tuple[nn.Parameter, torch.Tensor]] = {}
        self._grads_done = -1
        self._weights_done = -1

    def set(self, name: str, param: nn.Parameter, keep: torch.Tensor) -> None:
        mask = keep.to(dtype=param.dtype, device=param.device)
        self.masks[name] = (param, mask)
        with torch.no_grad():
            param.mul_(mask)

    def drop(self, names: list[str]) -> None:
        for name in names:
            self.masks.pop(name, None)

    def mask_grads(self, step: int) -> None:
        if self._grads_done == step:
            return
        self._grads_done = step
        for param, mask in self.masks.values():
            if param.grad is not None:
                param.grad.mul_(mask)

    def mask_weights(self, step: int) -> None:
        if self._weights_done == step:
            return
        self._weights_done = step
        with torch.no_grad():
            for param, mask in self.masks.values():
                param.mul_(mask)


def mask_set(store: dict[str, object]) -> MaskSet:
    masks = store.setdefault("masks", MaskSet())
    assert isinstance(masks, MaskSet)
    return masks


def interpolate(fraction: float, start: float, end: float, func: str) -> float:
    """Sparsity at `fraction` in [0, 1] of the way from `start` to `end`.

    cubic (Zhu & Gupta 2017): s = s_f + (s_i - s_f) * (1 - fraction)^3; fast early, slow late.
    linear: s = s_i + (s_f - s_i) * fraction. inverse_cubic (SparseML's, slow early, fast
    late): s = s_i + (s_f - s_i) * (1 - (1 - fraction)^(1/3)).
    """
    fraction = min(1.0, max(0.0, fraction))
    if func == "cubic":
        return end + (start - end) * (1.0 - fraction) ** 3
    if func == "inverse_cubic":
        return start + (end - start) * (1.0 - (1.0 - fraction) ** (1 / 3))
    return start + (end - start) * fraction
