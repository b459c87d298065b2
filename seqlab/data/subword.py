"""Subword units (BPE or unigram) learnt from the training text with SentencePiece.

The corpus is first split into words by the data's tokenizer, as for a word-level model; the
subword model then splits each word into pieces, which the vocabulary and the network see.
Decoding joins the pieces back into words, so BLEU, chrF and printed output are computed on the
same words as a word-level model's. The model is learnt on the training split only, and travels
in the task's state (the checkpoint) as its serialised bytes, base64-encoded.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

KINDS = ("none", "bpe", "unigram")
_SPECIALS = {"<unk>", "<pad>", "<s>", "</s>"}  # a vocabulary's own symbols: words of their own


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError as e:  # a dependency of seqlab; only a broken install lacks it
        raise ImportError("task.subword needs the sentencepiece package: pip install sentencepiece") from e
    return sentencepiece


@dataclass
class SubwordModel:
    """A trained SentencePiece model over space-joined words."""

    kind: str
    proto: bytes

    def __post_init__(self):
        self._sp = _sentencepiece().SentencePieceProcessor(model_proto=self.proto)

    @classmethod
    def train(cls, sentences: Iterable[Sequence[str]], kind: str = "bpe", vocab_size: int = 8000,
              character_coverage: float = 1.0) -> SubwordModel:
        """Learn ``vocab_size`` pieces (fewer when the text holds fewer) from word-split sentences."""
        if kind not in ("bpe", "unigram"):
            raise ValueError(f"task.subword.kind={kind!r}: one of {', '.join(KINDS)}")
        if vocab_size < 8:
            raise ValueError(f"task.subword.vocab_size={vocab_size}: too small (at least 8)")
        text = [" ".join(words) for words in sentences if words]
        if not text:
            raise ValueError("task.subword: the training split holds no text to learn subwords from")
        out = io.BytesIO()
        _sentencepiece().SentencePieceTrainer.train(
            sentence_iterator=iter(text), model_writer=out, model_type=kind, vocab_size=vocab_size,
            hard_vocab_limit=False,  # small data: as many pieces as it supports, not an error
            character_coverage=character_coverage, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
            input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
            split_digits=False, byte_fallback=False, minloglevel=2,
        )
        model = cls(kind, out.getvalue())
        log.info("subwords: %s, %d pieces learnt from %d training sentences", kind, len(model), len(text))
        return model

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, words: Sequence[str]) -> list[str]:
        """The pieces of a word-split sentence (``▁`` marks the start of each word)."""
        return self._sp.encode(" ".join(words), out_type=str) if words else []

    def decode(self, pieces: Sequence[str]) -> list[str]:
        """The words the pieces spell (pieces outside the model, such as ``<unk>``, stay words)."""
        words: list[str] = []
        for piece in pieces:
            if piece.startswith("\u2581") or not words or piece in _SPECIALS:
                words.append(piece.removeprefix("\u2581"))
            else:
                words[-1] += piece
        return [w for w in words if w]

    def state(self) -> dict[str, str]:
        return {"kind": self.kind, "model": base64.b64encode(self.proto).decode("ascii")}

    @classmethod
    def from_state(cls, state: dict[str, str] | None) -> SubwordModel | None:
        if not state:
            return None
        return cls(state["kind"], base64.b64decode(state["model"]))
