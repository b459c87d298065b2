"""Hydra callback that prints a summary table at the end of a multirun (``seqlab train -m``)."""

from __future__ import annotations

import atexit
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf


class SweepSummary(Callback):
    """Prints job, overrides and best metric of every job of a multirun at its end.

    A job's row comes from its run directory (``.hydra/`` and ``metrics.json``), read in the sweeping
    process when the multirun ends: launchers that run jobs in other processes (joblib, submitit)
    call ``on_job_end`` there, not here. ``on_job_end`` still records the status of jobs that ran in
    this process (a failed one has no metrics to read)."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config, **kwargs) -> None:
        self.sweep_dir = Path(config.hydra.sweep.dir)
        # Hydra's basic sweeper raises a failed job's error after the others have run, and then
        # on_multirun_end is not called: the table still comes out when the process exits
        atexit.register(self.print_table)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        hc = job_return.hydra_cfg
        if hc:
            self.status[str(Path(hc.hydra.runtime.output_dir))] = job_return.status.name

    def on_multirun_end(self, config, **kwargs) -> None:
        self.print_table()

    def print_table(self) -> None:
        if self.sweep_dir is None:
            return
        rows, self.sweep_dir = job_rows(self.sweep_dir, self.status), None  # once
        if rows:
            print(format_table(rows), flush=True)


def job_rows(sweep_dir: Path, status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir`` (those holding ``.hydra/``), in job order."""
    rows = []
    for d in sweep_dir.iterdir() if sweep_dir.is_dir() else ():
        hydra_dir = d / ".hydra"
        if not (hydra_dir / "overrides.yaml").is_file():
            continue
        num = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.job.num", default="?") \
            if (hydra_dir / "hydra.yaml").is_file() else "?"
        row = {"job": num, "overrides": " ".join(OmegaConf.load(hydra_dir / "overrides.yaml")),
               "dir": str(d), "status": (status or {}).get(str(d), "COMPLETED")}
        if (d / "metrics.json").is_file():
            m = json.loads((d / "metrics.json").read_text())
            row.update(monitor=m.get("monitor"), best=m.get("best"), minutes=m.get("train_seconds", 0) / 60)
        elif row["status"] == "COMPLETED":
            row["status"] = "FAILED"  # ran elsewhere and left no metrics
        rows.append(row)
    numbered = lambda r: isinstance(r["job"], int)  # noqa: E731
    return sorted(rows, key=lambda r: (not numbered(r), r["job"] if numbered(r) else 0, r["dir"]))


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
