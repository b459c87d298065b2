"""The task-agnostic training loop: epochs, batching order, clipping, precision, scheduling,
validation, early stopping, checkpoints and logging. It knows nothing about any task."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from seqlab.config import TrainerConfig
from seqlab.errors import ConfigError, TrainingDiverged
from seqlab.runtime import autocast_dtype, resolve_device
from seqlab.tasks.base import Task
from seqlab.training import checkpoint as ckpt_io
from seqlab.training.ema import WeightEMA

log = logging.getLogger(__name__)


def autocast_context(dtype: torch.dtype | None, device: torch.device):
    """Autocast to ``dtype`` on ``device`` (a no-op context for None: full fp32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def precision_context(precision: str, device: torch.device):
    """Autocast for ``precision`` on ``device`` (a no-op context for full fp32)."""
    return autocast_context(autocast_dtype(precision, device), device)


@dataclass
class Checkpointer:
    """``last.pt`` and ``best.pt`` (by the monitored metric) under ``<run>/checkpoints``."""

    directory: Path
    monitor: str
    mode: str = "max"
    best: float | None = None

    def improved(self, value: float) -> bool:
        if self.best is None or math.isnan(self.best):
            return not math.isnan(value)
        return value > self.best if self.mode == "max" else value < self.best

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"


@dataclass
class FitState:
    step: int = 0
    epoch: int = 0
    bad_validations: int = 0
    last_val: dict[str, float] = field(default_factory=dict)
    best_val: dict[str, float] = field(default_factory=dict)
    stop_reason: str = ""
    train_seconds: float = 0.0  # wall time spent in fit, validation included


class Trainer:
    """Drives a ``Task``: ``fit`` trains, validates, checkpoints and returns the final metrics."""

    def __init__(self, cfg: TrainerConfig, seed: int, run_config: dict[str, Any]):
        self.cfg, self.seed, self.run_config = cfg, seed, run_config
        self.device = resolve_device(cfg.device)
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        self.state = FitState()
        self.ema: WeightEMA | None = None

    # ------------------------------------------------------------------------------ fit
    def fit(self, task: Task, optimizer, scheduler, scheduler_interval: str, logger, checkpointer: Checkpointer,
            resume: dict[str, Any] | None = None) -> dict[str, float]:
        cfg = self.cfg
        task.to(self.device)
        lengths = list(task.train_lengths())
        if cfg.limit_train:
            lengths = lengths[: cfg.limit_train]
        sampler = task.make_sampler(lengths, cfg.batch_size, self.seed, cfg.bucket, cfg.bucket_pool)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda")
        st = self.state
        if resume is not None:
            self._restore(resume, task, optimizer, scheduler, sampler, checkpointer)
            log.info("resumed at step %d (epoch %d, batch %d of it)", st.step, st.epoch, sampler.position)
        if cfg.ema_decay:
            try:
                self.ema = WeightEMA(task.network, cfg.ema_decay)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            if resume is not None and "train_model" in resume:  # it was saved with its average
                self.ema.load_state_dict(resume["model"], int(resume.get("ema_updates", 0)))
        self.task, self.optimizer, self.scheduler, self.sampler = task, optimizer, scheduler, sampler
        self.logger, self.checkpointer, self.scheduler_interval = logger, checkpointer, scheduler_interval
        params = [p for p in task.network.parameters() if p.requires_grad]
        total = cfg.max_steps if cfg.max_steps > 0 else cfg.max_epochs * len(sampler)
        bar = tqdm(total=total, initial=st.step, disable=not cfg.progress_bar, dynamic_ncols=True,
                   desc="train", unit="step", mininterval=1.0)
        window = {"loss": 0.0, "n": 0, "tok": 0, "src_tok": 0, "t0": time.perf_counter()}
        validated_at = -1
        t_fit = self._t_fit = time.perf_counter() - st.train_seconds  # a resumed run continues its clock
        try:
            while not st.stop_reason:
                if st.epoch >= cfg.max_epochs:
                    st.stop_reason = f"max_epochs={cfg.max_epochs}"
                    break
                for indices in sampler:
                    task.network.train()
                    out = self._train_step(task, task.collate(indices), optimizer, scaler, params)
                    st.step += 1
                    if scheduler is not None and scheduler_interval == "step":
                        scheduler.step()
                    window["loss"] += out.logs["loss"] if "loss" in out.logs else out.loss.item()
                    window["n"] += 1
                    window["tok"] += out.n_tokens
                    window["src_tok"] += out.n_src_tokens
                    bar.update(1)
                    if st.step % cfg.log_every == 0:
                        self._log_window(window, out.logs.get("grad_norm", 0.0), bar)
                    if cfg.val_every_steps and st.step % cfg.val_every_steps == 0:
                        self._validate()
                        validated_at = st.step
                    elif cfg.save_last_every_steps and st.step % cfg.save_last_every_steps == 0:
                        self._save(checkpointer.last_path)
                    if st.stop_reason:
                        break
                    if 0 < cfg.max_steps <= st.step:
                        st.stop_reason = f"max_steps={cfg.max_steps}"
                        break
                    if cfg.max_minutes and time.perf_counter() - t_fit > 60 * cfg.max_minutes:
                        st.stop_reason = f"max_minutes={cfg.max_minutes:g}"
                        break
                else:  # the epoch ran to its end
                    st.epoch = sampler.epoch
                    if not cfg.val_every_steps:
                        self._validate()
                        validated_at = st.step
            if validated_at != st.step:
                self._validate(final=True)
        finally:
            bar.close()
        log.info("stopped: %s", st.stop_reason)
        return {**st.last_val, **{f"best/{k}": v for k, v in st.best_val.items()}}

    def _train_step(self, task, batch, optimizer, scaler, params):
        with autocast_context(self.amp_dtype, self.device):  # the precision resolved once, in __init__
            out = task.training_step(batch)
        if not torch.isfinite(out.loss.detach()):
            self._diverged(f"the training loss is {out.loss.detach().item()}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = self._clip(params, optimizer, scaler)  # the norm before clipping
        scaler.step(optimizer)
        optimizer.grad_scale = None  # (set by _clip for this step only)
        scaler.update()
        if self.ema is not None:
            self.ema.update()
        out.logs["grad_norm"] = grad_norm
        return out

    def _clip(self, params, optimizer, scaler) -> float:
        """``clip_grad_norm_(params, trainer.grad_clip)``; returns the norm before clipping.

        As PyTorch does, gradients are scaled by max_norm / (norm + 1e-6) when that is below 1, but
        only then (PyTorch multiplies every gradient by the clamped factor at every step); and an
        optimizer with a fused update (``_step_supports_amp_scaling``, as ``GradScaler`` reads it,
        e.g. Adam with ``fused=True``) divides the gradients by ``grad_scale`` inside its own pass
        over them instead of a separate one."""
        grads = [p.grad for p in params if p.grad is not None]
        grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        if not math.isfinite(grad_norm):
            if not scaler.is_enabled():
                self._diverged(f"the gradient norm is {grad_norm}")
            return grad_norm  # the scaler skips this step
        coef = self.cfg.grad_clip / (grad_norm + 1e-6)
        if self.cfg.grad_clip > 0 and coef < 1.0:
            if getattr(optimizer, "_step_supports_amp_scaling", False) and not scaler.is_enabled():
                optimizer.grad_scale = torch.tensor(1.0 / coef, device=grads[0].device)
            else:
                torch.nn.utils.clip_grads_with_norm_(params, self.cfg.grad_clip, torch.tensor(grad_norm))
        return grad_norm

    def _diverged(self, what: str) -> None:
        last = self.checkpointer.last_path
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"training diverged at step {self.state.step + 1}: {what}; {kept}. "
            "Try a lower optimizer.lr, trainer.grad_clip, or trainer.precision=fp32."
        )

    def _log_window(self, window: dict, grad_norm: float, bar) -> None:
        dt = max(time.perf_counter() - window["t0"], 1e-9)
        loss = window["loss"] / max(window["n"], 1)
        metrics = {
            "train/loss": loss,
            "train/grad_norm": grad_norm,
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/tokens_per_sec": window["tok"] / dt,
            "train/src_tgt_tokens_per_sec": (window["tok"] + window["src_tok"]) / dt,
        }
        self.logger.scalars(metrics, self.state.step)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{metrics['train/tokens_per_sec']:.0f}", refresh=False)
        if bar.disable:
            log.info("step %d  loss %.4f  grad_norm %.2f  lr %.2e  %.0f tok/s", self.state.step, loss, grad_norm,
                     metrics["train/lr"], metrics["train/tokens_per_sec"])
        window.update(loss=0.0, n=0, tok=0, src_tok=0, t0=time.perf_counter())

    # ----------------------------------------------------------------------- validation
    def _validate(self, final: bool = False) -> None:
        st, task, ck = self.state, self.task, self.checkpointer
        t0 = time.perf_counter()
        with self.ema.applied() if self.ema is not None else contextlib.nullcontext():
            metrics = task.evaluate("val", self.cfg.limit_eval)
            st.last_val = metrics
            st.train_seconds = time.perf_counter() - self._t_fit
            self.logger.scalars({**metrics, "train/minutes": st.train_seconds / 60}, st.step)
            task.log_samples(self.logger, st.step, "val")
        value = metrics.get(ck.monitor)
        if value is None:
            raise KeyError(f"task.monitor={ck.monitor!r} is not among the validation metrics {sorted(metrics)}")
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if ck.improved(value):
            ck.best, st.best_val, st.bad_validations = value, dict(metrics), 0
            self._save(ck.best_path)
            log.info("step %d  %s  (new best %s)", st.step, shown, ck.monitor)
        else:
            st.bad_validations += 1
            log.info("step %d  %s  (best %s %.4g; %d without improvement)", st.step, shown, ck.monitor, ck.best,
                     st.bad_validations)
        if self.scheduler is not None and self.scheduler_interval == "val":
            self.scheduler.step(value)
        patience = self.cfg.early_stopping_patience
        if patience and st.bad_validations >= patience and not st.stop_reason:
            st.stop_reason = f"early stopping: {ck.monitor} did not improve for {patience} validations"
        self._save(ck.last_path)
        if self.cfg.keep_every_validation:
            self._save(ck.directory / f"step_{st.step}.pt")
        log.debug("validation took %.1fs", time.perf_counter() - t0)

    # ---------------------------------------------------------------------- checkpoints
    def _save(self, path: Path) -> None:
        """With trainer.ema_decay, ``model`` holds the averaged weights (the ones validated, which
        eval and predict read) and ``train_model`` the optimizer's own, which a resumed run continues."""
        st = self.state
        averaged = {}
        if self.ema is not None:
            averaged = {"weights": self.ema.state_dict(), "train_model": self.task.network.state_dict(),
                        "ema_updates": self.ema.updates}
        ckpt_io.atomic_save(
            ckpt_io.model_checkpoint(
                self.task, self.run_config, st.step, **averaged,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
                epoch=st.epoch,
                train_seconds=st.train_seconds,
                sampler=self.sampler.state_dict(),
                rng=ckpt_io.rng_state(),
                monitor={"name": self.checkpointer.monitor, "mode": self.checkpointer.mode,
                         "best": self.checkpointer.best, "bad_validations": st.bad_validations},
                metrics={"last": st.last_val, "best": st.best_val},
            ),
            path,
        )

    def _restore(self, ckpt, task, optimizer, scheduler, sampler, checkpointer) -> None:
        st = self.state
        ckpt_io.load_weights(task.network, ckpt.get("train_model", ckpt["model"]), "ckpt_path")
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        sampler.load_state_dict(ckpt["sampler"])
        st.step, st.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        st.train_seconds = float(ckpt.get("train_seconds", 0.0))
        mon = ckpt.get("monitor", {})
        checkpointer.best = mon.get("best")
        st.bad_validations = int(mon.get("bad_validations", 0))
        st.last_val = dict(ckpt.get("metrics", {}).get("last", {}))
        st.best_val = dict(ckpt.get("metrics", {}).get("best", {}))
        ckpt_io.set_rng_state(ckpt["rng"])
