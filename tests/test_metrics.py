"""Unit tests: BLEU / chrF on known strings, perplexity, detokenisation for BLEU."""

from __future__ import annotations

import math

import pytest

from seqlab.metrics import bleu, chrf, perplexity
from seqlab.tasks.translation import detokenize

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

REFS = ["a man rides a bike .", "two dogs play in the snow .", "the girl is smiling ."]


def test_identical_strings_score_100():
    score, _ = bleu(REFS, REFS)
    assert score == pytest.approx(100.0)
    score, _ = chrf(REFS, REFS)
    assert score == pytest.approx(100.0)


def test_nothing_in_common_scores_0():
    hyps = ["xyz qqq www", "zzz", "vvv kkk"]
    assert bleu(hyps, REFS)[0] == pytest.approx(0.0)
    assert chrf(["xyz"], ["abc"])[0] == pytest.approx(0.0)


def test_brevity_penalty_by_hand():
    # every n-gram of the hypothesis is in the reference (precisions 1), but it is one word short:
    # BLEU = BP = exp(1 - r/c) = exp(1 - 6/5)
    score, _ = bleu(["a b c d e"], ["a b c d e f"])
    assert score == pytest.approx(100 * math.exp(-0.2), abs=1e-6)


def test_partial_match_is_between_and_ordered():
    close, _ = bleu(["a man rides a bicycle ."], ["a man rides a bike ."])
    far, _ = bleu(["a woman walks a bicycle ."], ["a man rides a bike ."])
    assert 0 < far < close < 100
    c_close, _ = chrf(["a man rides a bicycle ."], ["a man rides a bike ."])
    assert 0 < c_close < 100


def test_several_reference_streams():
    hyps = ["the cat sat on the mat"]
    one = bleu(hyps, ["a cat was sitting on a mat"])[0]
    two = bleu(hyps, [["a cat was sitting on a mat"], ["the cat sat on the mat"]])[0]
    assert two == pytest.approx(100.0) and one < 100


def test_signatures_describe_the_metric():
    _, sig = bleu(REFS, REFS)
    assert "nrefs:1" in sig and "tok:13a" in sig and "version:" in sig
    _, sig = chrf(REFS, REFS)
    assert "nrefs:1" in sig and "version:" in sig


def test_perplexity():
    assert perplexity(0.0) == pytest.approx(1.0)
    assert perplexity(math.log(10.0)) == pytest.approx(10.0)
    assert math.isfinite(perplexity(1e6))  # capped: a diverged model stays printable


def test_detokenize_for_people_and_bleu():
    toks = ["hello", ",", "world", "(", "again", ")", "!"]
    assert detokenize(toks, "word") == "hello, world (again)!"
    assert detokenize(toks, "space") == "hello , world ( again ) !"  # pre-tokenised refs stay so
    assert detokenize(list("ab c"), "char") == "ab c"
