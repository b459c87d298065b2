"""Many-to-one text classification (sentiment): a (bi)RNN reads the text, one label comes out.

Models without attention classify the final hidden state (both directions); ``*_attn`` models
pool the encoder states with a learned attention query, whose weights ``seqlab predict`` prints
per word (and draws as PNGs) and TensorBoard shows as images.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import random
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.config import (
    EmbeddingsConfig,
    LabelPretrainConfig,
    LMPretrainConfig,
    ModelConfig,
    plain,
)
from seqlab.data.batch import eval_batches, pad
from seqlab.data.classification import LabelledCorpus, LabelledSplit, tokenize_text, truncate
from seqlab.data.vocab import Vocab
from seqlab.errors import ConfigError, DataError, SeqlabError
from seqlab.metrics import accuracy, macro_f1
from seqlab.models.adversarial import adversarial_inputs, check_adversarial
from seqlab.models.heads import SequenceClassifier
from seqlab.runtime import autocast_dtype, resolve_device
from seqlab.tasks.base import StepOutput, Task, scaled_groups

log = logging.getLogger(__name__)


def _label_sort_key(label: str):
    return (0, int(label), label) if label.lstrip("-").isdigit() else (1, 0, label)


def check_labels(split: str, data: LabelledSplit, known: Sequence[str]) -> None:
    """Eval labels must be among the training labels (else the metric is meaningless)."""
    known = set(known)
    for lab, where in zip(data.labels, data.where, strict=True):
        if lab not in known:
            raise DataError(
                f"{where}: label {lab!r} in the {split} split never occurs in training "
                f"(training labels: {', '.join(sorted(known, key=_label_sort_key))})"
            )


def embeddings_config(spec: EmbeddingsConfig | dict | None) -> EmbeddingsConfig | None:
    """``task.embeddings`` as an ``EmbeddingsConfig`` (Hydra hands over a dict)."""
    return EmbeddingsConfig(**spec) if isinstance(spec, dict) else spec


def pretrain_vectors(spec: EmbeddingsConfig | dict | None, dim: int, cache_dir: str | None) -> EmbeddingsConfig | None:
    """``spec`` itself, or (``task.embeddings.pretrain``) ``spec`` with ``path`` naming skip-gram
    vectors trained now on the listed texts: in-budget pretraining, counted in the run's time."""
    spec = embeddings_config(spec)
    if spec is None or not spec.pretrain:
        return spec
    if spec.path:
        raise ConfigError("task.embeddings.path and task.embeddings.pretrain: give one of them (a file of "
                          "vectors, or the texts to train them on now)")
    from seqlab.data.raw_text import read_text
    from seqlab.data.vectors import write_vectors
    from seqlab.models.skipgram import train_skipgram

    t0 = time.perf_counter()
    sentences = [s for text in spec.pretrain for s in read_text(text, "task.embeddings.pretrain")]
    words, vectors = train_skipgram(sentences, dim, epochs=spec.pretrain_epochs, min_count=spec.pretrain_min_count)
    name = "_".join(Path(t).stem.replace(".", "_") for t in spec.pretrain)
    path = Path(cache_dir or tempfile.gettempdir()) / "vectors" / f"skipgram_{name}_{dim}d_{os.getpid()}.txt"
    write_vectors(path, words, vectors)
    log.info("task.embeddings.pretrain: %d vectors from %s in %.1f minutes, written to %s", len(words),
             " + ".join(spec.pretrain), (time.perf_counter() - t0) / 60, path)
    return dataclasses.replace(spec, path=str(path))


def with_vector_words(vocab: Vocab, spec: EmbeddingsConfig | dict | None, lowercase: bool = False) -> Vocab:
    """``vocab`` plus the words of the vectors file (``task.embeddings.extend_vocab``): words never
    seen in training then keep their pretrained vectors instead of all becoming ``<unk>``."""
    spec = embeddings_config(spec)
    if spec is None or not spec.path or not spec.extend_vocab:
        return vocab
    from seqlab.data.vectors import vector_words

    return extended(vocab, (w.lower() if lowercase else w for w in vector_words(spec.path)),
                    "task.embeddings.extend_vocab", spec.path)


def extended(vocab: Vocab, words: Iterable[str], key: str, source: str) -> Vocab:
    """``vocab`` with the ``words`` it lacks appended in their order (logged under config ``key``)."""
    added = [w for w in dict.fromkeys(words) if w not in vocab.stoi]
    log.info("%s: %d words of %s added to the %d of training", key, len(added), source, len(vocab))
    return Vocab([*vocab.itos, *added])


def init_embeddings(embedding: torch.nn.Embedding, spec: EmbeddingsConfig | dict | None, vocab: Vocab,
                    fixed: torch.nn.Embedding | None = None) -> None:
    """Copy pretrained vectors (task.embeddings.path) into the rows of the words they cover.

    With ``fixed`` (``task.embeddings.residual``) the vectors go there, frozen, and the covered rows
    of the trainable ``embedding`` start at zero: the two are summed, so a word never seen in
    training reads its pretrained vector in the same space as the words training moved."""
    spec = embeddings_config(spec)
    if spec is None or not spec.path:
        return
    from seqlab.data.vectors import load_vectors

    weight, found = load_vectors(spec.path, vocab, embedding.embedding_dim)
    with torch.no_grad():
        if fixed is not None:
            fixed.weight.copy_(weight)
            embedding.weight[found] = 0.0
        else:
            embedding.weight[found] = weight[found]
    embedding.weight.requires_grad_(not spec.freeze)


def lm_pretrain_config(spec: LMPretrainConfig | dict | None) -> LMPretrainConfig | None:
    """``task.lm_pretrain`` as an ``LMPretrainConfig`` (None when off), its values checked."""
    spec = LMPretrainConfig(**spec) if isinstance(spec, dict) else spec
    if spec is None or not spec.text:
        return None
    check_stage(spec, "task.lm_pretrain")
    return spec


def check_stage(spec: LMPretrainConfig | LabelPretrainConfig, key: str) -> None:
    """A pretraining stage's budget, precision and device are ones it can run with (``key``: its config key)."""
    if spec.minutes < 0 or spec.steps < 0 or (spec.minutes == 0 and spec.steps == 0):
        raise ConfigError(f"{key}: give a budget, minutes > 0 or steps > 0 (got minutes={spec.minutes}, "
                          f"steps={spec.steps})")
    if spec.precision not in ("fp32", "bf16", "fast"):
        raise ConfigError(f"{key}.precision={spec.precision!r}: fp32, bf16 or fast")
    if spec.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{key}.device={spec.device!r}: auto, cpu or cuda")


def finetune_groups(network: torch.nn.Module, spec: LMPretrainConfig | None, embedding: Iterable[torch.nn.Parameter],
                    pretrained: Iterable[torch.nn.Parameter]) -> list[dict[str, Any]]:
    """Optimizer groups after language-model pretraining (``spec``): the ``embedding`` parameters at
    ``embedding_lr_scale`` (default ``finetune_lr_scale``), the other ``pretrained`` ones at
    ``finetune_lr_scale``, the rest of ``network`` at the optimizer's rate (0 freezes a group)."""
    if spec is None or (spec.finetune_lr_scale == 1 and spec.embedding_lr_scale in (None, 1)):
        return [{"params": list(network.parameters())}]
    emb = spec.finetune_lr_scale if spec.embedding_lr_scale is None else spec.embedding_lr_scale
    try:
        return scaled_groups(network, [(list(embedding), emb), (list(pretrained), spec.finetune_lr_scale)])
    except ValueError as e:
        raise ConfigError(f"task.lm_pretrain.finetune_lr_scale / embedding_lr_scale: {e}") from None


def read_lm_text(spec: LMPretrainConfig, lowercase: bool = True) -> list[list[str]]:
    from seqlab.data.raw_text import read_text

    return [s for text in spec.text for s in read_text(text, "task.lm_pretrain.text", lowercase)]


def with_lm_words(vocab: Vocab, spec: LMPretrainConfig | None, sentences: list[list[str]]) -> Vocab:
    """``vocab`` plus the words of the pretraining text seen ``min_count`` times
    (``task.lm_pretrain.extend_vocab``), which the language model then gives trained rows."""
    if spec is None or not spec.extend_vocab:
        return vocab
    return extended(vocab, Vocab.build(sentences, spec.min_count).itos, "task.lm_pretrain.extend_vocab",
                    " + ".join(spec.text))


def pretrain_encoder(rnn: torch.nn.RNNBase, embed: torch.nn.Module, stream: torch.Tensor, n_ids: int,
                     skip_ids: Sequence[int], spec: LMPretrainConfig, dropout: float,
                     classes: torch.Tensor | None = None) -> None:
    """Train ``embed`` and ``rnn`` as a (bidirectional) language model over the id ``stream`` now
    (``seqlab.models.bilm``), on the GPU when there is one (``task.lm_pretrain.device``). The ids
    predict their ``classes`` (default: themselves ranked by frequency, never ``skip_ids``)."""
    from seqlab.models.bilm import frequency_ranks, pretrain_bilm

    if classes is None:
        classes, _ = frequency_ranks(stream, skip_ids, n_ids)
    device = resolve_device(spec.device)
    home = next(rnn.parameters()).device
    rnn.to(device), embed.to(device)
    unpredicted = 100 * int((classes[stream] < 0).sum()) / max(len(stream), 1)
    log.info("task.lm_pretrain: %s tokens of %s (%.1f%% not predicted: <unk>) on %s, at most %s minutes%s",
             f"{len(stream):,}", " + ".join(spec.text), unpredicted, device, f"{spec.minutes:g}",
             f" / {spec.steps} steps" if spec.steps else "")
    try:
        r = pretrain_bilm(rnn, embed, stream, n_ids, skip_ids, minutes=spec.minutes,
                          steps=spec.steps, seq_len=spec.seq_len, batch_size=spec.batch_size, lr=spec.lr,
                          cutoffs=spec.cutoffs, dropout=dropout,
                          precision="bf16" if autocast_dtype(spec.precision, device) == torch.bfloat16 else "fp32",
                          seed=torch.initial_seed() % 2**31, classes=classes)
    except ValueError as e:
        raise ConfigError(f"task.lm_pretrain: {e}") from None
    finally:
        rnn.to(home), embed.to(home)
    log.info("task.lm_pretrain: %d steps, %s tokens in %.1f minutes; loss %.3f -> %.3f nats per token", r.steps,
             f"{r.tokens:,}", r.seconds / 60, r.first_loss, r.last_loss)


def label_pretrain_config(spec: LabelPretrainConfig | dict | None) -> LabelPretrainConfig | None:
    """``task.label_pretrain`` as a ``LabelPretrainConfig`` (None when off; ``data`` stays a dict)."""
    spec = LabelPretrainConfig(**spec) if isinstance(spec, dict) else spec
    if spec is None or not spec.data:
        return None
    check_stage(spec, "task.label_pretrain")
    if spec.batch_size < 1 or not spec.lr > 0:
        raise ConfigError(f"task.label_pretrain: batch_size ({spec.batch_size}) and lr ({spec.lr}) must be positive")
    return spec


def read_label_pretrain(spec: LabelPretrainConfig) -> LabelledCorpus:
    """The labelled corpus of ``task.label_pretrain.data``, read as a task's own data would be."""
    from hydra.utils import get_method

    data = {k: v for k, v in spec.data.items() if not k.startswith("_")}
    load = get_method(spec.data.get("_target_", "seqlab.data.classification.load_classification"))
    if _takes_node(load):
        return load(**data, node="task.label_pretrain.data")
    try:
        return load(**data)
    except SeqlabError as e:  # a loader of the user's own names data.<key>; here it is task.label_pretrain.data.<key>
        raise type(e)(re.sub(r"(?<![\w./])data\.", "task.label_pretrain.data.", str(e))) from None


def _takes_node(fn) -> bool:
    """Whether data loader ``fn`` takes a ``node`` keyword (the config node its messages name)."""
    try:
        param = inspect.signature(fn).parameters.get("node")
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


@dataclass
class ClassBatch:
    src: torch.Tensor  # B x S
    lengths: torch.Tensor  # B
    labels: torch.Tensor  # B


@dataclass
class Prediction:
    tokens: list[str]
    label: str
    prob: float
    attention: torch.Tensor | None  # S, or None


class SentimentTask(Task):
    """Text classification; monitors validation accuracy (percent) and reports macro F1."""

    def __init__(
        self,
        model: ModelConfig,
        data: LabelledCorpus | None = None,
        state: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        name: str = "sentiment",
        monitor: str = "val/acc",
        monitor_mode: str = "max",
        vocab: dict | None = None,
        pooling: str = "auto",
        classifier_hidden: int = 0,
        embeddings: EmbeddingsConfig | dict | None = None,
        packed: bool = True,
        word_dropout: float = 0.0,
        adversarial: float = 0.0,
        lm_pretrain: LMPretrainConfig | dict | None = None,
        label_pretrain: LabelPretrainConfig | dict | None = None,
        eval_batch_size: int = 128,
        num_samples: int = 3,
    ):
        self.name, self.monitor, self.monitor_mode = name, monitor, monitor_mode
        self.eval_batch_size, self.num_samples, self.model_cfg = eval_batch_size, num_samples, model
        self.word_dropout, self.adversarial = word_dropout, check_adversarial(adversarial)
        if data is None and state is None:
            raise ValueError("SentimentTask needs data or a saved state")
        self.splits = data.splits if data is not None else {}
        lm = self.lm_spec = lm_pretrain_config(lm_pretrain)
        labelled = label_pretrain_config(label_pretrain)
        if state is not None:
            self.vocab, self.labels = Vocab(state["vocab"]), list(state["labels"])
            self.text_cfg = dict(state["text"])
        else:
            vocab = vocab or {}
            train = self.splits["train"]
            embeddings = pretrain_vectors(embeddings, model.emb_size, cache_dir)
            lm_text = read_lm_text(lm) if lm is not None else []
            self.vocab = Vocab.build(train.tokens, vocab.get("min_freq", 1), vocab.get("max_size", 50000))
            self.vocab = with_lm_words(with_vector_words(self.vocab, embeddings), lm, lm_text)
            if labelled is not None:
                corpus = read_label_pretrain(labelled)
                if labelled.extend_vocab:
                    self.vocab = extended(self.vocab, Vocab.build(corpus.splits["train"].tokens, labelled.min_count).itos,
                                          "task.label_pretrain.extend_vocab", "task.label_pretrain.data")
            self.labels = data.label_order or sorted(set(train.labels), key=_label_sort_key)
            self.text_cfg = {"tokenizer": data.tokenizer, "lowercase": data.lowercase,
                             "strip_html": data.strip_html, "max_len": data.max_len,
                             "truncation": data.truncation}
            log.info("vocabulary: %d words; labels: %s", len(self.vocab), ", ".join(self.labels))
        for split, s in self.splits.items():
            if split != "train":
                check_labels(split, s, self.labels)
        self.label_id = {lab: i for i, lab in enumerate(self.labels)}
        pooling = plain(pooling)
        if pooling == "auto":
            pooling = "final" if plain(model.attention) == "none" else "attention"
        self.pooling = pooling
        if model.hidden_size % (2 if model.bidirectional else 1):
            raise SeqlabError(f"model.hidden_size={model.hidden_size} must be even for a bidirectional encoder")
        if classifier_hidden < 0:
            raise ConfigError(f"task.classifier_hidden={classifier_hidden}: 0 (no hidden layer) or a positive size")
        self.network = SequenceClassifier(model, len(self.vocab), len(self.labels), self.vocab.pad_id, pooling,
                                          packed, classifier_hidden)
        if state is None:
            init_embeddings(self.network.encoder.embed, embeddings, self.vocab)
            if lm is not None:
                enc = self.network.encoder
                stream = torch.tensor([i for sent in lm_text for i in self.vocab.encode(sent)], dtype=torch.long)
                pretrain_encoder(enc.rnn, enc.embed, stream, len(self.vocab), (self.vocab.pad_id, self.vocab.unk_id),
                                 lm, model.dropout)
            if labelled is not None:
                self._pretrain_on_labels(corpus, labelled)
        self._encoded: dict[str, tuple[list[list[int]], list[int]]] = {}
        self._train = self._encode("train") if data is not None else None

    def parameter_groups(self) -> list[dict[str, Any]]:
        """With ``task.lm_pretrain``, the pretrained embedding and RNN at their ``*_lr_scale``."""
        enc = self.network.encoder
        return finetune_groups(self.network, self.lm_spec, enc.embed.parameters(), enc.rnn.parameters())

    def _pretrain_on_labels(self, corpus: LabelledCorpus, spec: LabelPretrainConfig) -> None:
        """Train the network on ``corpus``'s labels for ``spec``'s budget (``task.label_pretrain``):
        when they have the task's label names (and ``share_head``), through its own output layer,
        which then starts the task's training where this left it; otherwise through a fresh one,
        thrown away after."""
        train, network = corpus.splits["train"], self.network
        names = corpus.label_order or sorted(set(train.labels), key=_label_sort_key)
        shared = spec.share_head and list(names) == list(self.labels)
        home = self.device
        self.to(resolve_device(spec.device))
        device = self.device
        out = None if shared else torch.nn.Linear(network.out.in_features, len(names)).to(device)
        ids = {name: i for i, name in enumerate(names)}
        seqs = [self.vocab.encode(t) for t in train.tokens]
        targets = [ids[y] for y in train.labels]
        params = [p for p in [*network.parameters(), *(out.parameters() if out else [])] if p.requires_grad]
        opt = torch.optim.Adam(params, lr=spec.lr)
        bf16 = autocast_dtype(spec.precision, device) == torch.bfloat16
        by_length = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        batches = [by_length[i : i + spec.batch_size] for i in range(0, len(seqs), spec.batch_size)]
        rng = random.Random(torch.initial_seed())
        log.info("task.label_pretrain: %s labelled texts (labels %s; %s) on %s, at most %s minutes%s",
                 f"{len(seqs):,}", ", ".join(names), "the task's output layer" if shared else
                 "an output layer of its own", device, f"{spec.minutes:g}", f" / {spec.steps} steps" if spec.steps else "")
        t0 = time.perf_counter()
        step = tokens = texts = 0
        window = {"loss": 0.0, "right": 0, "n": 0}

        def over() -> bool:
            return (spec.steps > 0 and step >= spec.steps) or (spec.minutes > 0 and time.perf_counter() - t0 >= spec.minutes * 60)

        def logits_of(b: ClassBatch) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return network.classify(network.pool_text(b.src, b.lengths)[0], out)

        network.train()
        while not over():
            rng.shuffle(batches)
            for idx in batches:
                if over():
                    break
                b = self._batch([seqs[i] for i in idx], [targets[i] for i in idx])
                logits = logits_of(b)
                loss = F.cross_entropy(logits.float(), b.labels)
                if not math.isfinite(loss.item()):
                    raise ConfigError(f"task.label_pretrain: the loss is {loss.item()} at step {step + 1}; "
                                      f"lower task.label_pretrain.lr ({spec.lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                for group in opt.param_groups:  # linear warm-up: the output layer starts random
                    group["lr"] = spec.lr * min(1.0, (step + 1) / max(spec.warmup_steps, 1))
                opt.step()
                step, tokens, texts = step + 1, tokens + int(b.lengths.sum()), texts + len(idx)
                window["loss"] += loss.item() * len(idx)
                window["right"] += int((logits.argmax(-1) == b.labels).sum())
                window["n"] += len(idx)
                if step % 100 == 0:
                    el = time.perf_counter() - t0
                    log.info("label pretraining: step %d  loss %.3f  acc %.2f  %.0f tok/s  %.1f min", step,
                             window["loss"] / window["n"], 100 * window["right"] / window["n"], tokens / el, el / 60)
                    window = {"loss": 0.0, "right": 0, "n": 0}
        seconds = time.perf_counter() - t0
        summary = ""
        val = corpus.splits.get("val")
        if spec.eval_limit > 0 and val is not None:
            network.eval()
            n = min(spec.eval_limit, len(val.labels))
            val_ids = [self.vocab.encode(t) for t in val.tokens[:n]]
            right = 0
            with torch.no_grad():
                for idx in eval_batches([len(s) for s in val_ids], self.eval_batch_size):
                    b = self._batch([val_ids[i] for i in idx], [ids.get(val.labels[i], -1) for i in idx])
                    right += int((logits_of(b).argmax(-1) == b.labels).sum())
            summary = f"; its val/acc {100 * right / max(n, 1):.2f} (first {n} texts)"
            network.train()
        self.to(home)
        log.info("task.label_pretrain: %d steps, %s texts (%.2f passes), %s tokens in %.1f minutes%s", step,
                 f"{texts:,}", texts / max(len(seqs), 1), f"{tokens:,}", seconds / 60, summary)

    # ------------------------------------------------------------------------ data
    def _encode(self, split: str) -> tuple[list[list[int]], list[int]]:
        if split not in self._encoded:
            if split not in self.splits:
                raise DataError(f"split {split!r} is not in the data (have: {', '.join(self.splits)})")
            s = self.splits[split]
            self._encoded[split] = ([self.vocab.encode(t) for t in s.tokens], [self.label_id[lab] for lab in s.labels])
        return self._encoded[split]

    def train_lengths(self) -> list[int]:
        return [len(s) for s in self._train[0]]

    def _batch(self, seqs: Sequence[list[int]], labels: Sequence[int]) -> ClassBatch:
        src, lengths = pad([s or [self.vocab.unk_id] for s in seqs], self.vocab.pad_id)
        d = self.device
        return ClassBatch(src.to(d), lengths.to(d), torch.tensor(list(labels), dtype=torch.long, device=d))

    def collate(self, indices: Sequence[int]) -> ClassBatch:
        seqs, labels = self._train
        batch = self._batch([seqs[i] for i in indices], [labels[i] for i in indices])
        if self.word_dropout > 0:  # training words -> <unk>, so that <unk> is a trained input
            drop = (torch.rand(batch.src.shape) < self.word_dropout).to(batch.src.device)
            batch.src = batch.src.masked_fill(drop & (batch.src != self.vocab.pad_id), self.vocab.unk_id)
        return batch

    # ---------------------------------------------------------------------- training
    def training_step(self, batch: ClassBatch) -> StepOutput:
        x = self.network.encoder.embed(batch.src)  # B x S x E
        loss = self._loss(x, batch)
        logs = {"loss": loss.item()}
        if self.adversarial > 0:  # and the loss at the word vectors moved against it
            adv = self._loss(adversarial_inputs(loss, x, batch.lengths, self.adversarial), batch)
            logs["adv_loss"] = adv.item()
            loss = loss + adv
        return StepOutput(loss=loss, n_tokens=int(batch.lengths.sum()), logs=logs)

    def _loss(self, x: torch.Tensor, batch: ClassBatch) -> torch.Tensor:
        """Cross-entropy of the classifier reading word vectors ``x`` (B x S x E) for ``batch``."""
        vec, _ = self.network.pool_text(batch.src, batch.lengths, x)
        return F.cross_entropy(self.network.classify(vec).float(), batch.labels)

    # -------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "val", limit: int | None = None, decode: Any = None) -> dict[str, float]:
        seqs, labels = self._encode(split)
        if limit:
            seqs, labels = seqs[:limit], labels[:limit]
        self.network.eval()
        preds = [0] * len(seqs)
        nll = 0.0
        for idx in eval_batches([len(s) for s in seqs], self.eval_batch_size):
            b = self._batch([seqs[i] for i in idx], [labels[i] for i in idx])
            logits, _ = self.network(b.src, b.lengths)
            nll += F.cross_entropy(logits.float(), b.labels, reduction="sum").item()
            for i, p in zip(idx, logits.argmax(-1).tolist(), strict=True):
                preds[i] = p
        self.last_hypotheses = [self.labels[p] for p in preds]
        return {
            f"{split}/loss": nll / max(len(seqs), 1),
            f"{split}/acc": accuracy(labels, preds),
            f"{split}/f1": macro_f1(labels, preds, range(len(self.labels))),
        }

    # ---------------------------------------------------------------------- prediction
    def tokenize(self, text: str) -> list[str]:
        c = self.text_cfg
        toks = tokenize_text(text, c["tokenizer"], c["lowercase"], c["strip_html"])
        return truncate(toks, c["max_len"], c.get("truncation", "head"))  # older checkpoints: head

    @torch.no_grad()
    def classify_tokens(self, token_lists: Sequence[list[str]], batch_size: int = 0) -> list[Prediction]:
        self.network.eval()
        seqs = [self.vocab.encode(t) for t in token_lists]
        out: list[Prediction | None] = [None] * len(seqs)
        for idx in eval_batches([len(s) for s in seqs], batch_size or self.eval_batch_size):
            b = self._batch([seqs[i] for i in idx], [0] * len(idx))
            logits, weights = self.network(b.src, b.lengths)
            probs = torch.softmax(logits.float(), -1)
            for row, i in enumerate(idx):
                p = int(probs[row].argmax())
                n = len(token_lists[i])
                attn = weights[row, :n].float().cpu() if weights is not None else None
                out[i] = Prediction(list(token_lists[i]), self.labels[p], float(probs[row, p]), attn)
        return out  # type: ignore[return-value]

    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        """``label<TAB>probability<TAB>text``; with attention the text shows each word's weight,
        ``word(0.31)``, and ``out_dir`` gets one heatmap PNG per input."""
        batch_size = int(dict(decode or {}).get("batch_size", 0) or 0)
        tokens = [self.tokenize(x) for x in inputs]
        empty = [k + 1 for k, t in enumerate(tokens) if not t]
        if empty:
            raise DataError(f"input line {empty[0]}: empty text (nothing to classify)")
        preds = self.classify_tokens(tokens, batch_size)
        lines = []
        for k, p in enumerate(preds):
            if p.attention is not None:
                text = " ".join(f"{w}({a:.2f})" for w, a in zip(p.tokens, p.attention.tolist(), strict=True))
                if out_dir:
                    from seqlab.viz import save_attention_png

                    save_attention_png(Path(out_dir) / f"attention_{k:03d}.png", p.attention[None], p.tokens,
                                       [p.label], title=f"{p.label} ({p.prob:.2f})")
            else:
                text = " ".join(p.tokens)
            lines.append(f"{p.label}\t{p.prob:.3f}\t{text}")
        return lines

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        if split not in self.splits or self.num_samples <= 0:
            return
        s = self.splits[split]
        for k, p in enumerate(self.classify_tokens(s.tokens[: self.num_samples])):
            logger.text(f"{split}/sample_{k}", f"**text:** {' '.join(p.tokens)}  \n**gold:** {s.labels[k]}  \n"
                        f"**predicted:** {p.label} ({p.prob:.2f})", step)
            if p.attention is not None:
                logger.attention(f"{split}/attention_{k}", p.attention[None], p.tokens, [p.label], step)

    # --------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_list(), "labels": list(self.labels), "text": dict(self.text_cfg)}

    def ensemble_signature(self) -> dict[str, Any]:
        """What checkpoints averaged as an ensemble must share (they see the same input tensors)."""
        return {"vocabulary": self.vocab.to_list(), "labels": list(self.labels),
                "text processing (tokenizer, lower-casing, truncation)": dict(self.text_cfg)}

    def hparams(self) -> dict[str, Any]:
        m = self.model_cfg
        return {
            "model": m.name, "cell": plain(m.cell), "attention": plain(m.attention), "pooling": self.pooling,
            "emb_size": m.emb_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
            "bidirectional": m.bidirectional, "dropout": m.dropout, "packed": self.network.packed,
            "word_dropout": self.word_dropout,
            "adversarial": self.adversarial,
            "params": sum(p.numel() for p in self.network.parameters()),
        }
