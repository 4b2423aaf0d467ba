"""The zoo's MiniLM text classifier as a transformers model class (remote code).

The zoo's `minilm_classifier` pools the encoder's tokens by their attention-masked mean
(as sentence-transformers does) where transformers' BertForSequenceClassification takes
the [CLS] token through a tanh pooler, so no built-in class computes the same logits.
zoo/deploy/compressed_tensors.py copies this file into the folders it writes and names it
in config.json's `auto_map`: `AutoModelForSequenceClassification.from_pretrained(folder,
trust_remote_code=True)` then runs the zoo's model, and `AutoModel.from_pretrained(folder)`
(no remote code) loads the encoder alone.

This file is copied on its own, so it imports only torch and transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolingBertForSequenceClassification(BertPreTrainedModel):
    """BERT encoder, attention-masked mean pooling, dropout, linear classifier."""

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels: int = config.num_labels or 2
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            assert input_ids is not None
            attention_mask = torch.ones_like(input_ids)
        states = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
