"""Corpus metrics (sacrebleu) and simple classification metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import sacrebleu


def bleu(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> tuple[float, str]:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exp smoothing) and its signature.

    ``refs`` is one reference per hypothesis, or a list of reference streams (several references).
    """
    streams = [list(refs)] if refs and isinstance(refs[0], str) else [list(r) for r in refs]
    metric = sacrebleu.metrics.BLEU()
    score = metric.corpus_score(list(hyps), streams)
    return score.score, str(metric.get_signature())


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    metric = sacrebleu.metrics.CHRF()
    score = metric.corpus_score(list(hyps), [list(refs)])
    return score.score, str(metric.get_signature())


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token), capped so a diverged model stays printable."""
    return math.exp(min(mean_nll, 50.0))


def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Fraction of positions where ``pred`` equals ``gold`` (in percent, like BLEU)."""
    if not gold:
        return 0.0
    return 100.0 * sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)


def macro_f1(gold: Sequence, pred: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean over classes of F1 (in percent); classes are ``labels`` or those in ``gold``.

    A class never predicted and never gold is left out; one gold but never predicted scores 0."""
    classes = list(labels) if labels is not None else sorted(set(gold))
    tp = dict.fromkeys(classes, 0)
    n_gold = dict.fromkeys(classes, 0)
    n_pred = dict.fromkeys(classes, 0)
    for g, p in zip(gold, pred, strict=True):
        if g in n_gold:
            n_gold[g] += 1
        if p in n_pred:
            n_pred[p] += 1
        if g == p and g in tp:
            tp[g] += 1
    scores = [
        2 * tp[c] / (n_gold[c] + n_pred[c]) for c in classes if n_gold[c] + n_pred[c] > 0
    ]
    return 100.0 * sum(scores) / len(scores) if scores else 0.0
