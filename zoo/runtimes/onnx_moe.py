"""Mixture-of-experts layers in a form an ONNX graph can hold, swapped in only for export.

`zoo.modifiers.moe.MoELayer` runs each expert on the tokens routed to it: which rows go to
which expert is data-dependent control flow, and tracing records the route of the example
as fixed (the graph then computes something else on other inputs). The export form here
has no such flow: every expert runs on every token, and the top-k gates, computed by the
layer's own `route` (softmax, top-k, renormalised), are scattered into a dense
[tokens, experts] matrix with zeros for the experts a token is not routed to; the output
is that matrix times the stacked expert outputs. For every token this is the same sum the
torch layer computes (an unrouted expert adds 0 x its output).

The price is FLOPs: on ONNX Runtime (and OpenVINO) an MoE layer costs all its experts for
every token, so an MoE entry's latency there is that of a model `num_experts` times as
wide in those layers, not the conditional saving torch's routed layer has.

Ties: the graph's TopK keeps the lower expert index of two equal router probabilities (the
ONNX specification); torch.topk's order for ties on the CPU is unspecified (a partial sort:
four equal probabilities, top-1, pick expert 2). Exact ties of float router probabilities
do not occur on real inputs to a trained router; where they do, the two may route
differently.

The torch model and its saved format are untouched: the swap acts on a copy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from zoo.modifiers.moe import MoELayer, moe_layers


class AllExpertsMoE(nn.Module):
    """`layer` computed as sum_e dense_gate_e(x) * expert_e(x) over all experts."""

    def __init__(self, layer: MoELayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Every leading dimension is a token dimension: no reshape, so the traced graph
        # keeps the batch and sequence axes dynamic.
        probs, gates, index = self.layer.route(x)
        dense = torch.zeros_like(probs).scatter(-1, index, gates)  # [..., E]
        outputs = torch.stack([expert(x) for expert in self.layer.experts], dim=-2)
        return (outputs * dense.unsqueeze(-1).to(outputs.dtype)).sum(dim=-2)


def with_all_experts(model: nn.Module) -> nn.Module:
    """`model` itself when it has no MoE layer, else a copy whose MoE layers compute
    every expert (AllExpertsMoE), for export."""
    if next(moe_layers(model), None) is None:
        return model
    model = copy.deepcopy(model)
    for name, layer in list(moe_layers(model)):
        model.set_submodule(name, AllExpertsMoE(layer))
    return model
