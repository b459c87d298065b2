"""``seqlab eval``: metrics of a checkpoint on a split, with the decoding you choose."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqlab.config import ASSETS, ModelConfig
from seqlab.runtime import CONF_DIR, offline_defaults, user_errors
from seqlab.tasks.base import Task
from seqlab.training import checkpoint as ckpt_io
from seqlab.training.trainer import precision_context, resolve_device

log = logging.getLogger("seqlab")


def _portable_assets(node: Any) -> Any:
    """Bundled-data paths recorded on another machine point at this installation's copy."""
    if isinstance(node, dict):
        return {k: _portable_assets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_portable_assets(v) for v in node]
    if isinstance(node, str) and "/seqlab/assets/" in node and not Path(node).exists():
        return str(ASSETS / node.split("/seqlab/assets/", 1)[1])
    return node


def restore_task(ckpt: dict[str, Any], with_data: bool, device: str = "auto", path: str = "") -> tuple[Task, DictConfig]:
    """Rebuild the task of a checkpoint (its vocabularies, network and weights)."""
    run_cfg = OmegaConf.create(_portable_assets(ckpt["config"]))
    model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), run_cfg.model))
    corpus = instantiate(run_cfg.data, _convert_="all") if with_data else None
    task = instantiate(run_cfg.task, _convert_="all")(model=model, data=corpus, state=ckpt["task"],
                                                     cache_dir=run_cfg.get("cache_dir"))
    ckpt_io.load_weights(task.network, ckpt["model"], path or "ckpt_path")
    task.to(resolve_device(device))
    task.network.eval()
    return task, run_cfg


def evaluate(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.split``; writes metrics.json (and hypotheses) to run_dir."""
    offline_defaults()
    run_dir = Path(run_dir)
    ckpt = ckpt_io.load(cfg.ckpt_path)
    task, _ = restore_task(ckpt, with_data=True, device=cfg.device, path=cfg.ckpt_path)
    decode = OmegaConf.to_container(cfg.decode, resolve=True)
    with torch.inference_mode(), precision_context(cfg.precision, resolve_device(cfg.device)):
        metrics = task.evaluate(cfg.split, decode=decode)
    result = {
        "checkpoint": str(cfg.ckpt_path),
        "step": ckpt.get("step"),
        "split": cfg.split,
        "decode": decode,
        "precision": cfg.precision,
        "metrics": metrics,
        "signatures": {k: v for k, v in vars(task).items() if k.endswith("_signature")},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    hyps = getattr(task, "last_hypotheses", None)
    if hyps is not None:
        (run_dir / f"{cfg.split}.hyp").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    for k, v in metrics.items():
        print(f"{k}\t{v:.4f}")
    for name, sig in result["signatures"].items():
        print(f"{name}\t{sig}")
    print(f"metrics written to {run_dir / 'metrics.json'}", file=sys.stderr)
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
@user_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg, HydraConfig.get().runtime.output_dir)
