"""``seqlab eval``: metrics of a checkpoint on a split, with the decoding you choose.

``ckpt_path=[a.pt,b.pt,...]`` evaluates an ensemble (sentiment and tagging): the members' class or
per-token tag probabilities are averaged. The members must share their task, vocabularies and labels
(the same data, e.g. a seed sweep ``seqlab train -m experiment=sst2 seed=1,2,3``); the data and the
settings that are not the network's come from the first checkpoint.
"""

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
from omegaconf import DictConfig, ListConfig, OmegaConf

from seqlab.config import ASSETS, ModelConfig, decode_settings
from seqlab.errors import CheckpointError, ConfigError
from seqlab.models.heads import ProbabilityAverage
from seqlab.runtime import (
    CONF_DIR,
    autocast_dtype,
    lean_decoding_memory,
    offline_defaults,
    resolve_device,
    user_errors,
)
from seqlab.tasks.base import Task
from seqlab.training import checkpoint as ckpt_io
from seqlab.training.trainer import precision_context

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


def restore_task(ckpt: dict[str, Any], with_data: bool, device: str = "auto", path: str = "",
                 precision: str = "fp32", data: dict | None = None) -> tuple[Task, DictConfig]:
    """Rebuild the task of a checkpoint (its vocabularies, network and weights); ``data``: settings
    merged over the checkpoint's data config (``seqlab eval ... data.test.src=my.de``).

    With ``precision=bf16`` the weights themselves are cast to bfloat16: a process that only
    evaluates then holds one copy of them, in the precision its matmuls run in (decoding would
    otherwise make a bf16 copy beside the fp32 weights, see ``models.search.decoding_copy``)."""
    run_cfg = OmegaConf.create(_portable_assets(ckpt["config"]))
    if data:
        run_cfg.data = OmegaConf.merge(run_cfg.data, data)
    model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), run_cfg.model))
    corpus = instantiate(run_cfg.data, _convert_="all") if with_data else None
    task = instantiate(run_cfg.task, _convert_="all")(model=model, data=corpus, state=ckpt["task"],
                                                     cache_dir=run_cfg.get("cache_dir"))
    ckpt_io.load_weights(task.network, ckpt["model"], path or "ckpt_path")
    task.to(resolve_device(device))
    if autocast_dtype(precision, task.device) == torch.bfloat16:
        task.network.to(torch.bfloat16)
    task.network.eval()
    return task, run_cfg


def checkpoint_paths(spec: Any) -> list[str]:
    """``ckpt_path``: one path, or a list of paths (an ensemble)."""
    if isinstance(spec, list | tuple | ListConfig):
        paths = [str(p) for p in spec]
        if not paths:
            raise ConfigError("ckpt_path=[]: name at least one checkpoint")
        return paths
    return [str(spec)]


def make_ensemble(tasks: list[Task], paths: list[str]) -> Task:
    """The first task, its network replaced by the average of all the tasks' networks."""
    first = tasks[0]
    if not hasattr(first, "ensemble_signature"):
        raise ConfigError(f"ckpt_path: a list of checkpoints (an ensemble) works for sentiment and tagging "
                          f"checkpoints; {paths[0]} is a {first.name} checkpoint")
    ref = first.ensemble_signature()
    for task, path in zip(tasks[1:], paths[1:], strict=True):
        if task.name != first.name or not hasattr(task, "ensemble_signature"):
            raise CheckpointError(f"{path}: a {task.name} checkpoint, but {paths[0]} is a {first.name} "
                                  "checkpoint: an ensemble's members must share their task")
        sig = task.ensemble_signature()
        differ = [k for k in ref if sig.get(k) != ref[k]]
        if differ:
            raise CheckpointError(f"{path}: its {', '.join(differ)} differ from those of {paths[0]}: an "
                                  "ensemble's members must be trained on the same data with the same "
                                  "vocabulary settings (a seed sweep of one preset, say)")
    first.network = ProbabilityAverage([t.network for t in tasks])
    first.network.eval()
    return first


def restore(spec: Any, with_data: bool, device: str = "auto", precision: str = "fp32",
            data: dict | None = None) -> tuple[Task, list[str], list[int | None]]:
    """The task of checkpoint ``spec``, or of the ensemble of a list of checkpoints; their paths and
    training steps. Each checkpoint is read, restored and let go in turn (its optimizer state is
    not kept while evaluating); ``precision`` as in ``restore_task``."""
    paths = checkpoint_paths(spec)
    tasks, steps = [], []
    for k, p in enumerate(paths):
        ckpt = ckpt_io.load(p)
        tasks.append(restore_task(ckpt, with_data and k == 0, device, p, precision, data)[0])
        steps.append(ckpt.get("step"))
        del ckpt
    return (make_ensemble(tasks, paths) if len(tasks) > 1 else tasks[0]), paths, steps


def data_overrides(node: Any) -> dict[str, Any]:
    """The ``data.*`` settings given to ``seqlab eval`` (other than ``data.split``), unset ones left out:
    ``data.test.src=my.de data.test.tgt=my.en`` (translation) or ``data.test.path=my.tsv`` evaluate
    a checkpoint on your own test files."""
    def keep(v):
        if isinstance(v, dict):
            v = {k: keep(x) for k, x in v.items()}
            return {k: x for k, x in v.items() if x is not None and x != {}}
        return v

    plain_node = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    return keep({k: v for k, v in plain_node.items() if k != "split"})


def evaluate(cfg: DictConfig, run_dir: str | Path) -> dict[str, float]:
    """Evaluate ``cfg.ckpt_path`` (one checkpoint or a list: an ensemble) on ``cfg.split``; writes
    metrics.json (and hypotheses) to run_dir."""
    offline_defaults()
    run_dir = Path(run_dir)
    decode = decode_settings(cfg.decode)  # checked before the checkpoint is read
    data = data_overrides(cfg.data)
    if data:
        log.info("data settings over the checkpoint's: %s", json.dumps(data))
    task, paths, steps = restore(cfg.ckpt_path, with_data=True, device=cfg.device, precision=cfg.precision,
                                 data=data)
    with torch.inference_mode(), precision_context(cfg.precision, resolve_device(cfg.device)):
        metrics = task.evaluate(cfg.split, decode=decode)
    result = {
        "checkpoint": paths[0] if len(paths) == 1 else paths,
        "step": steps[0] if len(paths) == 1 else steps,
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
    lean_decoding_memory()
    evaluate(cfg, HydraConfig.get().runtime.output_dir)
