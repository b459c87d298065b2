"""Character language model (char-rnn): truncated BPTT over a long text, sampling at predict time.

Training cuts the text into chunks of ``bptt`` characters and reads them as ``B`` parallel streams
(``StreamBatchSampler``): row ``b`` of each batch continues row ``b`` of the previous one, so the
hidden state is carried over (detached: gradients stop at chunk boundaries). The validation text is
read the same way. Loss is in nats per character; ``val/bpc`` is the same in bits.

``*_attn`` models: at each step the RNN output also attends over the ``attn_window`` outputs before
it, across chunk boundaries (those states travel with the hidden state), and the context joins the
output layer. A chunked forward pass therefore equals the unchunked one with or without attention.

``task.gradient_flow``: at each validation, ``val/log10_grad_lag_<lag>`` says how much of the loss at
one character reaches the input ``lag`` characters earlier (``gradient_by_lag``): it falls by orders
of magnitude within a few dozen characters for a vanilla RNN, far less for the gated cells (issue 4).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seqlab.config import GradientFlowConfig, ModelConfig, plain
from seqlab.data.chars import CharCorpus, StreamBatchSampler
from seqlab.data.vocab import Vocab
from seqlab.errors import ConfigError, DataError, SeqlabError
from seqlab.models.heads import CharLM, LMState
from seqlab.tasks.base import StepOutput, Task, as_dataclass

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


def fixed_chunks(ids: torch.Tensor, length: int, chunks: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``chunks`` rows of ``length`` characters of ``ids`` from seeded random starts (the same rows for
    the same arguments) and the character after each: (chunks x length, chunks)."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - length - 1, (chunks,), generator=g).tolist()
    return torch.stack([ids[s : s + length] for s in starts]), torch.stack([ids[s + length] for s in starts])


def gradient_by_lag(network: CharLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|| d loss_T / d x_{T-lag} ||`` for lag = 0 .. T-1 (a length-T tensor), averaged over rows: the
    gradient of the loss at the last character of each row of ``x`` (B x T ids, read from a zero state;
    ``y``: the B characters after them) w.r.t. the input embedding ``lag`` characters before it.

    Runs in eval mode (no dropout; the mode is restored), with gradients on even under ``no_grad`` or
    ``inference_mode``, w.r.t. the embeddings only: no parameter's ``.grad`` changes."""
    was_training = network.training
    network.eval()
    try:
        # cuDNN's RNN has no backward in eval mode; inference tensors cannot be saved for backward
        with torch.inference_mode(False), torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            x, y = x.clone(), y.clone()
            with torch.no_grad():
                emb = network.embed(x)
            emb.requires_grad_(True)  # B x T x E, the only input gradients are taken for
            logits, _, _ = network.forward_embedded(emb)
            loss = F.cross_entropy(logits[:, -1].float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, emb)
    finally:
        network.train(was_training)
    return grad.float().norm(dim=-1).mean(0).flip(0)  # lag 0 = the last input character


def check_gradient_flow(gf: GradientFlowConfig) -> GradientFlowConfig:
    """``task.gradient_flow`` itself, or a ConfigError naming the key that cannot work."""
    lags = [int(lag) for lag in gf.lags]
    if not lags:
        return GradientFlowConfig(lags=[], chunks=gf.chunks, length=gf.length)
    if min(lags) < 0:
        raise ConfigError(f"task.gradient_flow.lags={lags}: a lag is a number of characters back, >= 0")
    if gf.chunks < 1:
        raise ConfigError(f"task.gradient_flow.chunks={gf.chunks}: must be at least 1 "
                          "(task.gradient_flow.lags=[] turns the measurement off)")
    if gf.length <= max(lags):
        raise ConfigError(f"task.gradient_flow.length={gf.length} must exceed the largest of "
                          f"task.gradient_flow.lags={lags}")
    return GradientFlowConfig(lags=lags, chunks=int(gf.chunks), length=int(gf.length))


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
        gradient_flow: GradientFlowConfig | dict | None = None,
    ):
        """``gradient_flow``: None (and ``lags: []``) measures nothing."""
        self.name, self.monitor, self.monitor_mode, self.model_cfg = name, monitor, monitor_mode, model
        self.bptt, self.eval_streams = bptt, eval_streams
        self.sample_prime, self.sample_len, self.sample_temperature = sample_prime, sample_len, sample_temperature
        if data is None and state is None:
            raise ValueError("CharLMTask needs data or a saved state")
        if bptt < 1:
            raise SeqlabError(f"task.bptt={bptt}: must be at least 1")
        self.gradient_flow = check_gradient_flow(
            GradientFlowConfig(lags=[]) if gradient_flow is None else as_dataclass(GradientFlowConfig, gradient_flow))
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
        if data is not None and "val" in self.ids:
            self._gradient_chunks("val")  # a validation text too short for the chunks fails now

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
        return {f"{split}/loss": loss, f"{split}/bpc": loss / math.log(2), **self.gradient_flow_metrics(split)}

    def _gradient_chunks(self, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        gf, ids = self.gradient_flow, self.ids[split]
        if not gf.lags:
            return None
        if len(ids) < gf.length + 2:
            raise DataError(f"the {split} text ({len(ids)} characters) is too short for task.gradient_flow.length="
                            f"{gf.length} (it needs {gf.length + 2}; or task.gradient_flow.lags=[] to turn it off)")
        return fixed_chunks(ids, gf.length, gf.chunks)

    def gradient_flow_metrics(self, split: str = "val") -> dict[str, float]:
        """``split/log10_grad_lag_<lag>`` for each of ``task.gradient_flow.lags`` (none if it is empty):
        log10 of ``gradient_by_lag`` on the same fixed chunks every time (floored at -30)."""
        chunks = self._gradient_chunks(split)
        if chunks is None:
            return {}
        by_lag = gradient_by_lag(self.network, chunks[0].to(self.device), chunks[1].to(self.device)).tolist()
        return {f"{split}/log10_grad_lag_{lag}": math.log10(max(by_lag[lag], 1e-30)) for lag in self.gradient_flow.lags}

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
