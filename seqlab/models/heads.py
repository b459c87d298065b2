"""Networks for the many-to-one and many-to-many text tasks, built from a ``ModelConfig``.

- ``SequenceClassifier``: (bi)RNN encoder -> pooled sentence vector -> class logits. Pooling is the
  final hidden state of both directions, or (``*_attn`` models) attention with a learned query.
- ``SequenceTagger``: word embedding (+ character features of each word) -> biRNN -> a label per
  token; ``*_attn`` models also attend over the sentence at each position.
- ``ProbabilityAverage``: several such networks as one (an ensemble): the mean of their class
  (or per-token tag) probabilities.
- ``CharLM``: embedding -> unidirectional RNN whose state is carried between chunks -> next
  character; ``*_attn`` models attend over the previous ``window`` states (carried too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.config import ModelConfig, plain
from seqlab.errors import SeqlabError
from seqlab.models.attention import Attention, build_attention
from seqlab.models.dropout import Dropout, dropout
from seqlab.models.encoders import RNNEncoder, length_mask, make_rnn, reverse_padded
from seqlab.models.seq2seq import init_uniform


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x: B x S x E padded, lengths: B (>= 1) -> outputs B x S x H (zeros at padding)."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


_RNN_FUNCTIONS = {"RNN": torch.rnn_tanh, "GRU": torch.gru, "LSTM": torch.lstm}


def run_padded(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The same outputs as ``run_packed`` (B x S x H, zeros at padding), computed without packing.

    Each layer and direction runs over the whole padded batch: forward states at real positions
    never see the padding after them, and the backward direction reads each row reversed within
    its length (``reverse_padded``), so its padding is at the end too. Padded input lets
    ``nn.LSTM`` use oneDNN's fused CPU kernel instead of a loop over time steps (several times
    faster on a CPU; see docs/text_tasks.md). The module's own weights are used, so checkpoints
    are the same either way; dropout between layers is applied as ``nn.RNNBase`` does.
    """
    if rnn.proj_size or not rnn.batch_first or getattr(rnn, "nonlinearity", "tanh") != "tanh":
        raise ValueError("run_padded: batch-first RNNs without projections (and tanh for nn.RNN) only")
    fn = _RNN_FUNCTIONS[type(rnn).__name__]
    B, S, _ = x.shape
    H = rnn.hidden_size
    lengths = lengths.to(x.device)
    suffixes = ["", "_reverse"] if rnn.bidirectional else [""]
    out = x
    for layer in range(rnn.num_layers):
        if layer:
            out = dropout(out, rnn.dropout, rnn.training)
        dirs = []
        for suffix in suffixes:
            names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
            if rnn.bias:
                names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
            params = [getattr(rnn, n) for n in names]
            inp = reverse_padded(out, lengths) if suffix else out
            h0 = inp.new_zeros(1, B, H)
            hx = (h0, h0) if fn is torch.lstm else h0
            y = fn(inp, hx, params, rnn.bias, 1, 0.0, rnn.training, False, True)[0]  # B x S x H
            dirs.append(reverse_padded(y, lengths) if suffix else y)
        out = torch.cat(dirs, dim=-1) if len(dirs) > 1 else dirs[0]
    return out.masked_fill(~length_mask(lengths, S).unsqueeze(-1), 0.0)


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor, packed: bool = True) -> torch.Tensor:
    """``run_packed`` or ``run_padded`` (same result at real positions)."""
    return run_packed(rnn, x, lengths) if packed else run_padded(rnn, x, lengths)


def final_states(memory: torch.Tensor, lengths: torch.Tensor, bidirectional: bool) -> torch.Tensor:
    """memory: B x S x H top-layer outputs -> B x H: the forward direction at the last real token,
    the backward direction at the first (what ``EncoderOutput.summary`` holds)."""
    B, _, H = memory.shape
    last = memory[torch.arange(B, device=memory.device), lengths.to(memory.device) - 1]  # B x H
    if not bidirectional:
        return last
    return torch.cat([last[:, : H // 2], memory[:, 0, H // 2 :]], dim=-1)


# ------------------------------------------------------------------------------ many-to-one
class AttentionPooling(nn.Module):
    """A learned query attends over the encoder states: ``(context B x H, weights B x S)``."""

    def __init__(self, kind: str, size: int):
        super().__init__()
        self.attention = build_attention(kind, size, size)
        self.query = nn.Parameter(torch.empty(size).uniform_(-0.1, 0.1))

    def forward(self, memory: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = memory.size(0)
        keys = self.attention.project_keys(memory)  # B x S x K
        return self.attention(self.query.expand(B, -1), keys, memory, mask)


class SequenceClassifier(nn.Module):
    """Text -> class logits. ``pooling``: final | max | mean | concat | attention (see ``config.Pooling``).
    ``hidden`` > 0: the pooled vector passes a ReLU layer of that size (dropout before and after it)
    on its way to the logits, as in ULMFiT's classifier; 0: one linear layer."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int, pad_id: int, pooling: str,
                 packed: bool = True, hidden: int = 0):
        super().__init__()
        self.packed = packed  # False: run_padded (same result; oneDNN's fused LSTM on a CPU)
        self.encoder = RNNEncoder(cfg.cell, vocab_size, cfg.emb_size, cfg.hidden_size, cfg.num_layers,
                                  cfg.bidirectional, cfg.dropout, pad_id)
        if pooling == "attention" and plain(cfg.attention) == "none":
            raise SeqlabError("task.pooling=attention needs a model with attention (model.attention != none)")
        self.pooling = pooling
        H = cfg.hidden_size
        self.pool = AttentionPooling(plain(cfg.attention), H) if pooling == "attention" else None
        self.dropout = Dropout(cfg.dropout)
        pooled = 3 * H if pooling == "concat" else H
        self.hidden = nn.Linear(pooled, hidden) if hidden > 0 else None
        self.out = nn.Linear(hidden or pooled, num_classes)
        init_uniform(self, cfg.init_range)

    def classify(self, vec: torch.Tensor, out: nn.Linear | None = None) -> torch.Tensor:
        """The pooled sentence vectors B x D -> class logits B x C (through ``out`` instead of the
        own output layer: another label set over the same network, ``task.label_pretrain``)."""
        x = self.dropout(vec)
        if self.hidden is not None:
            x = self.dropout(torch.relu(self.hidden(x)))
        return (out or self.out)(x)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """src: B x S ids -> logits B x C, attention weights B x S (None unless attention pooling)."""
        vec, weights = self.pool_text(src, lengths)
        return self.classify(vec), weights

    def pool_text(self, src: torch.Tensor, lengths: torch.Tensor,
                  emb: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """src: B x S ids -> the pooled vectors B x D, attention weights B x S (or None).
        ``emb``: the word vectors B x S x E to read instead of ``src``'s embeddings (perturbed ones,
        ``task.adversarial``)."""
        e = self.encoder
        if self.packed:
            enc = e(src, lengths, emb)
            memory, mask = enc.memory, enc.mask  # B x S x H, B x S
        else:
            memory = run_padded(e.rnn, e.dropout(e.embed(src) if emb is None else emb), lengths)  # B x S x H
            mask = length_mask(lengths.to(src.device), src.size(1))
        if self.pooling == "attention":
            return self.pool(memory, mask)  # B x H, B x S
        pooled = {}
        if self.pooling in ("max", "concat"):
            pooled["max"] = memory.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
        if self.pooling in ("mean", "concat"):
            pooled["mean"] = memory.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # padding states are 0
        if self.pooling in ("final", "concat"):
            # B x H: the last forward state and the first backward state of the top layer
            pooled["final"] = enc.summary if self.packed else final_states(memory, lengths, self.encoder.directions == 2)
        return torch.cat([pooled[k] for k in ("final", "max", "mean") if k in pooled], dim=-1), None


# ----------------------------------------------------------------------------- many-to-many
class CharCNN(nn.Module):
    """Characters of each word -> embedding -> 1-D convolution (width 3) -> max over the word."""

    def __init__(self, n_chars: int, emb_size: int, out_size: int):
        super().__init__()
        self.embed = nn.Embedding(n_chars, emb_size, padding_idx=0)
        self.conv = nn.Conv1d(emb_size, out_size, kernel_size=3, padding=1)
        self.out_size = out_size

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """chars: N x L ids (0 = padding) -> N x out_size."""
        x = self.embed(chars).transpose(1, 2)  # N x E x L
        h = torch.relu(self.conv(x))  # N x F x L
        h = h.masked_fill((chars == 0).unsqueeze(1), 0.0)  # relu >= 0, so padding never wins the max
        return h.max(dim=2).values


class CharBiLSTM(nn.Module):
    """Characters of each word -> BiLSTM -> final states of both directions.

    Padded (``packed=False``), the words are sorted by length and run in ``groups`` slices, each
    trimmed to its longest word: most words are short, so this reads far fewer padding steps than
    one N x L batch (the final states are the same).
    """

    def __init__(self, n_chars: int, emb_size: int, out_size: int, packed: bool = True, groups: int = 4):
        super().__init__()
        self.embed = nn.Embedding(n_chars, emb_size, padding_idx=0)
        self.rnn = nn.LSTM(emb_size, out_size // 2, batch_first=True, bidirectional=True)
        self.out_size, self.packed, self.groups = 2 * (out_size // 2), packed, groups

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """chars: N x L ids (0 = padding) -> N x out_size."""
        lengths = (chars != 0).sum(1).clamp(min=1)
        if not self.packed:
            order = lengths.argsort(descending=True)
            out = []
            for rows in order.tensor_split(min(self.groups, len(order))):  # longest slice first
                n = lengths[rows]
                x = self.embed(chars[rows, : int(n[0])])  # n x L' x E
                out.append(final_states(run_padded(self.rnn, x, n), n, True))
            return torch.cat(out).index_select(0, order.argsort())  # back to the input order
        packed = pack_padded_sequence(self.embed(chars), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)  # 2 x N x out/2
        return torch.cat([h[0], h[1]], dim=-1)


def word_char_inputs(embed: nn.Embedding, fixed_embed: nn.Embedding | None, chars: nn.Module | None,
                     words: torch.Tensor, char_rows: torch.Tensor | None, char_index: torch.Tensor | None) -> torch.Tensor:
    """A tagger's RNN input: word embeddings (B x S ids; plus the frozen ``fixed_embed``) joined
    with the character features of the U distinct spellings ``char_rows`` (U x L), which
    ``char_index`` (B x S) gathers back to the positions. B x S x (E + F)."""
    x = embed(words)
    if fixed_embed is not None:
        x = x + fixed_embed(words)
    if chars is None:
        return x
    return torch.cat([x, chars(char_rows)[char_index]], dim=-1)


class SequenceTagger(nn.Module):
    """Tokens (+ their characters) -> biRNN -> (attention over the sentence) -> tag logits."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_tags: int, pad_id: int,
                 char_features: str = "none", n_chars: int = 0, char_emb_size: int = 32, char_hidden_size: int = 64,
                 packed: bool = True, fixed_embeddings: bool = False, aux_tags: Sequence[int] = ()):
        super().__init__()
        self.packed = packed  # False: run_padded (same result; oneDNN's fused LSTM on a CPU)
        self.embed = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=pad_id)
        # task.embeddings.residual: frozen pretrained vectors, added to the trainable embedding
        self.fixed_embed = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=pad_id) if fixed_embeddings else None
        if char_features == "cnn":
            self.chars = CharCNN(n_chars, char_emb_size, char_hidden_size)
        elif char_features == "lstm":
            self.chars = CharBiLSTM(n_chars, char_emb_size, char_hidden_size, packed)
        else:
            self.chars = None
        in_size = cfg.emb_size + (self.chars.out_size if self.chars is not None else 0)
        directions = 2 if cfg.bidirectional else 1
        if cfg.hidden_size % directions:
            raise SeqlabError(f"model.hidden_size={cfg.hidden_size} must be even for a bidirectional encoder")
        self.dropout = Dropout(cfg.dropout)
        self.rnn = make_rnn(cfg.cell, in_size, cfg.hidden_size // directions, cfg.num_layers,
                            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        H = cfg.hidden_size
        self.attention = build_attention(cfg.attention, H, H)
        self.combine = nn.Linear(2 * H, H) if self.attention is not None else None
        self.out = nn.Linear(H, num_tags)
        # more tag sets read off the same states (multi-task: XPOS, FEATS, ... beside UPOS)
        self.aux_out = nn.ModuleList(nn.Linear(H, n) for n in aux_tags)
        init_uniform(self, cfg.init_range)
        if self.fixed_embed is not None:
            self.fixed_embed.weight.requires_grad_(False)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor | None = None,
                char_index: torch.Tensor | None = None, with_aux: bool = False):
        """words: B x S ids, lengths: B -> logits B x S x T, attention weights B x S x S (or None)
        (and with ``with_aux`` a third item: the logits of each auxiliary tag set).

        chars: B x S x L character ids per position, or U x L for U distinct words with
        ``char_index`` (B x S) naming each position's row (each distinct word's features once).
        """
        return self.tag(self.inputs(words, chars, char_index), lengths, with_aux)

    def inputs(self, words: torch.Tensor, chars: torch.Tensor | None = None,
               char_index: torch.Tensor | None = None) -> torch.Tensor:
        """The RNN's input vectors B x S x (E + F), before dropout (``forward``'s arguments)."""
        B, S = words.shape
        if chars is not None and char_index is None:
            chars, char_index = chars.view(B * S, -1), torch.arange(B * S, device=words.device).view(B, S)
        return word_char_inputs(self.embed, self.fixed_embed, self.chars, words, chars, char_index)

    def tag(self, x: torch.Tensor, lengths: torch.Tensor, with_aux: bool = False):
        """Input vectors B x S x D (``inputs``) -> what ``forward`` returns."""
        S = x.size(1)
        h = run_rnn(self.rnn, self.dropout(x), lengths, self.packed)  # B x S x H
        weights = None
        if self.attention is not None:
            mask = length_mask(lengths.to(h.device), S)
            ctx, weights = self.attention(h, self.attention.project_keys(h), h, mask)  # B x S x H, B x S x S
            h = torch.tanh(self.combine(torch.cat([h, ctx], dim=-1)))
        h = self.dropout(h)
        if with_aux:
            return self.out(h), weights, [out(h) for out in self.aux_out]
        return self.out(h), weights


# ------------------------------------------------------------------------------- ensembles
class ProbabilityAverage(nn.Module):
    """An ensemble of classifiers or taggers that take the same inputs: ``(log p, weights)`` where
    ``p`` is the mean of the members' softmax over the last dimension and ``weights`` are the first
    member's attention weights. ``log p`` stands in for logits: its softmax is ``p`` itself, so
    argmax, cross-entropy and the printed probabilities all read the averaged distribution."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("ProbabilityAverage needs at least one member")
        self.members = nn.ModuleList(members)
        self.packed = getattr(members[0], "packed", True)

    def forward(self, *inputs: torch.Tensor | None):
        outs = [m(*inputs) for m in self.members]
        logp = torch.stack([logits.float().log_softmax(-1) for logits, _ in outs])  # K x ... x C
        return logp.logsumexp(0) - math.log(len(outs)), outs[0][1]


# ----------------------------------------------------------------------- character LM
@dataclass
class LMState:
    """What one chunk hands to the next: the RNN state and (with attention) the last ``window``
    outputs with their validity mask."""

    rnn: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
    memory: torch.Tensor | None = None  # B x W x H
    memory_mask: torch.Tensor | None = None  # B x W (1.0 = a real earlier state)

    def detach(self) -> LMState:
        rnn = self.rnn
        if isinstance(rnn, tuple):
            rnn = tuple(t.detach() for t in rnn)
        elif rnn is not None:
            rnn = rnn.detach()
        mem = self.memory.detach() if self.memory is not None else None
        return LMState(rnn, mem, self.memory_mask)


class WindowAttention(nn.Module):
    """Each position attends over the ``window`` outputs before it (across chunk boundaries)."""

    def __init__(self, attention: Attention, window: int):
        super().__init__()
        self.attention, self.window = attention, window

    def forward(self, out: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor):
        """out: B x T x H; memory: B x W x H -> context B x T x H, weights B x T x W, new memory."""
        B, T, H = out.shape
        W = self.window
        states = torch.cat([memory, out], dim=1)  # B x (W+T) x H
        valid = torch.cat([memory_mask, memory_mask.new_ones(B, T)], dim=1)  # B x (W+T)
        keys = self.attention.project_keys(states)  # B x (W+T) x K
        K = keys.size(-1)
        # position t (index W+t in `states`) sees states[t : t+W]
        kw = keys.unfold(1, W, 1)[:, :T].permute(0, 1, 3, 2).reshape(B * T, W, K)  # BT x W x K
        vw = states.unfold(1, W, 1)[:, :T]  # B x T x H x W
        mw = valid.unfold(1, W, 1)[:, :T]  # B x T x W
        scores = self.attention.score(out.reshape(B * T, 1, H), kw).view(B, T, W)
        scores = scores.float().masked_fill(mw == 0, -1e4)  # finite: an all-masked row gives zeros
        weights = (torch.softmax(scores, dim=-1) * mw).to(out.dtype)  # B x T x W
        context = torch.einsum("btw,bthw->bth", weights, vw)  # B x T x H
        return context, weights, states[:, -W:], valid[:, -W:]


class CharLM(nn.Module):
    """Characters -> embedding -> unidirectional RNN (state carried) -> next-character logits."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, window: int = 32):
        super().__init__()
        H = cfg.hidden_size  # a language model reads left to right: all of it is one direction
        if window < 1:
            raise SeqlabError(f"task.attn_window={window}: must be at least 1")
        self.embed = nn.Embedding(vocab_size, cfg.emb_size)
        self.dropout = Dropout(cfg.dropout)
        self.rnn = make_rnn(cfg.cell, cfg.emb_size, H, cfg.num_layers,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        attention = build_attention(cfg.attention, H, H)
        self.attention = WindowAttention(attention, window) if attention is not None else None
        self.combine = nn.Linear(2 * H, H) if attention is not None else None
        self.out = nn.Linear(H, vocab_size)
        self.hidden_size, self.window = H, window
        init_uniform(self, cfg.init_range)

    def initial_state(self, batch: int, device: torch.device) -> LMState:
        if self.attention is None:
            return LMState()
        mem = torch.zeros(batch, self.window, self.hidden_size, device=device)
        return LMState(None, mem, torch.zeros(batch, self.window, device=device))

    def forward(self, x: torch.Tensor, state: LMState | None = None):
        """x: B x T ids -> logits B x T x V, the state after the chunk, attention B x T x W (or None)."""
        return self.forward_embedded(self.embed(x), state)

    def forward_embedded(self, emb: torch.Tensor, state: LMState | None = None):
        """``forward`` from the input embeddings (B x T x E): gradients w.r.t. the inputs."""
        state = state or self.initial_state(emb.size(0), emb.device)
        out, rnn_state = self.rnn(self.dropout(emb), state.rnn)  # B x T x H
        weights = None
        new = LMState(rnn_state)
        if self.attention is not None:
            ctx, weights, new.memory, new.memory_mask = self.attention(out, state.memory, state.memory_mask)
            out = torch.tanh(self.combine(torch.cat([out, ctx], dim=-1)))
        return self.out(self.dropout(out)), new, weights
