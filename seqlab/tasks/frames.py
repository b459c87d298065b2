"""Per-frame video labels (many-to-many): CNN features per frame -> (bi)RNN -> a label per frame.

``*_attn`` models let every frame attend over all the RNN's states (the injected attention module)
and classify ``tanh(W[h_t; context_t])``; plain models classify ``h_t``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.config import ImageEncoderConfig, ModelConfig, plain
from seqlab.data.images import IMAGE_EXTENSIONS, VideoCorpus, load_image
from seqlab.errors import DataError
from seqlab.models.attention import build_attention
from seqlab.models.cnn import FeatureCache, ImageBackbone
from seqlab.models.dropout import Dropout
from seqlab.models.encoders import make_rnn
from seqlab.models.seq2seq import init_uniform
from seqlab.tasks.base import StepOutput, Task, as_dataclass

log = logging.getLogger(__name__)
IGNORE = -100


class FrameNet(nn.Module):
    """Frames B x T x 3 x H x W (or their backbone features) -> logits B x T x K."""

    def __init__(self, cfg: ModelConfig, enc: ImageEncoderConfig, num_labels: int, image_size: int,
                 pool: str = "flatten", load_weights: bool = True):
        super().__init__()
        self.backbone = ImageBackbone(enc.backbone, enc.weights, enc.trainable, enc.channels, load_weights,
                                     enc.coords)
        C, h, w = self.backbone.grid_shape(image_size)
        self.pool = plain(pool)
        self.frame_proj = nn.Linear(C * h * w if self.pool == "flatten" else C, cfg.emb_size)
        self.dropout = Dropout(cfg.dropout)
        directions = 2 if cfg.bidirectional else 1
        if cfg.hidden_size % directions:
            raise ValueError(f"model.hidden_size={cfg.hidden_size} must be even for a bidirectional RNN")
        self.rnn = make_rnn(cfg.cell, cfg.emb_size, cfg.hidden_size // directions, cfg.num_layers,
                            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        H = cfg.hidden_size
        self.attention = build_attention(cfg.attention, H, H)
        self.combine = nn.Linear(2 * H, H, bias=False) if self.attention is not None else None
        self.classifier = nn.Linear(H, num_labels)
        init_uniform(self.rnn, cfg.init_range)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W -> N x C x h x w."""
        return self.backbone(frames)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        """feats: B x T x C x h x w; lengths: B. Returns logits B x T x K and attention B x T x T | None."""
        B, T = feats.shape[:2]
        x = feats.flatten(2) if self.pool == "flatten" else feats.mean((-2, -1))  # B x T x D
        x = self.dropout(torch.relu(self.frame_proj(x)))  # B x T x E
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # B x T x H
        attn = None
        if self.attention is not None:
            mask = torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # B x T
            keys = self.attention.project_keys(out)
            ctx, attn = self.attention(out, keys, out, mask)  # B x T x H, B x T x T
            out = torch.tanh(self.combine(torch.cat([out, ctx], dim=-1)))
        return self.classifier(self.dropout(out)), attn


@dataclass
class FrameBatch:
    inputs: torch.Tensor  # B x T x 3 x H x W frames, or B x T x C x h x w cached features
    lengths: torch.Tensor  # B
    labels: torch.Tensor  # B x T label ids (IGNORE on padding)


class FramesTask(Task):
    """A label for every frame of a clip; monitors ``val/frame_acc``."""

    def __init__(
        self,
        model: ModelConfig,
        data: VideoCorpus | None = None,
        state: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        name: str = "frames",
        monitor: str = "val/frame_acc",
        monitor_mode: str = "max",
        encoder: ImageEncoderConfig | dict | None = None,
        pool: str = "flatten",
        eval_batch_size: int = 64,
        num_samples: int = 3,
    ):
        self.name, self.monitor, self.monitor_mode = name, monitor, monitor_mode
        self.encoder_cfg = as_dataclass(ImageEncoderConfig, encoder)
        self.eval_batch_size, self.num_samples, self.model_cfg = eval_batch_size, num_samples, model
        if data is None and state is None:
            raise ValueError("FramesTask needs data or a saved state")
        self.splits = data.splits if data is not None else {}
        if state is not None:
            self.labels, self.image_size = list(state["labels"]), state["image_size"]
        else:
            self.labels = data.labels or sorted({lab for labs in data.splits["train"].labels for lab in labs})
            self.image_size = data.image_size
        self.label_id = {lab: i for i, lab in enumerate(self.labels)}
        for split, sp in self.splits.items():
            unknown = {lab for labs in sp.labels for lab in labs if lab not in self.label_id}
            if unknown:
                raise DataError(f"data.{split}: labels not seen in training: {', '.join(sorted(unknown)[:5])}")
        self.network = FrameNet(model, self.encoder_cfg, len(self.labels), self.image_size, pool,
                                load_weights=state is None)
        self.cache = None
        if not self.encoder_cfg.trainable and data is not None:
            # items are single frames: clip i's frames are offsets[i] .. offsets[i] + T_i - 1
            self.offsets = {s: torch.tensor([0, *[len(c) for c in sp.clips]]).cumsum(0) for s, sp in self.splits.items()}
            self.cache = FeatureCache(self.network.backbone, cache_dir, data.fingerprint, self._frames_of,
                                      {s: int(o[-1]) for s, o in self.offsets.items()},
                                      self.encoder_cfg.feature_batch_size)

    # ------------------------------------------------------------------------------ data
    def _frames_of(self, split: str, flat: Sequence[int]) -> torch.Tensor:
        off = self.offsets[split]
        clip = torch.searchsorted(off, torch.as_tensor(flat), right=True) - 1
        return torch.stack([self.splits[split].clips[c][f - int(off[c])] for c, f in zip(clip.tolist(), flat, strict=True)])

    def train_lengths(self) -> list[int]:
        return [len(c) for c in self.splits["train"].clips]

    def _batch(self, split: str, idx: Sequence[int]) -> FrameBatch:
        sp = self.splits[split]
        lengths = torch.tensor([len(sp.clips[i]) for i in idx])
        T = int(lengths.max())
        labels = torch.full((len(idx), T), IGNORE, dtype=torch.long)
        for r, i in enumerate(idx):
            labels[r, : lengths[r]] = torch.tensor([self.label_id[lab] for lab in sp.labels[i]])
        if self.cache is not None:
            off = self.offsets[split]
            flat = [f for i in idx for f in range(int(off[i]), int(off[i + 1]))]
            feats = self.cache.get(split, flat, self.device)
            inputs = feats.new_zeros(len(idx), T, *feats.shape[1:])
            for r, chunk in enumerate(feats.split(lengths.tolist())):
                inputs[r, : len(chunk)] = chunk
        else:
            first = sp.clips[idx[0]]
            inputs = first.new_zeros(len(idx), T, *first.shape[1:])
            for r, i in enumerate(idx):
                inputs[r, : len(sp.clips[i])] = sp.clips[i]
        return FrameBatch(inputs.to(self.device), lengths, labels.to(self.device))

    def collate(self, indices: Sequence[int]) -> FrameBatch:
        return self._batch("train", indices)

    def _forward(self, batch: FrameBatch):
        x = batch.inputs
        if self.cache is None:  # B x T x 3 x H x W -> backbone over all frames at once
            B, T = x.shape[:2]
            x = self.network.features(x.flatten(0, 1)).unflatten(0, (B, T))
        return self.network(x, batch.lengths)

    # -------------------------------------------------------------------------- training
    def training_step(self, batch: FrameBatch) -> StepOutput:
        logits, _ = self._forward(batch)
        n = int((batch.labels != IGNORE).sum())
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(), ignore_index=IGNORE)
        return StepOutput(loss=loss, n_tokens=n, logs={"loss": loss.item()})

    # ------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _predict_split(self, split: str, idx: Sequence[int]):
        self.network.eval()
        loss, correct, total, clips_ok, preds = 0.0, 0, 0, 0, []
        for s in range(0, len(idx), self.eval_batch_size):
            batch = self._batch(split, idx[s : s + self.eval_batch_size])
            logits, _ = self._forward(batch)
            real = batch.labels != IGNORE
            loss += F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten(), ignore_index=IGNORE,
                                    reduction="sum").item()
            pred = logits.argmax(-1)
            hit = (pred == batch.labels) & real
            correct, total = correct + int(hit.sum()), total + int(real.sum())
            clips_ok += int((hit | ~real).all(1).sum())
            preds += [p[:n].tolist() for p, n in zip(pred, batch.lengths.tolist(), strict=True)]
        return loss, correct, total, clips_ok, preds

    def evaluate(self, split: str = "val", limit: int | None = None, decode: Any = None) -> dict[str, float]:
        if split not in self.splits:
            raise DataError(f"split {split!r} is not in the data (have: {', '.join(self.splits)})")
        n = min(limit or len(self.splits[split]), len(self.splits[split]))
        loss, correct, total, clips_ok, preds = self._predict_split(split, list(range(n)))
        self.last_hypotheses = [" ".join(self.labels[i] for i in p) for p in preds]
        return {f"{split}/loss": loss / max(total, 1), f"{split}/frame_acc": 100.0 * correct / max(total, 1),
                f"{split}/clip_acc": 100.0 * clips_ok / max(n, 1)}

    # ------------------------------------------------------------------------ predict, logs
    def read_inputs(self, spec: str) -> list[str]:
        """A clip folder (frames sorted by name), or a text file listing clip folders."""
        p = Path(spec)
        if p.is_dir():
            return [spec]
        if p.is_file():
            lines = [x.strip() for x in p.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
            if lines:
                return lines
        raise DataError(f"input={spec}: give a folder of frames or a file listing such folders")

    @torch.no_grad()
    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        out = []
        self.network.eval()
        for folder in inputs:
            frames = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS) \
                if Path(folder).is_dir() else []
            if not frames:
                raise DataError(f"{folder}: a clip folder with zero frames (or not a folder)")
            x = torch.stack([torch.from_numpy(load_image(f, self.image_size)).permute(2, 0, 1) for f in frames])
            feats = self.network.features(x.to(self.device)).unsqueeze(0)
            logits, _ = self.network(feats, torch.tensor([len(frames)]))
            labels = " ".join(self.labels[i] for i in logits[0].argmax(-1).tolist())
            out.append(labels if len(inputs) == 1 else f"{folder}\t{labels}")
        return out

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        if split not in self.splits or self.num_samples <= 0:
            return
        n = min(self.num_samples, len(self.splits[split]))
        *_, preds = self._predict_split(split, list(range(n)))
        for k, p in enumerate(preds):
            gold = self.splits[split].labels[k]
            shown = " ".join(self.labels[i] if self.labels[i] == g else f"**{self.labels[i]}**({g})"
                             for i, g in zip(p, gold, strict=True))
            logger.text(f"{split}/clip_{k}", f"**output (gold in brackets where wrong):** {shown}", step)

    # ------------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "image_size": self.image_size}

    def hparams(self) -> dict[str, Any]:
        m, e = self.model_cfg, self.encoder_cfg
        return {"model": m.name, "cell": plain(m.cell), "attention": plain(m.attention), "emb_size": m.emb_size,
                "hidden_size": m.hidden_size, "bidirectional": m.bidirectional, "backbone": plain(e.backbone),
                "trainable_cnn": e.trainable, "params": sum(p.numel() for p in self.network.parameters())}
