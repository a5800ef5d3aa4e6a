"""``metrics.jsonl`` (+ TensorBoard when installed): one JSON record per log/eval event.

Records carry ``kind`` (``train`` or ``eval``) and ``step``. On resume, the records after the
checkpoint's step are dropped, so the file always reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Appends records to ``metrics.jsonl`` (and TensorBoard); on the main process only."""

    def __init__(self, path: Path, tb_dir: Path | None, resume_step: int | None, enabled: bool = True):
        self.enabled = enabled
        self.path = path
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and path.exists():
            keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            path.write_text("".join(x + "\n" for x in keep))
        elif path.exists():
            path.unlink()
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(tb_dir))
            except Exception:  # tensorboard not installed: JSONL only
                self.tb = None

    def write(self, rec: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_records(path: Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` (none when it does not exist)."""
    return [json.loads(x) for x in path.read_text().splitlines() if x] if path.exists() else []


def write_config(folder: Path, config: dict) -> None:
    """The resolved config a training run used, as ``config.yaml`` beside its outputs."""
    import yaml

    (Path(folder) / "config.yaml").write_text("# the resolved configuration of this run (every default filled in)\n"
                                              + yaml.safe_dump(config, sort_keys=False))


def eta(seconds: float) -> str:
    """``12m05s`` / ``1h03m``: the remaining time in progress lines."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
