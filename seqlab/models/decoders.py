"""Recurrent decoders: plain, fixed-context (Cho et al. 2014) and attentional (Luong / Bahdanau).

The decoder takes its attention module from outside (``attention=None`` for none). Its recurrence
is one ``nn.RNN``/``nn.GRU``/``nn.LSTM``: run over the whole target at once when nothing feeds back
from one step to the next (teacher forcing without input feeding), step by step otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.models.attention import AdditiveAttention, Attention, DotAttention, GeneralAttention
from seqlab.models.dropout import Dropout, dropout
from seqlab.models.encoders import EncoderOutput, make_rnn
from seqlab.models.fused_decoder import attentional_lstm_loop
from seqlab.models.packed import Int8, Plain, packed
from seqlab.models.shared_weight import SharedWeight

# Decoding packs the step weights (``models.packed``) for batches of at most this many rows: for
# greedy's 64 the output layer's product halves; beam search's 64 x 5 rows gained nothing measurable
# and the packed copies cost ~30-60 MiB of peak memory in a two-worker process.
PACK_ROWS = 128


@dataclass
class StepWeights:
    """Per-batch views of the weights each decoder step uses: per layer (input part, recurrent
    part) and the attentional layer's weight; each a ``SharedWeight`` in training, and a packed
    (or plain) weight when decoding (``models.packed``)."""

    layers: list[tuple[SharedWeight | Plain | None, SharedWeight | Plain | None]]
    combine: SharedWeight | Plain | None
    # decoding (LSTM/RNN): layer 0's whole input projection and recurrence as one matmul over
    # [embedding; fed-back input; h], with its summed biases
    first: SharedWeight | Plain | None = None
    first_bias: torch.Tensor | None = None
    generator: Plain | None = None  # decoding: the output layer, packed or in int8 (``models.packed``)


@dataclass
class DecoderState:
    """Everything one decoding step needs; ``select`` reorders it along the batch.

    h, c: L x N x H (c only for LSTM); feed: N x H previous attentional vector (input feeding);
    context: N x M fixed context vector (Cho et al.) or None; these are per hypothesis (N rows).
    keys: B x S x K projected attention keys; memory: B x S x M; mask: B x S: per source sentence,
    shared by its ``beams`` consecutive hypothesis rows (N = B * beams; beam search keeps one copy
    of each source's memory instead of one per beam).
    """

    h: torch.Tensor
    c: torch.Tensor | None
    feed: torch.Tensor | None
    keys: torch.Tensor | None
    memory: torch.Tensor
    mask: torch.Tensor
    context: torch.Tensor | None
    weights: StepWeights | None = None  # the step weights, built at the first step of a decode
    beams: int = 1

    PER_SOURCE = ("keys", "memory", "mask")

    def _map(self, per_hypothesis, per_source, *others: DecoderState, **changes) -> DecoderState:
        """A new state from this one's tensors (and the same fields of ``others``):
        ``per_hypothesis(*tensors, batch_dim)`` and ``per_source(*tensors)``; weights and beams carry over."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("weights", "beams") or v is None:
                out[f.name] = v
                continue
            vs = (v, *(getattr(o, f.name) for o in others))
            if f.name in self.PER_SOURCE:
                out[f.name] = per_source(*vs)
            else:
                out[f.name] = per_hypothesis(*vs, 1 if f.name in ("h", "c") else 0)
        return DecoderState(**{**out, **changes})

    def select(self, index: torch.Tensor, sources: torch.Tensor | None = None) -> DecoderState:
        """Hypothesis rows ``index``; with beams, the source rows ``sources`` they belong to."""
        if sources is None and self.beams != 1:
            raise ValueError("DecoderState.select with beams needs the source rows too")
        src = index if sources is None else sources
        return self._map(lambda v, d: v.index_select(d, index), lambda v: v.index_select(0, src))

    def expand(self, beams: int) -> DecoderState:
        """``beams`` hypothesis rows per source row (beam search); the source side is not copied."""
        return self._map(lambda v, d: v.repeat_interleave(beams, dim=d), lambda v: v, beams=beams * self.beams)

    def reorder(self, index: torch.Tensor) -> DecoderState:
        """Reorder hypotheses among the beams of the same sentences (beam search): only the
        per-hypothesis parts move."""
        return self._map(lambda v, d: v.index_select(d, index), lambda v: v)

    @property
    def hx(self):
        return self.h if self.c is None else (self.h, self.c)

    def cat(self, other: DecoderState) -> DecoderState:
        """This state's rows, then ``other``'s (decoding a stream of batches, ``search.greedy_stream``).
        The source side (keys, memory, mask) is padded to the longer source; padding is masked out."""
        S = max(self.memory.size(1), other.memory.size(1))

        def src_pad(v: torch.Tensor) -> torch.Tensor:
            if v.size(1) == S:
                return v
            return torch.cat([v, v.new_zeros(v.size(0), S - v.size(1), *v.shape[2:])], dim=1)

        if self.beams != 1 or other.beams != 1:
            raise ValueError("DecoderState.cat joins states of one hypothesis per source")
        return self._map(lambda a, b, d: torch.cat([a, b], dim=d),
                         lambda a, b: torch.cat([src_pad(a), src_pad(b)], dim=0), other)


class RNNDecoder(nn.Module):
    """Target embedding -> RNN -> (attention) -> attentional vector -> vocabulary logits."""

    def __init__(
        self,
        cell: str,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        memory_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        attention: Attention | None = None,
        style: str = "luong",
        input_feeding: bool = True,
        init: str = "bridge",
        fixed_context: bool = False,
        tie_embeddings: bool = False,
        pad_id: int = 0,
    ):
        super().__init__()
        cell, style, init = (getattr(x, "value", x) for x in (cell, style, init))
        if fixed_context and attention is not None:
            raise ValueError("model.fixed_context=true needs model.attention=none")
        if init == "zeros" and attention is None and not fixed_context:
            raise ValueError(
                "model.decoder_init=zeros with model.attention=none and model.fixed_context=false gives "
                "a decoder that never sees the source; use attention, fixed_context or another decoder_init"
            )
        if init == "copy" and memory_size != hidden_size:
            raise ValueError(f"decoder_init=copy needs encoder size {memory_size} == decoder size {hidden_size}")
        self.cell, self.style, self.init, self.fixed_context = cell, style, init, fixed_context
        self.attention = attention
        self.input_feeding = bool(input_feeding and attention is not None and style == "luong")
        # the teacher-forced loop of a one-layer LSTM with input feeding, forward and backward by hand
        # (``models.fused_decoder``); False: the step-by-step path under autograd (same mathematics)
        self.fused_loop = (cell == "lstm" and num_layers == 1 and self.input_feeding
                           and type(attention) in (AdditiveAttention, DotAttention, GeneralAttention))
        self.hidden_size, self.num_layers = hidden_size, num_layers

        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.dropout = Dropout(dropout)
        extra = 0
        if self.input_feeding:
            extra = hidden_size
        elif attention is not None and style == "bahdanau":
            extra = memory_size
        elif fixed_context:
            extra = memory_size
        self.rnn = make_rnn(cell, emb_size + extra, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.combine = (
            nn.Linear(hidden_size + memory_size, hidden_size, bias=False)
            if attention is not None or fixed_context
            else None
        )
        if init == "bridge" or fixed_context:
            self.bridge_h = nn.Linear(memory_size, hidden_size)
            self.bridge_c = nn.Linear(memory_size, hidden_size) if cell == "lstm" else None
        self.generator = nn.Linear(hidden_size, vocab_size)
        if tie_embeddings:
            if emb_size != hidden_size:
                raise ValueError(f"model.tie_embeddings needs emb_size == hidden_size ({emb_size} != {hidden_size})")
            self.generator.weight = self.embed.weight

    # ------------------------------------------------------------------------------ state
    def init_state(self, enc: EncoderOutput, weights: StepWeights | None = None) -> DecoderState:
        """The state before the first step; ``weights`` from ``decoding_weights`` (else the first
        step prepares them for its batch)."""
        B = enc.memory.size(0)
        L, H = self.num_layers, self.hidden_size
        enc_h, enc_c = enc.final if isinstance(enc.final, tuple) else (enc.final, None)
        zeros = enc.memory.new_zeros(L, B, H)
        c = None
        if self.fixed_context:
            # Cho et al.: the initial state is its own projection of the context vector.
            h = torch.tanh(self.bridge_h(enc.summary)).unsqueeze(0).expand(L, B, H).contiguous()
            if self.cell == "lstm":
                c = torch.tanh(self.bridge_c(enc.summary)).unsqueeze(0).expand(L, B, H).contiguous()
        elif self.init == "zeros":
            h, c = zeros, (zeros if self.cell == "lstm" else None)
        elif self.init == "copy":
            h = enc_h[-L:] if enc_h.size(0) >= L else enc_h[-1:].expand(L, B, H).contiguous()
            if self.cell == "lstm":
                src_c = enc_c if enc_c is not None else zeros
                c = src_c[-L:] if src_c.size(0) >= L else src_c[-1:].expand(L, B, H).contiguous()
        else:  # bridge
            top = enc_h[-L:] if enc_h.size(0) >= L else enc_h[-1:].expand(L, -1, -1)
            h = torch.tanh(self.bridge_h(top))
            if self.cell == "lstm":
                top_c = enc_c if enc_c is not None else enc.memory.new_zeros(enc_h.shape)
                top_c = top_c[-L:] if top_c.size(0) >= L else top_c[-1:].expand(L, -1, -1)
                c = torch.tanh(self.bridge_c(top_c))
        # the recurrent state stays in full precision under autocast (only matmuls drop to bf16/fp16)
        sdtype = torch.promote_types(enc.memory.dtype, torch.float32)
        h, c = h.to(sdtype), (c.to(sdtype) if c is not None else None)
        keys = self.attention.project_keys(enc.memory) if self.attention is not None else None
        feed = enc.memory.new_zeros(B, H) if self.input_feeding else None
        context = enc.summary if self.fixed_context else None
        return DecoderState(h, c, feed, keys, enc.memory, enc.mask, context, weights)

    # ------------------------------------------------------------------------------- step
    def step(self, prev: torch.Tensor, state: DecoderState):
        """One step. prev: B previous tokens. Returns logits B x V, new state, weights B x S | None."""
        emb = self.dropout(self.embed(prev))  # B x E
        if state.weights is None:  # once per decode (and per batch), not once per step
            state.weights = self._recurrent_weights(fuse_input=not torch.is_grad_enabled(), rows=prev.size(0))
        if state.weights.first is not None:
            o, state, weights = self._step(None, state, state.weights, emb=emb)
        else:
            o, state, weights = self._step(self._input_proj(emb), state, state.weights)
        out = state.weights.generator
        return (out.linear(o) if out is not None else self.generator(o)), state, weights

    def _step(self, x_pre: torch.Tensor | None, state: DecoderState, w_rec: StepWeights,
              emb: torch.Tensor | None = None):
        """The recurrence, attention and attentional layer for one step.

        x_pre: B x G, the embedding's share of layer 0's input projection (biases included),
        computed for all steps at once by the caller. Returns the attentional vector B x H (after
        dropout), the new state and the attention weights."""
        weights = None
        if self.attention is not None and self.style == "bahdanau":
            ctx, weights = self._attend(state.h[-1], state)
            extra = ctx  # the previous state scores the source; the context enters the recurrence
        elif self.input_feeding:
            extra = state.feed
        elif self.fixed_context:
            extra = state.context
        else:
            extra = None
        h, c = self._recur(x_pre, extra, state.h, state.c, w_rec, emb)
        h_t = h[-1]  # B x H
        if self.attention is not None and self.style == "luong":
            ctx, weights = self._attend(h_t, state)
        elif self.fixed_context:
            ctx = state.context
        o = torch.tanh(w_rec.combine.mm(torch.cat([h_t, ctx], dim=-1))) if self.combine is not None else h_t
        o = self.dropout(o)
        new = DecoderState(h, c, o if self.input_feeding else None, state.keys, state.memory, state.mask, state.context,
                           state.weights, state.beams)
        return o, new, weights

    def _attend(self, query: torch.Tensor, state: DecoderState):
        """Attention for one step's N x Q queries. With beams, each source's ``beams`` queries
        attend to its one copy of the memory together (as the T steps of one sentence would)."""
        if state.beams == 1:
            return self.attention(query, state.keys, state.memory, state.mask)
        B = state.memory.size(0)
        ctx, weights = self.attention(query.view(B, state.beams, -1), state.keys, state.memory, state.mask)
        return ctx.reshape(B * state.beams, -1), weights.reshape(B * state.beams, -1)

    # ------------------------------------------------------------------- fused recurrence
    # The step-by-step path computes the cells by hand from the nn.RNN/GRU/LSTM parameters (same
    # parameters, same mathematics as PyTorch's kernels): the embedding's part of the input
    # projection is one matmul over all steps, and for LSTM/RNN the fed-back part and the
    # recurrent part are one matmul per step. Calling nn.LSTM once per step costs several times more.
    def _layer(self, i: int):
        r = self.rnn
        return (getattr(r, f"weight_ih_l{i}"), getattr(r, f"weight_hh_l{i}"),
                getattr(r, f"bias_ih_l{i}"), getattr(r, f"bias_hh_l{i}"))

    def _input_proj(self, emb: torch.Tensor) -> torch.Tensor:
        """emb: [B x] T x E -> the embedding's share of layer 0's gates (plus biases)."""
        w_ih, _, b_ih, b_hh = self._layer(0)
        E = emb.size(-1)
        bias = b_ih if self.cell == "gru" else b_ih + b_hh  # GRU keeps b_hh inside r * (W h + b)
        return F.linear(emb, w_ih[:, :E], bias)

    def decoding_weights(self, rows: int = 64, int8: bool = False) -> StepWeights:
        """The step weights for decoding batches of about ``rows`` rows, to prepare once for many
        batches (``init_state(enc, weights)``); ``int8``: the step's products in int8
        (``models.packed.Int8``)."""
        return self._recurrent_weights(fuse_input=True, rows=rows, int8=int8)

    def _recurrent_weights(self, fuse_input: bool = False, rows: int = 64, int8: bool = False) -> StepWeights:
        """The weights every step uses, prepared once per batch (see ``StepWeights``);
        ``fuse_input`` (decoding) adds layer 0's weights as one matrix, and packs the weights for
        the matmul library (``models.packed``), or quantizes them (``int8``), instead of collecting
        their gradients."""
        dev = self.embed.weight.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.embed.weight.dtype
        E = self.embed.embedding_dim
        convert = (lambda w: w.to(dtype)) if dtype != self.embed.weight.dtype else (lambda w: w)

        pack = fuse_input and rows <= PACK_ROWS
        int8 = int8 and fuse_input

        def cast(w: torch.Tensor, b: torch.Tensor | None = None):
            # decoding: packed for the matmul library, or in int8; training: gradient collected
            if not fuse_input:
                return SharedWeight(convert(w))
            if int8:
                return Int8(w, b)
            return packed(convert(w), convert(b) if b is not None else None, rows) if pack else Plain(convert(w))

        layers = []
        fuse_first = fuse_input and self.cell != "gru"  # then layer 0 uses StepWeights.first instead
        for i in range(self.num_layers):
            w_ih, w_hh, _, _ = self._layer(i)
            if i == 0 and fuse_first:
                layers.append((None, None))
            elif i == 0:
                fed = w_ih[:, E:] if w_ih.size(1) > E else None  # the part that multiplies fed-back input
                if self.cell == "gru":
                    layers.append((cast(fed) if fed is not None else None, cast(w_hh)))
                else:  # [W_fed | W_hh] @ [fed; h]: one matmul per step
                    w = torch.cat([fed, w_hh], dim=1) if fed is not None else w_hh
                    layers.append((None, cast(w)))
            else:
                layers.append((cast(w_ih), cast(w_hh)))
        combine = cast(self.combine.weight) if self.combine is not None else None
        generator = cast(self.generator.weight, self.generator.bias) if pack or int8 else None
        if not fuse_first:  # GRU keeps W_hh h apart (r multiplies it)
            return StepWeights(layers, combine, generator=generator)
        w_ih, w_hh, b_ih, b_hh = self._layer(0)
        return StepWeights(layers, combine, cast(torch.cat([w_ih, w_hh], dim=1)), b_ih + b_hh, generator)

    def _recur(self, x_pre, extra, h_all, c_all, sw: StepWeights, emb=None):
        hs, cs = [], []
        below = None
        for i in range(self.num_layers):
            _, _, b_ih, b_hh = self._layer(i)
            w_in, w_rec = sw.layers[i]
            h = h_all[i]
            c = c_all[i] if c_all is not None else None
            if i == 0 and emb is not None:  # decoding: [emb; extra; h] in one matmul
                gi, w_rec = sw.first_bias, sw.first
                inp = torch.cat([emb, h] if extra is None else [emb, extra, h], dim=-1)
            elif i == 0:
                gi = x_pre
                inp = h if extra is None else torch.cat([extra, h], dim=-1)
            else:
                below = dropout(below, self.rnn.dropout, self.training)
                gi = w_in.mm(below) + (b_ih if self.cell == "gru" else b_ih + b_hh)
                inp = h
            if self.cell == "lstm":
                # fp32 + bf16 promotes to fp32 inside the add: no separate cast of the matmul's output
                gi_, gf, gg, go = (gi.to(h.dtype) + w_rec.mm(inp)).chunk(4, dim=-1)
                c = torch.sigmoid(gf) * c + torch.sigmoid(gi_) * torch.tanh(gg)
                h = torch.sigmoid(go) * torch.tanh(c)
            elif self.cell == "gru":
                if i == 0 and extra is not None:
                    gi = gi + w_in.mm(extra)
                gh = w_rec.mm(h).to(h.dtype) + b_hh
                ir, iz, in_ = gi.to(h.dtype).chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(in_ + r * hn)
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(gi.to(h.dtype) + w_rec.mm(inp))
            hs.append(h)
            cs.append(c)
            below = h
        if len(hs) == 1:  # one layer: a view, not a copy per step
            return hs[0].unsqueeze(0), (cs[0].unsqueeze(0) if c_all is not None else None)
        return torch.stack(hs), (torch.stack(cs) if c_all is not None else None)

    # ------------------------------------------------------------------------- training
    def forward(
        self, tgt_in: torch.Tensor, enc: EncoderOutput, teacher_forcing: float = 1.0, features_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tgt_in: B x T (``<s> y1 .. y_{T-1}``). Returns logits B x T x V and attention B x T x S.

        ``features_only``: return the output layer's input B x T x H instead of the logits (for a
        loss that applies the output layer itself, see ``models.output_loss``)."""
        state = self.init_state(enc)
        stepwise = self.input_feeding or (self.attention is not None and self.style == "bahdanau")
        out_layer = (lambda o: o) if features_only else self.generator  # noqa: E731
        if teacher_forcing >= 1.0 and not stepwise:
            o, attn = self._forward_parallel(tgt_in, state)
            return out_layer(o), attn
        B, T = tgt_in.shape
        w_rec = self._recurrent_weights()
        if teacher_forcing >= 1.0:
            # B x T x G, one matmul; in the state's precision once, not cast again at every step
            x_pre = self._input_proj(self.dropout(self.embed(tgt_in))).to(state.h.dtype)
            if self.fused_loop:
                o, attn = self._forward_fused(x_pre, state)
                return out_layer(o), attn
            outs, weights = [], []
            for x_t in x_pre.unbind(1):  # unbind: one gradient copy, not a zero-filled B x T x G per step
                o, state, w = self._step(x_t, state, w_rec)
                outs.append(o)
                weights.append(w)
            attn = torch.stack(weights, dim=1) if weights[0] is not None else None
            return out_layer(torch.stack(outs, dim=1)), attn  # output layer over all steps at once
        outs, weights = [], []
        prev = tgt_in[:, 0]
        for t in range(T):
            o, state, w = self._step(self._input_proj(self.dropout(self.embed(prev))), state, w_rec)
            step_logits = self.generator(o)
            outs.append(o if features_only else step_logits)
            weights.append(w)
            if t + 1 < T:  # each sentence flips its own coin at each step
                own = step_logits.argmax(-1)
                use_gold = torch.rand(B, device=prev.device) < teacher_forcing
                prev = torch.where(use_gold, tgt_in[:, t + 1], own)
        attn = torch.stack(weights, dim=1) if weights[0] is not None else None
        return torch.stack(outs, dim=1), attn

    def _forward_fused(self, x_pre: torch.Tensor, state: DecoderState):
        """The whole teacher-forced loop in one autograd node (``models.fused_decoder``)."""
        w_ih, w_hh, _, _ = self._layer(0)
        w = torch.cat([w_ih[:, self.embed.embedding_dim :], w_hh], dim=1)  # multiplies [feed; h]
        dev = w.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else w.dtype
        att = self.attention
        wq = bq = v = None
        if isinstance(att, AdditiveAttention):
            wq, bq, v = att.query_proj.weight, att.query_proj.bias, att.v.weight.squeeze(0)
        p = self.dropout.p if self.training else 0.0
        return attentional_lstm_loop(x_pre, state.h[0], state.c[0], state.feed, state.keys, state.memory,
                                     state.mask, w, wq, bq, v, self.combine.weight, p, dtype)

    def _forward_parallel(self, tgt_in: torch.Tensor, state: DecoderState):
        emb = self.dropout(self.embed(tgt_in))  # B x T x E
        if self.fixed_context:
            emb = torch.cat([emb, state.context.unsqueeze(1).expand(-1, emb.size(1), -1)], dim=-1)
        out, _ = self.rnn(emb, state.hx)  # B x T x H
        attn = None
        if self.attention is not None:
            ctx, attn = self.attention(out, state.keys, state.memory, state.mask)  # B x T x M
        elif self.fixed_context:
            ctx = state.context.unsqueeze(1).expand(-1, out.size(1), -1)
        o = torch.tanh(self.combine(torch.cat([out, ctx], dim=-1))) if self.combine is not None else out
        return self.dropout(o), attn  # the output layer's input
