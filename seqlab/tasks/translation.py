"""Seq2seq translation: vocabularies, batches, teacher-forced loss, decoding, BLEU/chrF."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqlab.config import DecodeConfig, ModelConfig, SubwordConfig, plain
from seqlab.data.batch import eval_batches, pad
from seqlab.data.subword import SubwordModel
from seqlab.data.text import TextCorpus, column, tokenizer_fn
from seqlab.data.vocab import Vocab
from seqlab.errors import DataError
from seqlab.metrics import bleu, chrf, perplexity
from seqlab.models.output_loss import linear_cross_entropy
from seqlab.models.search import (
    Hypotheses,
    beam_search,
    decoding_copy,
    greedy_stream,
    map_batches,
    worker_count,
)
from seqlab.models.seq2seq import Seq2Seq
from seqlab.runtime import atomic_file
from seqlab.tasks.base import StepOutput, Task, as_dataclass

log = logging.getLogger(__name__)

_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


def detokenize(tokens: Sequence[str], tokenizer: str) -> str:
    """Text a person reads: ``space`` data stays tokenised (its references are), ``word`` data gets
    the spaces before punctuation removed, ``char`` data is joined."""
    if tokenizer == "char":
        return "".join(tokens)
    text = " ".join(tokens)
    if tokenizer == "word":
        text = _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))
    return text


@dataclass
class Batch:
    src: torch.Tensor  # B x S
    src_len: torch.Tensor  # B
    tgt_in: torch.Tensor  # B x T: <s> y1 .. y_n
    tgt_out: torch.Tensor  # B x T: y1 .. y_n </s>


@dataclass
class Translation:
    src_tokens: list[str]  # the units the network read: words, or pieces with task.subword
    tokens: list[str]  # the units it wrote (the attention map's rows)
    text: str  # the words, detokenised
    score: float
    attention: torch.Tensor | None  # len(tokens)+1 x len(src_tokens) (incl. </s>), or None


class TokenCache:
    """Tokenised splits as JSON under ``cache_dir``, keyed by the corpus fingerprint."""

    def __init__(self, cache_dir: str | Path | None):
        self.dir = Path(cache_dir) / "tokenized" if cache_dir else None

    def load_or_build(self, corpus: TextCorpus) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
        path = self.dir / f"{corpus.fingerprint}.json" if self.dir else None
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                log.info("tokenised data from cache %s", path)
                return {k: (v[0], v[1]) for k, v in data.items()}
            except (OSError, ValueError):
                log.warning("ignoring unreadable token cache %s", path)
        tok = tokenizer_fn(corpus.tokenizer)
        lower = corpus.lowercase
        out = {}
        for split, ds in corpus.splits.items():
            src = [tok(s.lower() if lower else s) for s in column(ds, "src")]
            tgt = [tok(t.lower() if lower else t) for t in column(ds, "tgt")]
            out[split] = (src, tgt)
        if path is not None:
            with atomic_file(path) as f:
                json.dump(out, f)
        return out


class TranslationTask(Task):
    """Encoder-decoder translation with teacher forcing; monitors validation BLEU by default."""

    def __init__(
        self,
        model: ModelConfig,
        data: TextCorpus | None = None,
        state: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        name: str = "translation",
        monitor: str = "val/bleu",
        monitor_mode: str = "max",
        vocab: dict | None = None,
        subword: SubwordConfig | dict | None = None,
        teacher_forcing: float = 1.0,
        label_smoothing: float = 0.0,
        max_src_len: int = 100,
        max_tgt_len: int = 100,
        val_decode: DecodeConfig | dict | None = None,
        num_samples: int = 3,
        loss_norm: str = "sentences",
    ):
        self.name, self.monitor, self.monitor_mode = name, monitor, monitor_mode
        self.teacher_forcing, self.label_smoothing = teacher_forcing, label_smoothing
        self.val_decode = as_dataclass(DecodeConfig, val_decode)
        self.num_samples, self.loss_norm = num_samples, loss_norm
        self.model_cfg = model
        vocab = vocab or {}
        if data is not None:
            self.tokenizer = data.tokenizer
            self.lowercase = data.lowercase
            self.src_lang, self.tgt_lang = data.src_lang, data.tgt_lang
            self.splits = TokenCache(cache_dir).load_or_build(data)
        elif state is None:
            raise ValueError("TranslationTask needs data or a saved state")
        if state is not None:
            self.src_vocab, self.tgt_vocab = Vocab(state["src_vocab"]), Vocab(state["tgt_vocab"])
            saved = state.get("subword") or {}
            self.src_subword = SubwordModel.from_state(saved.get("src"))
            self.tgt_subword = self.src_subword if saved.get("shared") else SubwordModel.from_state(saved.get("tgt"))
            if data is None:
                self.tokenizer, self.lowercase = state["tokenizer"], state["lowercase"]
                self.src_lang, self.tgt_lang = state["src_lang"], state["tgt_lang"]
                self.splits = {}
        else:
            cache = Path(cache_dir) / "subword" / data.fingerprint if cache_dir else None
            self.src_subword, self.tgt_subword = _learn_subwords(self.splits["train"],
                                                                 as_dataclass(SubwordConfig, subword), cache)
            train_units = self._units("train")
            src_train, tgt_train = train_units
            min_freq, max_size = vocab.get("min_freq", 2), vocab.get("max_size", 50000)
            if vocab.get("shared"):
                self.src_vocab = self.tgt_vocab = Vocab.build(src_train + tgt_train, min_freq, max_size)
            else:
                self.src_vocab = Vocab.build(src_train, min_freq, max_size)
                self.tgt_vocab = Vocab.build(tgt_train, min_freq, max_size)
            log.info("vocabulary: %d %s / %d %s", len(self.src_vocab), self.src_lang, len(self.tgt_vocab), self.tgt_lang)
        self.network = Seq2Seq(model, len(self.src_vocab), len(self.tgt_vocab), self.src_vocab.pad_id)
        self._decoding_cache: dict[str, Any] = {}  # a low-precision copy of the network (see decoding_copy)
        if data is not None:  # the training pairs as ids, cut into pieces once for vocabulary and pairs
            units = train_units if state is None else self._units("train")
            self._train = self._encode_train(*units, max_src_len, max_tgt_len)
        else:
            self._train = None

    # ------------------------------------------------------------------------ data
    def _units(self, split: str, limit: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
        """A split's (source, target) as the vocabularies hold them: words, or pieces (task.subword)."""
        src, tgt = self._pairs(split, limit)
        return _units(self.src_subword, src), _units(self.tgt_subword, tgt)

    def _encode_train(self, src: list[list[str]], tgt: list[list[str]], max_src: int, max_tgt: int):
        pairs = [
            (self.src_vocab.encode(s), self.tgt_vocab.encode(t))
            for s, t in zip(src, tgt, strict=True)
            if len(s) <= max_src and len(t) <= max_tgt
        ]
        if len(pairs) < len(src):
            log.info("dropped %d training pairs longer than %d/%d tokens", len(src) - len(pairs), max_src, max_tgt)
        if not pairs:
            raise DataError("no training pairs left after the length limits (task.max_src_len / max_tgt_len)")
        return pairs

    def train_lengths(self) -> list[int]:
        return [len(t) + 1 for _, t in self._train]

    def _batch(self, pairs: Sequence[tuple[list[int], list[int]]]) -> Batch:
        v = self.tgt_vocab
        src, src_len = pad([s if s else [v.unk_id] for s, _ in pairs], self.src_vocab.pad_id)
        tgt_in, _ = pad([[v.bos_id, *t] for _, t in pairs], v.pad_id)
        tgt_out, _ = pad([[*t, v.eos_id] for _, t in pairs], v.pad_id)
        d = self.device
        return Batch(src.to(d), src_len.to(d), tgt_in.to(d), tgt_out.to(d))

    def collate(self, indices: Sequence[int]) -> Batch:
        return self._batch([self._train[i] for i in indices])

    # ---------------------------------------------------------------------- training
    def _loss(self, batch: Batch, teacher_forcing: float, smoothing: float):
        """(loss_sum, nll_sum, n_tokens); the output layer and the loss run fused, chunk by chunk."""
        feats, _ = self.network(batch.src, batch.src_len, batch.tgt_in, teacher_forcing, features_only=True)
        gen = self.network.decoder.generator
        return linear_cross_entropy(feats, gen.weight, gen.bias, batch.tgt_out, self.tgt_vocab.pad_id, smoothing)

    def training_step(self, batch: Batch) -> StepOutput:
        loss_sum, nll_sum, n_tok = self._loss(batch, self.teacher_forcing, self.label_smoothing)
        denom = batch.src.size(0) if self.loss_norm == "sentences" else n_tok
        return StepOutput(
            loss=loss_sum / denom,
            n_tokens=n_tok,
            n_src_tokens=int(batch.src_len.sum()),
            logs={"loss": nll_sum.item() / max(n_tok, 1)},
        )

    # -------------------------------------------------------------------- evaluation
    def _pairs(self, split: str, limit: int | None):
        if split not in self.splits:
            raise DataError(f"split {split!r} is not in the data (have: {', '.join(self.splits)})")
        src, tgt = self.splits[split]
        if limit:
            src, tgt = src[:limit], tgt[:limit]
        return src, tgt

    @torch.no_grad()
    def evaluate(self, split: str = "val", limit: int | None = None, decode: Any = None) -> dict[str, float]:
        src, tgt = self._pairs(split, limit)
        decode = as_dataclass(DecodeConfig, decode) if decode is not None else self.val_decode
        self.network.eval()
        nll, n_tok = 0.0, 0
        src_units, tgt_units = self._units(split, limit)
        pairs = [(self.src_vocab.encode(s), self.tgt_vocab.encode(t)) for s, t in zip(src_units, tgt_units, strict=True)]
        for idx in eval_batches([len(s) for s, _ in pairs], decode.batch_size):
            _, nll_sum, n = self._loss(self._batch([pairs[i] for i in idx]), 1.0, 0.0)
            nll, n_tok = nll + nll_sum.item(), n_tok + n
        hyps = self._translate_units(src_units, decode)
        hyp_text = [h.text for h in hyps]
        refs = [detokenize(t, self.tokenizer) for t in tgt]
        b, b_sig = bleu(hyp_text, refs)
        c, c_sig = chrf(hyp_text, refs)
        self.last_hypotheses = hyp_text
        self.bleu_signature, self.chrf_signature = b_sig, c_sig
        mean_nll = nll / max(n_tok, 1)
        return {f"{split}/loss": mean_nll, f"{split}/ppl": perplexity(mean_nll), f"{split}/bleu": b, f"{split}/chrf": c}

    # ---------------------------------------------------------------------- decoding
    def tokenize_src(self, text: str) -> list[str]:
        return tokenizer_fn(self.tokenizer)(text.lower() if self.lowercase else text)

    @torch.no_grad()
    def translate(self, sentences: Sequence[str], decode: Any = None) -> list[Translation]:
        """Translate raw sentences (tokenised as the training data was)."""
        return self.translate_tokens([self.tokenize_src(s) for s in sentences], decode)

    @torch.no_grad()
    def translate_tokens(self, src_tokens: Sequence[Sequence[str]], decode: Any = None) -> list[Translation]:
        """Translate word-split sentences."""
        return self._translate_units(_units(self.src_subword, src_tokens), decode)

    @torch.no_grad()
    def _translate_units(self, src_units: list[list[str]], decode: Any = None) -> list[Translation]:
        """Translate sentences already in the source vocabulary's units (words or pieces)."""
        decode = as_dataclass(DecodeConfig, decode) if decode is not None else self.val_decode
        self.network.eval()
        network = decoding_copy(self.network, self._decoding_cache)
        v = self.tgt_vocab
        encoded = [self.src_vocab.encode(s)[: decode.max_len * 4] or [self.src_vocab.unk_id] for s in src_units]
        results: list[Translation | None] = [None] * len(encoded)
        strategy = getattr(decode.strategy, "value", decode.strategy)

        def encoder(idx: list[int]):
            def encode():
                src, src_len = pad([encoded[i] for i in idx], self.src_vocab.pad_id)
                return network.encode(src.to(self.device), src_len.to(self.device))
            return encode

        # the decoder's step weights, prepared once for every batch and thread of this call
        weights = network.decoder.decoding_weights(decode.batch_size * decode.rows_per_input, int8=decode.int8)

        def beam(idx: list[int]) -> Hypotheses:
            return beam_search(network.decoder, encoder(idx)(), v.bos_id, v.eos_id, decode.max_len,
                               decode.beam_size, decode.length_penalty, weights)

        def stream(chunk: list[list[int]]) -> list[Hypotheses]:
            sizes = [(len(idx), max(len(encoded[i]) for i in idx)) for idx in chunk]
            return greedy_stream(network.decoder, [encoder(idx) for idx in chunk], sizes, v.bos_id, v.eos_id,
                                 decode.max_len, sample=strategy == "sample", temperature=decode.temperature,
                                 top_k=decode.top_k, weights=weights)

        batches = list(eval_batches([len(s) for s in encoded], decode.batch_size))
        # sampling stays in one thread so that a seed gives the same samples
        workers = 1 if strategy == "sample" or self.device.type != "cpu" else decode.workers
        if strategy == "beam":
            hyps = map_batches(beam, batches, workers)
        else:  # greedy and sampling: one stream of batches per worker (see greedy_stream)
            n = worker_count(workers, len(batches))
            streams = map_batches(stream, [batches[k::n] for k in range(n) if batches[k::n]], workers)
            hyps = [streams[i % n][i // n] for i in range(len(batches))]
        for idx, hyp in zip(batches, hyps, strict=True):
            for row, i in enumerate(idx):
                toks = v.decode(hyp.tokens[row].tolist())
                words = toks if self.tgt_subword is None else self.tgt_subword.decode(toks)
                attn = None
                if hyp.attention is not None:
                    attn = hyp.attention[row, : len(toks) + 1, : len(encoded[i])].float().cpu()
                results[i] = Translation(src_units[i], toks, detokenize(words, self.tokenizer),
                                         float(hyp.scores[row]), attn)
        return results  # type: ignore[return-value]

    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        results = self.translate(inputs, decode)
        if out_dir:
            from seqlab.viz import save_attention_png

            for k, t in enumerate(results):
                if t.attention is not None:
                    save_attention_png(Path(out_dir) / f"attention_{k:03d}.png", t.attention, t.src_tokens,
                                       _attention_rows(t), title=t.text[:80])
        return [t.text for t in results]

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        if split not in self.splits or self.num_samples <= 0:
            return
        src, tgt = self._pairs(split, self.num_samples)
        for k, t in enumerate(self.translate_tokens(src)):
            ref = detokenize(tgt[k], self.tokenizer)
            logger.text(f"{split}/sample_{k}", f"**source:** {detokenize(src[k], self.tokenizer)}  \n"
                        f"**reference:** {ref}  \n**output:** {t.text}", step)
            if t.attention is not None:
                logger.attention(f"{split}/attention_{k}", t.attention, t.src_tokens, _attention_rows(t), step)

    # --------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {
            "src_vocab": self.src_vocab.to_list(),
            "tgt_vocab": self.tgt_vocab.to_list(),
            "tokenizer": self.tokenizer,
            "lowercase": self.lowercase,
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "subword": None if self.src_subword is None else {
                "shared": self.tgt_subword is self.src_subword,
                "src": self.src_subword.state(),
                "tgt": self.tgt_subword.state(),
            },
        }

    def hparams(self) -> dict[str, Any]:
        m = self.model_cfg
        return {
            "model": m.name, "cell": plain(m.cell), "attention": plain(m.attention), "emb_size": m.emb_size,
            "hidden_size": m.hidden_size, "num_layers": m.num_layers, "bidirectional": m.bidirectional,
            "dropout": m.dropout, "direction": f"{self.src_lang}-{self.tgt_lang}",
            "params": sum(p.numel() for p in self.network.parameters()),
        }


def _units(model: SubwordModel | None, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    """Word-split sentences as words (no subword model) or as the model's pieces."""
    return [list(s) for s in sentences] if model is None else list(map(model.encode, sentences))


def _learn_subwords(train: tuple[list[list[str]], list[list[str]]], cfg: SubwordConfig,
                    cache: Path | None = None):
    """(source model, target model) learnt from the training words, the same object when shared;
    (None, None) for ``task.subword.kind=none``. With ``cache`` (a path stem keyed by the corpus),
    a model learnt once is read back instead of learnt again."""
    kind = plain(cfg.kind)
    if kind == "none":
        return None, None

    def learn(side: str, sentences: list[list[str]]) -> SubwordModel:
        path = cache and cache.with_name(f"{cache.name}-{kind}-{cfg.vocab_size}-{side}.model")
        if path and path.is_file():
            log.info("subwords from cache %s", path)
            return SubwordModel(kind, path.read_bytes())
        model = SubwordModel.train(sentences, kind, cfg.vocab_size)
        if path:
            with atomic_file(path, "wb") as f:
                f.write(model.proto)
        return model

    src, tgt = train
    if cfg.shared:
        model = learn("joint", src + tgt)
        return model, model
    return learn("src", src), learn("tgt", tgt)


def _attention_rows(t: Translation) -> list[str]:
    """Row labels of an attention map: the output tokens, and </s> when the hypothesis ended."""
    return [*t.tokens, "</s>"][: t.attention.size(0)]




