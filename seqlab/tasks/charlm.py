"""Character language model (char-rnn): truncated BPTT over a long text, sampling at predict time.

Training cuts the text into chunks of ``bptt`` characters and reads them as ``B`` parallel streams
(``StreamBatchSampler``): row ``b`` of each batch continues row ``b`` of the previous one, so the
hidden state is carried over (detached: gradients stop at chunk boundaries). The validation text is
read the same way. Loss is in nats per character; ``val/bpc`` is the same in bits.

``*_attn`` models: at each step the RNN output also attends over the ``attn_window`` outputs before
it, across chunk boundaries (those states travel with the hidden state), and the context joins the
output layer. A chunked forward pass therefore equals the unchunked one with or without attention.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.config import ModelConfig, plain
from seqlab.data.chars import CharCorpus, StreamBatchSampler
from seqlab.data.vocab import Vocab
from seqlab.errors import DataError, SeqlabError
from seqlab.models.heads import CharLM, LMState
from seqlab.tasks.base import StepOutput, Task

log = logging.getLogger(__name__)


@dataclass
class ChunkBatch:
    x: torch.Tensor  # B x T input characters
    y: torch.Tensor  # B x T next characters
    continues: bool  # True: each row continues the previous batch's row (carry the state)


def sample_next(logits: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """logits: B x V -> B ids; temperature 0 is argmax, top_k > 0 keeps the k most likely."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)


class CharLMTask(Task):
    """Next-character prediction; monitors ``val/loss`` (nats/char, lower is better)."""

    def __init__(
        self,
        model: ModelConfig,
        data: CharCorpus | None = None,
        state: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        name: str = "charlm",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        bptt: int = 128,
        attn_window: int = 32,
        eval_streams: int = 16,
        sample_prime: str = "ROMEO:",
        sample_len: int = 300,
        sample_temperature: float = 0.8,
    ):
        self.name, self.monitor, self.monitor_mode, self.model_cfg = name, monitor, monitor_mode, model
        self.bptt, self.eval_streams = bptt, eval_streams
        self.sample_prime, self.sample_len, self.sample_temperature = sample_prime, sample_len, sample_temperature
        if data is None and state is None:
            raise ValueError("CharLMTask needs data or a saved state")
        if bptt < 1:
            raise SeqlabError(f"task.bptt={bptt}: must be at least 1")
        if state is not None:
            self.vocab = Vocab(state["vocab"])
        else:
            self.vocab = Vocab.build([list(data.splits["train"])], 1, 0)
            log.info("vocabulary: %d characters", len(self.vocab) - 4)
        if plain(model.bidirectional):
            log.info("charlm reads left to right: model.bidirectional is ignored (all of hidden_size is one direction)")
        self.ids = {k: torch.tensor(self.vocab.encode(list(t)), dtype=torch.long) for k, t in (data.splits if data else {}).items()}
        unk = {k: int((v == self.vocab.unk_id).sum()) for k, v in self.ids.items() if k != "train"}
        for k, n in unk.items():
            if n:
                log.info("%s: %d character(s) never seen in training read as <unk>", k, n)
        self.network = CharLM(model, len(self.vocab), attn_window)
        self._state: LMState | None = None
        self._expected: list[int] | None = None  # the indices that would continue the last batch
        if data is not None and (len(self.ids["train"]) - 1) // bptt < 1:
            raise DataError(f"the training text ({len(self.ids['train'])} characters) is shorter than task.bptt={bptt}")

    # ------------------------------------------------------------------------ data
    def train_lengths(self) -> list[int]:
        """One entry per chunk of ``bptt`` characters (the trainer counts examples with it)."""
        return [self.bptt] * ((len(self.ids["train"]) - 1) // self.bptt)

    def make_sampler(self, lengths: Sequence[int], batch_size: int, seed: int, bucket: bool, pool: int):
        return StreamBatchSampler(lengths, batch_size, seed)

    def collate(self, indices: Sequence[int]) -> ChunkBatch:
        ids, T = self.ids["train"], self.bptt
        starts = torch.tensor(list(indices)) * T
        pos = starts[:, None] + torch.arange(T)[None, :]  # B x T
        continues = self._expected == list(indices)
        self._expected = [i + 1 for i in indices]
        return ChunkBatch(ids[pos].to(self.device), ids[pos + 1].to(self.device), continues)

    # ---------------------------------------------------------------------- training
    def training_step(self, batch: ChunkBatch) -> StepOutput:
        state = self._state if batch.continues else None
        logits, new_state, _ = self.network(batch.x, state)
        self._state = new_state.detach()  # truncated BPTT: no gradient into the previous chunk
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.y.flatten())
        return StepOutput(loss=loss, n_tokens=batch.x.numel(), logs={"loss": loss.item()})

    # -------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "val", limit: int | None = None, decode: Any = None) -> dict[str, float]:
        if split not in self.ids:
            raise DataError(f"split {split!r} is not in the data (have: {', '.join(self.ids)})")
        ids = self.ids[split]
        E = max(1, min(self.eval_streams, len(ids) - 1))
        L = (len(ids) - 1) // E  # characters per stream
        if limit:
            L = min(L, max(1, limit * self.bptt // E))
        x, y = ids[: E * L].view(E, L).to(self.device), ids[1 : E * L + 1].view(E, L).to(self.device)
        self.network.eval()
        state, nll = None, 0.0
        for s in range(0, L, self.bptt):
            logits, state, _ = self.network(x[:, s : s + self.bptt], state)
            nll += F.cross_entropy(logits.flatten(0, 1).float(), y[:, s : s + self.bptt].flatten(), reduction="sum").item()
        loss = nll / (E * L)
        return {f"{split}/loss": loss, f"{split}/bpc": loss / math.log(2)}

    # ---------------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(self, prime: str, length: int, temperature: float = 1.0, top_k: int = 0) -> str:
        """``prime`` followed by ``length`` sampled characters."""
        self.network.eval()
        ids = self.vocab.encode(list(prime)) or [self.vocab.stoi.get("\n", self.vocab.unk_id)]
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        logits, state, _ = self.network(x, None)
        out = []
        for _ in range(length):
            step = logits[:, -1].float()
            step[:, :4] = float("-inf")  # never <pad> <unk> <s> </s>
            nxt = sample_next(step, temperature, top_k)  # 1
            out.append(int(nxt))
            logits, state, _ = self.network(nxt.view(1, 1), state)
        return prime + "".join(self.vocab.itos[i] for i in out)

    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        """Each input is a prime; the line is the prime and ``decode.max_len`` sampled characters
        (``decode.temperature``, ``decode.top_k``; temperature 0 is the argmax continuation)."""
        d = dict(decode or {})
        if plain(d.get("strategy", "sample")) == "beam":
            raise SeqlabError("decode.strategy=beam: charlm samples (decode.temperature, decode.top_k) or, "
                              "with decode.temperature=0, takes the most likely character")
        return [self.generate(p, int(d.get("max_len", 200)), float(d.get("temperature", 1.0)), int(d.get("top_k", 0)))
                for p in inputs]

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        if self.sample_len <= 0:
            return
        text = self.generate(self.sample_prime, self.sample_len, self.sample_temperature)
        logger.text(f"{split}/sample", "    " + text.replace("\n", "\n    "), step)  # markdown code block
        if self.network.attention is not None and split in self.ids:
            n = min(48, len(self.ids[split]) - 1)
            with torch.no_grad():
                self.network.eval()
                x = self.ids[split][:n].view(1, n).to(self.device)
                _, _, w = self.network(x, None)  # 1 x n x W
            W = w.size(-1)
            chars = [repr(self.vocab.itos[int(i)])[1:-1] for i in self.ids[split][:n]]
            logger.attention(f"{split}/attention", w[0].float().cpu(), [f"-{W - j}" for j in range(W)], chars, step)

    # --------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab.to_list()}

    def hparams(self) -> dict[str, Any]:
        m = self.model_cfg
        return {
            "model": m.name, "cell": plain(m.cell), "attention": plain(m.attention), "emb_size": m.emb_size,
            "hidden_size": m.hidden_size, "num_layers": m.num_layers, "dropout": m.dropout, "bptt": self.bptt,
            "params": sum(p.numel() for p in self.network.parameters()),
        }
