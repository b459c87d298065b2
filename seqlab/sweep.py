"""Hydra callback that prints a summary table at the end of a multirun (``seqlab train -m``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf


class SweepSummary(Callback):
    """Collects each job's ``metrics.json`` and prints job, overrides and best metric."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        hc = job_return.hydra_cfg
        out_dir = Path(hc.hydra.runtime.output_dir) if hc else None
        row = {"job": OmegaConf.select(hc, "hydra.job.num", default="?") if hc else "?",
               "overrides": " ".join(job_return.overrides or []), "dir": str(out_dir), "status": job_return.status.name}
        if out_dir and (out_dir / "metrics.json").is_file():
            m = json.loads((out_dir / "metrics.json").read_text())
            row.update(monitor=m.get("monitor"), best=m.get("best"), minutes=m.get("train_seconds", 0) / 60)
        self.rows.append(row)

    def on_multirun_end(self, config, **kwargs) -> None:
        if not self.rows:
            return
        print(format_table(self.rows), flush=True)


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["job", "overrides", "monitor", "best", "minutes", "run dir"]
    body = [
        [str(r["job"]), r["overrides"] or "-", str(r.get("monitor") or r["status"]),
         f"{r['best']:.4g}" if isinstance(r.get("best"), (int, float)) else "-",
         f"{r['minutes']:.1f}" if "minutes" in r else "-", r["dir"]]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join(["", "sweep summary", line(head), line(["-" * w for w in widths]), *map(line, body)])
