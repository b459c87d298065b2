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
