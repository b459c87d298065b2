"""Image captioning (one-to-many): CNN feature grid -> RNN decoder, with or without visual attention.

Plain models (``attention=none``) see the global image vector (the mean of the projected grid): it
initialises the decoder state and, with ``global_every_step``, enters every step (the ``W_ih v`` term;
the decoder's ``fixed_context``). ``*_attn`` models attend over the spatial grid at every step (Show,
Attend and Tell) and start from an MLP over the mean feature, with the optional doubly stochastic
regulariser ``lambda * sum_s (1 - sum_t alpha_ts)^2``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.config import DecodeConfig, ImageEncoderConfig, ModelConfig, plain
from seqlab.data.batch import pad
from seqlab.data.images import IMAGE_EXTENSIONS, ImageCaptionCorpus, load_image
from seqlab.data.text import tokenizer_fn
from seqlab.data.vocab import Vocab
from seqlab.errors import DataError
from seqlab.metrics import bleu, perplexity
from seqlab.models.attention import build_attention
from seqlab.models.cnn import FeatureCache, ImageBackbone
from seqlab.models.decoders import RNNDecoder
from seqlab.models.encoders import EncoderOutput
from seqlab.models.search import beam_search, greedy
from seqlab.models.seq2seq import init_uniform
from seqlab.tasks.base import StepOutput, Task, as_dataclass
from seqlab.tasks.translation import detokenize

log = logging.getLogger(__name__)


class CaptionNet(nn.Module):
    """``ImageBackbone`` -> linear projection of each grid cell -> ``RNNDecoder``."""

    def __init__(self, cfg: ModelConfig, enc: ImageEncoderConfig, vocab_size: int, pad_id: int,
                 image_size: int, global_every_step: bool = True, position_embedding: bool = True,
                 load_weights: bool = True):
        super().__init__()
        self.backbone = ImageBackbone(enc.backbone, enc.weights, enc.trainable, enc.channels, load_weights,
                                     enc.coords)
        M = cfg.hidden_size  # size of one annotation vector (a projected grid cell)
        self.proj = nn.Linear(self.backbone.out_channels, M)
        # A context vector is a weighted *sum* of cells: without a position code it says what was
        # attended to, not where it was (a small CNN's cells do not know their place in the image).
        _, h, w = self.backbone.grid_shape(image_size)
        self.row_embed = nn.Parameter(0.02 * torch.randn(h, 1, M)) if position_embedding else None
        self.col_embed = nn.Parameter(0.02 * torch.randn(1, w, M)) if position_embedding else None
        self.num_layers, self.cell = cfg.num_layers, plain(cfg.cell)
        attention = build_attention(cfg.attention, cfg.hidden_size, M)
        fixed = attention is None and (global_every_step or cfg.fixed_context)
        self.decoder = RNNDecoder(
            cfg.cell, vocab_size, cfg.emb_size, cfg.hidden_size, M, cfg.num_layers, cfg.dropout, attention,
            cfg.attention_style, cfg.input_feeding, cfg.decoder_init, fixed, cfg.tie_embeddings, pad_id,
        )
        init_uniform(self.decoder, cfg.init_range)  # the CNN keeps its own (Kaiming) initialisation
        if cfg.tie_embeddings:
            self.decoder.generator.weight = self.decoder.embed.weight

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W -> B x C x h x w."""
        return self.backbone(images)

    def encode(self, feats: torch.Tensor) -> EncoderOutput:
        """feats: B x C x h x w -> memory B x (h*w) x M, the mean vector as every layer's final state."""
        B = feats.size(0)
        memory = self.proj(feats.flatten(2).transpose(1, 2))  # B x S x M
        if self.row_embed is not None:
            memory = memory + (self.row_embed + self.col_embed).flatten(0, 1)  # + h*w x M position code
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        mean = memory.mean(1)  # B x M: the global image vector
        h = mean.unsqueeze(0).expand(self.num_layers, B, -1).contiguous()  # L x B x M
        return EncoderOutput(memory, mask, (h, h) if self.cell == "lstm" else h)

    def forward(self, feats: torch.Tensor, tgt_in: torch.Tensor):
        """Logits B x T x V and attention B x T x S (None without attention)."""
        return self.decoder(tgt_in, self.encode(feats))


@dataclass
class CaptionBatch:
    image_idx: list[int]  # rows of the split's image tensor
    inputs: torch.Tensor  # B x 3 x H x W images, or B x C x h x w cached features
    tgt_in: torch.Tensor  # B x T: <s> y1 .. y_n
    tgt_out: torch.Tensor  # B x T: y1 .. y_n </s>


@dataclass
class Caption:
    tokens: list[str]
    text: str
    score: float
    attention: torch.Tensor | None  # len(tokens)+1 x h x w (incl. </s>), or None


class CaptioningTask(Task):
    """Captions for images; BLEU-4 against all references, and on the synthetic set exact match,
    per-part accuracy (objects vs relation words) and attention localisation."""

    def __init__(
        self,
        model: ModelConfig,
        data: ImageCaptionCorpus | None = None,
        state: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        name: str = "captioning",
        monitor: str = "val/bleu",
        monitor_mode: str = "max",
        encoder: ImageEncoderConfig | dict | None = None,
        vocab: dict | None = None,
        global_every_step: bool = True,
        position_embedding: bool = True,
        attention_reg: float = 1.0,
        max_len: int = 40,
        val_decode: DecodeConfig | dict | None = None,
        num_samples: int = 3,
    ):
        self.name, self.monitor, self.monitor_mode = name, monitor, monitor_mode
        self.encoder_cfg = as_dataclass(ImageEncoderConfig, encoder)
        self.val_decode = as_dataclass(DecodeConfig, val_decode)
        self.attention_reg, self.num_samples, self.model_cfg = attention_reg, num_samples, model
        if data is None and state is None:
            raise ValueError("CaptioningTask needs data or a saved state")
        self.splits = data.splits if data is not None else {}
        src = state if state is not None else vars(data)
        self.tokenizer, self.lowercase = src["tokenizer"], src["lowercase"]
        self.image_size, self.synthetic = src["image_size"], src["synthetic"]
        self.tokens = {s: [[self.tokenize(c) for c in caps] for caps in sp.captions] for s, sp in self.splits.items()}
        if state is not None:
            self.vocab = Vocab(state["vocab"])
        else:
            v = vocab or {}
            self.vocab = Vocab.build((c for caps in self.tokens["train"] for c in caps),
                                     v.get("min_freq", 1), v.get("max_size", 50000))
            log.info("caption vocabulary: %d words", len(self.vocab))
        self.network = CaptionNet(model, self.encoder_cfg, len(self.vocab), self.vocab.pad_id, self.image_size,
                                  global_every_step, position_embedding, load_weights=state is None)
        self.grid = self.network.backbone.grid_shape(self.image_size)[1:]  # h, w
        self.cache = None
        if not self.encoder_cfg.trainable and data is not None:
            self.cache = FeatureCache(self.network.backbone, cache_dir, data.fingerprint,
                                      lambda split, idx: self.splits[split].images[idx],
                                      {s: len(sp) for s, sp in self.splits.items()},
                                      self.encoder_cfg.feature_batch_size)
        self._train = self._encode_train(max_len) if data is not None else []

    # ------------------------------------------------------------------------------ data
    def tokenize(self, text: str) -> list[str]:
        return tokenizer_fn(self.tokenizer)(text.lower() if self.lowercase else text)

    def _encode_train(self, max_len: int) -> list[tuple[int, list[int]]]:
        pairs = [(i, self.vocab.encode(c)) for i, caps in enumerate(self.tokens["train"]) for c in caps]
        kept = [p for p in pairs if len(p[1]) <= max_len]
        if len(kept) < len(pairs):
            log.info("dropped %d training captions longer than %d tokens (task.max_len)", len(pairs) - len(kept), max_len)
        if not kept:
            raise DataError("no training captions left after the length limit (task.max_len)")
        return kept

    def train_lengths(self) -> list[int]:
        return [len(c) + 1 for _, c in self._train]

    def _inputs(self, split: str, image_idx: Sequence[int]) -> torch.Tensor:
        """Cached features (frozen encoder) or the images themselves (trained with the rest)."""
        if self.cache is not None:
            return self.cache.get(split, image_idx, self.device)
        return self.splits[split].images[list(image_idx)].to(self.device)

    def _feats(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs if self.cache is not None else self.network.features(inputs)

    def _batch(self, split: str, pairs: Sequence[tuple[int, list[int]]]) -> CaptionBatch:
        v = self.vocab
        tgt_in, _ = pad([[v.bos_id, *c] for _, c in pairs], v.pad_id)
        tgt_out, _ = pad([[*c, v.eos_id] for _, c in pairs], v.pad_id)
        idx = [i for i, _ in pairs]
        return CaptionBatch(idx, self._inputs(split, idx), tgt_in.to(self.device), tgt_out.to(self.device))

    def collate(self, indices: Sequence[int]) -> CaptionBatch:
        return self._batch("train", [self._train[i] for i in indices])

    # -------------------------------------------------------------------------- training
    def _loss(self, batch: CaptionBatch):
        logits, attn = self.network(self._feats(batch.inputs), batch.tgt_in)
        V, pad_id = logits.size(-1), self.vocab.pad_id
        nll_sum = F.cross_entropy(logits.reshape(-1, V).float(), batch.tgt_out.reshape(-1), ignore_index=pad_id,
                                  reduction="sum")
        n_tok = int((batch.tgt_out != pad_id).sum())
        reg = None
        if attn is not None and self.attention_reg > 0:
            # doubly stochastic attention: every cell should get about one unit of attention in total.
            # Averaged over the cells (Xu et al. sum them) so that lambda does not grow with the grid.
            real = (batch.tgt_out != pad_id).unsqueeze(-1).to(attn.dtype)  # B x T x 1
            reg = ((1.0 - (attn * real).sum(1)) ** 2).mean(1).sum()  # B x S -> sum over the batch
        return nll_sum, n_tok, reg

    def training_step(self, batch: CaptionBatch) -> StepOutput:
        nll_sum, n_tok, reg = self._loss(batch)
        B = batch.tgt_in.size(0)
        loss = nll_sum / B
        logs = {"loss": nll_sum.item() / max(n_tok, 1)}
        if reg is not None:
            loss = loss + self.attention_reg * reg / B
            logs["attention_reg"] = reg.item() / B
        return StepOutput(loss=loss, n_tokens=n_tok, logs=logs)

    # ---------------------------------------------------------------------------- decoding
    @torch.no_grad()
    def caption_features(self, feats: torch.Tensor, decode: Any = None) -> list[Caption]:
        """Captions for B x C x h x w backbone features."""
        decode = as_dataclass(DecodeConfig, decode) if decode is not None else self.val_decode
        self.network.eval()
        v, h, w = self.vocab, *feats.shape[2:]
        enc = self.network.encode(feats)
        strategy = plain(decode.strategy)
        weights = self.network.decoder.decoding_weights(feats.size(0) * decode.rows_per_input, int8=decode.int8)
        if strategy == "beam":
            hyp = beam_search(self.network.decoder, enc, v.bos_id, v.eos_id, decode.max_len, decode.beam_size,
                              decode.length_penalty, weights)
        else:
            hyp = greedy(self.network.decoder, enc, v.bos_id, v.eos_id, decode.max_len, sample=strategy == "sample",
                         temperature=decode.temperature, top_k=decode.top_k, weights=weights)
        out = []
        for row in range(feats.size(0)):
            toks = v.decode(hyp.tokens[row].tolist())
            attn = None
            if hyp.attention is not None:
                n = min(len(toks) + 1, hyp.attention.size(1))
                attn = hyp.attention[row, :n].float().cpu().view(n, h, w)
            out.append(Caption(toks, detokenize(toks, self.tokenizer), float(hyp.scores[row]), attn))
        return out

    @torch.no_grad()
    def caption_split(self, split: str, image_idx: Sequence[int], decode: Any = None) -> list[Caption]:
        decode = as_dataclass(DecodeConfig, decode) if decode is not None else self.val_decode
        self.network.eval()  # before the CNN: BatchNorm must not use (or update) batch statistics
        out: list[Caption] = []
        for s in range(0, len(image_idx), decode.batch_size):
            idx = list(image_idx[s : s + decode.batch_size])
            out += self.caption_features(self._feats(self._inputs(split, idx)), decode)
        return out

    # -------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "val", limit: int | None = None, decode: Any = None) -> dict[str, float]:
        if split not in self.splits:
            raise DataError(f"split {split!r} is not in the data (have: {', '.join(self.splits)})")
        decode = as_dataclass(DecodeConfig, decode) if decode is not None else self.val_decode
        self.network.eval()
        n_img = min(limit or len(self.splits[split]), len(self.splits[split]))
        pairs = [(i, self.vocab.encode(c)) for i in range(n_img) for c in self.tokens[split][i]]
        nll, n_tok = 0.0, 0
        for s in range(0, len(pairs), decode.batch_size):
            nll_sum, n, _ = self._loss(self._batch(split, pairs[s : s + decode.batch_size]))
            nll, n_tok = nll + nll_sum.item(), n_tok + n
        caps = self.caption_split(split, list(range(n_img)), decode)
        hyps = [c.text for c in caps]
        refs = [[self._ref_text(r) for r in rs] for rs in self.splits[split].captions[:n_img]]
        k = max(len(r) for r in refs)
        streams = [[rs[j] if j < len(rs) else rs[0] for rs in refs] for j in range(k)]  # repeats change no count
        b, self.bleu_signature = bleu(hyps, streams)
        self.last_hypotheses = hyps
        mean_nll = nll / max(n_tok, 1)
        metrics = {f"{split}/loss": mean_nll, f"{split}/ppl": perplexity(mean_nll), f"{split}/bleu": b}
        if self.synthetic and self.splits[split].objects is not None:
            metrics.update(self._synthetic_metrics(split, caps, n_img))
        return metrics

    def _ref_text(self, caption: str) -> str:
        return detokenize(self.tokenize(caption), self.tokenizer)

    def _synthetic_metrics(self, split: str, caps: list[Caption], n: int) -> dict[str, float]:
        """Exact match; accuracy of the object words (colour, shape) and of the relation words;
        localisation: attention mass on the grid cells that overlap the named object's box when
        its noun is produced (Xu et al.'s qualitative claim, measured)."""
        exact = rel_ok = obj_ok = 0
        loc, n_loc = 0.0, 0
        for i, c in enumerate(caps[:n]):
            ref = self.tokens[split][i][0]
            hyp = c.tokens
            exact += hyp == ref
            rel_ok += len(hyp) >= 6 and hyp[3:-3] == ref[3:-3]
            obj_ok += len(hyp) >= 6 and [hyp[1], hyp[2], hyp[-2], hyp[-1]] == [ref[1], ref[2], ref[-2], ref[-1]]
            if c.attention is None or len(hyp) < 6:
                continue
            for pos in (2, len(hyp) - 1):  # the two nouns
                obj = next((o for o in self.splits[split].objects[i]
                            if o["colour"] == hyp[pos - 1] and o["shape"] == hyp[pos]), None)
                if obj is not None and pos < c.attention.size(0):
                    loc += float((c.attention[pos] * box_cells(obj["box"], self.grid, self.image_size)).sum())
                    n_loc += 1
        out = {f"{split}/exact_match": 100.0 * exact / max(n, 1), f"{split}/acc_relation": 100.0 * rel_ok / max(n, 1),
               f"{split}/acc_objects": 100.0 * obj_ok / max(n, 1)}
        if caps and caps[0].attention is not None:
            out[f"{split}/localisation"] = loc / max(n_loc, 1)
        return out

    # ------------------------------------------------------------------------ predict, logs
    def read_inputs(self, spec: str) -> list[str]:
        """An image file, a folder of images, or a text file (or ``-``) listing image paths."""
        p = Path(spec)
        if spec != "-" and p.is_dir():
            files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise DataError(f"input={spec}: no images in this folder")
            return files
        if spec != "-" and p.suffix.lower() in IMAGE_EXTENSIONS:
            return [spec]
        lines = sys.stdin.read().splitlines() if spec == "-" else None
        if lines is None:
            if not p.is_file():
                raise DataError(f"input={spec}: no such image, folder or list file")
            lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
        lines = [x.strip() for x in lines if x.strip()]
        if not lines:
            raise DataError(f"input={spec}: nothing to caption")
        return lines

    @torch.no_grad()
    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        images = torch.stack([torch.from_numpy(load_image(p, self.image_size)).permute(2, 0, 1) for p in inputs])
        self.network.eval()
        feats = self.network.features(images.to(self.device))
        caps = self.caption_features(feats, decode)
        if out_dir:
            from seqlab.viz import save_caption_overlays

            for path, img, c in zip(inputs, images, caps, strict=True):
                save_caption_overlays(Path(out_dir), Path(path).stem, img, c.tokens, c.attention, c.text)
        if len(inputs) == 1:
            return [caps[0].text]
        return [f"{p}\t{c.text}" for p, c in zip(inputs, caps, strict=True)]

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        if split not in self.splits or self.num_samples <= 0:
            return
        from seqlab.viz import caption_figure

        n = min(self.num_samples, len(self.splits[split]))
        for k, c in enumerate(self.caption_split(split, list(range(n)))):
            refs = "  \n".join(f"- {r}" for r in self.splits[split].captions[k][:5])
            logger.text(f"{split}/caption_{k}", f"**output:** {c.text}  \n**references:**  \n{refs}", step)
            if hasattr(logger, "figure"):
                logger.figure(f"{split}/image_{k}", caption_figure(self.splits[split].images[k], c.tokens,
                                                                   c.attention, c.text), step)

    # ------------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_list(), "tokenizer": self.tokenizer, "lowercase": self.lowercase,
                "image_size": self.image_size, "synthetic": self.synthetic}

    def hparams(self) -> dict[str, Any]:
        m, e = self.model_cfg, self.encoder_cfg
        return {"model": m.name, "cell": plain(m.cell), "attention": plain(m.attention), "emb_size": m.emb_size,
                "hidden_size": m.hidden_size, "backbone": plain(e.backbone), "trainable_cnn": e.trainable,
                "attention_reg": self.attention_reg,
                "params": sum(p.numel() for p in self.network.parameters())}


def box_cells(box: Sequence[int], grid: tuple[int, int], image_size: int) -> torch.Tensor:
    """h x w mask of the grid cells whose pixels overlap ``box`` = (x0, y0, x1, y1), inclusive."""
    h, w = grid
    ch, cw = image_size / h, image_size / w
    x0, y0, x1, y1 = box
    rows = torch.arange(h, dtype=torch.float32)
    cols = torch.arange(w, dtype=torch.float32)
    r = ((rows + 1) * ch > y0) & (rows * ch <= y1)
    c = ((cols + 1) * cw > x0) & (cols * cw <= x1)
    return (r[:, None] & c[None, :]).float()

