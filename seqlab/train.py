"""``seqlab train``: the Hydra shell and the plain ``train(cfg, run_dir)`` it calls.

Objects are built in one direction: data -> task (its network) -> optimizer/scheduler ->
logger and checkpointer -> trainer.fit.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from seqlab.config import register_schemas, to_spec
from seqlab.errors import CheckpointError, ConfigError
from seqlab.runtime import (
    CONF_DIR,
    offline_defaults,
    precision_name,
    reuse_freed_memory,
    seed_everything,
    set_threads,
    user_errors,
)
from seqlab.training import checkpoint as ckpt_io
from seqlab.training.tensorboard import TensorBoardLogger
from seqlab.training.trainer import Checkpointer, Trainer

log = logging.getLogger("seqlab")
register_schemas()

# Parts of the config that must match for a checkpoint to be resumed.
RESUME_MUST_MATCH = ("model", "task", "data")


def build_scheduler(node: DictConfig, optimizer, total_steps: int, mode: str):
    """The scheduler named by ``scheduler._target_`` (None for scheduler=none)."""
    if not node.get("_target_"):
        return None, "step"
    builder = get_method(node._target_)
    kwargs = OmegaConf.to_container(node.kwargs, resolve=True)
    return builder(optimizer, total_steps=total_steps, mode=mode, **kwargs), node.interval


def train(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Train one run into ``run_dir``; returns the final (and ``best/``) validation metrics.
    ``overrides``: the command line's ``key=value`` settings, shown in TensorBoard's HParams tab."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    offline_defaults()
    set_threads(cfg.trainer.num_threads)
    if cfg.trainer.reuse_freed_memory:
        reuse_freed_memory()
    seed_everything(cfg.seed)
    run_config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    resume = None
    if cfg.ckpt_path:
        resume = ckpt_io.load(cfg.ckpt_path)
        diffs = [d for k in RESUME_MUST_MATCH
                 for d in ckpt_io.config_differences(resume["config"].get(k, {}), run_config[k], f"{k}.")]
        if diffs:
            raise CheckpointError(
                f"{cfg.ckpt_path}: cannot resume, the checkpoint was trained with another configuration: "
                + "; ".join(diffs[:5])
            )

    corpus = instantiate(cfg.data, _convert_="all")
    try:
        task = instantiate(cfg.task, _convert_="all")(
            model=to_spec(cfg.model), data=corpus, cache_dir=cfg.cache_dir,
            state=resume["task"] if resume else None,
        )
    except ValueError as e:  # modules reject impossible knob combinations, naming the keys
        raise ConfigError(str(e)) from None
    (run_dir / "task.json").write_text(json.dumps(task.state(), ensure_ascii=False))
    optimizer = instantiate(cfg.optimizer)(params=task.parameter_groups())
    for group in optimizer.param_groups:  # before the scheduler reads its base rates
        group["lr"] *= group.pop("lr_scale", 1.0)
    trainer_cfg = to_spec(cfg.trainer)
    n_train = len(task.train_lengths())
    if trainer_cfg.limit_train:
        n_train = min(n_train, trainer_cfg.limit_train)
    steps_per_epoch = -(-n_train // trainer_cfg.batch_size)
    total = trainer_cfg.max_steps if trainer_cfg.max_steps > 0 else trainer_cfg.max_epochs * steps_per_epoch
    scheduler, interval = build_scheduler(cfg.scheduler, optimizer, total, task.monitor_mode)
    logger = TensorBoardLogger(run_dir, cfg.logger.tensorboard, cfg.logger.flush_secs)
    checkpointer = Checkpointer(run_dir / "checkpoints", task.monitor, task.monitor_mode)
    trainer = Trainer(trainer_cfg, cfg.seed, run_config)
    n_params = sum(p.numel() for p in task.network.parameters())
    precision = precision_name(trainer.amp_dtype)
    asked = getattr(trainer_cfg.precision, "value", trainer_cfg.precision)
    log.info("%s / %s: %s parameters, %d training examples, device %s, precision %s, run dir %s",
             task.name, cfg.model.name, f"{n_params:,}", n_train, trainer.device,
             precision if asked == precision else f"{precision} ({asked})", run_dir)
    log.info("start-up took %.1fs", time.perf_counter() - t_start)
    try:
        metrics = trainer.fit(task, optimizer, scheduler, interval, logger, checkpointer, resume)
        logger.hparams(run_hparams(task.hparams(), cfg, overrides), metrics)
    finally:
        logger.close()
    summary = {
        "task": task.name,
        "model": cfg.model.name,
        "monitor": task.monitor,
        "best": checkpointer.best,
        "metrics": metrics,
        "step": trainer.state.step,
        "epoch": trainer.state.epoch,
        "stop_reason": trainer.state.stop_reason,
        "train_seconds": round(time.perf_counter() - t_start, 1),
        "best_checkpoint": str(checkpointer.best_path),
        "last_checkpoint": str(checkpointer.last_path),
        "signatures": {k: v for k, v in vars(task).items() if k.endswith("_signature")},
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    log.info("run directory: %s", run_dir)
    log.info("best checkpoint: %s (%s %.4g)", checkpointer.best_path, task.monitor,
             float("nan") if checkpointer.best is None else checkpointer.best)
    log.info("TensorBoard: tensorboard --logdir %s", run_dir / "tb")
    log.info("final metrics: %s", "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return metrics


def run_hparams(task_hparams: dict[str, Any], cfg: DictConfig, overrides: list[str] | None) -> dict[str, Any]:
    """The HParams tab's row of a run: the task's own (model sizes, ...), the learning rate, batch
    size and seed, and every setting the command line gave a value (what a sweep varies)."""
    out = {**task_hparams, "optimizer.lr": cfg.optimizer.lr, "trainer.batch_size": cfg.trainer.batch_size,
           "seed": cfg.seed}
    for override in overrides or []:
        key = override.split("=", 1)[0].lstrip("+~")
        value = OmegaConf.select(cfg, key, default=None) if "/" not in key else None
        if isinstance(value, (int, float, str, bool)):
            out[key] = value
    return out


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@user_errors
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    metrics = train(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task))
    monitor = OmegaConf.select(cfg, "task.monitor")
    return metrics.get(f"best/{monitor}", metrics.get(monitor))  # a sweeper's objective
