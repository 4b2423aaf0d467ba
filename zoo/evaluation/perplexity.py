"""Perplexity of a causal LM: exp(mean next-token negative log-likelihood), padding ignored.

The model is any module whose forward(input_ids, attention_mask) returns logits shaped
(batch, tokens, vocabulary), such as the `hf` architecture's causal LMs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F


def perplexity(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> float:
    """Perplexity of `model` over `batches` of {"input_ids", "attention_mask"}."""
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                ids = batch["input_ids"]
                mask = batch.get("attention_mask", torch.ones_like(ids))
                logits = model(input_ids=ids, attention_mask=mask)
                if logits.dim() != 3:
                    raise ValueError(
                        f"perplexity needs per-token logits (batch, tokens, vocabulary); the "
                        f"model returned shape {tuple(logits.shape)}: is it a causal LM?"
                    )
                nll = F.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none"
                )
                keep = mask[:, 1:].flatten().bool()
                total += float(nll[keep].sum())
                count += int(keep.sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("perplexity needs at least one predicted token; the batches had none")
    return math.exp(total / count)
