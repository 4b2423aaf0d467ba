"""Mixture of experts: dense-to-MoE upcycling and REAP expert pruning.

Sparse upcycling (Komatsuzaki et al., ICLR 2023): each chosen feed-forward block becomes
`num_experts` copies of itself behind a new top-k router (softmax, then top-k, gates
renormalised to sum to 1). Because every expert starts as the same block and the gates of
a token sum to 1, the upcycled model computes exactly what the dense one did, whatever the
router weights; training then lets the experts drift apart. The Switch Transformer's
load-balancing loss (Fedus et al., 2021: E * sum_e f_e * P_e) joins the training loss
through the manager's loss hook.

Feed-forward blocks that can be upcycled: a `Linear` (the CNN's hidden layer), and a BERT
layer's intermediate + output pair (the block `dense -> act -> dense` becomes the expert;
the residual and LayerNorm stay shared).

Expert pruning by REAP (arXiv 2510.13999): one-shot from calibration data, each expert's
score is the mean, over the tokens routed to it, of gate value x the norm of its output;
the lowest-scoring fraction of every layer's experts is physically removed (router rows
included) and the remaining experts' top-k gates renormalise. It works on the layers made
here and on transformers' own MoE blocks with fused 3-D expert weights (Mixtral,
Qwen-MoE: `experts.gate_up_proj` [E, 2I, H], `experts.down_proj` [E, H, I], `gate.weight`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modifiers.base import ModifierState, TransformOnceModifier, forward_batch
from zoo.modifiers.lowrank import replace_params_in_optimizer

#: An upcycled block's kinds: a Linear, or a BERT layer's intermediate + output pair.
LINEAR, BERT_FFN = "linear", "bert_ffn"


class MoELayer(nn.Module):
    """`experts` behind a top-k softmax router; the output is sum_k gate_k * expert_k(x).

    Tokens are the rows of x flattened over every leading dimension. While `tracking` is on
    the layer counts the tokens routed to each expert (the facts measured for the index).
    """

    def __init__(
        self, experts: list[nn.Module], in_features: int, out_features: int, top_k: int
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.top_k = in_features, out_features, top_k
        self.router = nn.Linear(in_features, len(experts), bias=False)
        self.experts = nn.ModuleList(experts)
        self.jitter = 0.0
        self.aux_loss: torch.Tensor | None = None
        self.tracking = False
        self.routed = torch.zeros(len(experts), dtype=torch.long)
        self.tokens = 0
        self._reap: list[torch.Tensor] | None = None  # [score sums, counts] while calibrating

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities [N, E], renormalised top-k gates [N, k] and indices [N, k]."""
        if self.training and self.jitter > 0:
            # Switch's jitter: multiplicative noise on the router input only, while training.
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        probs = F.softmax(self.router(x).float(), dim=-1)
        top, index = torch.topk(probs, self.top_k, dim=-1)
        return probs, top / top.sum(dim=-1, keepdim=True), index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        probs, gates, index = self.route(flat)
        out = flat.new_zeros(flat.shape[0], self.out_features)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(index == e)
            if rows.numel() == 0:
                continue
            y = expert(flat[rows])
            if self._reap is not None:
                self._reap[0][e] += (gates[rows, slot] * y.detach().norm(dim=-1)).sum()
                self._reap[1][e] += rows.numel()
            out.index_add_(0, rows, (y * gates[rows, slot, None]).to(out.dtype))
        counts = torch.bincount(index.flatten(), minlength=self.num_experts)
        # Switch load balancing: fraction of assignments f_e times mean probability P_e.
        share = counts.float() / max(1, index.numel())
        self.aux_loss = self.num_experts * (share * probs.mean(dim=0)).sum()
        if self.tracking:
            self.routed += counts.cpu()
            self.tokens += flat.shape[0]
        return out.reshape(*x.shape[:-1], self.out_features)

    def keep_experts(self, keep: list[int]) -> None:
        """Physically keep only the experts in `keep` (router rows included)."""
        router = nn.Linear(self.in_features, len(keep), bias=False).to(self.router.weight.device)
        with torch.no_grad():
            router.weight.copy_(self.router.weight[keep])
        self.router = router
        self.experts = nn.ModuleList([self.experts[i] for i in keep])
        self.routed = torch.zeros(len(keep), dtype=torch.long)


def bert_expert(layer: Any) -> nn.Sequential:
    """A BERT layer's feed-forward block, dense -> act -> dense, as one module (a copy)."""
    inter, out = layer.intermediate, layer.output
    return nn.Sequential(
        copy.deepcopy(inter.dense),
        copy.deepcopy(inter.intermediate_act_fn),
        copy.deepcopy(out.dense),
    )


def block_kind(module: nn.Module) -> str | None:
    """LINEAR, BERT_FFN, or None when `module` is no feed-forward block this can upcycle."""
    if type(module) is nn.Linear:
        return LINEAR
    inter, out = getattr(module, "intermediate", None), getattr(module, "output", None)
    if isinstance(getattr(inter, "dense", None), nn.Linear) and isinstance(
        getattr(out, "dense", None), nn.Linear
    ):
        return BERT_FFN
    return None


def upcycle(model: nn.Module, name: str, num_experts: int, top_k: int) -> MoELayer:
    """Turn the feed-forward block `name` of `model` into an MoE layer, in place.

    A Linear is replaced by the MoE layer; a BERT layer's intermediate becomes the MoE layer
    (computing the whole block) and its output.dense an Identity, so the residual and
    LayerNorm of BertOutput still apply once.
    """
    block: Any = model.get_submodule(name)
    kind = block_kind(block)
    if kind == LINEAR:
        assert isinstance(block, nn.Linear)
        experts: list[nn.Module] = [copy.deepcopy(block) for _ in range(num_experts)]
        moe = MoELayer(experts, block.in_features, block.out_features, top_k)
        model.set_submodule(name, moe.to(block.weight.device))
    elif kind == BERT_FFN:
        dense = block.output.dense
        experts = [bert_expert(block) for _ in range(num_experts)]
        moe = MoELayer(experts, dense.out_features, dense.out_features, top_k)
        block.intermediate = moe.to(dense.weight.device)
        block.output.dense = nn.Identity()
    else:
        raise TypeError(f"{name} is a {type(block).__name__}, not a feed-forward block")
    return moe


def moe_layers(model: nn.Module) -> Iterator[tuple[str, MoELayer]]:
    for name, module in model.named_modules():
        if isinstance(module, MoELayer):
            yield name, module


def fused_moe_blocks(model: nn.Module) -> Iterator[tuple[str, Any]]:
    """transformers' MoE blocks with fused 3-D expert weights (Mixtral, Qwen-MoE)."""
    for name, module in model.named_modules():
        experts, gate = getattr(module, "experts", None), getattr(module, "gate", None)
        if (
            isinstance(getattr(experts, "gate_up_proj", None), torch.Tensor)
            and isinstance(getattr(experts, "down_proj", None), torch.Tensor)
            and isinstance(getattr(gate, "weight", None), torch.Tensor)
        ):
            yield name, module


def fused_top_k(block: Any) -> int:
    return int(getattr(block, "top_k", None) or block.gate.top_k)


def keep_fused_experts(block: Any, keep: list[int]) -> None:
    """Keep only the experts in `keep` of a fused transformers MoE block, in place."""
    experts, gate = block.experts, block.gate
    with torch.no_grad():
        experts.gate_up_proj = nn.Parameter(experts.gate_up_proj[keep].clone())
        experts.down_proj = nn.Parameter(experts.down_proj[keep].clone())
        gate.weight = nn.Parameter(gate.weight[keep].clone())
        for owner in (experts, gate, block):
            if hasattr(owner, "num_experts"):
                owner.num_experts = len(keep)


def moe_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Module name -> {"kind", "num_experts", "top_k"} of every MoE block of `model`: what
    the saved-model format records to rebuild it (`restructure`)."""
    found: dict[str, dict[str, Any]] = {}
    for name, moe in moe_layers(model):
        kind, block_name = LINEAR, name
        if name.endswith(".intermediate"):
            kind, block_name = BERT_FFN, name.removesuffix(".intermediate")
        found[block_name] = {"kind": kind, "num_experts": moe.num_experts, "top_k": moe.top_k}
    for name, fused in fused_moe_blocks(model):
        found[name] = {
            "kind": "fused",
            "num_experts": int(fused.experts.gate_up_proj.shape[0]),
            "top_k": fused_top_k(fused),
        }
    return found


def restructure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> nn.Module:
    """Give a freshly built model the MoE blocks `moe_structure` recorded, in place; the
    weights loaded next replace the copies' values."""
    for name, spec in structure.items():
        n, k = int(spec["num_experts"]), int(spec["top_k"])
        if spec["kind"] == "fused":
            keep_fused_experts(model.get_submodule(name), list(range(n)))
        else:
            upcycle(model, name, n, k)
    return model


def total_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(kw_only=True)
class MoEUpcyclingModifier(TransformOnceModifier):
    """Upcycle the feed-forward blocks named in `blocks` into `num_experts` experts each,
    routed top-`top_k`; adds `balance_loss` x the Switch load-balancing loss while active.

    Acts once: one-shot, or at `start_epoch` of a train stage (the optimizer is updated in
    place, so the experts and the router train from there on).
    """

    conflict_group: ClassVar[str | None] = "structure"

    blocks: list[str]
    num_experts: int = 4
    top_k: int = 1
    jitter: float = 0.0
    balance_loss: float = 0.01

    def check(self) -> None:
        super().check()
        if not self.blocks:
            raise self.field_error("blocks", "name at least one feed-forward block")
        for a in self.blocks:
            inside = [b for b in self.blocks if b == a or b.startswith(f"{a}.")]
            if len(inside) > 1:
                raise self.field_error(
                    "blocks", f"{inside} overlap: list each feed-forward block once"
                )
        if self.num_experts < 2:
            raise self.field_error("num_experts", f"must be >= 2, got {self.num_experts}")
        if not 1 <= self.top_k <= self.num_experts:
            raise self.field_error(
                "top_k",
                f"must be in 1..num_experts ({self.num_experts}), got {self.top_k}",
            )
        if not 0.0 <= self.jitter < 1.0:
            raise self.field_error("jitter", f"must be in [0, 1), got {self.jitter}")
        if self.balance_loss < 0:
            raise self.field_error("balance_loss", f"must be >= 0, got {self.balance_loss}")

    def targets(self, model: nn.Module) -> list[str]:
        """The parameters of the blocks it replaces (for the recipe's conflict check)."""
        names = [n for n, _ in model.named_parameters()]
        return [n for n in names if any(n.startswith(f"{b}.") for b in self.blocks)]

    def _check_blocks(self, model: nn.Module) -> None:
        """Every block exists and is a feed-forward block, before anything is changed."""
        for name in self.blocks:
            try:
                block = model.get_submodule(name)
            except AttributeError:
                raise self.field_error(
                    "blocks", f"the model has no module {name!r} to upcycle"
                ) from None
            if block_kind(block) is None:
                raise self.field_error(
                    "blocks",
                    f"{name!r} is a {type(block).__name__}, not a feed-forward block; "
                    "upcycle a Linear or a BERT layer (its intermediate + output pair)",
                )

    def apply(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> Any:
        self._check_blocks(model)
        for name in self.blocks:
            old = list(model.get_submodule(name).parameters())
            moe = upcycle(model, name, self.num_experts, self.top_k)
            moe.jitter = self.jitter
            if optimizer is not None:
                replace_params_in_optimizer(optimizer, old, list(moe.parameters()))
        self._done = True

    def loss_update(
        self, loss: torch.Tensor, state: ModifierState, *, inputs: Any = None, outputs: Any = None
    ) -> torch.Tensor:
        if not self._done or not self.active(state) or self.balance_loss == 0:
            return loss
        terms = [m.aux_loss for _, m in moe_layers(state.model) if m.aux_loss is not None]
        return loss + self.balance_loss * torch.stack(terms).sum() if terms else loss


@dataclass(kw_only=True)
class ExpertPruningModifier(TransformOnceModifier):
    """REAP: drop `sparsity` of each MoE layer's experts, lowest score first, one-shot.

    score_e = mean over calibration tokens routed to e of gate x ||expert_e(x)||; experts
    no token reached score 0. At least `top_k` experts must remain in every layer.
    """

    conflict_group: ClassVar[str | None] = "structure"
    field_aliases: ClassVar[dict[str, str]] = {"expert_sparsity": "sparsity"}

    sparsity: float = 0.5

    def check(self) -> None:
        super().check()
        if not 0.0 < self.sparsity < 1.0:
            raise self.field_error("sparsity", f"must be in (0, 1), got {self.sparsity}")

    def kept_count(self, num_experts: int) -> int:
        return num_experts - round(self.sparsity * num_experts)

    def _plan(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        """Layer name -> (experts, top_k); raises before anything changes if one is left
        with fewer experts than it routes to."""
        plan = {name: (m.num_experts, m.top_k) for name, m in moe_layers(model)}
        for name, block in fused_moe_blocks(model):
            plan[name] = (int(block.experts.gate_up_proj.shape[0]), fused_top_k(block))
        if not plan:
            raise self.field_error(
                "type",
                "the model has no MoE layer to prune; upcycle it first (MoEUpcyclingModifier)",
            )
        for name, (experts, top_k) in plan.items():
            if self.kept_count(experts) < top_k:
                raise self.field_error(
                    "sparsity",
                    f"pruning {self.sparsity:.0%} of {name!r}'s {experts} experts leaves "
                    f"{self.kept_count(experts)}, fewer than its top_k ({top_k})",
                )
        return plan

    def apply_oneshot(self, state: ModifierState) -> None:
        self.apply(state.model, state.optimizer, state.calibration)

    def apply(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        calibration: Any = None,
    ) -> dict[str, list[int]]:
        """Prune now; returns layer name -> indices of the experts kept."""
        plan = self._plan(model)
        if not calibration:
            raise self.field_error(
                "type", "REAP scores experts on calibration data; none was given"
            )
        scores = reap_scores(model, calibration)
        kept: dict[str, list[int]] = {}
        for name, (experts, _) in plan.items():
            order = torch.argsort(scores[name], descending=True, stable=True)
            keep = sorted(order[: self.kept_count(experts)].tolist())
            module = model.get_submodule(name)
            old = list(module.parameters())
            if isinstance(module, MoELayer):
                module.keep_experts(keep)
            else:
                keep_fused_experts(module, keep)
            if optimizer is not None:
                replace_params_in_optimizer(optimizer, old, list(module.parameters()))
            kept[name] = keep
        _sync_hf_config(model)
        self._done = True
        return kept


def _sync_hf_config(model: nn.Module) -> None:
    """A transformers model's config names its expert count; keep it true after pruning
    (every layer loses the same fraction, so one count holds for all)."""
    counts = {int(b.experts.gate_up_proj.shape[0]) for _, b in fused_moe_blocks(model)}
    config = getattr(getattr(model, "model", model), "config", None)
    if len(counts) != 1 or config is None:
        return
    for key in ("num_local_experts", "num_experts"):
        if hasattr(config, key):
            setattr(config, key, next(iter(counts)))


@torch.no_grad()
def reap_scores(model: nn.Module, calibration: Any) -> dict[str, torch.Tensor]:
    """Layer name -> REAP score per expert, measured on the calibration batches."""
    sums: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, moe in moe_layers(model):
        moe._reap = sums.setdefault(
            name, [torch.zeros(moe.num_experts), torch.zeros(moe.num_experts)]
        )
    for name, block in fused_moe_blocks(model):
        n = int(block.experts.gate_up_proj.shape[0])
        acc = sums.setdefault(name, [torch.zeros(n), torch.zeros(n)])
        handles.append(block.experts.register_forward_pre_hook(_fused_reap_hook(acc)))
    was_training = model.training
    model.eval()
    try:
        for batch in calibration:
            forward_batch(model, batch)
    finally:
        model.train(was_training)
        for _, moe in moe_layers(model):
            moe._reap = None
        for handle in handles:
            handle.remove()
    return {name: total / count.clamp(min=1) for name, (total, count) in sums.items()}


def _fused_reap_hook(acc: list[torch.Tensor]) -> Any:
    """A pre-hook on fused experts(hidden, top_k_index, top_k_weights) adding REAP sums."""

    def hook(experts: Any, args: tuple[Any, ...]) -> None:
        hidden, index, weights = args[:3]
        for e in range(int(experts.gate_up_proj.shape[0])):
            rows, slot = torch.where(index == e)
            if rows.numel() == 0:
                continue
            gate, up = F.linear(hidden[rows], experts.gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(experts.act_fn(gate) * up, experts.down_proj[e])
            acc[0][e] += (weights[rows, slot].float() * y.float().norm(dim=-1)).sum()
            acc[1][e] += rows.numel()

    return hook


def expert_parameters(moe: MoELayer) -> list[int]:
    return [sum(p.numel() for p in e.parameters()) for e in moe.experts]


def active_share(model: nn.Module) -> tuple[float, dict[str, list[float]]]:
    """Parameters of MoE experts NOT used per token on average (from the tracked routing),
    and each layer's expert load (share of its routed assignments per expert)."""
    unused, load = 0.0, {}
    for name, moe in moe_layers(model):
        if moe.tokens == 0:
            continue
        sizes = expert_parameters(moe)
        used_per_token = (
            sum(s * int(c) for s, c in zip(sizes, moe.routed, strict=True)) / moe.tokens
        )
        unused += sum(sizes) - used_per_token
        total = max(1, int(moe.routed.sum()))
        load[name] = [round(int(c) / total, 4) for c in moe.routed]
    return unused, load


def set_tracking(model: nn.Module, on: bool) -> None:
    for _, moe in moe_layers(model):
        moe.tracking = on
        moe.routed = torch.zeros(moe.num_experts, dtype=torch.long)
        moe.tokens = 0
