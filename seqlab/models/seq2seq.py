"""Encoder-decoder network built from a ``ModelConfig``."""

from __future__ import annotations

import torch
from torch import nn

from seqlab.config import ModelConfig
from seqlab.models.attention import build_attention
from seqlab.models.decoders import RNNDecoder
from seqlab.models.encoders import EncoderOutput, RNNEncoder


def init_uniform(module: nn.Module, init_range: float) -> None:
    """uniform(-r, r) for every parameter (OpenNMT-py's default, which learns fast on Multi30k);
    padding embeddings stay zero."""
    if init_range <= 0:
        return
    for p in module.parameters():
        nn.init.uniform_(p, -init_range, init_range)
    for m in module.modules():
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()


class Seq2Seq(nn.Module):
    """``RNNEncoder`` over the source, ``RNNDecoder`` (with injected attention) over the target."""

    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0):
        super().__init__()
        self.encoder = RNNEncoder(
            cfg.cell, src_vocab_size, cfg.emb_size, cfg.hidden_size, cfg.num_layers,
            cfg.bidirectional, cfg.dropout, pad_id,
        )
        attention = build_attention(cfg.attention, cfg.hidden_size, cfg.hidden_size)
        self.decoder = RNNDecoder(
            cfg.cell, tgt_vocab_size, cfg.emb_size, cfg.hidden_size, cfg.hidden_size,
            cfg.num_layers, cfg.dropout, attention, cfg.attention_style, cfg.input_feeding,
            cfg.decoder_init, cfg.fixed_context, cfg.tie_embeddings, pad_id,
        )
        init_uniform(self, cfg.init_range)
        if cfg.tie_embeddings:  # re-tie after init (uniform_ replaced no storage, but be explicit)
            self.decoder.generator.weight = self.decoder.embed.weight

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> EncoderOutput:
        return self.encoder(src, src_len)

    def forward(self, src, src_len, tgt_in, teacher_forcing: float = 1.0, features_only: bool = False):
        """Logits B x T x V (or the output layer's input, ``features_only``) and attention weights
        B x T x S (None without attention)."""
        return self.decoder(tgt_in, self.encode(src, src_len), teacher_forcing, features_only)
