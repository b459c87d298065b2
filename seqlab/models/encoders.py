"""Recurrent encoders over padded token batches (packed, optionally bidirectional)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
CELL_CLASSES: dict[str, type[nn.Module]] = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, **kw) -> nn.RNNBase:
    """``nn.RNN`` (tanh), ``nn.GRU`` or ``nn.LSTM``, batch-first."""
    cell = getattr(cell, "value", cell)
    extra = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return RNN_CLASSES[cell](input_size, hidden_size, num_layers, batch_first=True, **extra, **kw)


@dataclass
class EncoderOutput:
    """memory: B x S x H states; mask: B x S (True = real token); final: per-layer final states
    with directions concatenated, L x B x H (a tuple (h, c) for LSTM)."""

    memory: torch.Tensor
    mask: torch.Tensor
    final: torch.Tensor | tuple[torch.Tensor, torch.Tensor]

    @property
    def summary(self) -> torch.Tensor:
        """B x H: the top layer's final hidden state (the classic fixed-size sentence vector)."""
        h = self.final[0] if isinstance(self.final, tuple) else self.final
        return h[-1]


class RNNEncoder(nn.Module):
    """Embedding -> dropout -> packed (bi)RNN. ``hidden_size`` is the total over directions."""

    def __init__(
        self,
        cell: str,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        pad_id: int = 0,
    ):
        super().__init__()
        directions = 2 if bidirectional else 1
        if hidden_size % directions:
            raise ValueError(f"model.hidden_size={hidden_size} must be even for a bidirectional encoder")
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(
            cell,
            emb_size,
            hidden_size // directions,
            num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.num_layers, self.directions, self.hidden_size = num_layers, directions, hidden_size

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """src: B x S ids, lengths: B."""
        B, S = src.shape
        emb = self.dropout(self.embed(src))  # B x S x E
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # B x S x H
        mask = torch.arange(S, device=src.device)[None, :] < lengths.to(src.device)[:, None]
        if isinstance(final, tuple):
            final = (self._merge(final[0]), self._merge(final[1]))
        else:
            final = self._merge(final)
        return EncoderOutput(memory, mask, final)

    def _merge(self, h: torch.Tensor) -> torch.Tensor:
        """(L*D) x B x H/D -> L x B x H, forward and backward final states side by side."""
        LD, B, Hd = h.shape
        h = h.view(self.num_layers, self.directions, B, Hd)
        return torch.cat([h[:, d] for d in range(self.directions)], dim=-1)
