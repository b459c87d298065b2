"""Recurrent encoders over padded token batches (packed, optionally bidirectional)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.models.dropout import Dropout, dropout
from seqlab.models.fused_encoder import lstm_layer
from seqlab.models.shared_weight import SharedWeight

RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
CELL_CLASSES: dict[str, type[nn.Module]] = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, **kw) -> nn.RNNBase:
    """``nn.RNN`` (tanh), ``nn.GRU`` or ``nn.LSTM``, batch-first."""
    cell = getattr(cell, "value", cell)
    extra = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    return RNN_CLASSES[cell](input_size, hidden_size, num_layers, batch_first=True, **extra, **kw)


def length_mask(lengths: torch.Tensor, S: int) -> torch.Tensor:
    """B x S, True at real positions."""
    return torch.arange(S, device=lengths.device)[None, :] < lengths[:, None]


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x: B x S x F -> each row's first ``lengths[b]`` steps reversed, padding left at the end.

    Its own inverse."""
    S = x.size(1)
    pos = torch.arange(S, device=x.device)[None, :]  # 1 x S
    n = lengths.to(x.device)[:, None]  # B x 1
    idx = torch.where(pos < n, n - 1 - pos, pos)  # B x S
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


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
        fused: bool = True,
    ):
        super().__init__()
        directions = 2 if bidirectional else 1
        if hidden_size % directions:
            raise ValueError(f"model.hidden_size={hidden_size} must be even for a bidirectional encoder")
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.dropout = Dropout(dropout)
        self.rnn = make_rnn(
            cell,
            emb_size,
            hidden_size // directions,
            num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.num_layers, self.directions, self.hidden_size = num_layers, directions, hidden_size
        # CPU: run the recurrence with ``masked_rnn`` (same parameters and mathematics as the packed
        # nn.RNN/GRU/LSTM, several times fewer kernels); False: PyTorch's packed kernels.
        self.fused = fused

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, emb: torch.Tensor | None = None) -> EncoderOutput:
        """src: B x S ids, lengths: B; ``emb``: B x S x E vectors to read instead of ``src``'s embeddings."""
        B, S = src.shape
        emb = self.dropout(self.embed(src) if emb is None else emb)  # B x S x E
        mask = length_mask(lengths.to(src.device), S)
        if self.fused and emb.device.type == "cpu":
            memory, final = masked_rnn(self.rnn, emb, lengths.to(src.device), mask)
        else:
            packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, final = self.rnn(packed)
            memory, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # B x S x H
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


# ----------------------------------------------------------------------------- masked recurrence
def _cell_step(cell: str, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One RNN or GRU step of D directions at once. gi: B x D x G input part (biases in), gh: B x D x G
    recurrent part (GRU: with b_hh); h: B x D x H. Gate order as in PyTorch."""
    if cell == "gru":
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h
    return torch.tanh(gi + gh)


def _masked_layer(cell: str, gi_all: torch.Tensor, w: SharedWeight, bh: torch.Tensor | None, keep: torch.Tensor,
                  H: int):
    """One RNN or GRU layer step by step under autograd: gi_all S x B x D x G, keep S x B x 1 x 1.
    Returns (outputs B x S x D x H, zero at padding; final h B x D x H)."""
    S, B, D, _ = gi_all.shape
    h = gi_all.new_zeros(B, D, H)
    outs = []
    for gi, m in zip(gi_all.unbind(0), keep.unbind(0), strict=True):  # unbind: no zero-filled grads per step
        gh = w.bmm(h.transpose(0, 1)).transpose(0, 1)  # B x D x G (matmul dtype; the cell's sums promote)
        if bh is not None:
            gh = gh + bh
        h_new = _cell_step(cell, gi, gh, h)
        h = torch.where(m, h_new, h)
        outs.append(h_new * m)
    return torch.stack(outs, dim=1), h


def masked_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
    """The packed ``rnn(pack_padded_sequence(x, lengths))`` computed over the padded batch.

    Both directions advance together, one batched matmul per step: the backward direction reads each
    sentence reversed within its own length, and the final states are those at each sentence's last
    token, as with packing. The input projections of all steps are one matmul per layer. LSTM layers
    run as one hand-written autograd node (``models.fused_encoder``); RNN and GRU step by step, a
    state held after the sentence's end. Returns (outputs B x S x D*H, zero at padding;
    final h (L*D) x B x H, or the (h, c) pair for LSTM), as ``nn.RNNBase`` with packed input does.
    """
    cell = {"LSTM": "lstm", "GRU": "gru"}.get(rnn.mode, "rnn")
    B, S, _ = x.shape
    D, H, L = 2 if rnn.bidirectional else 1, rnn.hidden_size, rnn.num_layers
    keep = mask.t()[:, :, None, None]  # S x B x 1 x 1 (RNN, GRU)
    dev = x.device.type
    cdtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype  # matmuls
    sdtype = torch.promote_types(x.dtype, torch.float32)  # state and cell arithmetic
    finals_h, finals_c = [], []
    for layer in range(L):
        if layer > 0:
            x = dropout(x, rnn.dropout, rnn.training)
        gis, w_hh, b_hh = [], [], []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, b_ih = getattr(rnn, "weight_ih" + sfx), getattr(rnn, "bias_ih" + sfx)
            bh = getattr(rnn, "bias_hh" + sfx)
            xd = x if d == 0 else reverse_padded(x, lengths)
            gis.append(F.linear(xd, w_ih, b_ih if cell == "gru" else b_ih + bh))  # B x S x G
            w_hh.append(getattr(rnn, "weight_hh" + sfx))
            b_hh.append(bh)
        # the cell arithmetic and the state stay fp32 under autocast, only matmuls drop
        w_hh = torch.stack(w_hh).transpose(1, 2).to(cdtype)  # D x H x G, cast once per batch
        if cell == "lstm":  # the whole layer in one autograd node (models.fused_encoder)
            gi_all = torch.stack(gis).permute(2, 0, 1, 3).to(sdtype, memory_format=torch.contiguous_format)
            out, h, c = lstm_layer(gi_all, w_hh, lengths, mask)  # S x D x B x H; D x B x H
            out = out.permute(2, 0, 1, 3)  # B x S x D x H
            finals_h.append(h)
            finals_c.append(c)
        else:
            out, h = _masked_layer(cell, torch.stack(gis, dim=2).transpose(0, 1).to(sdtype), SharedWeight(w_hh),
                                   torch.stack(b_hh)[None].to(sdtype) if cell == "gru" else None, keep, H)
            finals_h.append(h.transpose(0, 1))
        if D == 2:  # the backward direction's outputs back to source order
            back = reverse_padded(out[:, :, 1], lengths)
            out = torch.stack([out[:, :, 0], back], dim=2)
        x = out.reshape(B, S, D * H)
    h_n = torch.cat(finals_h)  # (L*D) x B x H, layer-major as in PyTorch
    return x, ((h_n, torch.cat(finals_c)) if cell == "lstm" else h_n)
