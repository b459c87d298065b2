"""Many-to-many tagging: one label per input token (POS tagging on UD English-EWT by default).

A bidirectional RNN reads word embeddings, optionally joined with character features of each
word (a char CNN or BiLSTM, which is what tags words never seen in training); ``*_attn`` models
also attend over the whole sentence at each position. ``seqlab predict`` prints ``word/TAG``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.config import EmbeddingsConfig, LMPretrainConfig, ModelConfig, plain
from seqlab.data.batch import eval_batches, pad
from seqlab.data.conllu import TaggedCorpus
from seqlab.data.text import tokenizer_fn
from seqlab.data.vocab import Vocab
from seqlab.errors import ConfigError, DataError
from seqlab.metrics import accuracy, macro_f1
from seqlab.models.adversarial import adversarial_inputs, check_adversarial
from seqlab.models.bilm import frequency_ranks
from seqlab.models.heads import SequenceTagger, word_char_inputs
from seqlab.tasks.base import StepOutput, Task
from seqlab.tasks.sentiment import (
    embeddings_config,
    finetune_groups,
    init_embeddings,
    lm_pretrain_config,
    pretrain_encoder,
    pretrain_vectors,
    read_lm_text,
    with_lm_words,
    with_vector_words,
)

log = logging.getLogger(__name__)


class FormInputs(torch.nn.Module):
    """The tagger's RNN input for a stream of word *forms* (distinct cased tokens, the ids of
    language-model pretraining): each form's (lower-cased) word embedding joined with the character
    features of its spelling, computed once per distinct form of the batch. It holds the tagger's
    own embedding and character modules, so pretraining through it trains them."""

    def __init__(self, network: SequenceTagger, word_of_form: torch.Tensor, chars_of_form: torch.Tensor):
        super().__init__()
        self.embed, self.fixed_embed, self.chars = network.embed, network.fixed_embed, network.chars
        self.register_buffer("word_of_form", word_of_form)  # F
        self.register_buffer("chars_of_form", chars_of_form)  # F x L (0 = padding)

    def forward(self, forms: torch.Tensor) -> torch.Tensor:
        """B x S form ids -> B x S x (E + F)."""
        distinct, index = torch.unique(forms, return_inverse=True)
        rows = self.chars_of_form[distinct]
        rows = rows[:, : int((rows != 0).sum(1).max())]  # as wide as the batch's longest form, as in training
        return word_char_inputs(self.embed, self.fixed_embed, self.chars, self.word_of_form[forms], rows, index)


@dataclass
class TagBatch:
    words: torch.Tensor  # B x S
    lengths: torch.Tensor  # B
    chars: torch.Tensor | None  # U x L: the batch's distinct words, longest first (0 = padding)
    tags: torch.Tensor  # B x S (-100 at padding)
    char_index: torch.Tensor | None = None  # B x S: the row of ``chars`` for each position
    aux: list[torch.Tensor] = field(default_factory=list)  # B x S per auxiliary tag set (-100: padding, unseen)


class TaggingTask(Task):
    """Sequence labelling; monitors token accuracy (percent), reports macro F1 over tags.

    With ``data.aux_columns`` the network also learns those tag sets (XPOS, FEATS, ...) from the
    same states, their losses added with ``aux_weight``; ``val/acc_<column>`` reports each."""

    IGNORE = -100

    def __init__(
        self,
        model: ModelConfig,
        data: TaggedCorpus | None = None,
        state: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        name: str = "tagging",
        monitor: str = "val/acc",
        monitor_mode: str = "max",
        vocab: dict | None = None,
        char_features: str = "cnn",
        char_emb_size: int = 32,
        char_hidden_size: int = 64,
        max_word_len: int = 24,
        word_dropout: float = 0.0,
        word_dropout_alpha: float = 0.0,
        lowercase_words: bool = False,
        aux_weight: float = 1.0,
        adversarial: float = 0.0,
        embeddings: EmbeddingsConfig | dict | None = None,
        lm_pretrain: LMPretrainConfig | dict | None = None,
        packed: bool = True,
        eval_batch_size: int = 128,
        num_samples: int = 3,
    ):
        self.name, self.monitor, self.monitor_mode = name, monitor, monitor_mode
        self.max_word_len, self.word_dropout, self.lowercase_words = max_word_len, word_dropout, lowercase_words
        self.word_dropout_alpha, self.aux_weight = word_dropout_alpha, aux_weight
        if not 0.0 <= word_dropout <= 1.0 or word_dropout_alpha < 0:
            raise ConfigError(f"task.word_dropout={word_dropout} must be in [0, 1] and "
                            f"task.word_dropout_alpha={word_dropout_alpha} >= 0")
        self.adversarial = check_adversarial(adversarial)
        self.eval_batch_size, self.num_samples, self.model_cfg = eval_batch_size, num_samples, model
        self.char_features = plain(char_features)
        if data is None and state is None:
            raise ValueError("TaggingTask needs data or a saved state")
        self.splits = data.splits if data is not None else {}
        lm = self.lm_spec = lm_pretrain_config(lm_pretrain)
        if state is not None:
            self.vocab, self.char_vocab = Vocab(state["vocab"]), Vocab(state["char_vocab"])
            self.tags, self.tokenizer = list(state["tags"]), state["tokenizer"]
            self.tag_column = state.get("tag_column", "")
            self.aux_tags = {c: list(t) for c, t in state.get("aux_tags", {}).items()}
        else:
            vocab = vocab or {}
            train = self.splits["train"]
            embeddings = pretrain_vectors(embeddings, model.emb_size, cache_dir)
            lm_text = read_lm_text(lm, lowercase=False) if lm is not None else []  # the char features read case
            words = [[w.lower() for w in s] for s in train.tokens] if lowercase_words else train.tokens
            self.vocab = with_vector_words(Vocab.build(words, vocab.get("min_freq", 1), vocab.get("max_size", 50000)),
                                           embeddings, lowercase_words)
            self.vocab = with_lm_words(self.vocab, lm, [[w.lower() for w in s] for s in lm_text]
                                       if lowercase_words else lm_text)
            self.char_vocab = Vocab.build((w for s in train.tokens for w in s), 1, 0)
            self.tags = sorted({t for s in train.tags for t in s})
            self.aux_tags = {c: sorted({t for s in train.aux[c] for t in s}) for c in data.aux_columns}
            self.tokenizer, self.tag_column = data.tokenizer, data.tag_column
            log.info("vocabulary: %d words, %d characters; %d tags: %s", len(self.vocab), len(self.char_vocab),
                     len(self.tags), " ".join(self.tags))
            for c, tags in self.aux_tags.items():
                log.info("auxiliary tags %s (loss weight %g): %d", c, aux_weight, len(tags))
        if not plain(model.bidirectional):
            log.warning("model.bidirectional=false: the tagger sees only the words to the left")
        self.tag_id = {t: i for i, t in enumerate(self.tags)}
        self.aux_id = {c: {t: i for i, t in enumerate(tags)} for c, tags in self.aux_tags.items()}
        for split, s in self.splits.items():
            unseen = {t for sent in s.tags for t in sent} - set(self.tag_id)
            if unseen and split != "train":
                raise DataError(f"data.{split}: tag(s) {', '.join(sorted(unseen))} never occur in training "
                                f"(training tags: {' '.join(self.tags)})")
        spec = embeddings_config(embeddings)
        residual = bool(spec is not None and (spec.path or spec.pretrain) and spec.residual)
        self.network = SequenceTagger(model, len(self.vocab), len(self.tags), self.vocab.pad_id, self.char_features,
                                      len(self.char_vocab), char_emb_size, char_hidden_size, packed, residual,
                                      [len(t) for t in self.aux_tags.values()])
        if state is None:
            init_embeddings(self.network.embed, spec, self.vocab, self.network.fixed_embed)
            if lm is not None:
                self._pretrain(lm_text, lm, model.dropout)
        self._encoded: dict[str, list[tuple[list[int], list[list[int]], list[int]]]] = {}
        self._train = self._encode("train") if data is not None else None
        self._drop_p = self._dropout_probabilities() if data is not None else None

    def parameter_groups(self) -> list[dict[str, Any]]:
        """With ``task.lm_pretrain``, the pretrained input (embedding and character features) and
        first RNN layer at their ``*_lr_scale``."""
        net = self.network
        inputs = [*net.embed.parameters(), *(net.chars.parameters() if net.chars is not None else [])]
        first = [p for n, p in net.rnn.named_parameters() if n.endswith(("_l0", "_l0_reverse"))]
        return finetune_groups(net, self.lm_spec, inputs, first)

    def _pretrain(self, sentences: list[list[str]], spec: LMPretrainConfig, dropout: float) -> None:
        """task.lm_pretrain: the embedding, character features and first RNN layer learn to predict
        the next (forward) and previous (backward) lower-cased word of ``sentences``, read as forms."""
        form_id: dict[str, int] = {}
        stream = torch.tensor([form_id.setdefault(w, len(form_id)) for sent in sentences for w in sent], dtype=torch.long)
        forms = list(form_id)
        word_ids, chars = self._encode_words(forms)
        word_of_form = torch.tensor(word_ids)
        chars_of_form = torch.zeros(len(forms), max(map(len, chars)), dtype=torch.long)
        for r, c in enumerate(chars):
            chars_of_form[r, : len(c)] = torch.tensor(c)
        # each form predicts as its word (padding and <unk>: never)
        rank, _ = frequency_ranks(word_of_form[stream], (self.vocab.pad_id, self.vocab.unk_id), len(self.vocab))
        inputs = FormInputs(self.network, word_of_form, chars_of_form)
        pretrain_encoder(self.network.rnn, inputs, stream, len(forms), (), spec, dropout, rank[word_of_form])

    def _dropout_probabilities(self) -> torch.Tensor:
        """Per word id: the chance that a training occurrence becomes ``<unk>``: ``word_dropout``
        plus ``alpha / (alpha + count)`` (Kiperwasser & Goldberg 2016), so that rare words, the
        ones most like words never seen, are dropped most; never padding or ``<unk>`` itself."""
        counts = Counter(w for words, *_ in self._train for w in words)
        c = torch.tensor([counts.get(i, 0) for i in range(len(self.vocab))], dtype=torch.float)
        a = self.word_dropout_alpha
        p = self.word_dropout + (a / (a + c) if a > 0 else torch.zeros_like(c))
        p[[self.vocab.pad_id, self.vocab.unk_id]] = 0.0
        return p.clamp(max=1.0)

    # ------------------------------------------------------------------------ data
    def _encode_words(self, words: Sequence[str]) -> tuple[list[int], list[list[int]]]:
        chars = [self.char_vocab.encode(w[: self.max_word_len]) or [self.char_vocab.unk_id] for w in words]
        return self.vocab.encode([w.lower() for w in words] if self.lowercase_words else words), chars

    def _encode(self, split: str):
        if split not in self._encoded:
            if split not in self.splits:
                raise DataError(f"split {split!r} is not in the data (have: {', '.join(self.splits)})")
            s = self.splits[split]
            # auxiliary tags never seen in training (a rare FEATS bundle, say) are not scored
            aux = [[[ids.get(t, self.IGNORE) for t in tags] for tags in s.aux[c]] for c, ids in self.aux_id.items()]
            self._encoded[split] = [(*self._encode_words(w), [self.tag_id[t] for t in tags], [a[k] for a in aux])
                                    for k, (w, tags) in enumerate(zip(s.tokens, s.tags, strict=True))]
        return self._encoded[split]

    def train_lengths(self) -> list[int]:
        return [len(w) for w, *_ in self._train]

    def _batch(self, items: Sequence[tuple[list[int], list[list[int]], list[int], list[list[int]]]],
               train: bool = False) -> TagBatch:
        """``items``: (word ids, character ids per word, tag ids, auxiliary tag ids per tag set)."""
        words, lengths = pad([w for w, *_ in items], self.vocab.pad_id)
        tags, _ = pad([t for _, _, t, _ in items], self.IGNORE)
        aux = [pad([it[3][k] for it in items], self.IGNORE)[0].to(self.device) for k in range(len(items[0][3]))]
        if train and (self.word_dropout > 0 or self.word_dropout_alpha > 0):
            words = words.masked_fill(torch.rand(words.shape) < self._drop_p[words], self.vocab.unk_id)
        chars = index = None
        if self.char_features != "none":
            # character features are computed once per distinct word of the batch (about half of
            # its tokens), and the network gathers them back to the positions
            rows: dict[tuple[int, ...], int] = {}
            index = torch.zeros(words.shape, dtype=torch.long)  # padding positions read row 0
            for b, (_, cs, *_) in enumerate(items):
                index[b, : len(cs)] = torch.tensor([rows.setdefault(tuple(c), len(rows)) for c in cs])
            distinct = sorted(rows, key=lambda c: (-len(c), rows[c]))  # longest first
            order = torch.empty(len(distinct), dtype=torch.long)
            order[[rows[c] for c in distinct]] = torch.arange(len(distinct))
            index = order[index]
            chars = torch.zeros(len(distinct), len(distinct[0]), dtype=torch.long)
            for r, c in enumerate(distinct):
                chars[r, : len(c)] = torch.tensor(c)
            chars, index = chars.to(self.device), index.to(self.device)
        d = self.device
        return TagBatch(words.to(d), lengths.to(d), chars, tags.to(d), index, aux)

    def collate(self, indices: Sequence[int]) -> TagBatch:
        return self._batch([self._train[i] for i in indices], train=True)

    # ---------------------------------------------------------------------- training
    def training_step(self, batch: TagBatch) -> StepOutput:
        x = self.network.inputs(batch.words, batch.chars, batch.char_index)
        loss, tag_loss = self._loss(x, batch)
        logs = {"loss": loss.item()}
        if batch.aux:
            logs["tag_loss"] = tag_loss.item()
        if self.adversarial > 0:  # and the loss at the input vectors moved against it
            adv, _ = self._loss(adversarial_inputs(loss, x, batch.lengths, self.adversarial), batch)
            logs["adv_loss"] = adv.item()
            loss = loss + adv
        return StepOutput(loss=loss, n_tokens=int(batch.lengths.sum()), logs=logs)

    def _loss(self, x: torch.Tensor, batch: TagBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss over input vectors ``x`` (the main tags' plus each auxiliary set's,
        weighted) and the main tags' part alone."""
        logits, _, aux_logits = self.network.tag(x, batch.lengths, with_aux=True)
        loss = tag_loss = self._nll(logits, batch.tags)
        for a, gold in zip(aux_logits, batch.aux, strict=True):
            loss = loss + self.aux_weight * self._nll(a, gold)
        return loss, tag_loss

    def _nll(self, logits: torch.Tensor, gold: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1).float(), gold.flatten(), ignore_index=self.IGNORE,
                               reduction=reduction)

    # -------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _tag(self, items, batch_size: int = 0):
        """Predicted tag ids per sentence, attention (S x S or None) per sentence, summed nll, and
        the accuracy (percent) of each auxiliary tag set the items carry."""
        self.network.eval()
        preds: list[list[int]] = [[] for _ in items]
        attn: list[torch.Tensor | None] = [None] * len(items)
        nll = 0.0
        # an ensemble (ProbabilityAverage) reads the main tags only
        with_aux = bool(items and items[0][3] and getattr(self.network, "aux_out", None))
        aux_hits = torch.zeros(len(self.aux_tags) if with_aux else 0, 2)  # correct, scored
        for idx in eval_batches([len(w) for w, *_ in items], batch_size or self.eval_batch_size):
            b = self._batch([items[i] for i in idx])
            if with_aux:
                logits, weights, aux_logits = self.network(b.words, b.lengths, b.chars, b.char_index, with_aux=True)
            else:
                (logits, weights), aux_logits = self.network(b.words, b.lengths, b.chars, b.char_index), []
            nll += self._nll(logits, b.tags, "sum").item()
            for k, (a, gold) in enumerate(zip(aux_logits, b.aux if with_aux else [], strict=True)):
                scored = gold != self.IGNORE
                aux_hits[k] += torch.tensor([int((a.argmax(-1) == gold)[scored].sum()), int(scored.sum())])
            best = logits.argmax(-1).tolist()
            for row, i in enumerate(idx):
                n = len(items[i][0])
                preds[i] = best[row][:n]
                if weights is not None:
                    attn[i] = weights[row, :n, :n].float().cpu()
        aux_acc = {c: 100 * float(h[0] / h[1].clamp(min=1)) for c, h in zip(self.aux_tags, aux_hits, strict=True)
                   } if with_aux else {}
        return preds, attn, nll, aux_acc

    def evaluate(self, split: str = "val", limit: int | None = None, decode: Any = None) -> dict[str, float]:
        items = self._encode(split)
        if limit:
            items = items[:limit]
        preds, _, nll, aux_acc = self._tag(items)
        gold = [t for _, _, tags, _ in items for t in tags]
        flat = [p for sent in preds for p in sent]
        self.last_hypotheses = [" ".join(self.tags[p] for p in sent) for sent in preds]
        return {
            f"{split}/loss": nll / max(len(gold), 1),
            f"{split}/acc": accuracy(gold, flat),
            f"{split}/f1": macro_f1(gold, flat, range(len(self.tags))),
            **{f"{split}/acc_{c}": acc for c, acc in aux_acc.items()},
        }

    # ---------------------------------------------------------------------- prediction
    def tag_sentences(self, sentences: Sequence[Sequence[str]], batch_size: int = 0):
        items = [(*self._encode_words(s), [0] * len(s), []) for s in sentences]
        preds, attn, *_ = self._tag(items, batch_size)
        return [[self.tags[p] for p in sent] for sent in preds], attn

    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        """``word/TAG word/TAG ...`` per input; ``out_dir`` gets word-by-word attention PNGs."""
        batch_size = int(dict(decode or {}).get("batch_size", 0) or 0)
        tok = tokenizer_fn(self.tokenizer)
        sentences = [tok(x) for x in inputs]
        if any(not s for s in sentences):
            raise DataError("input: an empty sentence (nothing to tag)")
        tags, attn = self.tag_sentences(sentences, batch_size)
        if out_dir:
            from seqlab.viz import save_attention_png

            for k, a in enumerate(attn):
                if a is not None:
                    labels = [f"{w}/{t}" for w, t in zip(sentences[k], tags[k], strict=True)]
                    save_attention_png(Path(out_dir) / f"attention_{k:03d}.png", a, sentences[k], labels)
        return [" ".join(f"{w}/{t}" for w, t in zip(s, ts, strict=True)) for s, ts in zip(sentences, tags, strict=True)]

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        if split not in self.splits or self.num_samples <= 0:
            return
        s = self.splits[split]
        sents = s.tokens[: self.num_samples]
        tags, attn = self.tag_sentences(sents)
        for k, sent in enumerate(sents):
            shown = " ".join(f"{w}/{t}" if t == g else f"**{w}/{t}** (gold {g})"
                             for w, t, g in zip(sent, tags[k], s.tags[k], strict=True))
            logger.text(f"{split}/sample_{k}", shown, step)
            if attn[k] is not None:
                logger.attention(f"{split}/attention_{k}", attn[k], sent, [f"{w}/{t}" for w, t in zip(sent, tags[k], strict=True)], step)

    # --------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_list(), "char_vocab": self.char_vocab.to_list(), "tags": list(self.tags),
                "tokenizer": self.tokenizer, "tag_column": self.tag_column, "aux_tags": self.aux_tags}

    def ensemble_signature(self) -> dict[str, Any]:
        """What checkpoints averaged as an ensemble must share (they see the same input tensors)."""
        return {"vocabulary": self.vocab.to_list(), "character vocabulary": self.char_vocab.to_list(),
                "tags": list(self.tags), "tag column": self.tag_column, "tokenizer": self.tokenizer,
                "task.lowercase_words": self.lowercase_words, "task.max_word_len": self.max_word_len,
                "use of character features": self.char_features != "none"}

    def hparams(self) -> dict[str, Any]:
        m = self.model_cfg
        return {
            "model": m.name, "cell": plain(m.cell), "attention": plain(m.attention), "char_features": self.char_features,
            "emb_size": m.emb_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
            "dropout": m.dropout, "word_dropout": self.word_dropout,
            "word_dropout_alpha": self.word_dropout_alpha, "lowercase_words": self.lowercase_words,
            "adversarial": self.adversarial,
            "packed": self.network.packed, "tags": self.tag_column,
            "aux_tags": ",".join(self.aux_tags), "aux_weight": self.aux_weight,
            "params": sum(p.numel() for p in self.network.parameters()),
        }
